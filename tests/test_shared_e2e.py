"""Shared mode end to end (SPEC §6) over real HTTP on the local stack, with the official OpenAI SDK
as the app and an HTTP client as the person's browser: authorize reply -> email-code sign-in (code
from the dev mail sink) -> consent with a cap -> chat served and charged to the wallet -> cap reached
-> revoke -> authorize again; two paywalls on one wallet earn exactly their users' spend minus fee;
withdrawals never exceed earnings."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from tests.chat_support import new_user
from tests.conftest import LocalStack
from tests.shared_support import WalletBrowser


@pytest.fixture
def browser(stack: LocalStack) -> Iterator[WalletBrowser]:
    def inbox(email: str) -> str:
        mail = httpx.get(f"{stack.url}/_dev/mail", params={"to": email}, timeout=10).json()["data"]
        assert mail, f"no mail for {email}"
        return mail[-1]["subject"]

    with httpx.Client(timeout=30) as client:
        yield WalletBrowser(client, stack.url, inbox)


def sdk(stack: LocalStack, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key=key, max_retries=0)


def ask(stack: LocalStack, key: str, user: str, text: str = "hello there", **extra: Any) -> tuple[str, str | None]:
    """(assistant text, X-Paywall-Action) of one non-streamed chat completion."""
    raw = sdk(stack, key).chat.completions.with_raw_response.create(
        model="demo/echo", messages=[{"role": "user", "content": text}], user=user, **extra
    )
    return raw.parse().choices[0].message.content or "", raw.headers.get("x-paywall-action")


def link_in(text: str) -> str:
    url = next(word for word in text.split() if "/wallet/authorize/" in word)
    return url.rstrip(".")


def person(stack: LocalStack, email: str) -> dict[str, Any]:
    """The operator's view, with the live wallet's figures (the apps here use live keys) on top."""
    with stack.admin() as admin:
        found = admin.get("/admin/persons", params={"email": email}).raise_for_status().json()
    return {**found, **found["wallets"]["live"]}


def earnings(stack: LocalStack, paywall_id: str) -> dict[str, Any]:
    with stack.admin() as admin:
        return admin.get(f"/admin/paywalls/{paywall_id}/earnings").raise_for_status().json()


def fund_person(stack: LocalStack, person_id: str, amount: str) -> None:
    with stack.admin() as admin:
        admin.post(
            f"/admin/persons/{person_id}/adjustments",
            json={"amount": amount, "environment": "live"},
            headers={"Idempotency-Key": uuid.uuid4().hex},
        ).raise_for_status()


def test_authorize_sign_in_consent_charge_cap_revoke(
    stack: LocalStack, new_paywall: Any, browser: WalletBrowser
) -> None:
    app = new_paywall(mode="shared", platform_fee_percent="10", name="Echo Pro")
    user = new_user()
    email = f"{user}@example.com"

    # 1. Not connected: the authorize reply (non-streamed and streamed), nothing charged.
    text, action = ask(stack, app["key"], user)
    assert action == "authorize" and "Echo Pro" in text
    stream = sdk(stack, app["key"]).chat.completions.create(
        model="demo/echo", messages=[{"role": "user", "content": "hi"}], user=user, stream=True
    )
    streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert "/wallet/authorize/" in streamed
    url = link_in(text)

    # 2. Opening the link asks to sign in; the code comes by (local) email; then back to the consent.
    first = browser.get(url)
    assert first.status_code == 303 and "/wallet/signin" in first.headers["location"]
    done = browser.sign_in(email, next_path=url.removeprefix(stack.url))
    assert done.headers["location"] == url
    code = browser.inbox(email)[-6:]
    assert f"LOCAL MAIL to {email}: Your sign-in code: {code}" in stack.log()  # the `make run` console

    # 3. Money: a simulated top-up through the operator's webhook pipeline (no Stripe key locally).
    paid = browser.simulate_topup("5")
    assert paid.status_code == 303 and paid.headers["location"].endswith("/wallet/topup/success"), paid.text
    me = person(stack, email)
    assert me["balance"] == "5000000" and me["connections"] == []

    # 4. Consent with a small cap: 0.001 (1000 micro-units) covers a few echo requests.
    approved = browser.approve(url, cap="0.001")
    assert approved.status_code == 200 and "Connected" in approved.text

    # 5. Served and charged to the wallet, within the cap (streamed too), until the cap refuses.
    stream = sdk(stack, app["key"]).chat.completions.create(
        model="demo/echo", messages=[{"role": "user", "content": "streamed words"}], user=user, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == "streamed words"
    after_stream = int(person(stack, email)["connections"][0]["spent"])
    assert after_stream > 0 and person(stack, email)["balance"] == str(5_000_000 - after_stream)
    served = 1
    for i in range(20):
        text, action = ask(stack, app["key"], user, f"question {i}")
        if action is not None:
            break
        assert text == f"question {i}"
        served += 1
    assert served >= 2 and action == "cap", text
    assert "spending limit" in text and "/wallet/home" in text
    me = person(stack, email)
    (connection,) = me["connections"]
    spent = int(connection["spent"])
    assert 0 < spent <= 1000 and int(me["balance"]) == 5_000_000 - spent
    assert me["available"] == me["balance"]  # every hold was settled or released
    summary = earnings(stack, app["id"])
    assert int(summary["gross"]) == spent and int(summary["charges"]) == served
    assert int(summary["fees"]) + int(summary["earned"]) == spent

    # 6. The app's view over the user API.
    with httpx.Client(base_url=f"{stack.url}/v1", headers={"Authorization": f"Bearer {app['key']}"}) as api:
        status = api.get("/user/connect", params={"user": user}).json()
        assert status["connected"] is True and status["connectedUser"]["spent"] == str(spent)
        assert email not in str(status)

    # 7. Revoked on the wallet page: the next request asks to authorize again, nothing charged.
    assert browser.revoke_all() == 1
    text, action = ask(stack, app["key"], user)
    assert action == "authorize" and "/wallet/authorize/" in text
    assert person(stack, email)["balance"] == str(5_000_000 - spent)


def test_two_paywalls_share_one_wallet_and_each_earns_its_users_spend_minus_fee(
    stack: LocalStack, new_paywall: Any, browser: WalletBrowser
) -> None:
    a = new_paywall(mode="shared", platform_fee_percent="10", name="App A")
    b = new_paywall(mode="shared", platform_fee_percent="25", name="App B")
    user_a, user_b = new_user("a"), new_user("b")
    email = f"{user_a}@example.com"

    url_a = link_in(ask(stack, a["key"], user_a)[0])
    browser.sign_in(email)
    me = person(stack, email)
    fund_person(stack, me["id"], "2")
    assert browser.approve(url_a).status_code == 200
    with httpx.Client(base_url=f"{stack.url}/v1", headers={"Authorization": f"Bearer {b['key']}"}) as api_b:
        url_b = api_b.get("/user/connect", params={"user": user_b}).json()["url"]
        assert browser.approve(url_b, cap="1").status_code == 200
        # A manual charge through B's user API, on top of chat usage.
        charged = api_b.post(
            "/user/charge", json={"user": user_b, "amount": "0.5"}, headers={"Idempotency-Key": "manual-1"}
        )
        assert charged.json()["success"] is True, charged.text

    for i in range(3):
        assert ask(stack, a["key"], user_a, f"a {i}")[1] is None
        assert ask(stack, b["key"], user_b, f"b {i} longer question")[1] is None
    # B's user is not A's user: A cannot charge through B's authorization.
    assert ask(stack, a["key"], user_b)[1] == "authorize"

    me = person(stack, email)
    spent = {c["paywall_id"]: int(c["spent"]) for c in me["connections"]}
    assert int(me["balance"]) == 2_000_000 - spent[a["id"]] - spent[b["id"]]
    for app, percent, charges in ((a, Decimal(10), 3), (b, Decimal(25), 4)):
        summary = earnings(stack, app["id"])
        gross, fees, earned = int(summary["gross"]), int(summary["fees"]), int(summary["earned"])
        assert gross == spent[app["id"]] and int(summary["charges"]) == charges
        assert fees + earned == gross
        # Per charge fee = floor(charge x percent): the total is within one micro-unit per charge.
        assert gross * percent / 100 - charges < fees <= gross * percent / 100
        # Held for the settlement delay (EarningsHoldDays) before any of it is withdrawable.
        assert (summary["pending"], summary["available"], summary["withdrawn"]) == (summary["earned"], "0", "0")


def test_withdrawals_never_exceed_earnings_and_are_idempotent_over_the_cli(
    stack: LocalStack, new_paywall: Any, browser: WalletBrowser
) -> None:
    app = new_paywall(mode="shared", platform_fee_percent="20")
    user = new_user()
    cli = ["--url", stack.config["admin_url"], "--token", stack.config["admin_token"], "--json"]

    def paywalls(*args: str, check: bool = True) -> Any:
        proc = subprocess.run(
            [sys.executable, "-m", "paywalls.cli", *cli, *args], capture_output=True, text=True, timeout=60
        )
        if check:
            assert proc.returncode == 0, proc.stderr
            return json.loads(proc.stdout)
        return proc

    refused = paywalls("withdraw", app["id"], check=False)
    assert refused.returncode == 1 and "no earnings" in refused.stderr

    # Earn 4.00: a connected user is charged 5.00 (20% platform fee).
    with httpx.Client(base_url=f"{stack.url}/v1", headers={"Authorization": f"Bearer {app['key']}"}) as api:
        url = api.get("/user/connect", params={"user": user}).json()["url"]
        browser.sign_in(f"{user}@example.com")
        fund_person(stack, person(stack, f"{user}@example.com")["id"], "5")
        assert browser.approve(url).status_code == 200
        charged = api.post("/user/charge", json={"user": user, "amount": "5"}, headers={"Idempotency-Key": "c"})
        assert charged.json()["success"] is True
    held = paywalls("earnings", app["id"])
    assert (held["available"], held["pending"]) == ("0", "4000000") and held["next_matures_at"]
    pending = paywalls("withdraw", app["id"], check=False)
    assert pending.returncode == 1 and "pending" in pending.stderr
    # The local stack's dev clock stands in for the days of EarningsHoldDays (restored at the end).
    httpx.post(f"{stack.url}/_dev/clock", params={"advance_days": held["hold_days"] + 1}).raise_for_status()
    try:
        _withdraw_over_the_cli(app, paywalls)
    finally:
        httpx.post(f"{stack.url}/_dev/clock", params={"reset": "true"}).raise_for_status()


def _withdraw_over_the_cli(app: dict[str, Any], paywalls: Any) -> None:
    assert paywalls("earnings", app["id"])["available"] == "4000000"

    too_much = paywalls("withdraw", app["id"], "--amount", "4.01", check=False)
    assert too_much.returncode == 1 and "409" in too_much.stderr
    first = paywalls("withdraw", app["id"], "--amount", "1.5", "--idempotency-key", "w-1")
    assert (first["amount"], first["status"], first["method"]) == ("1500000", "pending", "manual")
    again = paywalls("withdraw", app["id"], "--amount", "1.5", "--idempotency-key", "w-1")
    assert again["id"] == first["id"]
    other = paywalls("withdraw", app["id"], "--amount", "2", "--idempotency-key", "w-1", check=False)
    assert other.returncode == 1 and "409" in other.stderr

    payout = paywalls("payout", app["id"], "--stripe-account", "acct_1PgafTB7WZ01zgkW")
    assert payout["stripe_account"] == "acct_1PgafTB7WZ01zgkW"
    rest = paywalls("withdraw", app["id"])
    # No operator Stripe key on the local stack: recorded, pending, retried by sending the request again.
    assert (rest["amount"], rest["method"], rest["status"]) == ("2500000", "stripe_transfer", "pending")
    assert "not configured" in rest["last_error"]
    summary = paywalls("earnings", app["id"])
    assert (summary["available"], summary["withdrawn"], summary["earned"]) == ("0", "4000000", "4000000")
    listed = paywalls("withdrawals", app["id"])["data"]
    assert [w["id"] for w in listed] == [rest["id"], first["id"]]

    # Paid by hand: the operator marks them paid, once; a retry answers the same; 404 for no such one.
    marked = paywalls("withdrawal-paid", app["id"], first["id"], "--reference", "bank-tx-1")
    assert (marked["id"], marked["status"], marked["reference"]) == (first["id"], "paid", "bank-tx-1")
    assert paywalls("withdrawal-paid", app["id"], first["id"], "--reference", "bank-tx-1") == marked
    assert paywalls("withdrawal-paid", app["id"], first["id"]) == marked
    clash = paywalls("withdrawal-paid", app["id"], first["id"], "--reference", "bank-tx-2", check=False)
    assert clash.returncode == 1 and "409" in clash.stderr
    # A Stripe-transfer withdrawal is never paid by hand (its transfer may exist): retried instead.
    by_hand = paywalls("withdrawal-paid", app["id"], rest["id"], check=False)
    assert by_hand.returncode == 1 and "409" in by_hand.stderr and "Stripe transfer" in by_hand.stderr
    missing = paywalls("withdrawal-paid", app["id"], "wd_missing", check=False)
    assert missing.returncode == 1 and "404" in missing.stderr
    listed = paywalls("withdrawals", app["id"])["data"]
    assert [(w["id"], w["status"]) for w in listed] == [(rest["id"], "pending"), (first["id"], "paid")]
    assert paywalls("earnings", app["id"])["withdrawn"] == "4000000"
