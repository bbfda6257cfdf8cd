"""Outbound webhooks end to end over HTTP (issue 11): the local stack (`make run`) with its event
sources (devserver/event_sources.py: the table stream -> EventDispatcherFunction -> SQS ->
EventDeliveryFunction, the same code as in AWS), a real receiver on 127.0.0.1 that verifies every
signature (tests/webhook_receiver.py), the app's API over HTTP with its key."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from paywalls.events.catalog import CATALOG
from tests.chat_support import make_paywall
from tests.conftest import LocalStack, api, run_local_stack
from tests.test_topup_offline import simulate
from tests.webhook_receiver import Receiver, receiver


@pytest.fixture(scope="module")
def hooks() -> Iterator[LocalStack]:
    # Retries at once (no 30 s backoff) and deactivation after 3 failed deliveries: the same code paths.
    env = {"PAYWALLS_WEBHOOK_RETRY_BASE_S": "0", "PAYWALLS_WEBHOOK_DEACTIVATE_AFTER": "3"}
    with run_local_stack(env) as running:
        yield running


@pytest.fixture(scope="module")
def inbox() -> Iterator[Receiver]:
    with receiver() as running:
        yield running


def drain(stack: LocalStack) -> int:
    reply = httpx.post(f"{stack.url}/_dev/events/drain", params={"timeout_s": 30}, timeout=60)
    reply.raise_for_status()
    return int(reply.json()["delivered"])


def subscribe(client: httpx.Client, inbox: Receiver, path: str, events: list[str], **extra: Any) -> dict[str, Any]:
    reply = client.post("/webhooks/subscriptions", json={"url": inbox.url(path), "events": events, **extra})
    assert reply.status_code == 201, reply.text
    sub = reply.json()["subscription"]
    assert sub["secret"].startswith("whsec_") and sub["secretSuffix"] == sub["secret"][-4:]
    inbox.secrets[path] = sub["secret"]
    return sub


def new_path() -> str:
    return f"/hook-{uuid.uuid4().hex[:8]}"


def test_every_event_arrives_once_per_subscription_signed_with_its_fields(hooks: LocalStack, inbox: Receiver) -> None:
    paywall = make_paywall(hooks, trial_credits="0.5")
    everything, money = new_path(), new_path()
    with api(hooks, paywall["key"]) as client, hooks.admin() as admin, httpx.Client(timeout=30) as browser:
        sub_all = subscribe(client, inbox, everything, ["*"], customHeaders={"X-App": "demo"}, description="  all  ")
        sub_money = subscribe(client, inbox, money, ["paywall.balance.*", "paywall.usage.charge.created"])
        assert sub_all["description"] == "all" and sub_all["customHeaders"] == {"X-App": "demo"}
        # a top-up link for a new user (trial granted first), a deposit, a chat completion
        client.get("/user/balance/topup", params={"user": "alice"}).raise_for_status()
        client.post(
            "/user/balance/deposit",
            json={"user": "alice", "amount": "1"},
            headers={"Idempotency-Key": uuid.uuid4().hex},
        ).raise_for_status()
        chat = client.post(
            "/chat/completions",
            json={"model": "demo/echo", "messages": [{"role": "user", "content": "hi"}], "user": "alice"},
        )
        assert chat.status_code == 200 and chat.headers.get("x-paywall-action") is None, chat.text
        # a manual charge of everything left: the balance is depleted; the next request is blocked
        left = client.get("/user/balance", params={"user": "alice"}).json()["balanceFormatted"]
        client.post(
            "/user/charge", json={"user": "alice", "amount": left}, headers={"Idempotency-Key": uuid.uuid4().hex}
        ).raise_for_status()
        blocked = client.post(
            "/chat/completions",
            json={"model": "demo/echo", "messages": [{"role": "user", "content": "hi"}], "user": "alice"},
        )
        assert blocked.headers.get("x-paywall-action") == "topup"
        # a paid Stripe checkout (simulated through the real, signature-checked Stripe webhook)
        url = client.get("/user/balance/topup", params={"user": "bob"}).json()["url"]
        assert simulate(browser, url, "10").status_code == 303
        # operator changes: settings, a new key
        admin.patch(f"/admin/paywalls/{paywall['id']}", json={"name": "Renamed"}).raise_for_status()
        admin.post(f"/admin/paywalls/{paywall['id']}/keys", json={"environment": "test"}).raise_for_status()
    drain(hooks)

    expected_all = {
        "paywall.balance.trial.granted": 2,  # alice, bob
        "paywall.balance.topup.link.created": 2,
        "paywall.balance.deposit.created": 1,
        "paywall.usage.charge.created": 1,
        "paywall.balance.charge.created": 1,
        "paywall.balance.depleted": 1,
        "paywall.request.blocked": 1,
        "paywall.stripe.checkout.session.completed": 1,
        "paywall.updated": 1,
        "paywall.secret.rotated": 1,
    }
    expected_money = {
        k: v for k, v in expected_all.items() if k.startswith("paywall.balance.") or k == "paywall.usage.charge.created"
    }
    for path, sub, wanted in ((everything, sub_all, expected_all), (money, sub_money, expected_money)):
        deliveries = inbox.at(path)
        assert all(d.verified for d in deliveries)  # every signature checks out with that secret
        events = [d.body["event"] for d in deliveries]
        assert len({e["id"] for e in events}) == len(events)  # once per (event, subscription)
        assert Counter(e["type"] for e in events) == wanted
        for d in deliveries:
            event = d.body["event"]
            kind = CATALOG[event["type"]]
            assert set(kind.data) <= set(event["data"]), (event["type"], event["data"])
            assert event["version"] == "1.0" and event["paywallId"] == paywall["id"]
            if kind.user:
                assert event["data"]["externalUserId"] in ("alice", "bob")
                assert event["subject"] == f"user:{event['data']['externalUserId']}"
            assert d.headers["X-Paywalls-Event"] == f"{event['type']}@1.0"
            assert d.headers["X-Paywalls-Timestamp"].endswith("Z")
            assert d.body["delivery"]["subscriptionId"] == sub["id"] and d.body["delivery"]["attempts"] == 1
    events = {e["type"]: e for e in inbox.events(everything)}
    usage = events["paywall.usage.charge.created"]["data"]
    assert usage["model"] == "demo/echo" and usage["promptTokens"] > 0 and int(usage["amount"]) > 0
    assert events["paywall.balance.depleted"]["data"]["balance"] == "0"
    assert events["paywall.balance.deposit.created"]["data"]["amountFormatted"] == "1.000000"
    assert events["paywall.stripe.checkout.session.completed"]["data"]["checkoutSessionId"].startswith("cs_")
    assert events["paywall.updated"]["data"]["fields"] == ["name"]
    assert inbox.at(everything)[0].headers["X-App"] == "demo"  # custom headers ride along
    # the logs API lists them with their attempts and payloads
    with api(hooks, paywall["key"]) as client:
        page = client.get("/webhooks/logs", params={"subscriptionId": sub_money["id"], "limit": 3}).json()
        assert len(page["data"]) == 3 and page["hasMore"] is True
        assert {row["status"] for row in page["data"]} == {"success"}
        assert page["data"][0]["attemptLog"][0]["statusCode"] == 200
        rest = client.get(
            "/webhooks/logs", params={"subscriptionId": sub_money["id"], "limit": 100, "cursor": page["nextCursor"]}
        ).json()
        seen = [r["eventId"] for r in page["data"] + rest["data"]]
        assert len(seen) == len(set(seen)) == sum(expected_money.values())
        assert page["data"][0]["createdAt"] >= page["data"][-1]["createdAt"]  # newest first


def test_a_receiver_down_for_the_first_attempts_gets_the_event_later(hooks: LocalStack, inbox: Receiver) -> None:
    paywall = make_paywall(hooks)
    path = new_path()
    inbox.answers[path] = [503, 500]
    with api(hooks, paywall["key"]) as client:
        subscribe(client, inbox, path, ["paywall.balance.deposit.created"])
        client.post(
            "/user/balance/deposit", json={"user": "carol", "amount": "2"}, headers={"Idempotency-Key": "d1"}
        ).raise_for_status()
        drain(hooks)
        deliveries = inbox.at(path)
        assert [d.body["delivery"]["attempts"] for d in deliveries] == [1, 2, 3]
        assert len({d.body["event"]["id"] for d in deliveries}) == 1  # the same event, stable id
        [log] = client.get("/webhooks/logs").json()["data"]
        assert log["status"] == "success" and log["attempts"] == 3
        assert [a["statusCode"] for a in log["attemptLog"]] == [503, 500, 200]


def test_410_ends_the_delivery_and_repeated_failures_deactivate(hooks: LocalStack, inbox: Receiver) -> None:
    paywall = make_paywall(hooks)
    gone, watcher = new_path(), new_path()
    inbox.answers[gone] = [410, 410, 410]
    with api(hooks, paywall["key"]) as client:
        sub = subscribe(client, inbox, gone, ["paywall.balance.deposit.created"])
        subscribe(client, inbox, watcher, ["paywall.webhook.*"])
        for n in range(3):
            client.post(
                "/user/balance/deposit", json={"user": "dan", "amount": "1"}, headers={"Idempotency-Key": f"k{n}"}
            ).raise_for_status()
            drain(hooks)
        assert len(inbox.at(gone)) == 3  # one attempt each: 410 is final
        errors = client.get("/webhooks/logs", params={"status": "error"}).json()["data"]
        assert len(errors) == 3 and all(e["attempts"] == 1 for e in errors)
        after = client.get(f"/webhooks/subscriptions/{sub['id']}").json()["subscription"]
        assert after["isActive"] is False and after["consecutiveFailures"] == 3
        [notice] = inbox.events(watcher)
        assert notice["type"] == "paywall.webhook.subscription.deactivated"
        assert notice["data"]["subscriptionId"] == sub["id"]
        # inactive: a new deposit is not delivered; PATCH isActive re-enables with a fresh count
        client.post(
            "/user/balance/deposit", json={"user": "dan", "amount": "1"}, headers={"Idempotency-Key": "k9"}
        ).raise_for_status()
        drain(hooks)
        assert len(inbox.at(gone)) == 3
        listed = client.get("/webhooks/subscriptions", params={"status": "inactive"}).json()["data"]
        assert [s["id"] for s in listed] == [sub["id"]]
        again = client.patch(f"/webhooks/subscriptions/{sub['id']}", json={"isActive": True}).json()["subscription"]
        assert again["isActive"] is True and again["consecutiveFailures"] == 0


def test_subscription_api_validates_and_rotates(hooks: LocalStack, inbox: Receiver) -> None:
    paywall = make_paywall(hooks)
    with api(hooks, paywall["key"]) as client, hooks.admin() as admin:
        bad = [
            {"url": "ftp://example.com/x", "events": ["*"]},
            {"url": "https://example.com/x", "events": ["nope.event"]},
            {"url": "https://example.com/x", "events": ["*", "paywall.updated"]},
            {"url": "https://10.0.0.1/x", "events": ["*"]},
            {"url": "https://example.com/x", "events": ["*"], "customHeaders": {f"H{i}": "v" for i in range(11)}},
            {"url": "https://example.com/x", "events": ["*"], "customHeaders": {"X-Paywalls-Signature": "x"}},
            {"url": "https://example.com/x", "events": ["*"], "secret": "short"},
            {"url": "https://example.com/x", "events": ["*"], "extra": 1},
        ]
        for body in bad:
            reply = client.post("/webhooks/subscriptions", json=body)
            assert reply.status_code == 400, (body, reply.text)
            assert set(reply.json()["error"]) == {"message", "type", "param", "code"}
        sub = client.post(
            "/webhooks/subscriptions",
            json={"url": "https://example.com/x", "events": ["paywall.balance.*"], "description": "d" * 600},
        ).json()["subscription"]
        assert len(sub["description"]) == 512
        rotated = client.post(f"/webhooks/subscriptions/{sub['id']}/rotate-secret", json={}).json()["subscription"]
        assert rotated["secret"] != sub["secret"] and rotated["secretSuffix"] == rotated["secret"][-4:]
        assert "secret" not in client.get(f"/webhooks/subscriptions/{sub['id']}").json()["subscription"]
        # the operator's mirror: same shapes
        mirrored = admin.get(f"/admin/paywalls/{paywall['id']}/webhooks/subscriptions").json()["data"]
        assert [s["id"] for s in mirrored] == [sub["id"]] and "secret" not in mirrored[0]
        deleted = admin.delete(f"/admin/paywalls/{paywall['id']}/webhooks/subscriptions/{sub['id']}").json()
        assert deleted["subscription"]["isActive"] is False
        assert admin.get(f"/admin/paywalls/{paywall['id']}/webhooks/logs").json()["data"] == []
        assert client.get("/webhooks/subscriptions/whsub_000000000000000000000000").status_code == 404
        assert client.get("/webhooks/logs", params={"limit": 101}).status_code == 400
        assert client.get("/webhooks/logs", params={"cursor": "!!"}).status_code == 400
        other = make_paywall(hooks)
        with api(hooks, other["key"]) as stranger:  # another app's key never sees it
            assert stranger.get(f"/webhooks/subscriptions/{sub['id']}").status_code == 404


def test_shared_mode_authorization_events_and_charges_without_the_wallet_balance(
    hooks: LocalStack, inbox: Receiver
) -> None:
    from tests.shared_support import WalletBrowser, form_with

    paywall = make_paywall(hooks, mode="shared", platform_fee_percent="10")
    path = new_path()
    user = f"m-{uuid.uuid4().hex[:8]}"
    email = f"{user}@example.com"

    def mail(to: str) -> str:
        return httpx.get(f"{hooks.url}/_dev/mail", params={"to": to}, timeout=10).json()["data"][-1]["subject"]

    with api(hooks, paywall["key"]) as client, httpx.Client(timeout=30) as http:
        subscribe(client, inbox, path, ["paywall.authorization.*", "paywall.balance.*"])
        url = client.get("/user/connect", params={"user": user}).json()["url"]  # requested
        browser = WalletBrowser(http, hooks.url, mail)
        browser.sign_in(email, next_path=url.removeprefix(hooks.url))
        page = browser.get(url)
        assert browser.submit(form_with(page.text, decision="deny")).status_code == 200  # declined
        assert browser.approve(url, cap="5").status_code == 200  # completed
        assert browser.simulate_topup("10").status_code == 303  # the person's money: no app event
        client.post(
            "/user/charge", json={"user": user, "amount": "0.5"}, headers={"Idempotency-Key": uuid.uuid4().hex}
        ).raise_for_status()
        assert client.get("/user/disconnect", params={"user": user}).json()["success"] is True  # revoked
    drain(hooks)
    events = inbox.events(path)
    assert sorted(e["type"] for e in events) == [  # once each (deliveries run in parallel: any order)
        "paywall.authorization.completed",
        "paywall.authorization.declined",
        "paywall.authorization.requested",
        "paywall.authorization.revoked",
        "paywall.balance.charge.created",
    ]
    for event in events:
        assert event["data"]["externalUserId"] == user and event["data"]["environment"] == "live"
        assert set(CATALOG[event["type"]].data) - {"balance", "balanceFormatted"} <= set(event["data"])
    by_type = {e["type"]: e["data"] for e in events}
    assert by_type["paywall.authorization.completed"]["spendingCap"] == "5.000000"
    assert by_type["paywall.authorization.requested"]["url"] == url
    charged = by_type["paywall.balance.charge.created"]
    assert charged["amount"] == "500000" and "balance" not in charged  # never the person's wallet
    assert (
        by_type["paywall.authorization.revoked"]["connectionId"]
        == by_type["paywall.authorization.completed"]["connectionId"]
    )
