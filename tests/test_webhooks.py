"""Stripe webhook function (SPEC §5) in-process against moto: signed Stripe-shaped events built from
Stripe's fixtures, every scenario credits or debits exactly the right amount exactly once, and the
entries of every wallet sum to its balance afterwards. Concurrent deliveries run against the real
local stack in test_stripe_e2e.py."""

from __future__ import annotations

import json
import secrets
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from devserver.router import load_function_app
from paywalls.billing import ledger, stripe_config
from paywalls.billing import paywall as paywalls
from paywalls.billing.stripe_config import StripeSecrets
from paywalls.infra import aws, store
from paywalls.infra import secrets as secrets_store
from tests import stripe_stub as st
from tests.apigw import apigw_event

CENTS = 1_234  # 12.34 USD
MICROS = CENTS * 10_000


@dataclass
class Setup:
    client: TestClient
    paywall_id: str
    whsec_test: str
    whsec_live: str

    def wallet(self, user: str, environment: str = "test") -> str:
        return f"{self.paywall_id}:{environment}:{user}"

    def post(
        self,
        ev: dict[str, Any] | None,
        *,
        secret: str | None = None,
        timestamp: int | None = None,
        raw: bytes | None = None,
        path_paywall: str | None = None,
    ) -> Any:
        body = raw if raw is not None else json.dumps(ev).encode()
        header = st.sign(body, secret or self.whsec_test, timestamp)
        return self.client.post(
            f"/webhooks/stripe/{path_paywall or self.paywall_id}",
            content=body,
            headers={"Stripe-Signature": header, "Content-Type": "application/json; charset=utf-8"},
        )

    def session(self, user: str, **kw: Any) -> dict[str, Any]:
        kw.setdefault("cents", CENTS)
        kw.setdefault("environment", "test")
        return st.checkout_session(paywall_id=self.paywall_id, user=user, **kw)


@pytest.fixture
def hook(aws_mock: None) -> Iterator[Setup]:
    paywall = paywalls.create({"name": "Shop", "mode": "default"})
    whsec_test, whsec_live = "whsec_" + secrets.token_hex(16), "whsec_" + secrets.token_hex(16)
    stripe_config.save_secrets(paywall.id, "test", StripeSecrets("sk_test_hook", whsec_test, "we_test"))
    stripe_config.save_secrets(paywall.id, "live", StripeSecrets("sk_live_hook", whsec_live, "we_live"))
    app = load_function_app("functions/stripe_webhook", "StripeWebhookFunction")
    with TestClient(app) as client:
        yield Setup(client, paywall.id, whsec_test, whsec_live)


def balance(wallet_id: str) -> int:
    return ledger.get_wallet(wallet_id).balance


def consistent(wallet_id: str) -> int:
    """SPEC §4.5: entries sum to the balance, and each entry's balance_after is the running sum."""
    running = 0
    for entry in ledger.all_entries(wallet_id):
        running += entry.amount
        assert entry.balance_after == running
    assert running == balance(wallet_id)
    return running


def entry_types(wallet_id: str) -> list[tuple[str, int]]:
    return [(e.type, e.amount) for e in ledger.all_entries(wallet_id)]


# ---- credits ------------------------------------------------------------------------------------


def test_paid_checkout_credits_once_and_remembers_the_payment_intent(hook: Setup) -> None:
    session = hook.session("alice")
    reply = hook.post(st.event("checkout.session.completed", session))
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"received": True, "result": "credited"}
    wallet = hook.wallet("alice")
    assert consistent(wallet) == MICROS
    [entry] = list(ledger.all_entries(wallet))
    assert entry.type == "deposit"
    assert entry.metadata["checkout_session"] == session["id"]
    assert entry.idempotency_key == f"stripe:{session['id']}"
    mapping = store.get(f"STRIPEPI#{session['payment_intent']}", "MAP")
    assert mapping and mapping["wallet_id"] == wallet and mapping["paywall_id"] == hook.paywall_id
    # The user shows up in the paywall's user list.
    users, _ = store.query(f"USERS#{hook.paywall_id}#test", index="gsi1")
    assert [u["gsi1sk"] for u in users] == ["alice"]


def test_unpaid_completed_credits_nothing(hook: Setup) -> None:
    reply = hook.post(st.event("checkout.session.completed", hook.session("bob", payment_status="unpaid")))
    assert reply.status_code == 200
    assert reply.json()["result"] == "ignored"
    assert not ledger.get_wallet(hook.wallet("bob")).exists


def test_async_payment_succeeded_credits_and_failed_does_not(hook: Setup) -> None:
    pending = hook.session("carol", payment_status="unpaid")
    assert hook.post(st.event("checkout.session.completed", pending)).json()["result"] == "ignored"
    failed = hook.session("carol", payment_status="unpaid")
    assert hook.post(st.event("checkout.session.async_payment_failed", failed)).json()["result"] == "ignored"
    assert not ledger.get_wallet(hook.wallet("carol")).exists
    succeeded = {**pending, "payment_status": "paid"}
    assert hook.post(st.event("checkout.session.async_payment_succeeded", succeeded)).json()["result"] == "credited"
    assert consistent(hook.wallet("carol")) == MICROS


def test_duplicate_deliveries_and_both_success_events_credit_once(hook: Setup) -> None:
    session = hook.session("dave")
    completed = st.event("checkout.session.completed", session)
    results = [hook.post(completed).json()["result"] for _ in range(3)]
    # The same session's async success (a different event id) is still the same money.
    results.append(hook.post(st.event("checkout.session.async_payment_succeeded", session)).json()["result"])
    # Stripe re-sends with a new timestamp (and so a new signature) on retries.
    results.append(hook.post(completed, timestamp=int(time.time()) - 60).json()["result"])
    assert results == ["credited", "duplicate", "duplicate", "duplicate", "duplicate"]
    assert consistent(hook.wallet("dave")) == MICROS
    assert len(list(ledger.all_entries(hook.wallet("dave")))) == 1


def test_two_sessions_of_one_user_credit_twice(hook: Setup) -> None:
    for _ in range(2):
        assert hook.post(st.event("checkout.session.completed", hook.session("erin"))).json()["result"] == "credited"
    assert consistent(hook.wallet("erin")) == 2 * MICROS


def test_live_events_credit_the_live_wallet_only(hook: Setup) -> None:
    session = hook.session("frank", environment="live")
    # The test-mode secret signs it validly, but a test-mode endpoint never receives live events.
    assert hook.post(st.event("checkout.session.completed", session, livemode=True)).json()["result"] == "ignored"
    reply = hook.post(st.event("checkout.session.completed", session, livemode=True), secret=hook.whsec_live)
    assert reply.json()["result"] == "credited"
    assert consistent(hook.wallet("frank", "live")) == MICROS
    assert not ledger.get_wallet(hook.wallet("frank", "test")).exists


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda s: s["metadata"].update(paywall_id="pw_someoneelse"), "another paywall"),
        (lambda s: s["metadata"].update(environment="live"), "environment"),
        (lambda s: s["metadata"].update(amount_micros="99990000"), "amount"),
        (lambda s: s.update(amount_total=1), "amount"),
        (lambda s: s.update(currency="eur"), "currency"),
        (lambda s: s.update(client_reference_id="pw_x:test:mallory"), "client_reference_id"),
        (lambda s: s["metadata"].update(user="<script>"), "user"),
        (lambda s: s.update(metadata={}), "another paywall"),
    ],
)
def test_sessions_that_are_not_ours_are_acknowledged_but_not_credited(hook: Setup, change: Any, reason: str) -> None:
    session = hook.session("gina")
    change(session)
    reply = hook.post(st.event("checkout.session.completed", session))
    assert reply.status_code == 200
    assert reply.json()["result"] == "ignored"
    assert reason in reply.json()["reason"]
    assert not ledger.get_wallet(hook.wallet("gina")).exists


def test_other_event_types_are_acknowledged(hook: Setup) -> None:
    reply = hook.post(st.fixture("event"))  # plan.created, Stripe's own example
    assert reply.status_code == 200
    assert reply.json()["result"] == "ignored"


# ---- signatures ---------------------------------------------------------------------------------


def test_bad_signatures_are_400_and_move_nothing(hook: Setup) -> None:
    ev = st.event("checkout.session.completed", hook.session("henry"))
    body = json.dumps(ev).encode()
    wrong = hook.post(ev, secret="whsec_" + "0" * 32)
    altered_header = st.sign(body, hook.whsec_test)
    altered = hook.client.post(
        f"/webhooks/stripe/{hook.paywall_id}",
        content=body.replace(b'"amount_total": 1234', b'"amount_total": 9999'),
        headers={"Stripe-Signature": altered_header},
    )
    missing = hook.client.post(f"/webhooks/stripe/{hook.paywall_id}", content=body)
    garbage = hook.client.post(
        f"/webhooks/stripe/{hook.paywall_id}", content=body, headers={"Stripe-Signature": "t=abc,v1=zz"}
    )
    stale = hook.post(ev, timestamp=int(time.time()) - 301)
    other_paywalls_secret = hook.post(ev, secret=hook.whsec_test, path_paywall=paywalls.create({"name": "B"}).id)
    for reply in (wrong, altered, missing, garbage, stale, other_paywalls_secret):
        assert reply.status_code == 400, reply.text
        assert reply.json()["error"]["code"] == "invalid_signature"
        assert "whsec_" not in reply.text
    assert not ledger.get_wallet(hook.wallet("henry")).exists
    # Within the tolerance it is accepted.
    assert hook.post(ev, timestamp=int(time.time()) - 290).json()["result"] == "credited"


def test_unknown_paywall_no_stripe_and_bad_signature_answer_byte_identically(hook: Setup) -> None:
    """Nothing is answered before the signature is checked: an unknown (or malformed) paywall id, a
    paywall without Stripe, the operator without Stripe, a bad or missing signature all get the same
    400, so the endpoint does not reveal which paywall ids exist or have Stripe configured."""
    ev = st.event("checkout.session.completed", hook.session("ivan"))
    body = json.dumps(ev).encode()
    without_stripe = paywalls.create({"name": "No Stripe"}).id
    replies = {
        "unknown paywall": hook.post(ev, path_paywall="pw_doesnotexist"),
        "malformed id": hook.post(ev, path_paywall="not%20an%20id%0A"),
        "paywall without Stripe": hook.post(ev, path_paywall=without_stripe),
        "operator without Stripe": hook.post(ev, path_paywall="operator"),
        "bad signature": hook.post(ev, secret="whsec_" + "0" * 32),
        "missing signature": hook.client.post(f"/webhooks/stripe/{hook.paywall_id}", content=body),
        "unknown paywall, missing signature": hook.client.post("/webhooks/stripe/pw_doesnotexist", content=body),
    }
    answers = {name: (r.status_code, r.headers["content-type"], r.content) for name, r in replies.items()}
    assert len(set(answers.values())) == 1, answers
    status, _, content = answers["unknown paywall"]
    assert status == 400 and json.loads(content)["error"]["code"] == "invalid_signature"
    assert not ledger.get_wallet(hook.wallet("ivan")).exists


def test_an_oversized_body_is_413_whatever_the_paywall(hook: Setup) -> None:
    huge = b"{" + b" " * (600 * 1024) + b"}"
    assert hook.post(None, raw=huge).status_code == 413
    assert hook.post(None, raw=huge, path_paywall="pw_doesnotexist").status_code == 413


def test_a_signed_body_nested_past_the_parsers_limit_is_a_400(hook: Setup) -> None:
    reply = hook.post(None, raw=b"[" * 5000 + b"]" * 5000)
    assert reply.status_code == 400 and reply.json()["error"]["code"] == "invalid_signature", reply.text


def test_forged_calls_to_a_paywall_without_stripe_cost_one_secrets_read_per_mode_per_ttl(
    hook: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A missing secret is remembered (secrets_store, PAYWALLS_SECRET_MISS_TTL_S): a flood of forged
    calls costs one Secrets Manager read per Stripe mode per TTL, and configuring Stripe in this
    instance is seen at once."""
    monkeypatch.setenv("PAYWALLS_SECRET_MISS_TTL_S", "60")
    reads: list[str] = []

    def count(service: str, operation: str, params: dict[str, Any]) -> None:
        if operation == "GetSecretValue":
            reads.append(params["SecretId"])

    aws.client("secretsmanager").hooks.append(count)
    clock = [1_000.0]
    monkeypatch.setattr(secrets_store, "monotonic", lambda: clock[0])
    target = paywalls.create({"name": "No Stripe yet"}).id
    ev = st.event(
        "checkout.session.completed", st.checkout_session(paywall_id=target, environment="test", user="zoe", cents=500)
    )
    for _ in range(20):
        assert hook.post(ev, secret="whsec_forged", path_paywall=target).status_code == 400
    assert sorted(reads) == sorted(stripe_config.secret_name(target, m) for m in stripe_config.MODES), reads
    clock[0] += 61  # the remembered misses expire: one more read each, then quiet again
    for _ in range(20):
        assert hook.post(ev, secret="whsec_forged", path_paywall=target).status_code == 400
    assert len(reads) == 2 * len(stripe_config.MODES), reads
    # Configured afterwards (here, so this instance forgets the miss): its events verify at once.
    whsec = "whsec_" + secrets.token_hex(16)
    stripe_config.save_secrets(target, "test", StripeSecrets("sk_test_late", whsec, "we_late"))
    assert hook.post(ev, secret=whsec, path_paywall=target).json()["result"] == "credited"


def test_signed_but_not_an_event_is_400(hook: Setup) -> None:
    assert hook.post(None, raw=b'{"object": "charge"}').status_code == 400
    assert hook.post(None, raw=b"not json").status_code == 400


def test_lambda_handler_decodes_base64_bodies_before_verifying(hook: Setup) -> None:
    """API Gateway base64-encodes bodies it treats as binary; Mangum must hand the ASGI app the
    original bytes, or the signature (over those bytes) would not verify."""
    ev = st.event("checkout.session.completed", hook.session("judy"))
    body = json.dumps(ev, indent=1).encode()  # whitespace matters to the signature
    handler = sys.modules["fn_StripeWebhookFunction"].handler
    for encoded in (True, False):
        event = apigw_event(
            "POST",
            f"/webhooks/stripe/{hook.paywall_id}",
            body,
            headers={"Stripe-Signature": st.sign(body, hook.whsec_test)},
            resource="/webhooks/stripe/{paywall_id}",
            base64_body=encoded,
        )
        reply = handler(event, None)
        assert reply["statusCode"] == 200, reply
        assert json.loads(reply["body"])["result"] == ("credited" if encoded else "duplicate")
    assert consistent(hook.wallet("judy")) == MICROS
    # And a body altered in transit is still refused on that path.
    event = apigw_event(
        "POST",
        f"/webhooks/stripe/{hook.paywall_id}",
        body + b" ",
        headers={"Stripe-Signature": st.sign(body, hook.whsec_test)},
        base64_body=True,
    )
    assert handler(event, None)["statusCode"] == 400


def test_a_rotated_secret_is_picked_up_without_waiting_for_the_cache(hook: Setup) -> None:
    ev = st.event("checkout.session.completed", hook.session("kate"))
    stripe_config.webhook_secrets(hook.paywall_id)  # warm the cache with the old secrets
    new_secret = "whsec_" + secrets.token_hex(16)
    # Written behind the cache's back, as another Lambda (the admin function) would.
    from paywalls.infra import aws

    aws.client("secretsmanager").put_secret_value(
        SecretId=stripe_config.secret_name(hook.paywall_id, "test"),
        SecretString=json.dumps({"secret_key": "sk_test_hook", "webhook_secret": new_secret}),
    )
    assert hook.post(ev, secret=new_secret).json()["result"] == "credited"


# ---- refunds and disputes -----------------------------------------------------------------------


def paid(hook: Setup, user: str, cents: int = CENTS) -> dict[str, Any]:
    session = hook.session(user, cents=cents)
    assert hook.post(st.event("checkout.session.completed", session)).json()["result"] == "credited"
    return session


def test_partial_refunds_debit_each_refund_once(hook: Setup) -> None:
    session = paid(hook, "leo", 2_000)
    pi = session["payment_intent"]
    r1 = st.refund("re_1", 500, payment_intent=pi, charge_id="ch_leo")
    charge = st.refunded_charge(payment_intent=pi, cents=2_000, refunds=[r1], charge_id="ch_leo")
    ev1 = st.event("charge.refunded", charge)
    assert hook.post(ev1).json()["result"] == "debited"
    assert hook.post(ev1).json()["result"] == "duplicate"
    r2 = st.refund("re_2", 300, payment_intent=pi, charge_id="ch_leo")
    failed = st.refund("re_3", 700, payment_intent=pi, charge_id="ch_leo", status="failed")
    charge2 = st.refunded_charge(payment_intent=pi, cents=2_000, refunds=[r2, r1, failed], charge_id="ch_leo")
    assert hook.post(st.event("charge.refunded", charge2)).json()["result"] == "debited"
    wallet = hook.wallet("leo")
    assert consistent(wallet) == (2_000 - 500 - 300) * 10_000
    assert entry_types(wallet) == [("deposit", 20_000_000), ("refund", -5_000_000), ("refund", -3_000_000)]


def test_a_pending_refund_is_debited_only_once_it_succeeds(hook: Setup) -> None:
    """A refund listed as pending may still fail (the money never leaves): nothing is debited until
    Stripe reports it succeeded, by `refund.updated` or a later `charge.refunded`; either way once."""
    session = paid(hook, "lena", 2_000)
    pi = session["payment_intent"]
    pending = st.refund("re_pend", 800, payment_intent=pi, charge_id="ch_lena", status="pending")
    charge = st.refunded_charge(payment_intent=pi, cents=2_000, refunds=[pending], charge_id="ch_lena")
    assert hook.post(st.event("charge.refunded", charge)).json()["result"] == "ignored"
    assert hook.post(st.event("refund.updated", pending)).json()["result"] == "ignored"
    assert consistent(hook.wallet("lena")) == 20_000_000

    succeeded = {**pending, "status": "succeeded"}
    assert hook.post(st.event("refund.updated", succeeded)).json()["result"] == "debited"
    assert hook.post(st.event("refund.updated", succeeded)).json()["result"] == "duplicate"
    assert hook.post(st.event("charge.refund.updated", succeeded)).json()["result"] == "duplicate"
    later = st.refunded_charge(payment_intent=pi, cents=2_000, refunds=[succeeded], charge_id="ch_lena")
    assert hook.post(st.event("charge.refunded", later)).json()["result"] == "duplicate"
    assert consistent(hook.wallet("lena")) == (2_000 - 800) * 10_000
    assert entry_types(hook.wallet("lena")) == [("deposit", 20_000_000), ("refund", -8_000_000)]


def test_a_pending_refund_that_fails_never_moves_money(hook: Setup) -> None:
    session = paid(hook, "max", 1_000)
    pi = session["payment_intent"]
    pending = st.refund("re_fail", 1_000, payment_intent=pi, charge_id="ch_max", status="pending")
    charge = st.refunded_charge(payment_intent=pi, cents=1_000, refunds=[pending], charge_id="ch_max")
    assert hook.post(st.event("charge.refunded", charge)).json()["result"] == "ignored"
    for status in ("requires_action", "failed", "canceled"):
        reply = hook.post(st.event("refund.updated", {**pending, "status": status}))
        assert reply.json() == {"received": True, "result": "ignored", "reason": f"refund is {status}"}
    assert consistent(hook.wallet("max")) == 10_000_000
    assert entry_types(hook.wallet("max")) == [("deposit", 10_000_000)]


def test_a_succeeded_refund_first_reported_by_charge_refunded_is_not_debited_again(hook: Setup) -> None:
    session = paid(hook, "nell", 1_000)
    pi = session["payment_intent"]
    refund = st.refund("re_nell", 400, payment_intent=pi, charge_id="ch_nell")
    charge = st.refunded_charge(payment_intent=pi, cents=1_000, refunds=[refund], charge_id="ch_nell")
    assert hook.post(st.event("charge.refunded", charge)).json()["result"] == "debited"
    assert hook.post(st.event("refund.updated", refund)).json()["result"] == "duplicate"
    assert consistent(hook.wallet("nell")) == 6_000_000


def test_a_refund_update_before_its_payment_is_applied_when_the_payment_arrives(hook: Setup) -> None:
    session = hook.session("otto", cents=1_500)
    refund = st.refund("re_otto", 500, payment_intent=session["payment_intent"], charge_id="ch_otto")
    assert hook.post(st.event("refund.updated", refund)).json()["result"] == "pending"
    assert hook.post(st.event("checkout.session.completed", session)).json()["result"] == "credited"
    assert consistent(hook.wallet("otto")) == 10_000_000


@pytest.mark.parametrize(
    "change, reason",
    [
        ({"object": "charge"}, "not a refund"),
        ({"payment_intent": None}, "refund has no payment intent"),
        ({"currency": "eur"}, "refund has no amount in the paywall's currency"),
        ({"amount": 0}, "refund has no amount in the paywall's currency"),
    ],
)
def test_refund_updates_that_cannot_be_ours_are_acknowledged_and_ignored(
    hook: Setup, change: dict[str, Any], reason: str
) -> None:
    session = paid(hook, "pia", 1_000)
    refund = {**st.refund("re_pia", 500, payment_intent=session["payment_intent"], charge_id="ch_pia"), **change}
    reply = hook.post(st.event("refund.updated", refund))
    assert reply.status_code == 200 and reply.json()["result"] == "ignored" and reply.json()["reason"] == reason
    assert consistent(hook.wallet("pia")) == 10_000_000


def test_refund_of_spent_credit_takes_the_wallet_negative(hook: Setup) -> None:
    session = paid(hook, "mia", 1_000)
    ledger.charge(hook.wallet("mia"), 8_000_000, idempotency_key="usage-1")
    refund = st.refund("re_mia", 1_000, payment_intent=session["payment_intent"], charge_id="ch_mia")
    charge = st.refunded_charge(payment_intent=session["payment_intent"], cents=1_000, refunds=[refund])
    assert hook.post(st.event("charge.refunded", charge)).json()["result"] == "debited"
    assert consistent(hook.wallet("mia")) == -8_000_000


def test_refunds_missing_from_the_event_are_listed_through_the_api(
    hook: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = paid(hook, "nick", 1_500)
    pi = session["payment_intent"]
    with st.StripeStub().running() as stub:
        monkeypatch.setenv("STRIPE_API_BASE", stub.url)
        stub.refunds["ch_nick"] = [st.refund("re_n1", 1_000, payment_intent=pi, charge_id="ch_nick")]
        charge = st.refunded_charge(payment_intent=pi, cents=1_500, refunds=None, charge_id="ch_nick")
        assert hook.post(st.event("charge.refunded", charge)).json()["result"] == "debited"
        [call] = stub.calls("GET", "/v1/refunds")
        assert call.query["charge"] == "ch_nick"
        assert call.api_key == "sk_test_hook"  # the test-mode key for a test-mode event
    assert consistent(hook.wallet("nick")) == 500 * 10_000


def test_lost_dispute_debits_once_and_won_dispute_nothing(hook: Setup) -> None:
    won_session = paid(hook, "olga", 1_000)
    won = st.dispute(payment_intent=won_session["payment_intent"], cents=1_000, status="won")
    assert hook.post(st.event("charge.dispute.closed", won)).json()["result"] == "ignored"
    assert consistent(hook.wallet("olga")) == 10_000_000
    lost = st.dispute(payment_intent=won_session["payment_intent"], cents=1_000, status="lost", dispute_id="dp_x")
    results = [hook.post(st.event("charge.dispute.closed", lost)).json()["result"] for _ in range(3)]
    assert results == ["debited", "duplicate", "duplicate"]
    assert consistent(hook.wallet("olga")) == 0
    assert entry_types(hook.wallet("olga")) == [("deposit", 10_000_000), ("refund", -10_000_000)]


def test_refund_and_dispute_before_the_payment_are_applied_when_it_arrives(hook: Setup) -> None:
    session = hook.session("pete", cents=3_000)
    pi = session["payment_intent"]
    refund = st.refund("re_early", 1_000, payment_intent=pi, charge_id="ch_pete")
    charge = st.refunded_charge(payment_intent=pi, cents=3_000, refunds=[refund], charge_id="ch_pete")
    lost = st.dispute(payment_intent=pi, cents=500, status="lost")
    assert hook.post(st.event("charge.refunded", charge)).json()["result"] == "pending"
    assert hook.post(st.event("charge.dispute.closed", lost)).json()["result"] == "pending"
    assert not ledger.get_wallet(hook.wallet("pete")).exists
    assert hook.post(st.event("checkout.session.completed", session)).json()["result"] == "credited"
    assert consistent(hook.wallet("pete")) == (3_000 - 1_000 - 500) * 10_000
    # Redeliveries of all three change nothing.
    assert hook.post(st.event("charge.refunded", charge)).json()["result"] == "duplicate"
    assert hook.post(st.event("charge.dispute.closed", lost)).json()["result"] == "duplicate"
    assert hook.post(st.event("checkout.session.completed", session)).json()["result"] == "duplicate"
    assert consistent(hook.wallet("pete")) == 15_000_000


def test_refund_of_another_paywalls_payment_is_not_applied(hook: Setup) -> None:
    session = paid(hook, "quinn", 1_000)
    other = paywalls.create({"name": "Other"})
    whsec = "whsec_" + secrets.token_hex(16)
    stripe_config.save_secrets(other.id, "test", StripeSecrets("sk_test_other", whsec, "we_o"))
    refund = st.refund("re_q", 1_000, payment_intent=session["payment_intent"], charge_id="ch_q")
    charge = st.refunded_charge(payment_intent=session["payment_intent"], cents=1_000, refunds=[refund])
    reply = hook.post(st.event("charge.refunded", charge), secret=whsec, path_paywall=other.id)
    assert reply.json()["result"] == "ignored"
    assert consistent(hook.wallet("quinn")) == 10_000_000


def test_a_credit_landing_between_a_refunds_lookup_and_its_parking_still_nets_right(
    hook: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The one interleaving that could lose a refund: the refund finds no payment, the credit lands
    (and finds nothing parked), then the refund parks. The refund re-reads after parking."""
    from paywalls.billing import stripe_webhooks as webhooks

    session = hook.session("rita", cents=2_000)
    pi = session["payment_intent"]
    refund = st.refund("re_rita", 700, payment_intent=pi, charge_id="ch_rita")
    charge = st.refunded_charge(payment_intent=pi, cents=2_000, refunds=[refund], charge_id="ch_rita")
    original_park = webhooks._park
    credited: list[str] = []

    def park_after_the_credit_lands(*args: Any) -> None:
        if not credited:
            paywall = paywalls.get(hook.paywall_id)
            credited.append(webhooks.handle(paywall, "test", st.event("checkout.session.completed", session)).result)
        original_park(*args)

    monkeypatch.setattr(webhooks, "_park", park_after_the_credit_lands)
    assert hook.post(st.event("charge.refunded", charge)).json()["result"] == "debited"
    assert credited == ["credited"]
    assert consistent(hook.wallet("rita")) == (2_000 - 700) * 10_000


def test_remembered_misses_are_bounded_and_expire(aws_mock: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYWALLS_SECRET_MISS_TTL_S", "60")
    monkeypatch.setattr(secrets_store, "MISS_CACHE_SIZE", 3)
    clock = [5_000.0]
    monkeypatch.setattr(secrets_store, "monotonic", lambda: clock[0])
    names = [f"paywalls/test/missing/{i}" for i in range(5)]
    for name in names:
        assert secrets_store.get_json_secret_if_exists(name) is None
    assert [secrets_store.known_missing(n) for n in names] == [False, False, True, True, True]  # oldest dropped
    clock[0] += 61
    assert not any(secrets_store.known_missing(n) for n in names)
    monkeypatch.setenv("PAYWALLS_SECRET_MISS_TTL_S", "0")  # what the tests' PAYWALLS_CACHE_TTL_S=0 gives
    assert secrets_store.get_json_secret_if_exists(names[0]) is None and not secrets_store.known_missing(names[0])
