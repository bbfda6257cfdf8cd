"""Earnings withdrawals and payouts (SPEC §6) in-process: the admin API, the operator's Stripe key,
Stripe Connect transfers through the real `stripe` library against the local stub, wallet top-ups
through the operator's webhook endpoint (real signatures). Concurrency on the local engine."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest
from fastapi.testclient import TestClient

from devserver.router import load_function_app
from paywalls.billing import earnings, ledger, losses, operator_stripe, withdrawals
from paywalls.billing.paywall import Conflict, Paywall
from paywalls.infra import store
from paywalls.infra.config import settings
from paywalls.wallets import connections, persons, shared_mode
from tests import stripe_stub as st
from tests.shared_support import (
    Clock,
    ConnectStripeStub,
    app_secret,
    consistent,
    earnings_consistent,
    funded_person,
    shared_paywall,
)

TOKEN = "adm_shared"


@dataclass
class Admin:
    client: TestClient
    stub: ConnectStripeStub
    clock: Clock

    def withdraw(self, paywall_id: str, key: str, **body: str) -> tuple[int, dict]:
        reply = self.client.post(
            f"/admin/paywalls/{paywall_id}/withdrawals", json=body, headers={"Idempotency-Key": key}
        )
        return reply.status_code, reply.json()


@pytest.fixture
def admin(aws_mock: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Admin]:
    monkeypatch.setenv("ADMIN_AUTH", "token")
    monkeypatch.setenv("ADMIN_TOKEN", TOKEN)
    settings.cache_clear()
    app_secret()
    with ConnectStripeStub().running() as stub:
        monkeypatch.setenv("STRIPE_API_BASE", stub.url)
        app = load_function_app("functions/admin", "AdminFunction")
        with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
            yield Admin(client, stub, Clock(monkeypatch))  # type: ignore[arg-type]
    settings.cache_clear()


def earn(paywall: Paywall, amount: str, user: str = "u") -> None:
    """A connected user of `paywall` is charged `amount` (its earnings grow by amount minus fee,
    withdrawable once the settlement delay has passed)."""
    person = funded_person(micros=100_000_000)
    connections.connect(paywall.id, "live", user, person.id, cap=None)
    result = shared_mode.charge(paywall, "live", user, amount, idempotency_key=uuid.uuid4().hex)
    assert result.posting, result.refusal


def test_withdraw_what_was_earned_never_more_and_replays_are_no_ops(admin: Admin) -> None:
    paywall = shared_paywall(fee="10")
    status, body = admin.withdraw(paywall.id, "w0")
    assert status == 409 and "no earnings" in body["error"]["message"]
    earn(paywall, "3.333333", "u1")  # fee = floor(333333.3) = 333333
    earn(paywall, "1", "u2")
    net = 3_333_333 - 333_333 + 1_000_000 - 100_000
    summary = admin.client.get(f"/admin/paywalls/{paywall.id}/earnings").json()
    assert (summary["earned"], summary["pending"], summary["available"]) == (str(net), str(net), "0")
    status, body = admin.withdraw(paywall.id, "w0")
    assert status == 409 and "pending" in body["error"]["message"]
    admin.clock.past_hold()
    summary = admin.client.get(f"/admin/paywalls/{paywall.id}/earnings").json()
    assert (
        summary["earned"] == str(net)
        and summary["available"] == str(net)
        and summary["pending"] == "0"
        and summary["payout"]["stripe_account"] is None
    )

    status, body = admin.withdraw(paywall.id, "w1", amount="4")
    assert status == 409 and body["error"]["type"] == "conflict_error"
    status, body = admin.withdraw(paywall.id, "w1", amount="0.015")
    assert status == 400 and body["error"]["param"] == "amount"  # payouts move whole cents
    status, first = admin.withdraw(paywall.id, "w2", amount="1.25")
    assert status == 201 and (first["status"], first["method"], first["amount"]) == ("pending", "manual", "1250000")
    status, again = admin.withdraw(paywall.id, "w2", amount="1.25")
    assert status == 200 and again["id"] == first["id"]
    status, _ = admin.withdraw(paywall.id, "w2", amount="2")
    assert status == 409
    status, rest = admin.withdraw(paywall.id, "w3")  # everything left, rounded down to a cent
    assert status == 201 and rest["amount"] == str((net - 1_250_000) // 10_000 * 10_000)
    left = net - 1_250_000 - int(rest["amount"])
    summary = earnings.summary(paywall.id, "live")
    assert summary["available"] == str(left) and summary["withdrawn"] == str(net - left)
    _ledgers_consistent(paywall)
    listed = admin.client.get(f"/admin/paywalls/{paywall.id}/withdrawals").json()["data"]
    assert [w["id"] for w in listed] == [rest["id"], first["id"]]
    # Operator side: one payout entry per withdrawal.
    payouts = list(store.query_all("OPLEDGER#live", sk_prefix="ENTRY#"))
    mine = [p for p in payouts if p["paywall_id"] == paywall.id]
    assert sorted(-p["amount"] for p in mine) == sorted([1_250_000, int(rest["amount"])])


def test_payout_by_stripe_connect_transfer_with_the_operators_key(admin: Admin) -> None:
    paywall = shared_paywall(fee="0")
    earn(paywall, "12")
    admin.clock.past_hold()
    refused = admin.client.put(f"/admin/paywalls/{paywall.id}/payout", json={"stripe_account": "not-an-account"})
    assert refused.status_code == 400
    payout = admin.client.put(f"/admin/paywalls/{paywall.id}/payout", json={"stripe_account": "acct_1Pga"})
    assert payout.status_code == 200

    # No operator key yet: the withdrawal is recorded, pending; sending it again retries the payout.
    status, pending = admin.withdraw(paywall.id, "p1", amount="10")
    assert status == 201 and pending["status"] == "pending" and "not configured" in pending["last_error"]
    assert admin.stub.transfers == {}

    configured = admin.client.put("/admin/operator/stripe", json={"secret_key": "sk_test_operator"})
    assert configured.status_code == 200, configured.text
    config = configured.json()
    assert config["mode"] == "test" and config["test"]["webhook_url"].endswith("/webhooks/stripe/operator")
    assert "sk_test_operator" not in configured.text and "whsec_" not in configured.text
    # Live earnings are never paid with a test-mode key.
    assert admin.withdraw(paywall.id, "p1", amount="10")[1]["status"] == "pending"
    assert admin.stub.transfers == {}
    assert admin.client.put("/admin/operator/stripe", json={"secret_key": "sk_live_operator"}).status_code == 200

    status, paid = admin.withdraw(paywall.id, "p1", amount="10")
    assert status == 200 and paid["id"] == pending["id"] and paid["status"] == "paid" and paid["transfer_id"]
    (call,) = admin.stub.calls("POST", "/v1/transfers")
    assert call.api_key == "sk_live_operator" and call.headers["idempotency-key"] == pending["id"]
    assert (call.form["amount"], call.form["currency"], call.form["destination"]) == ("1000", "usd", "acct_1Pga")
    assert call.form["metadata[withdrawal_id]"] == pending["id"]
    # Replayed again: already paid, no second transfer.
    assert admin.withdraw(paywall.id, "p1", amount="10")[1]["status"] == "paid"
    assert len(admin.stub.calls("POST", "/v1/transfers")) == 1

    # Stripe refusing a transfer leaves it pending with the reason; the earnings stay withdrawn once.
    admin.stub.failing_transfers = True
    status, failed = admin.withdraw(paywall.id, "p2", amount="2")
    assert status == 201 and failed["status"] == "pending" and "Insufficient funds" in failed["last_error"]
    assert earnings.summary(paywall.id, "live")["available"] == "0"
    assert withdrawals.get(paywall.id, "live", failed["id"]).status == "pending"


def test_withdrawals_are_for_shared_mode_paywalls(admin: Admin) -> None:
    default = admin.client.post("/admin/paywalls", json={"name": "D", "mode": "default"}).json()
    assert admin.withdraw(default["id"], "x")[0] == 409
    payout = admin.client.put(f"/admin/paywalls/{default['id']}/payout", json={"stripe_account": "acct_1"})
    assert payout.status_code == 409
    bad_env = admin.client.get(f"/admin/paywalls/{default['id']}/earnings", params={"environment": "nope"})
    assert bad_env.status_code == 400
    assert admin.withdraw("pw_missing", "x")[0] == 404


def test_person_lookup_and_adjustments(admin: Admin) -> None:
    person = persons.get_or_create("ops@example.com")
    found = admin.client.get("/admin/persons", params={"email": "OPS@example.com"}).json()
    assert found["id"] == person.id and found["wallets"]["live"]["balance"] == "0"
    credit = admin.client.post(
        f"/admin/persons/{person.id}/adjustments",
        json={"amount": "3", "environment": "live", "reason": "goodwill"},
        headers={"Idempotency-Key": "a1"},
    )
    assert credit.status_code == 201 and credit.json()["entry"]["type"] == "adjustment"
    again = admin.client.post(
        f"/admin/persons/{person.id}/adjustments",
        json={"amount": "3", "environment": "live", "reason": "goodwill"},
        headers={"Idempotency-Key": "a1"},
    )
    assert again.json()["duplicate"] is True
    debit = admin.client.post(
        f"/admin/persons/{person.id}/adjustments",
        json={"amount": "-5", "environment": "live"},
        headers={"Idempotency-Key": "a2"},
    )
    assert debit.status_code == 402  # never below zero
    assert admin.client.get(f"/admin/persons/{person.id}").json()["wallets"]["live"]["balance"] == "3000000"
    assert admin.client.get("/admin/persons", params={"email": "nobody@example.com"}).status_code == 404
    assert admin.client.get("/admin/persons/ps_nope").status_code == 404
    consistent(person.wallet_for("live"))


def test_person_adjustments_name_their_environment_and_touch_only_that_wallet(admin: Admin) -> None:
    person = persons.get_or_create("env-ops@example.com")
    path = f"/admin/persons/{person.id}/adjustments"
    for body in ({"amount": "3"}, {"amount": "3", "environment": "prod"}, {"amount": "3", "environment": 1}):
        refused = admin.client.post(path, json=body, headers={"Idempotency-Key": uuid.uuid4().hex})
        assert refused.status_code == 400 and refused.json()["error"]["param"] == "environment", refused.text
    unknown = admin.client.post(
        path, json={"amount": "3", "environment": "test", "wallet": "live"}, headers={"Idempotency-Key": "u"}
    )
    assert unknown.status_code == 400 and unknown.json()["error"]["param"] == "wallet"
    assert not ledger.get_wallet(person.wallet_for("live")).exists
    assert not ledger.get_wallet(person.wallet_for("test")).exists

    test_credit = admin.client.post(
        path, json={"amount": "7", "environment": "test"}, headers={"Idempotency-Key": "t1"}
    )
    assert test_credit.status_code == 201, test_credit.text
    # A debit of the live wallet cannot use test money.
    live_debit = admin.client.post(
        path, json={"amount": "-1", "environment": "live"}, headers={"Idempotency-Key": "l1"}
    )
    assert live_debit.status_code == 402
    wallets = admin.client.get(f"/admin/persons/{person.id}").json()["wallets"]
    assert (wallets["live"]["balance"], wallets["test"]["balance"]) == ("0", "7000000")
    assert wallets["test"]["wallet_id"] == f"person:{person.id}:test"
    assert consistent(person.wallet_for("test")) == 7_000_000


# ---- wallet top-ups through the operator's webhook ----------------------------------------------


def test_wallet_topup_checkout_and_webhook_credit_once(admin: Admin, monkeypatch: pytest.MonkeyPatch) -> None:
    from paywalls.wallets import topup as wallet_topup

    admin.client.put("/admin/operator/stripe", json={"secret_key": "sk_test_op", "topup_amounts": ["5", "20"]})
    endpoint_id = operator_stripe.status()["test"]["webhook_endpoint_id"]
    secret = admin.stub.webhook_secret(endpoint_id)
    person = persons.get_or_create("payer@example.com")
    offer = wallet_topup.open_for(person, "test")
    assert offer.method == "stripe" and offer.presets == [5_000_000, 20_000_000]
    url = wallet_topup.start_checkout(offer, "20", "https://pay.example.com")
    assert url.startswith("https://checkout.stripe.com/")
    (call,) = admin.stub.calls("POST", "/v1/checkout/sessions")
    assert call.api_key == "sk_test_op" and call.form["client_reference_id"] == person.wallet_for("test")
    assert call.form["metadata[environment]"] == "test"
    assert call.form["success_url"] == "https://pay.example.com/wallet/test/topup/success"
    assert (
        call.form["metadata[purpose]"] == "wallet_topup"
        and call.form["line_items[0][price_data][unit_amount]"] == "2000"
    )
    with pytest.raises(Exception, match="amounts on the page"):
        wallet_topup.start_checkout(offer, "7", "https://pay.example.com")

    session = st.fixture("checkout_session")
    session.update(
        id="cs_test_wallet1",
        amount_total=2000,
        currency="usd",
        client_reference_id=person.wallet_for("test"),
        metadata=wallet_topup.metadata(person, "test", 20_000_000),
        payment_status="paid",
        livemode=False,
    )
    webhook = TestClient(load_function_app("functions/stripe_webhook", "StripeWebhookFunction"))

    def deliver(event: dict, signing_secret: str = secret) -> tuple[int, dict]:
        raw = json.dumps(event).encode()
        reply = webhook.post(
            "/webhooks/stripe/operator", content=raw, headers={"Stripe-Signature": st.sign(raw, signing_secret)}
        )
        return reply.status_code, reply.json()

    event = st.event("checkout.session.completed", session)
    assert deliver(event) == (200, {"received": True, "result": "credited"})
    assert deliver(st.event("checkout.session.async_payment_succeeded", session))[1]["result"] == "duplicate"
    assert deliver(event, "whsec_forged")[0] == 400
    tampered = {**session, "amount_total": 200000, "id": "cs_test_other"}
    assert deliver(st.event("checkout.session.completed", tampered))[1]["result"] == "ignored"
    default_topup = {**session, "id": "cs_test_x", "metadata": {"paywall_id": "pw_x", "user": "u"}}
    assert deliver(st.event("checkout.session.completed", default_topup))[1]["result"] == "ignored"
    assert ledger.get_wallet(person.wallet_for("test")).balance == 20_000_000
    assert not ledger.get_wallet(person.wallet_for("live")).exists  # test money never reaches the live wallet
    consistent(person.wallet_for("test"))


# ---- concurrency on the local engine --------------------------------------------------------------


def _person_connected(monkeypatch: pytest.MonkeyPatch, cap: int | None) -> tuple[Clock, Paywall, persons.Person]:
    """A fee-less shared paywall and a person with 1.00 who connected it as user `u` (with `cap`)."""
    clock = Clock(monkeypatch)
    app_secret()
    paywall = shared_paywall(fee="0")
    person = funded_person(micros=1_000_000)
    connections.connect(paywall.id, "live", "u", person.id, cap=cap)
    return clock, paywall, person


def _charge(paywall: Paywall, key: str) -> str:
    """0.01 charged to user `u`: "charged", or the refusal."""
    result = shared_mode.charge(paywall, "live", "u", "0.01", idempotency_key=key)
    return "charged" if result.posting else str(result.refusal)


def _withdraw(paywall: Paywall, key: str) -> str:
    """0.05 of the paywall's earnings: "withdrawn", or "refused" (409: not that much available)."""
    try:
        withdrawals.withdraw(paywall, "live", "0.05", idempotency_key=key)
        return "withdrawn"
    except Conflict:
        return "refused"


@pytest.mark.usefixtures("engine")
def test_concurrent_withdrawals_and_capped_charges_never_overdraw(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock, paywall, person = _person_connected(monkeypatch, cap=300_000)
    with ThreadPoolExecutor(max_workers=32) as pool:
        charges = Counter(pool.map(lambda i: _charge(paywall, f"c{i}"), range(60)))
    assert charges == Counter({"charged": 30, "cap": 30})
    assert earnings.summary(paywall.id, "live")["earned"] == "300000"
    clock.past_hold()
    with ThreadPoolExecutor(max_workers=16) as pool:
        outcome = Counter(pool.map(lambda i: _withdraw(paywall, f"w{i}"), range(16)))
    with capsys.disabled():
        print(
            f"\n60 charges of 0.01 under a 0.30 cap: {dict(charges)}; 16 withdrawals of 0.05 from 0.30: {dict(outcome)}"
        )
    assert outcome == Counter({"withdrawn": 6, "refused": 10})
    summary = earnings.summary(paywall.id, "live")
    assert (summary["available"], summary["withdrawn"]) == ("0", "300000")
    assert ledger.get_wallet(person.wallet_for("live")).balance == 700_000
    consistent(person.wallet_for("live"))
    _ledgers_consistent(paywall)


# ---- settlement delay: earnings are withdrawable only after EarningsHoldDays -----------------------


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def test_earnings_within_the_hold_are_not_withdrawable_and_after_it_they_are(admin: Admin) -> None:
    paywall = shared_paywall(fee="0")
    admin.clock.set(_midnight(datetime.now(UTC).date()) + timedelta(hours=12))  # no midnight near
    earned_at = admin.clock.now()
    earn(paywall, "10")
    assert settings().earnings_hold_days == 7
    [charge] = [e for i in range(earnings.SHARDS) for e in earnings.entries(paywall.id, "live", i)]
    matures = date.fromisoformat(charge["matures_on"])
    # The first midnight at or after the charge + 7 days: never sooner than the hold.
    assert earned_at + timedelta(days=7) <= _midnight(matures) <= earned_at + timedelta(days=8)
    summary = admin.client.get(f"/admin/paywalls/{paywall.id}/earnings").json()
    assert (summary["available"], summary["pending"], summary["earned"]) == ("0", "10000000", "10000000")
    assert summary["pending_by_day"] == [
        {"matures_at": f"{matures}T00:00:00Z", "amount": "10000000", "amountFormatted": "10.000000"}
    ]
    assert summary["next_matures_at"] == f"{matures}T00:00:00Z" and summary["hold_days"] == 7

    status, body = admin.withdraw(paywall.id, "h1")
    assert status == 409 and "pending" in body["error"]["message"] and str(matures) in body["error"]["message"]
    admin.clock.set(_midnight(matures) - timedelta(minutes=1))  # 6 days and 23 hours later at least
    assert admin.withdraw(paywall.id, "h2", amount="1")[0] == 409
    assert admin.client.get(f"/admin/paywalls/{paywall.id}/earnings").json()["available"] == "0"

    admin.clock.set(_midnight(matures))
    summary = admin.client.get(f"/admin/paywalls/{paywall.id}/earnings").json()
    assert (summary["available"], summary["pending"], summary["pending_by_day"]) == ("10000000", "0", [])
    status, first = admin.withdraw(paywall.id, "h3", amount="4")
    assert status == 201 and first["amount"] == "4000000"
    status, rest = admin.withdraw(paywall.id, "h4")
    assert status == 201 and rest["amount"] == "6000000"
    assert admin.withdraw(paywall.id, "h5")[0] == 409
    _ledgers_consistent(paywall)
    # Matured buckets were folded into `available` by the report and the withdrawals.
    assert all(not shard.buckets for shard in earnings.shards(paywall.id, "live"))


def test_the_hold_is_the_templates_earnings_hold_days(admin: Admin, monkeypatch: pytest.MonkeyPatch) -> None:
    from paywalls.infra import config

    assert [config._hold_days(v) for v in (None, "", "0", "2", "30", "-1", "x", "366")] == [7, 7, 0, 2, 30, 7, 7, 7]
    paywall = shared_paywall(fee="0")
    admin.clock.set(_midnight(datetime.now(UTC).date()) + timedelta(hours=12))  # no midnight near
    try:
        monkeypatch.setenv("EARNINGS_HOLD_DAYS", "2")
        settings.cache_clear()
        earn(paywall, "1", "two-days")
        admin.clock.advance(2)  # noon, 2 days later: held until the next midnight
        assert earnings.summary(paywall.id, "live")["pending"] == "1000000"
        admin.clock.advance(0.5)
        assert earnings.summary(paywall.id, "live")["available"] == "1000000"
        monkeypatch.setenv("EARNINGS_HOLD_DAYS", "0")  # no delay: withdrawable at once
        settings.cache_clear()
        earn(paywall, "2", "no-hold")
        assert earnings.summary(paywall.id, "live")["available"] == "3000000"
        assert admin.withdraw(paywall.id, "all")[1]["amount"] == "3000000"
        _ledgers_consistent(paywall)
    finally:
        monkeypatch.delenv("EARNINGS_HOLD_DAYS")
        settings.cache_clear()


@pytest.mark.usefixtures("engine")
def test_parallel_withdrawals_never_exceed_matured_earnings_while_new_charges_arrive(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    clock, paywall, person = _person_connected(monkeypatch, cap=None)
    for i in range(20):
        assert shared_mode.charge(paywall, "live", "u", "0.01", idempotency_key=f"early{i}").posting
    clock.past_hold()  # 0.20 matured; what is charged from now on is pending

    def work(i: int) -> str:
        return _charge(paywall, f"late{i}") if i % 2 else _withdraw(paywall, f"w{i}")

    with ThreadPoolExecutor(max_workers=16) as pool:
        outcome = Counter(pool.map(work, range(40)))
    with capsys.disabled():
        print(f"\n20 withdrawals of 0.05 from 0.20 matured, beside 20 new charges of 0.01: {dict(outcome)}")
    assert outcome == Counter({"withdrawn": 4, "refused": 16, "charged": 20})
    summary = earnings.summary(paywall.id, "live")
    assert (summary["available"], summary["withdrawn"], summary["pending"]) == ("0", "200000", "200000")
    assert ledger.get_wallet(person.wallet_for("live")).balance == 600_000
    _ledgers_consistent(paywall)


def _ledgers_consistent(paywall: Paywall, environment: str = "live") -> None:
    earnings_consistent(paywall.id, environment)


# ---- refunds and lost disputes of wallet top-ups (the operator's webhook) -------------------------


@dataclass
class OperatorHook:
    client: TestClient
    whsec: str

    def deliver(self, event_type: str, obj: dict, secret: str | None = None, path: str = "operator") -> dict:
        raw = json.dumps(st.event(event_type, obj)).encode()
        reply = self.client.post(
            f"/webhooks/stripe/{path}", content=raw, headers={"Stripe-Signature": st.sign(raw, secret or self.whsec)}
        )
        assert reply.status_code == 200, reply.text
        return reply.json()


@pytest.fixture
def operator_hook(aws_mock: None) -> Iterator[OperatorHook]:
    from paywalls.billing import stripe_config
    from paywalls.billing.stripe_config import StripeSecrets

    app_secret()
    whsec = "whsec_" + uuid.uuid4().hex
    stripe_config.save_secrets(operator_stripe.OPERATOR_ID, "test", StripeSecrets("sk_test_op", whsec, "we_op"))
    with TestClient(load_function_app("functions/stripe_webhook", "StripeWebhookFunction")) as client:
        yield OperatorHook(client, whsec)


def wallet_session(person: persons.Person, cents: int) -> dict:
    from paywalls.wallets import topup as wallet_topup

    session = st.fixture("checkout_session")
    session.update(
        id="cs_test_" + uuid.uuid4().hex,
        amount_total=cents,
        currency="usd",
        client_reference_id=person.wallet_for("test"),
        metadata=wallet_topup.metadata(person, "test", cents * 10_000),
        payment_intent="pi_" + uuid.uuid4().hex[:24],
        payment_status="paid",
        livemode=False,
    )
    return session


def topped_up(operator_hook: OperatorHook, email: str, cents: int) -> tuple[persons.Person, dict]:
    """The person of `email`, whose test wallet a paid Checkout session of `cents` credited (the
    operator's webhook): the person and the session."""
    person = persons.get_or_create(email)
    session = wallet_session(person, cents)
    assert operator_hook.deliver("checkout.session.completed", session)["result"] == "credited"
    return person, session


def entry_types(wallet_id: str) -> list[tuple[str, int]]:
    return [(e.type, e.amount) for e in ledger.all_entries(wallet_id)]


def test_refunds_of_a_spent_wallet_topup_debit_the_wallet_once_even_below_zero(operator_hook: OperatorHook) -> None:
    """Top up 20, spend 15 at an app, get 20 refunded: the wallet owes 15 (negative), not a free 15."""
    person, session = topped_up(operator_hook, "refunded@example.com", 2_000)
    wallet = person.wallet_for("test")
    pi = session["payment_intent"]
    assert consistent(wallet) == 20_000_000
    mapping = store.get(f"STRIPEPI#{pi}", "MAP")
    assert mapping and (mapping["wallet_id"], mapping["paywall_id"]) == (wallet, operator_stripe.OPERATOR_ID)

    paywall = shared_paywall(fee="0")
    connections.connect(paywall.id, "test", "spender", person.id, cap=None)
    assert shared_mode.charge(paywall, "test", "spender", "15", idempotency_key="spend-1").posting
    assert consistent(wallet) == 5_000_000

    # A pending refund may still fail: nothing moves until Stripe reports it succeeded.
    pending = st.refund("re_w1", 2_000, payment_intent=pi, charge_id="ch_w1", status="pending")
    charge = st.refunded_charge(payment_intent=pi, cents=2_000, refunds=[pending], charge_id="ch_w1")
    assert operator_hook.deliver("charge.refunded", charge)["result"] == "ignored"
    assert operator_hook.deliver("refund.updated", pending)["result"] == "ignored"
    assert consistent(wallet) == 5_000_000

    succeeded = {**pending, "status": "succeeded"}
    results = [operator_hook.deliver("refund.updated", succeeded)["result"] for _ in range(2)]
    assert results == ["debited", "duplicate"]
    assert consistent(wallet) == -15_000_000
    later = st.refunded_charge(payment_intent=pi, cents=2_000, refunds=[succeeded], charge_id="ch_w1")
    assert operator_hook.deliver("charge.refunded", later)["result"] == "duplicate"
    assert operator_hook.deliver("checkout.session.completed", session)["result"] == "duplicate"
    assert consistent(wallet) == -15_000_000
    assert entry_types(wallet) == [("deposit", 20_000_000), ("charge", -15_000_000), ("refund", -20_000_000)]
    [refund_entry] = [e for e in ledger.all_entries(wallet) if e.type == "refund"]
    assert refund_entry.idempotency_key == "stripe:refund:re_w1"
    # A negative wallet pays for nothing more.
    assert not shared_mode.charge(paywall, "test", "spender", "0.01", idempotency_key="spend-2").posting
    assert consistent(wallet) == -15_000_000


def test_partial_refunds_of_a_wallet_topup_debit_each_refund_once(operator_hook: OperatorHook) -> None:
    person, session = topped_up(operator_hook, "partial@example.com", 1_000)
    pi = session["payment_intent"]
    r1 = st.refund("re_p1", 300, payment_intent=pi, charge_id="ch_p")
    first = st.refunded_charge(payment_intent=pi, cents=1_000, refunds=[r1], charge_id="ch_p")
    assert [operator_hook.deliver("charge.refunded", first)["result"] for _ in range(2)] == ["debited", "duplicate"]
    assert consistent(person.wallet_for("test")) == 7_000_000
    r2 = st.refund("re_p2", 200, payment_intent=pi, charge_id="ch_p")
    both = st.refunded_charge(payment_intent=pi, cents=1_000, refunds=[r2, r1], charge_id="ch_p")
    assert operator_hook.deliver("charge.refunded", both)["result"] == "debited"
    assert consistent(person.wallet_for("test")) == 5_000_000


def test_a_wallet_topup_refund_before_its_credit_is_applied_when_the_credit_lands(operator_hook: OperatorHook) -> None:
    person = persons.get_or_create("early@example.com")
    session = wallet_session(person, 3_000)
    pi = session["payment_intent"]
    refund = st.refund("re_early_w", 1_000, payment_intent=pi, charge_id="ch_e")
    charge = st.refunded_charge(payment_intent=pi, cents=3_000, refunds=[refund], charge_id="ch_e")
    lost = st.dispute(payment_intent=pi, cents=500, status="lost", dispute_id="dp_early_w")
    assert operator_hook.deliver("charge.refunded", charge)["result"] == "pending"
    assert operator_hook.deliver("refund.updated", refund)["result"] == "pending"
    assert operator_hook.deliver("charge.dispute.closed", lost)["result"] == "pending"
    assert not ledger.get_wallet(person.wallet_for("test")).exists
    assert operator_hook.deliver("checkout.session.completed", session)["result"] == "credited"
    assert consistent(person.wallet_for("test")) == (3_000 - 1_000 - 500) * 10_000
    # Redeliveries of all of them change nothing.
    for event_type, obj in (
        ("charge.refunded", charge),
        ("refund.updated", refund),
        ("charge.dispute.closed", lost),
        ("checkout.session.async_payment_succeeded", session),
    ):
        assert operator_hook.deliver(event_type, obj)["result"] == "duplicate"
        assert consistent(person.wallet_for("test")) == 15_000_000
    # Parked debits are applied in key order (the dispute's first): compare them as a set.
    expected = [("deposit", 30_000_000), ("refund", -10_000_000), ("refund", -5_000_000)]
    assert sorted(entry_types(person.wallet_for("test"))) == sorted(expected)


def test_a_lost_dispute_of_a_wallet_topup_debits_once_and_a_won_one_nothing(operator_hook: OperatorHook) -> None:
    person, session = topped_up(operator_hook, "disputed@example.com", 1_000)
    pi = session["payment_intent"]
    won = st.dispute(payment_intent=pi, cents=1_000, status="won", dispute_id="dp_won")
    assert operator_hook.deliver("charge.dispute.closed", won)["result"] == "ignored"
    assert consistent(person.wallet_for("test")) == 10_000_000
    lost = st.dispute(payment_intent=pi, cents=1_000, status="lost", dispute_id="dp_lost")
    results = [operator_hook.deliver("charge.dispute.closed", lost)["result"] for _ in range(3)]
    assert results == ["debited", "duplicate", "duplicate"]
    assert consistent(person.wallet_for("test")) == 0
    assert entry_types(person.wallet_for("test")) == [("deposit", 10_000_000), ("refund", -10_000_000)]


def test_refunds_never_cross_between_the_operator_and_a_paywalls_account(operator_hook: OperatorHook) -> None:
    """A payment intent is mapped to the account that credited it: a paywall's endpoint cannot debit a
    person wallet, nor the operator's endpoint an app wallet."""
    from paywalls.billing import paywall as paywalls
    from paywalls.billing import stripe_config
    from paywalls.billing.stripe_config import StripeSecrets

    person, session = topped_up(operator_hook, "isolated@example.com", 1_000)
    shop = paywalls.create({"name": "Shop", "mode": "default"})
    shop_whsec = "whsec_" + uuid.uuid4().hex
    stripe_config.save_secrets(shop.id, "test", StripeSecrets("sk_test_shop", shop_whsec, "we_shop"))
    refund = st.refund("re_x", 1_000, payment_intent=session["payment_intent"], charge_id="ch_x")
    reply = operator_hook.deliver("refund.updated", refund, secret=shop_whsec, path=shop.id)
    assert reply["result"] == "ignored"
    assert consistent(person.wallet_for("test")) == 10_000_000

    app_session = st.checkout_session(paywall_id=shop.id, environment="test", user="u", cents=1_000)
    assert operator_hook.deliver("checkout.session.completed", app_session, shop_whsec, shop.id)["result"] == "credited"
    app_refund = st.refund("re_y", 1_000, payment_intent=app_session["payment_intent"], charge_id="ch_y")
    assert operator_hook.deliver("refund.updated", app_refund)["result"] == "ignored"
    assert consistent(f"{shop.id}:test:u") == 10_000_000


# ---- the operator's losses: refunds and lost disputes of spent wallet top-ups ----------------------


def _shares(loss: dict) -> dict[str, tuple[str, str, str]]:
    return {a["paywall_id"]: (a["attributed"], a["reversed"], a["not_reversed"]) for a in loss["apps"]}


def test_a_refund_after_spending_records_the_loss_and_takes_back_the_pending_earnings_it_paid_for(
    operator_hook: OperatorHook, admin: Admin
) -> None:
    person, session = topped_up(operator_hook, "spender@example.com", 2_000)
    pi = session["payment_intent"]
    a, b = shared_paywall("A", fee="10"), shared_paywall("B", fee="0")
    connections.connect(a.id, "test", "ua", person.id, cap=None)
    connections.connect(b.id, "test", "ub", person.id, cap=None)
    assert shared_mode.charge(a, "test", "ua", "8", idempotency_key="a1").posting  # A earns 7.20
    assert shared_mode.charge(b, "test", "ub", "4", idempotency_key="b1").posting
    assert shared_mode.charge(b, "test", "ub", "3", idempotency_key="b2").posting
    assert consistent(person.wallet_for("test")) == 5_000_000
    # A partial refund the balance covers is no loss.
    small = st.refund("re_small", 300, payment_intent=pi, charge_id="ch_s")
    assert operator_hook.deliver("refund.updated", small)["result"] == "debited"
    assert losses.list_losses("test") == [] and consistent(person.wallet_for("test")) == 2_000_000

    refund = st.refund("re_rest", 1_700, payment_intent=pi, charge_id="ch_s")
    assert operator_hook.deliver("refund.updated", refund)["result"] == "debited"
    assert consistent(person.wallet_for("test")) == -15_000_000  # a debt the person owes
    reply = admin.client.get("/admin/losses", params={"environment": "test"})
    assert reply.status_code == 200, reply.text
    [loss] = reply.json()["data"]
    assert (loss["kind"], loss["source_id"], loss["amount"], loss["debited"]) == (
        "refund",
        "re_rest",
        "15000000",
        "17000000",
    )
    assert loss["topup"]["payment_intent"] == pi and loss["topup"]["checkout_session"] == session["id"]
    assert (loss["person_id"], loss["wallet_id"], loss["wallet_balance_after"]) == (
        person.id,
        person.wallet_for("test"),
        "-15000000",
    )
    # Newest first: B's 3 and 4, then A's 8 cover the 15; all still pending, so all taken back.
    assert _shares(loss) == {a.id: ("8000000", "7200000", "0"), b.id: ("7000000", "7000000", "0")}
    assert (loss["reversed"], loss["unrecovered"]) == ("14200000", "800000")  # A's fee was never cash
    assert admin.client.get("/admin/losses", params={"environment": "live"}).json()["data"] == []

    for paywall, earned in ((a, "7200000"), (b, "7000000")):
        summary = earnings.summary(paywall.id, "test")
        assert (summary["earned"], summary["reversed"], summary["pending"], summary["available"]) == (
            earned,
            earned,
            "0",
            "0",
        )
        _ledgers_consistent(paywall, "test")
        reversals = [
            e
            for i in range(earnings.SHARDS)
            for e in earnings.entries(paywall.id, "test", i)
            if e["type"] == "reversal"
        ]
        assert reversals and {e["loss_id"] for e in reversals} == {loss["id"]}
        assert -sum(e["amount"] for e in reversals) == int(earned)

    # Redelivered: nothing more is debited, recorded or taken back.
    assert operator_hook.deliver("refund.updated", refund)["result"] == "duplicate"
    assert len(losses.list_losses("test")) == 1 and earnings.summary(b.id, "test")["reversed"] == "7000000"
    # The negative wallet pays for nothing more: no charge, no hold.
    assert shared_mode.charge(a, "test", "ua", "0.01", idempotency_key="a2").refusal == "topup"
    with pytest.raises(ledger.InsufficientFunds):
        ledger.hold(person.wallet_for("test"), 1, hold_id="after-loss")
    admin.clock.past_hold()
    assert admin.withdraw(a.id, "nothing-left")[0] == 409
    assert consistent(person.wallet_for("test")) == -15_000_000


def test_a_charge_is_attributed_to_one_loss_only(operator_hook: OperatorHook) -> None:
    person, session = topped_up(operator_hook, "twice@example.com", 2_000)
    pi = session["payment_intent"]
    a, b = shared_paywall("A", fee="0"), shared_paywall("B", fee="0")
    connections.connect(a.id, "test", "u", person.id, cap=None)
    connections.connect(b.id, "test", "u", person.id, cap=None)
    for paywall, amount, key in ((a, "6", "c1"), (b, "4", "c2"), (a, "5", "c3")):
        assert shared_mode.charge(paywall, "test", "u", amount, idempotency_key=key).posting
    assert consistent(person.wallet_for("test")) == 5_000_000

    first = st.refund("re_one", 1_200, payment_intent=pi, charge_id="ch_t")
    assert operator_hook.deliver("refund.updated", first)["result"] == "debited"
    [one] = losses.list_losses("test")
    assert one["amount"] == "7000000" and _shares(one) == {
        a.id: ("5000000",) * 2 + ("0",),
        b.id: ("2000000",) * 2 + ("0",),
    }
    second = st.refund("re_two", 800, payment_intent=pi, charge_id="ch_t")
    assert operator_hook.deliver("refund.updated", second)["result"] == "debited"
    two, _ = losses.list_losses("test")
    # What is left of the charges: B's 4 less the 2 taken, then A's 6 (A's 5 was taken whole).
    assert two["amount"] == "8000000" and _shares(two) == {
        a.id: ("6000000",) * 2 + ("0",),
        b.id: ("2000000",) * 2 + ("0",),
    }
    for paywall in (a, b):
        summary = earnings.summary(paywall.id, "test")
        assert summary["pending"] == "0" and summary["reversed"] == summary["earned"]
        _ledgers_consistent(paywall, "test")
    records = list(store.query_all(f"PLOSS#{person.wallet_for('test')}", sk_prefix="LOSS#"))
    assert sorted(sum(r["charges"].values()) for r in records) == [7_000_000, 8_000_000]
    assert consistent(person.wallet_for("test")) == -15_000_000


def test_a_lost_dispute_of_an_already_withdrawn_earning_records_the_loss_and_reverses_nothing(
    operator_hook: OperatorHook, admin: Admin
) -> None:
    person, session = topped_up(operator_hook, "withdrawn@example.com", 1_000)
    pi = session["payment_intent"]
    paywall = shared_paywall(fee="20")
    connections.connect(paywall.id, "test", "u", person.id, cap=None)
    assert shared_mode.charge(paywall, "test", "u", "10", idempotency_key="all").posting
    admin.clock.past_hold()
    status, withdrawal = admin.withdraw(paywall.id, "out", environment="test")
    assert status == 201 and withdrawal["amount"] == "8000000"

    lost = st.dispute(payment_intent=pi, cents=1_000, status="lost", dispute_id="dp_gone")
    assert operator_hook.deliver("charge.dispute.closed", lost)["result"] == "debited"
    [loss] = losses.list_losses("test")
    assert (loss["kind"], loss["source_id"], loss["amount"], loss["reversed"], loss["unrecovered"]) == (
        "dispute",
        "dp_gone",
        "10000000",
        "0",
        "10000000",
    )
    assert _shares(loss) == {paywall.id: ("10000000", "0", "8000000")}  # matured: the app keeps it
    summary = earnings.summary(paywall.id, "test")
    assert (summary["withdrawn"], summary["reversed"], summary["available"], summary["pending"]) == (
        "8000000",
        "0",
        "0",
        "0",
    )
    _ledgers_consistent(paywall, "test")
    assert consistent(person.wallet_for("test")) == -10_000_000
    assert operator_hook.deliver("charge.dispute.closed", lost)["result"] == "duplicate"
    assert len(losses.list_losses("test")) == 1


def test_the_losses_report_refuses_bad_parameters(admin: Admin) -> None:
    assert admin.client.get("/admin/losses", params={"environment": "prod"}).status_code == 400
    assert admin.client.get("/admin/losses", params={"limit": "0"}).status_code == 400
    assert admin.client.get("/admin/losses").json() == {"object": "list", "data": []}


def test_the_operator_endpoint_subscribes_to_refunds_and_disputes(admin: Admin) -> None:
    assert admin.client.put("/admin/operator/stripe", json={"secret_key": "sk_test_subs"}).status_code == 200
    (call,) = admin.stub.calls("POST", "/v1/webhook_endpoints")
    events = call.form_list("enabled_events")
    for needed in ("checkout.session.completed", "charge.refunded", "refund.updated", "charge.dispute.closed"):
        assert needed in events


# ---- marking a manual payout paid ----------------------------------------------------------------


def test_a_pending_withdrawal_is_marked_paid_once(admin: Admin) -> None:
    paywall = shared_paywall(fee="0")
    earn(paywall, "10")
    admin.clock.past_hold()
    status, pending = admin.withdraw(paywall.id, "m1", amount="4")
    assert status == 201 and (pending["status"], pending["method"]) == ("pending", "manual")
    path = f"/admin/paywalls/{paywall.id}/withdrawals/{pending['id']}/paid"

    bad = admin.client.post(path, json={"reference": "x", "amount": "1"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "amount"
    assert admin.client.post(path, json={"reference": 7}).status_code == 400
    assert admin.client.post(path, json={"reference": "  "}).status_code == 400
    assert withdrawals.get(paywall.id, "live", pending["id"]).status == "pending"

    paid = admin.client.post(path, json={"reference": "bank-tx-42"})
    assert paid.status_code == 200, paid.text
    body = paid.json()
    assert (body["id"], body["status"], body["reference"]) == (pending["id"], "paid", "bank-tx-42")
    assert body["paid_at"] and body["transfer_id"] is None and "idempotent-replayed" not in paid.headers
    for replay in ({"reference": "bank-tx-42"}, {}):
        again = admin.client.post(path, json=replay)
        assert again.status_code == 200 and again.headers["idempotent-replayed"] == "true"
        assert again.json() == body
    other = admin.client.post(path, json={"reference": "bank-tx-43"})
    assert other.status_code == 409
    assert withdrawals.get(paywall.id, "live", pending["id"]).reference == "bank-tx-42"
    # The money moved once, when it was withdrawn: marking it paid changes no earnings.
    summary = earnings.summary(paywall.id, "live")
    assert (summary["available"], summary["withdrawn"]) == ("6000000", "4000000")
    listed = admin.client.get(f"/admin/paywalls/{paywall.id}/withdrawals").json()["data"]
    assert [(w["id"], w["status"]) for w in listed] == [(pending["id"], "paid")]

    assert admin.client.post(f"/admin/paywalls/{paywall.id}/withdrawals/wd_missing/paid").status_code == 404
    assert admin.client.post(f"/admin/paywalls/{paywall.id}/withdrawals/nope/paid").status_code == 404
    other_paywall = shared_paywall()
    assert admin.client.post(f"/admin/paywalls/{other_paywall.id}/withdrawals/{pending['id']}/paid").status_code == 404
    assert admin.client.post(f"/admin/paywalls/pw_missing/withdrawals/{pending['id']}/paid").status_code == 404


def test_a_stripe_withdrawal_is_never_marked_paid_by_hand_and_a_failed_one_is_settled_by_a_retry(
    admin: Admin,
) -> None:
    """Marking a Stripe-transfer withdrawal paid by hand could pay it twice (its transfer may exist,
    its answer lost): 409, whether its transfer failed, is unknown or succeeded. Retrying the request
    makes (or finds) its one transfer."""
    paywall = shared_paywall(fee="0")
    earn(paywall, "10")
    admin.clock.past_hold()
    admin.client.put(f"/admin/paywalls/{paywall.id}/payout", json={"stripe_account": "acct_1Pga"})
    admin.client.put("/admin/operator/stripe", json={"secret_key": "sk_live_operator"})
    admin.stub.failing_transfers = True
    status, failed = admin.withdraw(paywall.id, "t1", amount="3")
    assert status == 201 and failed["status"] == "pending" and failed["last_error"]
    marked = admin.client.post(f"/admin/paywalls/{paywall.id}/withdrawals/{failed['id']}/paid", json={})
    assert marked.status_code == 409, marked.text
    error = marked.json()["error"]
    assert error["type"] == "conflict_error" and "Stripe transfer" in error["message"]
    assert "retry the withdrawal request" in error["message"]
    assert withdrawals.get(paywall.id, "live", failed["id"]).status == "pending"

    admin.stub.failing_transfers = False
    status, paid = admin.withdraw(paywall.id, "t1", amount="3")
    assert status == 200 and paid["status"] == "paid" and paid["transfer_id"] in admin.stub.transfers
    assert len(admin.stub.transfers) == 1
    refused = admin.client.post(f"/admin/paywalls/{paywall.id}/withdrawals/{paid['id']}/paid", json={})
    assert refused.status_code == 409 and paid["transfer_id"] in refused.json()["error"]["message"]
    assert withdrawals.get(paywall.id, "live", paid["id"]).reference is None


def test_a_transfer_whose_answer_was_lost_is_adopted_by_a_retry_after_stripes_idempotency_window(
    admin: Admin,
) -> None:
    """Stripe made the transfer but the answer never arrived (every network retry of the library
    too); a day later Stripe no longer knows the idempotency key. The retry finds the transfer by
    its group (the withdrawal id) and adopts it: one transfer, the withdrawal paid with its id."""
    paywall = shared_paywall(fee="0")
    earn(paywall, "10")
    admin.clock.past_hold()
    admin.client.put(f"/admin/paywalls/{paywall.id}/payout", json={"stripe_account": "acct_1Pga"})
    admin.client.put("/admin/operator/stripe", json={"secret_key": "sk_live_operator"})
    admin.stub.drop_transfer_answers = 3  # the first try and the library's 2 network retries
    status, lost = admin.withdraw(paywall.id, "lost-1", amount="6")
    assert status == 201 and lost["status"] == "pending" and "not available" in lost["last_error"]
    [made] = admin.stub.transfers.values()  # the money did move
    assert made["transfer_group"] == lost["id"] and made["metadata"]["withdrawal_id"] == lost["id"]
    assert len(admin.stub.calls("POST", "/v1/transfers")) == 3

    admin.stub.forget_idempotency_keys()  # 24 h later
    status, paid = admin.withdraw(paywall.id, "lost-1", amount="6")
    assert status == 200 and (paid["id"], paid["status"], paid["transfer_id"]) == (lost["id"], "paid", made["id"])
    assert len(admin.stub.transfers) == 1
    assert len(admin.stub.calls("POST", "/v1/transfers")) == 3  # adopted, not created again
    listings = admin.stub.calls("GET", "/v1/transfers")  # before the first try, and before the retry
    assert [r.query["transfer_group"] for r in listings] == [lost["id"], lost["id"]]
    assert paid["last_error"] is None and withdrawals.get(paywall.id, "live", lost["id"]).transfer_id == made["id"]
    # Replaying it once more: already paid, Stripe is not asked again.
    assert admin.withdraw(paywall.id, "lost-1", amount="6")[1]["transfer_id"] == made["id"]
    assert len(admin.stub.calls("POST", "/v1/transfers")) == 3 and len(admin.stub.calls("GET", "/v1/transfers")) == 2


def test_a_test_environment_withdrawal_is_found_and_marked(admin: Admin) -> None:
    paywall = shared_paywall(fee="0")
    person = funded_person(micros=100_000_000, environment="test")
    connections.connect(paywall.id, "test", "t", person.id, cap=None)
    assert shared_mode.charge(paywall, "test", "t", "5", idempotency_key="c").posting
    admin.clock.past_hold()
    status, pending = admin.withdraw(paywall.id, "e1", environment="test")
    assert status == 201 and pending["environment"] == "test"
    paid = admin.client.post(f"/admin/paywalls/{paywall.id}/withdrawals/{pending['id']}/paid", json={"reference": "r"})
    assert paid.status_code == 200 and paid.json()["status"] == "paid"
    assert withdrawals.get(paywall.id, "test", pending["id"]).status == "paid"
