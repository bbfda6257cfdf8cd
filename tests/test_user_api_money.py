"""User wallet API (SPEC §3) over real HTTP on the local stack: deposits, manual charges, top-up links,
trial credits, the ledger listing. Idempotency holds for replays and for duplicates sent at the same
moment; bad input is a clear 400 that writes nothing."""

from __future__ import annotations

import json
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from devserver.router import load_function_app
from paywalls.billing import paywall as paywalls
from paywalls.infra import secrets as secrets_store
from paywalls.infra.config import settings
from tests.apigw import apigw_event
from tests.conftest import LocalStack


def client(stack: LocalStack, key: str) -> httpx.Client:
    return httpx.Client(base_url=f"{stack.url}/v1", headers={"Authorization": f"Bearer {key}"}, timeout=30)


def deposit(api: httpx.Client, user: str, amount: Any, key: str | None = None, **extra: Any) -> httpx.Response:
    return api.post(
        "/user/balance/deposit",
        json={"amount": amount, "user": user, **extra},
        headers={"Idempotency-Key": key or uuid.uuid4().hex},
    )


def charge(api: httpx.Client, user: str, amount: Any, key: str | None = None, **extra: Any) -> httpx.Response:
    return api.post(
        "/user/charge",
        json={"amount": amount, "user": user, **extra},
        headers={"Idempotency-Key": key or uuid.uuid4().hex},
    )


def balance(api: httpx.Client, user: str) -> int:
    reply = api.get("/user/balance", params={"user": user})
    assert reply.status_code == 200, reply.text
    return int(reply.json()["balance"])


def ledger(api: httpx.Client, user: str) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"user": user, "limit": 100, **({"cursor": cursor} if cursor else {})}
        page = api.get("/user/ledger", params=params).json()
        entries += page["data"]
        if not page["has_more"]:
            return entries
        cursor = page["next_cursor"]


def consistent(api: httpx.Client, user: str) -> int:
    """SPEC §4.5 through the public API: the entries sum to the balance."""
    total = sum(int(e["amount"]) for e in ledger(api, user))
    assert total == balance(api, user)
    return total


@pytest.fixture
def app(new_paywall: Any, stack: LocalStack) -> httpx.Client:
    with client(stack, new_paywall()["key"]) as api:
        yield api


# ---- deposits -----------------------------------------------------------------------------------


def test_deposit_credits_and_a_replay_answers_the_same_without_moving_money(app: httpx.Client) -> None:
    first = deposit(app, "alice", "10.5", "dep-1", metadata={"order": "A-17"})
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["balance"] == "10500000" and body["balanceFormatted"] == "10.500000" and body["currency"] == "usd"
    assert "idempotent-replayed" not in first.headers
    again = deposit(app, "alice", "10.5", "dep-1", metadata={"order": "A-17"})
    assert again.status_code == 200
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == body
    assert consistent(app, "alice") == 10_500_000
    [entry] = ledger(app, "alice")
    assert entry["type"] == "deposit" and entry["metadata"] == {"order": "A-17"}


def test_same_key_other_parameters_is_409_and_moves_nothing(app: httpx.Client) -> None:
    assert deposit(app, "bob", "5", "dep-x").status_code == 200
    for other in (deposit(app, "bob", "6", "dep-x"), deposit(app, "bob", "5", "dep-x", metadata={"a": "b"})):
        assert other.status_code == 409
        assert other.json()["error"]["code"] == "idempotency_key_reused"
    assert consistent(app, "bob") == 5_000_000


def test_concurrent_duplicates_credit_once(app: httpx.Client, stack: LocalStack) -> None:
    key = uuid.uuid4().hex

    def send(_: int) -> httpx.Response:
        with client(stack, app.headers["authorization"].split()[1]) as own:
            return deposit(own, "carol", "3", key)

    with ThreadPoolExecutor(20) as pool:
        replies = list(pool.map(send, range(20)))
    assert [r.status_code for r in replies] == [200] * 20, [r.text for r in replies if r.status_code != 200]
    assert {r.json()["entry"]["id"] for r in replies} == {replies[0].json()["entry"]["id"]}
    assert sum(r.headers.get("idempotent-replayed") != "true" for r in replies) == 1
    assert len(ledger(app, "carol")) == 1
    assert consistent(app, "carol") == 3_000_000


def test_concurrent_distinct_deposits_all_land(app: httpx.Client, stack: LocalStack) -> None:
    def send(i: int) -> httpx.Response:
        with client(stack, app.headers["authorization"].split()[1]) as own:
            return deposit(own, "dina", "0.01", f"dina-{i}")

    with ThreadPoolExecutor(20) as pool:
        assert [r.status_code for r in pool.map(send, range(20))] == [200] * 20
    assert consistent(app, "dina") == 200_000


BAD_AMOUNTS = [
    (-1, "positive"),
    ("-1", "positive"),
    ("0", "greater than zero"),
    (0, "greater than zero"),
    ("0.000000", "greater than zero"),
    ("0.0000001", "6 decimal"),
    ("1.1234567", "6 decimal"),
    ("abc", "decimal string"),
    ("1e3", "decimal string"),
    ("1,5", "decimal string"),
    ("", "decimal string"),
    (1.5, "not a float"),
    (None, "decimal string"),
    (True, "decimal string"),
    ([], "decimal string"),
    ({"value": "1"}, "decimal string"),
    ("1000000.000001", "too large"),
    ("99999999999999999999999", "decimal string"),
    ("NaN", "decimal string"),
    ("Infinity", "decimal string"),
]


@pytest.mark.parametrize(("amount", "message"), BAD_AMOUNTS)
def test_bad_amounts_are_a_clear_400_and_write_nothing(
    new_paywall: Any, stack: LocalStack, amount: Any, message: str
) -> None:
    # Trial credits on: a request that wrote anything at all would leave a trial entry behind.
    paywall = new_paywall(trial_credits="1")
    with client(stack, paywall["key"]) as api:
        for send in (deposit, charge):
            reply = send(api, "erin", amount)
            assert reply.status_code == 400, (amount, reply.text)
            error = reply.json()["error"]
            assert error["param"] == "amount" and error["code"] == "invalid_amount"
            assert message in error["message"]
    with stack.admin() as admin:
        assert admin.get(f"/admin/paywalls/{paywall['id']}/users").json()["data"] == []


@pytest.mark.parametrize(
    ("body", "headers", "status", "param"),
    [
        ({"amount": "1", "user": "u"}, {}, 400, "Idempotency-Key"),
        ({"amount": "1"}, {"Idempotency-Key": "k"}, 400, "user"),
        ({"amount": "1", "user": "bad user!"}, {"Idempotency-Key": "k"}, 400, "user"),
        ({"user": "u"}, {"Idempotency-Key": "k"}, 400, "amount"),
        ({"amount": "1", "user": "u", "currency": "eur"}, {"Idempotency-Key": "k"}, 400, "currency"),
        ({"amount": "1", "user": "u", "metadata": "x"}, {"Idempotency-Key": "k"}, 400, "metadata"),
        ({"amount": "1", "user": "u", "metadata": {"a": 1}}, {"Idempotency-Key": "k"}, 400, "metadata"),
        ({"amount": "1", "user": "u", "metadata": {"a": {"b": "c"}}}, {"Idempotency-Key": "k"}, 400, "metadata"),
        ({"amount": "1", "user": "u", "metadata": {"bad key": "x"}}, {"Idempotency-Key": "k"}, 400, "metadata"),
        ({"amount": "1", "user": "u", "metadata": {"a": "x" * 501}}, {"Idempotency-Key": "k"}, 400, "metadata"),
        (
            {"amount": "1", "user": "u", "metadata": {f"k{i}": "v" for i in range(21)}},
            {"Idempotency-Key": "k"},
            400,
            "metadata",
        ),
    ],
)
def test_other_bad_requests_are_400(
    app: httpx.Client, body: dict[str, Any], headers: dict[str, str], status: int, param: str
) -> None:
    for path in ("/user/balance/deposit", "/user/charge"):
        reply = app.post(path, json=body, headers=headers)
        assert reply.status_code == status, reply.text
        assert reply.json()["error"]["param"] == param
    assert balance(app, "u") == 0


def test_malformed_bodies_and_missing_keys(app: httpx.Client, stack: LocalStack) -> None:
    bad_json = app.post("/user/balance/deposit", content=b"{nope", headers={"Idempotency-Key": "k"})
    assert bad_json.status_code == 400 and bad_json.json()["error"]["code"] == "invalid_json"
    with httpx.Client(base_url=f"{stack.url}/v1") as anonymous:
        assert anonymous.post("/user/balance/deposit", json={"amount": "1", "user": "u"}).status_code == 401


def test_user_from_body_wins_over_header_and_query(app: httpx.Client) -> None:
    reply = app.post(
        "/user/balance/deposit?user=from-query",
        json={"amount": "2", "user": "from-body"},
        headers={"Idempotency-Key": "prio", "X-Paywall-User": "from-header"},
    )
    assert reply.status_code == 200
    assert balance(app, "from-body") == 2_000_000
    assert balance(app, "from-header") == 0
    header_only = app.post(
        "/user/balance/deposit?user=from-query",
        json={"amount": "1"},
        headers={"Idempotency-Key": "prio-2", "X-Paywall-User": "from-header"},
    )
    assert header_only.status_code == 200
    assert balance(app, "from-header") == 1_000_000


def test_test_and_live_wallets_never_meet(new_paywall: Any, stack: LocalStack) -> None:
    paywall = new_paywall()
    with client(stack, paywall["key"]) as live, client(stack, paywall["test_key"]) as test:
        assert deposit(test, "frank", "7", "same-key").status_code == 200
        assert balance(live, "frank") == 0
        assert deposit(live, "frank", "1", "same-key").status_code == 200  # the key is per wallet
        assert balance(test, "frank") == 7_000_000 and balance(live, "frank") == 1_000_000


def test_shared_mode_refuses_deposits_and_asks_unconnected_users_to_authorize(
    new_paywall: Any, stack: LocalStack
) -> None:
    """Shared mode (SPEC §6; the whole flow is in test_shared_e2e.py): the Deposit API is 409; a charge
    for a user who has not authorized the app is a 200 with the authorize message, nothing charged."""
    with client(stack, new_paywall(mode="shared")["key"]) as api:
        refused = deposit(api, "gail", "1")
        assert refused.status_code == 409, refused.text
        assert refused.json()["error"]["type"] == "conflict_error"
        asked = charge(api, "gail", "1")
        assert asked.status_code == 200 and asked.json()["success"] is False
        assert asked.headers["x-paywall-action"] == "authorize" and "/wallet/authorize/" in asked.json()["message"]
        topup = api.get("/user/balance/topup", params={"user": "gail"})
        assert topup.status_code == 200 and topup.json()["url"].endswith("/wallet/topup")


# ---- charges ------------------------------------------------------------------------------------


def test_charge_debits_and_replays(app: httpx.Client) -> None:
    deposit(app, "hank", "1")
    first = charge(app, "hank", "0.25", "c-1", metadata={"feature": "export"})
    assert first.status_code == 200
    body = first.json()
    assert body["success"] is True and body["balance"] == "750000" and body["balanceFormatted"] == "0.750000"
    assert body["message"]
    again = charge(app, "hank", "0.25", "c-1", metadata={"feature": "export"})
    assert again.json() == body and again.headers["idempotent-replayed"] == "true"
    assert consistent(app, "hank") == 750_000
    assert [(e["type"], e["amount"], e["metadata"]) for e in ledger(app, "hank")][0] == (
        "charge",
        "-250000",
        {"feature": "export"},
    )


def test_charge_short_of_funds_returns_the_paywall_message_with_a_working_link(
    app: httpx.Client, stack: LocalStack
) -> None:
    deposit(app, "ivy", "0.10")
    short = charge(app, "ivy", "1", "c-short")
    assert short.status_code == 200
    body = short.json()
    assert body["success"] is False
    assert short.headers["x-paywall-action"] == "topup"
    url = app.get("/user/balance/topup", params={"user": "ivy"}).json()["url"]
    assert url.startswith(f"{stack.url}/pay/")
    assert body["message"] == f"Your balance is too low to continue. Please top up here: {url}"
    assert httpx.get(url).status_code == 200
    assert consistent(app, "ivy") == 100_000  # nothing charged
    # Nothing was recorded under that key: after a top-up the same key succeeds.
    deposit(app, "ivy", "1")
    assert charge(app, "ivy", "1", "c-short").json()["success"] is True
    assert consistent(app, "ivy") == 100_000


def test_custom_topup_template_is_used(new_paywall: Any, stack: LocalStack) -> None:
    paywall = new_paywall()
    stack.admin().put(
        f"/admin/paywalls/{paywall['id']}/templates", json={"topup": "Refill {{name}} at {{url}} please"}
    ).raise_for_status()
    with client(stack, paywall["key"]) as api:
        message = charge(api, "jack", "1").json()["message"]
    assert message.startswith("Refill Test app at http://") and message.endswith(" please")


def test_concurrent_charges_never_overspend(app: httpx.Client, stack: LocalStack) -> None:
    deposit(app, "kim", "10")

    def send(i: int) -> httpx.Response:
        with client(stack, app.headers["authorization"].split()[1]) as own:
            return charge(own, "kim", "1", f"kim-{i}")

    with ThreadPoolExecutor(20) as pool:
        replies = list(pool.map(send, range(20)))
    assert all(r.status_code == 200 for r in replies)
    assert sum(r.json()["success"] for r in replies) == 10
    assert consistent(app, "kim") == 0


def test_concurrent_duplicate_charges_charge_once(app: httpx.Client, stack: LocalStack) -> None:
    deposit(app, "lou", "5")

    def send(_: int) -> httpx.Response:
        with client(stack, app.headers["authorization"].split()[1]) as own:
            return charge(own, "lou", "2", "lou-once")

    with ThreadPoolExecutor(20) as pool:
        replies = list(pool.map(send, range(20)))
    assert all(r.status_code == 200 and r.json()["success"] for r in replies)
    assert consistent(app, "lou") == 3_000_000


# ---- trial credits, top-up links, ledger ---------------------------------------------------------


def test_trial_credits_are_granted_once_even_for_concurrent_first_requests(new_paywall: Any, stack: LocalStack) -> None:
    key = new_paywall(trial_credits="0.5")["key"]

    def first_request(i: int) -> httpx.Response:
        with client(stack, key) as own:
            if i % 3 == 0:
                return own.get("/user/balance", params={"user": "mona"})
            if i % 3 == 1:
                return own.get("/user/balance/topup", params={"user": "mona"})
            return charge(own, "mona", "0.1", f"mona-{i}")

    with ThreadPoolExecutor(21) as pool:
        replies = list(pool.map(first_request, range(21)))
    assert all(r.status_code == 200 for r in replies), [r.text for r in replies]
    with client(stack, key) as api:
        entries = ledger(api, "mona")
        assert [e["type"] for e in entries].count("trial") == 1
        charged = sum(1 for r in replies if r.json().get("success") is True)
        assert consistent(api, "mona") == 500_000 - charged * 100_000
        # A deposit to a brand-new user gets the trial too (once).
        deposit(api, "ned", "1")
        assert consistent(api, "ned") == 1_500_000


def test_topup_link_is_stable_and_per_user(app: httpx.Client, stack: LocalStack) -> None:
    one = app.get("/user/balance/topup", params={"user": "olga"}).json()["url"]
    assert app.get("/user/balance/topup", headers={"X-Paywall-User": "olga"}).json()["url"] == one
    assert app.get("/user/balance/topup", params={"user": "other"}).json()["url"] != one
    assert app.get("/user/balance/topup").status_code == 400


def test_ledger_pages_newest_first(app: httpx.Client) -> None:
    for i in range(25):
        assert deposit(app, "pam", f"0.{i + 1:02d}", f"pam-{i}").status_code == 200
    seen: list[dict[str, Any]] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"user": "pam", "limit": 10, **({"cursor": cursor} if cursor else {})}
        page = app.get("/user/ledger", params=params).json()
        pages += 1
        seen += page["data"]
        if not page["has_more"]:
            assert page["next_cursor"] is None
            break
        cursor = page["next_cursor"]
    assert pages == 3 and len(seen) == 25
    assert [e["amount"] for e in seen] == [str((i + 1) * 10_000) for i in reversed(range(25))]
    assert [int(e["balance_after"]) for e in seen] == sorted((int(e["balance_after"]) for e in seen), reverse=True)
    assert sum(int(e["amount"]) for e in seen) == balance(app, "pam")
    assert app.get("/user/ledger", params={"user": "pam", "cursor": "garbage"}).status_code == 400
    assert app.get("/user/ledger", params={"user": "pam", "limit": 0}).status_code == 400


def test_deposit_and_charge_through_the_lambda_handler(aws_mock: None) -> None:
    """The deployed path: API Gateway event -> Mangum -> the same app (moto in-process)."""
    secrets_store.put_secret(f"{settings().secret_prefix}/app", json.dumps({"link_signing_key": "k" * 43}))
    load_function_app("functions/user_api", "UserApiFunction")
    handler = sys.modules["fn_UserApiFunction"].handler
    paywall = paywalls.create({"name": "Lambda app"})
    _, key = paywalls.issue_key(paywall.id, "live")

    def call(path: str, body: dict[str, Any], idem: str) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": idem}
        reply = handler(apigw_event("POST", path, body, headers=headers, resource="/v1/user/{proxy+}"), None)
        assert reply["statusCode"] == 200, reply
        return json.loads(reply["body"])

    assert call("/v1/user/balance/deposit", {"amount": "2", "user": "zed"}, "l-1")["balance"] == "2000000"
    assert call("/v1/user/balance/deposit", {"amount": "2", "user": "zed"}, "l-1")["balance"] == "2000000"
    charged = call("/v1/user/charge", {"amount": "0.5", "user": "zed"}, "l-2")
    assert charged["success"] is True and charged["balance"] == "1500000"
    short = call("/v1/user/charge", {"amount": "5", "user": "zed"}, "l-3")
    assert short["success"] is False
    assert "https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com/prod/pay/" in short["message"]
