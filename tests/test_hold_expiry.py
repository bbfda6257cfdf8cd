"""Hold expiry without hot keys (ledger: HOLDEXP#{minute}#{shard}) and a sweeper whose cost is
O(expired holds): counted DynamoDB calls and index-key spreads, never timings."""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator
from typing import Any

import pytest

from paywalls.billing import ledger
from paywalls.infra import aws, store

pytestmark = pytest.mark.usefixtures("aws_mock")


@pytest.fixture
def calls() -> Iterator[collections.Counter[str]]:
    counted: collections.Counter[str] = collections.Counter()

    def count(service: str, operation: str, params: dict[str, Any]) -> None:
        counted[operation] += 1

    client = aws.client("dynamodb")
    client.hooks.append(count)
    yield counted
    client.hooks.remove(count)


def test_one_minute_of_holds_spreads_over_all_index_shards_evenly() -> None:
    """At 10,000 chat requests/s each hold writes its index key twice (placed, then settled), so a
    minute's keys take 20,000 writes/s: the shards must share them evenly to stay under ~500/s."""
    expires_at = 1_900_000_000
    keys = collections.Counter(
        ledger._expiry_index_key(f"req_{i:032x}", expires_at, expires_at - 600)[0] for i in range(64_000)
    )
    assert len(keys) == ledger.HOLD_EXPIRY_SHARDS == 64
    assert {k.rsplit("#", 1)[0] for k in keys} == {f"HOLDEXP#{expires_at // 60}"}, "one minute, one bucket"
    per_key_per_s = max(keys.values()) / sum(keys.values()) * 20_000
    assert per_key_per_s <= 500, per_key_per_s
    # The next minute's holds go to other keys: no key lives longer than its minute.
    later = ledger._expiry_index_key("req_x", expires_at + 60, expires_at - 540)[0]
    assert later.split("#")[1] == str(expires_at // 60 + 1)


def test_sweep_costs_the_expired_holds_not_the_live_or_settled_ones(calls) -> None:
    ledger.credit("w:sweep", 10_000_000, idempotency_key="seed")
    for i in range(60):
        ledger.hold("w:sweep", 10, hold_id=f"settled-{i}", ttl_s=-1)
        ledger.settle(f"settled-{i}", 5)
    for i in range(60):
        ledger.hold("w:sweep", 10, hold_id=f"live-{i}", ttl_s=600)
    for i in range(7):
        ledger.hold("w:sweep", 10, hold_id=f"crashed-{i}", ttl_s=-1)
    ledger.sweep_expired_holds()  # the first run ever looks back (bootstrap) and sets the cursor
    calls.clear()
    for i in range(5):
        ledger.hold("w:sweep", 10, hold_id=f"crashed-late-{i}", ttl_s=-1)
    calls.clear()

    released = ledger.sweep_expired_holds()

    assert released == 5
    # The open minutes (two, three if a minute turned meanwhile) and the parked stuck holds' key.
    assert calls["Query"] <= 3 * ledger.HOLD_EXPIRY_SHARDS + 1, f"{calls['Query']} index queries"
    assert calls["BatchGetItem"] == 1, "expired holds are read in one batch"
    assert calls["TransactWriteItems"] == 5, "one release per expired hold, nothing per live or settled one"
    wallet = ledger.get_wallet("w:sweep")
    assert wallet.available == wallet.balance - 60 * 10, "only the 60 live holds still hold money"


def test_the_sweeper_closes_minutes_once_and_still_sees_holds_expiring_later(calls) -> None:
    ledger.credit("w:later", 1_000, idempotency_key="seed")
    now = int(time.time())
    ledger.hold("w:later", 100, hold_id="h-90s", ttl_s=90)
    ledger.hold("w:later", 200, hold_id="h-10m", ttl_s=600)
    assert ledger.sweep_expired_holds(now) == 0
    assert ledger.sweep_expired_holds(now + 200) == 1, "h-90s expired"
    cursor = store.get(*ledger.SWEEP_CURSOR)
    assert cursor is not None and cursor["bucket"] >= (now + 200 - ledger.SWEEP_GRACE_S) // 60 - 1
    calls.clear()
    assert ledger.sweep_expired_holds(now + 200) == 0
    assert calls["Query"] <= 3 * ledger.HOLD_EXPIRY_SHARDS + 1, "closed minutes are not read again"
    assert ledger.sweep_expired_holds(now + 700) == 1, "h-10m expired, in a minute not yet closed"
    assert ledger.get_wallet("w:later").available == 1_000


def test_the_cursor_never_moves_back() -> None:
    assert store.advance("SWEEPER", "HOLDEXP", "bucket", 10)
    assert not store.advance("SWEEPER", "HOLDEXP", "bucket", 9)
    assert store.get("SWEEPER", "HOLDEXP")["bucket"] == 10


def test_holds_live_at_most_the_swept_lookback() -> None:
    with pytest.raises(ValueError):
        ledger.hold("w:x", 1, hold_id="too-long", ttl_s=ledger.MAX_HOLD_TTL_S + 1)
