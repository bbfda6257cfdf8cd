"""Concurrency on the real local engine (moto over HTTP behind one lock, as `make run` serves it):
hundreds of simultaneous operations on one wallet never spend more than it holds."""

from __future__ import annotations

import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest

from paywalls.billing import ledger

pytestmark = pytest.mark.usefixtures("engine")

# Unique per run: against a real table (make test-aws) earlier runs' wallets and holds remain.
RUN = uuid.uuid4().hex[:8]


def run_all(fn, count: int, workers: int = 64) -> Counter[str]:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return Counter(pool.map(fn, range(count)))


def test_hundreds_of_simultaneous_holds_never_exceed_the_balance(capsys: pytest.CaptureFixture[str]) -> None:
    wallet = f"pw_conc{RUN}:live:holds"
    ledger.credit(wallet, 100, idempotency_key="seed")

    def try_hold(i: int) -> str:
        try:
            ledger.hold(wallet, 1, hold_id=f"conc-hold-{RUN}-{i}")
            return "held"
        except ledger.InsufficientFunds:
            return "refused"

    outcome = run_all(try_hold, 400)
    with capsys.disabled():
        print(f"\n400 simultaneous holds of 1 on a balance of 100: {dict(outcome)}")
    assert outcome["held"] == 100 and outcome["refused"] == 300
    state = ledger.get_wallet(wallet)
    assert (state.balance, state.available) == (100, 0)


def test_simultaneous_charges_and_settles_keep_ledger_equal_to_balance(capsys: pytest.CaptureFixture[str]) -> None:
    wallet = f"pw_conc{RUN}:live:charges"
    ledger.credit(wallet, 1_000, idempotency_key="seed")

    def charge_or_settle(i: int) -> str:
        try:
            if i % 2:
                ledger.charge(wallet, 7, idempotency_key=f"c{i}")
                return "charged"
            ledger.hold(wallet, 9, hold_id=f"conc-settle-{RUN}-{i}")
            ledger.settle(f"conc-settle-{RUN}-{i}", 5, request_id=f"req{i}")
            return "settled"
        except ledger.InsufficientFunds:
            return "refused"

    outcome = run_all(charge_or_settle, 300)
    state = ledger.get_wallet(wallet)
    entries = list(ledger.all_entries(wallet))
    with capsys.disabled():
        print(f"\n300 simultaneous charges/settles on a balance of 1000: {dict(outcome)}, final {state}")
    assert state.balance >= 0 and state.available == state.balance
    assert sum(e.amount for e in entries) == state.balance
    assert state.balance == 1_000 - 7 * outcome["charged"] - 5 * outcome["settled"]
    assert [e.version for e in entries] == list(range(1, len(entries) + 1))


def test_simultaneous_duplicate_credits_apply_once() -> None:
    wallet = f"pw_conc{RUN}:live:dupes"

    def credit(_: int) -> str:
        return "duplicate" if ledger.credit(wallet, 250, idempotency_key="same-key").duplicate else "applied"

    outcome = run_all(credit, 50)
    assert outcome == Counter({"applied": 1, "duplicate": 49})
    assert ledger.get_wallet(wallet).balance == 250


def test_awaited_holds_and_settlements_on_one_loop_keep_the_invariants(capsys: pytest.CaptureFixture[str]) -> None:
    """The chat path's calls (ahold, aget_wallet, asettle, arelease: the same rules driven by awaited
    calls on the http transport, no worker threads), 120 at once on one event loop: no hold beyond
    the balance, each hold closed once, and the entries still sum to the balance."""
    import anyio

    from paywalls.infra import aws

    assert aws.client("dynamodb").kind == "http"
    wallet = f"pw_conc{RUN}:live:awaited"
    ledger.credit(wallet, 600, idempotency_key="seed")
    outcome: Counter[str] = Counter()

    async def request(i: int) -> None:
        hold_id = f"conc-await-{RUN}-{i}"
        try:
            await ledger.ahold(wallet, 10, hold_id=hold_id)
        except ledger.InsufficientFunds:
            outcome["refused"] += 1
            return
        snapshot = await ledger.aget_wallet(wallet)  # as a stream's prefetch: often stale by settle time
        if i % 4 == 0:
            assert await ledger.arelease(hold_id)
            outcome["released"] += 1
            return
        posting = await ledger.asettle(hold_id, 6, request_id=f"req{i}", snapshot=snapshot)
        assert not posting.duplicate
        again = await ledger.asettle(hold_id, 6, request_id=f"req{i}")  # a retried settlement
        assert again.duplicate and again.entry.id == posting.entry.id
        outcome["settled"] += 1

    async def main() -> None:
        async with anyio.create_task_group() as tasks:
            for i in range(120):
                tasks.start_soon(request, i)

    anyio.run(main)
    with capsys.disabled():
        print(f"\n120 awaited requests holding 10 of 600: {dict(outcome)}")
    state = ledger.get_wallet(wallet)
    assert outcome["settled"] + outcome["released"] + outcome["refused"] == 120
    assert outcome["settled"] + outcome["released"] >= 60  # at least a balance's worth of holds placed
    assert state.available == state.balance == 600 - 6 * outcome["settled"]
    assert sum(e.amount for e in ledger.all_entries(wallet)) == state.balance
