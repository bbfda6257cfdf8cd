"""Fault injection on the DynamoDB boundary: TransactionConflict and throttling are retried with
jittered backoff; a failed balance check is never retried; exhausted retries write nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from paywalls.billing import ledger
from paywalls.infra import store
from paywalls.infra.aws import ServiceError

pytestmark = pytest.mark.usefixtures("aws_mock")


def conflict() -> ServiceError:
    return ServiceError(
        {
            "Error": {"Code": "TransactionCanceledException", "Message": "Transaction cancelled"},
            "CancellationReasons": [{"Code": "TransactionConflict"}, {"Code": "None"}],
        },
        "TransactWriteItems",
    )


def throttled(code: str = "ThrottlingException") -> ServiceError:
    return ServiceError({"Error": {"Code": code, "Message": "Rate exceeded"}}, "TransactWriteItems")


class FaultyClient:
    """Wraps the real client; the first calls of chosen operations (by botocore's method name, e.g.
    transact_write_items) raise the queued errors."""

    def __init__(self, real: Any, faults: dict[str, list[Exception]]):
        self.real = real
        self.faults = faults
        self.calls: dict[str, int] = {}

    def _fault(self, operation: str) -> None:
        name = "".join(f"_{c.lower()}" if c.isupper() else c for c in operation).lstrip("_")
        self.calls[name] = self.calls.get(name, 0) + 1
        queue = self.faults.get(name)
        if queue:
            raise queue.pop(0)

    def call(self, operation: str, params: dict[str, Any]) -> Any:
        self._fault(operation)
        return self.real.call(operation, params)

    async def acall(self, operation: str, params: dict[str, Any]) -> Any:
        self._fault(operation)
        return await self.real.acall(operation, params)


@pytest.fixture
def inject(monkeypatch: pytest.MonkeyPatch) -> Callable[..., FaultyClient]:
    sleeps: list[float] = []
    monkeypatch.setattr(store.time, "sleep", sleeps.append)

    def install(**faults: list[Exception]) -> FaultyClient:
        client = FaultyClient(store.ddb(), {k: list(v) for k, v in faults.items()})
        monkeypatch.setattr(store, "ddb", lambda: client)
        client.sleeps = sleeps  # type: ignore[attr-defined]
        return client

    return install


def ledger_sum(wallet: str) -> int:
    return sum(e.amount for e in ledger.all_entries(wallet))


def test_credit_retries_transaction_conflicts_then_applies_once(inject: Callable[..., FaultyClient]) -> None:
    client = inject(transact_write_items=[conflict(), conflict(), conflict()])
    posting = ledger.credit("w:c", 700, idempotency_key="dep-1")
    assert client.calls["transact_write_items"] == 4
    assert not posting.duplicate
    wallet = ledger.get_wallet("w:c")
    assert (wallet.balance, wallet.available) == (700, 700)
    assert ledger_sum("w:c") == 700 and len(list(ledger.all_entries("w:c"))) == 1
    delays = client.sleeps  # type: ignore[attr-defined]
    assert len(delays) == 3 and all(0 <= d <= store.MAX_DELAY_S for d in delays)


@pytest.mark.parametrize(
    "code", ["ThrottlingException", "ProvisionedThroughputExceededException", "RequestLimitExceeded"]
)
def test_hold_retries_throttling(inject: Callable[..., FaultyClient], code: str) -> None:
    ledger.credit("w:t", 100, idempotency_key="seed")
    client = inject(transact_write_items=[throttled(code), throttled(code)])
    held = ledger.hold("w:t", 60, hold_id="h-throttle")
    assert held.amount == 60 and client.calls["transact_write_items"] == 3
    assert ledger.get_wallet("w:t").available == 40


def test_failed_balance_check_is_not_retried(inject: Callable[..., FaultyClient]) -> None:
    ledger.credit("w:f", 10, idempotency_key="seed")
    client = inject()
    with pytest.raises(ledger.InsufficientFunds):
        ledger.hold("w:f", 11, hold_id="h-too-big")
    assert client.calls["transact_write_items"] == 1
    with pytest.raises(ledger.InsufficientFunds):
        ledger.charge("w:f", 11, idempotency_key="too-big")
    # The charge saw the shortfall on its read and never attempted a write.
    assert client.calls["transact_write_items"] == 1
    assert ledger.get_wallet("w:f").available == 10


def test_exhausted_retries_write_nothing(inject: Callable[..., FaultyClient]) -> None:
    inject(transact_write_items=[conflict() for _ in range(store.MAX_ATTEMPTS)])
    with pytest.raises(store.StoreUnavailable):
        ledger.credit("w:x", 500, idempotency_key="dep-x")
    assert not ledger.get_wallet("w:x").exists
    assert list(ledger.all_entries("w:x")) == []
    # The same key afterwards applies exactly once.
    assert not ledger.credit("w:x", 500, idempotency_key="dep-x").duplicate
    assert ledger.get_wallet("w:x").balance == 500


def test_settle_under_conflicts_settles_exactly_once(inject: Callable[..., FaultyClient]) -> None:
    ledger.credit("w:s", 1_000, idempotency_key="seed")
    ledger.hold("w:s", 400, hold_id="h-s")
    inject(transact_write_items=[conflict(), throttled()])
    first = ledger.settle("h-s", 150, model="m", request_id="req_1")
    second = ledger.settle("h-s", 150, model="m", request_id="req_1")
    assert not first.duplicate and second.duplicate and first.entry.id == second.entry.id
    wallet = ledger.get_wallet("w:s")
    assert (wallet.balance, wallet.available) == (850, 850)
    assert ledger_sum("w:s") == 850


def test_release_after_settle_is_a_no_op() -> None:
    ledger.credit("w:r", 300, idempotency_key="seed")
    ledger.hold("w:r", 300, hold_id="h-r")
    ledger.settle("h-r", 100)
    assert ledger.release("h-r") is False
    assert ledger.get_wallet("w:r").available == 200


def test_sweeper_releases_only_expired_holds() -> None:
    ledger.credit("w:e", 1_000, idempotency_key="seed")
    ledger.hold("w:e", 100, hold_id="h-old", ttl_s=-1)
    ledger.hold("w:e", 200, hold_id="h-new", ttl_s=600)
    assert ledger.sweep_expired_holds() == 1
    assert ledger.sweep_expired_holds() == 0
    assert ledger.get_wallet("w:e").available == 800
    # A request that outlived its hold still pays for what it used, from available funds only.
    late = ledger.settle("h-old", 40, request_id="req_late")
    assert late.entry.amount == -40
    assert ledger.get_wallet("w:e").balance == 960


def test_amounts_must_be_positive_integers() -> None:
    for bad in (0, -5, 1.5, True):
        with pytest.raises(ValueError):
            ledger.credit("w:v", bad, idempotency_key="k")  # type: ignore[arg-type]
    assert not ledger.get_wallet("w:v").exists


def make_budget(pk: str, remaining: int) -> ledger.Budget:
    store.put({"pk": pk, "sk": "CAP", "remaining": remaining, "spent": 0})
    return ledger.Budget(pk, "CAP")


def budget_state(budget: ledger.Budget) -> tuple[int, int]:
    item = store.get(budget.pk, budget.sk)
    assert item is not None
    return item["remaining"], item["spent"]


def test_budget_caps_holds_and_charges_and_gets_unused_parts_back() -> None:
    ledger.credit("w:b", 10_000, idempotency_key="seed")
    cap = make_budget("CAP#1", 1_000)
    ledger.hold("w:b", 600, hold_id="hb1", budget=cap)
    with pytest.raises(ledger.BudgetExceeded):
        ledger.hold("w:b", 500, hold_id="hb2", budget=cap)
    assert ledger.get_wallet("w:b").available == 9_400, "a refused hold reserves nothing"
    ledger.settle("hb1", 250)
    assert budget_state(cap) == (750, 250)
    with pytest.raises(ledger.BudgetExceeded):
        ledger.charge("w:b", 800, idempotency_key="c1", budget=cap)
    ledger.charge("w:b", 700, idempotency_key="c2", budget=cap)
    assert budget_state(cap) == (50, 950)
    ledger.hold("w:b", 50, hold_id="hb3", budget=cap, ttl_s=-1)
    assert ledger.sweep_expired_holds() == 1
    assert budget_state(cap) == (50, 950), "the sweeper returns a swept hold to its budget"
    wallet = ledger.get_wallet("w:b")
    assert wallet.balance == wallet.available == 10_000 - 250 - 700


def test_also_items_land_with_the_charge_or_not_at_all() -> None:
    ledger.credit("w:a", 1_000, idempotency_key="seed")

    def earnings(entry: ledger.Entry) -> list[dict]:
        return [
            {
                "Update": {
                    "TableName": store.table_name(),
                    "Key": store.key("EARN#p", "S0"),
                    "UpdateExpression": "ADD earned :x",
                    "ExpressionAttributeValues": {":x": store.N(-entry.amount)},
                }
            }
        ]

    ledger.hold("w:a", 400, hold_id="ha", ttl_s=60)
    ledger.settle("ha", 300, also=earnings)
    ledger.settle("ha", 300, also=earnings)  # duplicate: no second credit
    ledger.charge("w:a", 100, idempotency_key="k", also=earnings)
    with pytest.raises(ledger.InsufficientFunds):
        ledger.charge("w:a", 10_000, idempotency_key="k2", also=earnings)
    assert store.get("EARN#p", "S0")["earned"] == 400  # type: ignore[index]
