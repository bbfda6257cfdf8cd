"""Shared mode's domain rules in-process (moto): persons, sign-in codes, sessions, connections as
budgets, earnings credited atomically with charges, refusals, isolation between paywalls."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as hs

from paywalls.billing import earnings, ledger
from paywalls.billing.paywall import InvalidRequest
from paywalls.infra import links, store
from paywalls.wallets import connections, otp, persons, ratelimit, sessions, shared_mode
from tests.shared_support import app_secret, consistent, earnings_consistent, funded_person, shared_paywall


@pytest.fixture
def env(aws_mock: None) -> Iterator[None]:
    app_secret()
    yield


# ---- persons ------------------------------------------------------------------------------------


def test_email_is_normalized_and_one_person_per_address(env: None) -> None:
    first = persons.get_or_create("  Ann.Lee+x@Example.COM ")
    again = persons.get_or_create("ann.lee+x@example.com")
    assert first == again and first.email == "ann.lee+x@example.com"
    assert first.wallet_for("live") == f"person:{first.id}:live"
    assert first.wallet_for("test") == f"person:{first.id}:test"
    with pytest.raises(InvalidRequest):
        first.wallet_for("prod")
    assert persons.find_by_email("ANN.LEE+X@example.com") == first


@pytest.mark.parametrize(
    "bad", ["", "no-at", "a@b", "a b@example.com", "<x>@example.com", "a@" + "x" * 300 + ".com", 5]
)
def test_bad_emails_are_refused(env: None, bad: object) -> None:
    with pytest.raises(persons.InvalidEmail):
        persons.normalize_email(bad)


# ---- sign-in codes ------------------------------------------------------------------------------


def test_code_signs_in_once_and_is_stored_only_as_a_mac(env: None) -> None:
    challenge = otp.start("bob@example.com", "client-1")
    item = store.get(f"OTP#{challenge.id}", "OTP")
    assert item and challenge.code not in str(item)
    assert otp.verify(challenge.id, challenge.code, "client-1") == "bob@example.com"
    with pytest.raises(otp.CodeRejected, match="already used"):
        otp.verify(challenge.id, challenge.code, "client-1")


def test_wrong_guesses_are_limited_then_even_the_right_code_fails(env: None) -> None:
    challenge = otp.start("carol@example.com", "client-2")
    wrong = f"{(int(challenge.code) + 1) % 10**6:06d}"
    for left in range(otp.MAX_GUESSES - 1, 0, -1):
        with pytest.raises(otp.CodeRejected, match=f"{left} attempt"):
            otp.verify(challenge.id, wrong, "client-2")
    with pytest.raises(otp.CodeRejected, match="no attempts are left"):
        otp.verify(challenge.id, wrong, "client-2")
    with pytest.raises(otp.CodeRejected):
        otp.verify(challenge.id, challenge.code, "client-2")


def test_codes_expire(env: None) -> None:
    challenge = otp.start("dan@example.com", "client-3", now=time.time() - otp.CODE_TTL_S - 1)
    with pytest.raises(otp.CodeRejected, match="expired"):
        otp.verify(challenge.id, challenge.code, "client-3")


def test_malformed_input_never_reaches_the_store(env: None) -> None:
    with pytest.raises(otp.CodeRejected):
        otp.verify("ch_nope", "123456", "c")
    challenge = otp.start("erin@example.com", "c")
    with pytest.raises(otp.CodeRejected, match="6-digit"):
        otp.verify(challenge.id, "12ab56", "c")
    assert store.get(f"OTP#{challenge.id}", "OTP")["attempts"] == 0  # type: ignore[index]


def test_sending_is_rate_limited_per_email_and_per_client(env: None) -> None:
    now = time.time()
    for i in range(otp.SEND_PER_EMAIL.limit):
        otp.start("frank@example.com", f"client-{i}", now=now)
    with pytest.raises(ratelimit.RateLimited) as limited:
        otp.start("FRANK@example.com", "client-new", now=now)
    assert 0 < limited.value.retry_after <= otp.SEND_PER_EMAIL.window_s
    for i in range(otp.SEND_PER_CLIENT.limit):
        otp.start(f"user{i}@example.com", "one-client", now=now)
    with pytest.raises(ratelimit.RateLimited):
        otp.start("someone-else@example.com", "one-client", now=now)
    # Counters expire with the table's TTL and never hold the subject in clear.
    keys = [k for k in _all_items() if k["pk"].startswith("RATE#")]
    assert keys and all("frank" not in k["pk"] and k["expires_at_ttl"] > now for k in keys)


def _all_items() -> list[dict]:
    response = store.ddb().scan(TableName=store.table_name())
    return [store.decode(i) for i in response["Items"]]


# ---- sessions -----------------------------------------------------------------------------------


def test_session_cookie_round_trip_and_tampering(env: None) -> None:
    person = persons.get_or_create("gina@example.com")
    token = sessions.issue(person.id)
    assert sessions.read(token).person_id == person.id  # type: ignore[union-attr]
    body, _, mac = token.partition(".")
    other = sessions.issue(persons.get_or_create("hal@example.com").id)
    assert sessions.read(f"{other.partition('.')[0]}.{mac}") is None
    assert sessions.read(body + ".") is None and sessions.read("") is None and sessions.read("x" * 2000) is None
    assert sessions.read(token, now=time.time() + sessions.SESSION_TTL_S + 1) is None
    # A link token (same root secret) is not a session.
    link = links.sign(links.LinkClaims("authorize", "pw_x", "live", person.id))
    assert sessions.read(link) is None


# ---- connections, budgets, earnings --------------------------------------------------------------


def test_connect_charge_cap_and_earnings(env: None) -> None:
    paywall = shared_paywall(fee="10")
    person = funded_person(micros=10_000_000)
    assert shared_mode.charge(paywall, "live", "u1", "1", idempotency_key="k0").refusal == "authorize"

    connections.connect(paywall.id, "live", "u1", person.id, cap=3_000_000)
    done = shared_mode.charge(paywall, "live", "u1", "2.5", idempotency_key="k1")
    assert done.posting and done.posting.entry.amount == -2_500_000
    assert done.posting.entry.metadata["paywall_id"] == paywall.id
    replay = shared_mode.charge(paywall, "live", "u1", "2.5", idempotency_key="k1")
    assert replay.posting and replay.posting.duplicate

    capped = shared_mode.charge(paywall, "live", "u1", "1", idempotency_key="k2")
    assert capped.posting is None and capped.refusal == "cap"
    connection = connections.active(paywall.id, "live", "u1")
    assert connection and (connection.spent, connection.remaining, connection.cap_remaining) == (
        2_500_000,
        500_000,
        500_000,
    )

    summary = earnings.summary(paywall.id, "live")
    assert (summary["gross"], summary["fees"], summary["earned"], summary["pending"], summary["available"]) == (
        "2500000",
        "250000",
        "2250000",
        "2250000",  # held for EarningsHoldDays before it is withdrawable
        "0",
    )
    assert persons.balance(person.id, "live").balance == 7_500_000
    consistent(person.wallet_for("live"))
    _earnings_consistent(paywall.id, "live")


def test_too_little_balance_is_a_topup_refusal_and_nothing_moves(env: None) -> None:
    paywall = shared_paywall()
    person = funded_person(micros=1_000_000)
    connections.connect(paywall.id, "live", "u", person.id, cap=None)
    result = shared_mode.charge(paywall, "live", "u", "2", idempotency_key="k")
    assert result.posting is None and result.refusal == "topup"
    assert persons.balance(person.id, "live").balance == 1_000_000
    assert earnings.summary(paywall.id, "live")["gross"] == "0"


def test_revocation_blocks_even_a_hold_that_read_the_connection_before(env: None) -> None:
    paywall = shared_paywall()
    person = funded_person()
    connection = connections.connect(paywall.id, "live", "u", person.id, cap=None)
    stale = connection  # read before the revocation
    assert connections.disconnect(paywall.id, "live", "u")
    assert not connections.disconnect(paywall.id, "live", "u")
    with pytest.raises(ledger.BudgetExceeded):
        ledger.hold(stale.wallet_id, 1000, hold_id="h-after-revoke", budget=stale.budget)
    with pytest.raises(ledger.BudgetExceeded):
        ledger.charge(stale.wallet_id, 1000, idempotency_key="after", budget=stale.budget)
    assert shared_mode.charge(paywall, "live", "u", "1", idempotency_key="k").refusal == "authorize"
    assert persons.balance(person.id, "live").available == 10_000_000
    # Re-authorizing creates a new connection: a fresh cap, the old spending stays with the old one.
    again = connections.connect(paywall.id, "live", "u", person.id, cap=1_000_000)
    assert again.id != connection.id and again.remaining == 1_000_000
    history = connections.list_for_person(person.id)
    assert [c.status for c in history] == ["active", "revoked"]


def test_hold_settle_release_move_the_budget_and_earnings_exactly_once(env: None) -> None:
    paywall = shared_paywall(fee="12.5")
    person = funded_person()
    connections.connect(paywall.id, "live", "u", person.id, cap=5_000_000)
    payer = shared_mode.payer(paywall, "live", "u")
    assert payer and payer.spendable == 5_000_000
    ledger.hold(payer.wallet_id, 2_000_000, hold_id="req_1", budget=payer.budget)
    assert connections.active(paywall.id, "live", "u").remaining == 3_000_000  # type: ignore[union-attr]
    ledger.settle("req_1", 777_777, request_id="req_1", also=payer.also())
    ledger.settle("req_1", 777_777, request_id="req_1", also=payer.also())  # duplicate: no-op
    conn = connections.active(paywall.id, "live", "u")
    assert conn and (conn.remaining, conn.spent) == (5_000_000 - 777_777, 777_777)
    ledger.hold(payer.wallet_id, 1_000_000, hold_id="req_2", budget=payer.budget)
    assert ledger.release("req_2")
    assert connections.active(paywall.id, "live", "u").remaining == 5_000_000 - 777_777  # type: ignore[union-attr]
    summary = earnings.summary(paywall.id, "live")
    fee = 777_777 * 125 // 1000
    assert (summary["gross"], summary["fees"], summary["earned"]) == ("777777", str(fee), str(777_777 - fee))
    consistent(person.wallet_for("live"))
    _earnings_consistent(paywall.id, "live")


def test_a_paywall_cannot_reach_another_paywalls_users(env: None) -> None:
    a, b = shared_paywall("A"), shared_paywall("B")
    person = funded_person()
    connections.connect(a.id, "live", "alice", person.id, cap=None)
    # B's user with the same id is not connected: B cannot charge the person through A's authorization.
    assert shared_mode.charge(b, "live", "alice", "1", idempotency_key="k").refusal == "authorize"
    assert shared_mode.connect_status(b, "live", "alice", "https://x")["connected"] is False
    assert shared_mode.disconnect(b, "live", "alice")["success"] is False
    assert connections.active(a.id, "live", "alice") is not None
    # Test keys are another environment: not connected either.
    assert shared_mode.charge(a, "test", "alice", "1", idempotency_key="k").refusal == "authorize"
    # The same idempotency key in two apps moves money twice (two charges), never a replay of the other's.
    connections.connect(b.id, "live", "alice", person.id, cap=None)
    one = shared_mode.charge(a, "live", "alice", "1", idempotency_key="same")
    two = shared_mode.charge(b, "live", "alice", "2", idempotency_key="same")
    assert one.posting and two.posting and not two.posting.duplicate
    assert earnings.summary(a.id, "live")["gross"] == "1000000"
    assert earnings.summary(b.id, "live")["gross"] == "2000000"
    # What a paywall sees of a connection never names the person.
    status = shared_mode.connect_status(a, "live", "alice", "https://x")
    assert person.id not in str(status) and person.email not in str(status)


def test_another_person_approving_replaces_the_connection(env: None) -> None:
    paywall = shared_paywall()
    p1, p2 = funded_person(), funded_person()
    first = connections.connect(paywall.id, "live", "u", p1.id, cap=None)
    second = connections.connect(paywall.id, "live", "u", p2.id, cap=None)
    assert connections.active(paywall.id, "live", "u").person_id == p2.id  # type: ignore[union-attr]
    assert connections.reload(first).status == "revoked" and second.status == "active"
    same = connections.connect(paywall.id, "live", "u", p2.id, cap=2_000_000)
    assert same.id == second.id and same.cap == 2_000_000 and same.remaining == 2_000_000


def test_cap_changes_move_remaining(env: None) -> None:
    paywall = shared_paywall()
    person = funded_person()
    connection = connections.connect(paywall.id, "live", "u", person.id, cap=1_000_000)
    shared_mode.charge(paywall, "live", "u", "0.4", idempotency_key="k")
    raised = connections.set_cap(connections.reload(connection), 3_000_000)
    assert (raised.remaining, raised.spent) == (2_600_000, 400_000)
    removed = connections.set_cap(raised, None)
    assert removed.cap is None and removed.remaining == connections.UNCAPPED_REMAINING - 400_000
    with pytest.raises(connections.NotConnected):
        connections.set_cap(raised, 5)  # stale: the cap changed meanwhile


def test_authorization_links_are_bound_signed_and_expire(env: None) -> None:
    paywall = shared_paywall()
    url = shared_mode.authorize_url("https://pay.example.com", paywall.id, "live", "u-1")
    token = url.rsplit("/", 1)[1]
    request = shared_mode.open_authorization(token)
    assert (request.paywall.id, request.environment, request.user) == (paywall.id, "live", "u-1")
    body, _, mac = token.partition(".")
    with pytest.raises(links.InvalidLink):
        shared_mode.open_authorization(body[:-2] + "xx." + mac)
    old = shared_mode.authorize_url("https://x", paywall.id, "live", "u-1", now=time.time() - 7200)
    with pytest.raises(links.InvalidLink, match="expired"):
        shared_mode.open_authorization(old.rsplit("/", 1)[1])
    topup = links.sign(links.LinkClaims("topup", paywall.id, "live", "u-1"))
    with pytest.raises(links.InvalidLink):
        shared_mode.open_authorization(topup)


def _earnings_consistent(paywall_id: str, environment: str) -> None:
    """Per shard, the earnings entries sum to `available + pending`; the counters agree."""
    earnings_consistent(paywall_id, environment)


@given(charge=hs.integers(min_value=1, max_value=10**13), percent=hs.decimals(min_value=0, max_value=100, places=3))
def test_fee_plus_net_is_the_charge_and_the_fee_never_exceeds_its_percentage(charge: int, percent: Decimal) -> None:
    parts = earnings.split(charge, percent)
    assert parts.fee + parts.net == charge
    assert 0 <= parts.fee <= charge * percent / 100 < parts.fee + 1


# ---- mail ---------------------------------------------------------------------------------------


def test_codes_are_mailed_with_ses_in_aws_and_never_logged(
    env: None, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import boto3
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.ses.models import ses_backends

    from paywalls.infra import mailer
    from paywalls.infra.config import settings

    monkeypatch.delenv("PAYWALLS_LOCAL_DEV", raising=False)
    settings.cache_clear()
    mail = mailer.sign_in_code_mail("ivy@example.com", "123456", 10)
    monkeypatch.delenv("EMAIL_FROM", raising=False)
    with pytest.raises(mailer.MailUnavailable):
        mailer.send(mail)
    monkeypatch.setenv("EMAIL_FROM", "wallet@example.com")
    with pytest.raises(mailer.MailUnavailable):  # SES refuses an unverified sender: a clean error
        mailer.send(mail)
    boto3.client("ses", region_name="us-east-1").verify_email_identity(EmailAddress="wallet@example.com")
    with caplog.at_level("DEBUG", logger="paywalls"):
        mailer.send(mail)
    (sent,) = ses_backends[DEFAULT_ACCOUNT_ID]["us-east-1"].sent_messages
    assert sent.destinations["ToAddresses"] == ["ivy@example.com"] and "123456" in sent.body
    assert "123456" not in caplog.text and mailer.sent_mail("ivy@example.com") == []
    settings.cache_clear()


def test_local_stack_prints_the_code_and_keeps_it_in_the_sink(env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from paywalls.infra import mailer
    from paywalls.infra.config import settings

    monkeypatch.setenv("PAYWALLS_LOCAL_DEV", "1")
    settings.cache_clear()
    mailer.send(mailer.sign_in_code_mail("jo@example.com", "654321", 10))
    assert mailer.sent_mail("jo@example.com")[-1].subject.endswith("654321")
    settings.cache_clear()


def test_the_sweeper_returns_a_crashed_requests_hold_to_the_cap_and_a_late_settle_still_earns(env: None) -> None:
    paywall = shared_paywall(fee="50")
    person = funded_person(micros=5_000_000)
    connections.connect(paywall.id, "live", "u", person.id, cap=2_000_000)
    payer = shared_mode.payer(paywall, "live", "u")
    assert payer
    ledger.hold(payer.wallet_id, 1_500_000, hold_id="req_crash", budget=payer.budget, ttl_s=1)
    assert connections.active(paywall.id, "live", "u").remaining == 500_000  # type: ignore[union-attr]
    assert ledger.sweep_expired_holds(now=int(time.time()) + 60) >= 1
    assert connections.active(paywall.id, "live", "u").remaining == 2_000_000  # type: ignore[union-attr]
    assert persons.balance(person.id, "live").available == 5_000_000
    # The invocation was only slow: its settlement arrives after the sweep and is charged directly,
    # still within the cap, still crediting the earnings, once.
    posting = ledger.settle("req_crash", 1_000_000, request_id="req_crash", also=payer.also())
    again = ledger.settle("req_crash", 1_000_000, request_id="req_crash", also=payer.also())
    assert posting.entry.amount == -1_000_000 and again.duplicate
    conn = connections.active(paywall.id, "live", "u")
    assert conn and (conn.remaining, conn.spent) == (1_000_000, 1_000_000)
    assert earnings.summary(paywall.id, "live")["earned"] == "500000"
    consistent(person.wallet_for("live"))
    _earnings_consistent(paywall.id, "live")


@given(
    moment=hs.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=hs.just(UTC)),
    hold_days=hs.integers(min_value=1, max_value=365),
)
def test_an_earning_matures_at_the_first_midnight_after_its_hold_never_sooner(moment: datetime, hold_days: int) -> None:
    day = earnings.matures_on(moment, hold_days)
    midnight = datetime(day.year, day.month, day.day, tzinfo=UTC)
    assert moment + timedelta(days=hold_days) <= midnight < moment + timedelta(days=hold_days + 1)
    assert earnings._bucket_day(earnings.bucket_name(day)) == day
