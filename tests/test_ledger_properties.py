"""Property-based ledger tests: random operation sequences keep every SPEC §4 invariant.

A model of the wallet runs beside the real ledger (moto in-process); after every step:
- the entries sum to the balance and each entry's balance_after is the running sum;
- available == balance - active holds, and only a refund can take available below zero;
- repeating an operation with the same key / hold id changes nothing."""

from __future__ import annotations

import itertools
import os

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from paywalls.billing import ledger
from paywalls.infra import aws
from tests.conftest import create_tables


def reset_tables() -> None:
    client = aws.client("dynamodb")
    for name in client.list_tables()["TableNames"]:
        client.delete_table(TableName=name)
    create_tables()


COUNTS: dict[str, int] = {}
_ids = itertools.count()

amounts = st.integers(min_value=1, max_value=5_000)


class LedgerMachine(RuleBasedStateMachine):
    @initialize()
    def fresh_wallet(self) -> None:
        # moto copies the whole table on every transaction (for rollback), so each example starts
        # from an empty table to keep the run fast.
        reset_tables()
        self.wallet = f"pw_prop:live:u{next(_ids)}"
        self.balance = 0
        self.holds: dict[str, int] = {}
        self.closed_holds: set[str] = set()
        self.keys: dict[str, int] = {}  # idempotency key -> signed amount it moved
        self.refunded = False

    def _count(self, name: str) -> None:
        COUNTS[name] = COUNTS.get(name, 0) + 1

    @property
    def available(self) -> int:
        return self.balance - sum(self.holds.values())

    @rule(amount=st.integers(min_value=1, max_value=20_000), key=st.sampled_from([f"d{i}" for i in range(10)]))
    def credit(self, amount: int, key: str) -> None:
        if key in self.keys:
            if self.keys[key] == amount:
                posting = ledger.credit(self.wallet, amount, idempotency_key=key)
                assert posting.duplicate
                self._count("duplicate credit (no-op)")
            else:
                with pytest.raises(ledger.IdempotencyMismatch):
                    ledger.credit(self.wallet, amount, idempotency_key=key)
                self._count("reused key refused")
            return
        posting = ledger.credit(self.wallet, amount, idempotency_key=key)
        assert not posting.duplicate and posting.entry.amount == amount
        self.keys[key] = amount
        self.balance += amount
        self._count("credit")

    @precondition(lambda self: any(v > 0 for v in self.keys.values()))
    @rule(data=st.data())
    def replay_credit(self, data: st.DataObject) -> None:
        key = data.draw(st.sampled_from(sorted(k for k, v in self.keys.items() if v > 0)))
        posting = ledger.credit(self.wallet, self.keys[key], idempotency_key=key)
        assert posting.duplicate and posting.entry.amount == self.keys[key]
        self._count("duplicate credit (no-op)")

    @rule(amount=st.integers(min_value=1, max_value=2_000))
    def hold(self, amount: int) -> None:
        hold_id = f"h{next(_ids)}"
        if amount > self.available:
            with pytest.raises(ledger.InsufficientFunds):
                ledger.hold(self.wallet, amount, hold_id=hold_id)
            self._count("hold refused (insufficient)")
            return
        ledger.hold(self.wallet, amount, hold_id=hold_id)
        self.holds[hold_id] = amount
        self._count("hold")

    @precondition(lambda self: self.holds)
    @rule(data=st.data(), fraction=st.floats(min_value=0, max_value=1.5))
    def settle(self, data: st.DataObject, fraction: float) -> None:
        hold_id = data.draw(st.sampled_from(sorted(self.holds)))
        held = self.holds.pop(hold_id)
        cost = int(held * fraction)  # > held is capped to the hold by the ledger
        posting = ledger.settle(hold_id, cost, model="m", prompt_tokens=1, completion_tokens=1)
        assert posting.entry.amount == -min(cost, held)
        self.balance -= min(cost, held)
        self.closed_holds.add(hold_id)
        again = ledger.settle(hold_id, cost)
        assert again.duplicate and again.entry.id == posting.entry.id
        self._count("settle (+ duplicate settle no-op)")

    @precondition(lambda self: self.holds)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        hold_id = data.draw(st.sampled_from(sorted(self.holds)))
        del self.holds[hold_id]
        assert ledger.release(hold_id) is True
        assert ledger.release(hold_id) is False
        self.closed_holds.add(hold_id)
        self._count("release (+ duplicate release no-op)")

    @rule(amount=amounts, key=st.sampled_from([f"c{i}" for i in range(10)]))
    def charge(self, amount: int, key: str) -> None:
        if key in self.keys:
            if self.keys[key] == -amount:
                assert ledger.charge(self.wallet, amount, idempotency_key=key).duplicate
                self._count("duplicate charge (no-op)")
            else:
                with pytest.raises(ledger.IdempotencyMismatch):
                    ledger.charge(self.wallet, amount, idempotency_key=key)
                self._count("reused key refused")
            return
        if amount > self.available:
            with pytest.raises(ledger.InsufficientFunds):
                ledger.charge(self.wallet, amount, idempotency_key=key)
            self._count("charge refused (insufficient)")
            return
        ledger.charge(self.wallet, amount, idempotency_key=key)
        self.keys[key] = -amount
        self.balance -= amount
        self._count("charge")

    @rule(amount=st.integers(min_value=1, max_value=500), rare=st.integers(0, 3))
    def refund(self, amount: int, rare: int) -> None:
        if rare:
            return  # refunds are rare events; without this they would dominate every sequence
        key = f"re_{next(_ids)}"
        ledger.debit(self.wallet, amount, idempotency_key=key)
        assert ledger.debit(self.wallet, amount, idempotency_key=key).duplicate
        self.balance -= amount
        self.refunded = True
        self._count("refund debit (+ duplicate no-op)")

    @invariant()
    def ledger_matches_model(self) -> None:
        wallet = ledger.get_wallet(self.wallet)
        entries = list(ledger.all_entries(self.wallet))
        assert wallet.balance == self.balance
        assert sum(e.amount for e in entries) == wallet.balance
        running = 0
        for entry in entries:
            running += entry.amount
            assert entry.balance_after == running
        assert wallet.available == self.available
        if not self.refunded:
            assert wallet.balance >= 0 and wallet.available >= 0


@pytest.mark.usefixtures("aws_mock")
def test_random_operation_sequences_keep_ledger_invariants(capsys: pytest.CaptureFixture[str]) -> None:
    COUNTS.clear()
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(
            max_examples=int(os.environ.get("LEDGER_EXAMPLES", "60")),
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
    with capsys.disabled():
        print("\nledger property test, operations checked:", dict(sorted(COUNTS.items())))
    assert COUNTS.get("credit", 0) > 0 and COUNTS.get("settle (+ duplicate settle no-op)", 0) > 0
