"""Roll-up correctness (issue 13): replaying a random stream of ledger entries, with duplicates and
in any order, gives roll-ups equal to a direct sum over the ledger; and the reports read them."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import date
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paywalls.analytics import reports, rollups
from paywalls.core.money import format_micros
from paywalls.infra import store

DAYS = ["2026-11-20", "2026-11-21", "2026-11-22"]
MODELS = ["m/a", "m/b", None]
USERS = ["alice", "bob", "carol:x"]

entry = st.fixed_dictionaries(
    {
        "type": st.sampled_from(["charge", "charge", "charge", "deposit", "refund", "adjustment", "trial"]),
        "amount": st.integers(1, 5_000_000),
        "user": st.sampled_from(USERS),
        "env": st.sampled_from(["live", "test"]),
        "day": st.sampled_from(DAYS),
        "hour": st.integers(0, 23),
        "model": st.sampled_from(MODELS),
        "prompt": st.integers(0, 900),
        "completion": st.integers(0, 900),
        "cost": st.integers(0, 100_000),
        "shared": st.booleans(),
    }
)


def ledger_items(paywall_id: str, raw: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The items the ledger writes for these entries: a default-mode user's wallet entry, or (shared
    mode) the person's wallet entry naming the app plus the paywall's earnings entry."""
    items = []
    for n, e in enumerate(raw):
        entry_id = f"le_{paywall_id[3:]}{n:06d}"  # unique across examples, like real entry ids
        at = f"{e['day']}T{e['hour']:02d}:15:00.000Z"
        signed = -e["amount"] if e["type"] in ("charge", "refund") else e["amount"]
        shared = e["shared"] and e["type"] == "charge"
        wallet = f"person:p1:{e['env']}" if shared else f"{paywall_id}:{e['env']}:{e['user']}"
        item = {
            "pk": f"WALLET#{wallet}",
            "sk": f"ENTRY#{n:012d}",
            "entry_id": entry_id,
            "type": e["type"],
            "amount": signed,
            "created_at": at,
            "metadata": {"paywall_id": paywall_id, "environment": e["env"]} if shared else None,
        }
        if e["type"] == "charge":
            item |= {
                "model": e["model"],
                "prompt_tokens": e["prompt"],
                "completion_tokens": e["completion"],
                "provider_cost": e["cost"],
            }
        items.append(item)
        if shared:
            fee = e["amount"] // 10
            items.append(
                {
                    "pk": f"EARN#{paywall_id}#{e['env']}#07",
                    "sk": f"ENTRY#{at}#{entry_id}",
                    "entry_id": entry_id,
                    "type": "charge",
                    "amount": e["amount"] - fee,
                    "gross": e["amount"],
                    "fee": fee,
                    "user": e["user"],
                    "created_at": at,
                }
            )
    return items


def direct_sums(raw: list[dict[str, Any]], env: str) -> dict[str, Any]:
    """What the roll-ups must say, summed straight from the entries."""
    total: dict[str, int] = defaultdict(int)
    by_day: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    by_model: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    spend: dict[str, int] = defaultdict(int)
    for e in raw:
        if e["env"] != env:
            continue
        adds: dict[str, int] = {}
        if e["type"] == "charge":
            adds = {"requests": 1, "revenue": e["amount"], "provider_cost": e["cost"], "tokens_in": e["prompt"]}
            adds["tokens_out"] = e["completion"]
            if e["shared"]:
                adds["fees"] = e["amount"] // 10
            spend[e["user"]] += e["amount"]
            for k, v in adds.items():
                by_model[e["model"] or rollups.MANUAL_MODEL][k] += v
        else:
            name = {"deposit": "deposits", "refund": "refunds", "adjustment": "adjustments", "trial": "trials"}
            adds = {name[e["type"]]: e["amount"]}
        for k, v in adds.items():
            total[k] += v
            by_day[e["day"]][k] += v
    return {"total": total, "by_day": by_day, "by_model": by_model, "spend": spend}


def test_ledger_items_only() -> None:
    assert rollups.fact_of({"pk": "WALLET#pw_1:live:u", "sk": "WALLET", "type": "x"}) is None
    assert rollups.fact_of({"pk": "HOLD#h", "sk": "HOLD"}) is None
    person_topup = {"pk": "WALLET#person:p:live", "sk": "ENTRY#000000000001", "type": "deposit", "amount": 5}
    assert rollups.fact_of(person_topup | {"entry_id": "le_1", "created_at": "2026-01-01T00:00:00Z"}) is None


@pytest.mark.usefixtures("aws_mock")
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    raw=st.lists(entry, min_size=1, max_size=14),
    duplicates=st.lists(st.integers(0, 10_000), max_size=10),
    order=st.randoms(use_true_random=False),
)
def test_replayed_reordered_stream_equals_direct_sum(
    raw: list[dict[str, Any]], duplicates: list[int], order: Any
) -> None:
    paywall_id = f"pw_{uuid.uuid4().hex[:12]}"  # a fresh paywall per example: the table is shared
    items = ledger_items(paywall_id, raw)
    stream = items + [items[i % len(items)] for i in duplicates]
    order.shuffle(stream)
    counted = rollups.fold_items(stream)
    assert counted == len({(i["pk"][:4], i["entry_id"]) for i in items if rollups.fact_of(i)})
    assert rollups.fold_items(items) == 0, "a replay of the whole stream counts nothing"

    for env in ("live", "test"):
        want = direct_sums(raw, env)
        got = reports.usage(paywall_id, env, DAYS[0], "2026-11-23", compare=False, today=date(2026, 11, 29))
        for name in ("revenue", "provider_cost", "fees", "deposits", "refunds", "adjustments", "trials"):
            assert got[name] == format_micros(want["total"][name]), name
        assert got["requests"] == want["total"]["requests"]
        assert (got["tokens_in"], got["tokens_out"]) == (want["total"]["tokens_in"], want["total"]["tokens_out"])
        for row in got["by_day"]:
            assert row["revenue"] == format_micros(want["by_day"][row["date"]]["revenue"])
            assert row["requests"] == want["by_day"][row["date"]]["requests"]
        assert {m: (b["revenue"], b["requests"]) for m, b in got["by_model"].items()} == {
            m: (format_micros(b["revenue"]), b["requests"]) for m, b in want["by_model"].items()
        }
        totals = reports.user_totals(paywall_id, env, USERS)
        assert {u: t["spend"] for u, t in totals.items()} == {u: want["spend"].get(u, 0) for u in USERS}


@pytest.mark.usefixtures("aws_mock")
def test_short_periods_answer_by_hour_and_compare() -> None:
    paywall_id = f"pw_{uuid.uuid4().hex[:12]}"
    raw = [
        {"type": "charge", "amount": 1000, "user": "alice", "env": "live", "day": day, "hour": hour, "model": "m/a"}
        | {"prompt": 1, "completion": 2, "cost": 10, "shared": False}
        for day, hour in (("2026-11-21", 3), ("2026-11-22", 5), ("2026-11-22", 5), ("2026-11-22", 23))
    ]
    rollups.fold_items(ledger_items(paywall_id, raw))
    got = reports.usage(paywall_id, "live", "2026-11-22", "2026-11-23", today=date(2026, 11, 29))
    assert got["requests"] == 3 and got["previous"]["requests"] == 1
    assert len(got["by_hour"]) == 24 and [(h["hour"], h["requests"]) for h in got["by_hour"] if h["requests"]] == [
        ("2026-11-22T05:00:00Z", 2),
        ("2026-11-22T23:00:00Z", 1),
    ]
    assert list(got["by_user"]) == ["alice"] and got["by_user"]["alice"]["spend"] == format_micros(3000)
    week = reports.usage(paywall_id, "live", "2026-11-16", "2026-11-23", today=date(2026, 11, 29))
    assert week["by_hour"] is None and week["requests"] == 4 and len(week["by_day"]) == 7


@pytest.mark.usefixtures("aws_mock")
def test_consumer_reports_the_record_that_failed(monkeypatch: pytest.MonkeyPatch) -> None:
    """ReportBatchItemFailures: a record the store refused is named (Lambda retries from it); the
    others are counted once, and counting them again on the retry changes nothing."""
    import json
    from pathlib import Path

    from devserver.router import load_function_module

    module = load_function_module("functions/analytics", "AnalyticsFunction")
    event = json.loads((Path(__file__).parent.parent / "events" / "analytics-ledger-entry-replayed.json").read_text())
    second = json.loads(json.dumps(event["Records"][0]))
    second["dynamodb"]["NewImage"]["entry_id"] = {"S": "le_second"}
    second["dynamodb"]["SequenceNumber"] = "000000000000000000200"
    event["Records"].append(second)
    real_fold = rollups.fold

    def failing(fact: rollups.Fact) -> bool:
        if fact.entry_id == "le_second":
            raise store.StoreUnavailable("the database is busy, please retry")
        return real_fold(fact)

    class Context:
        function_name, memory_limit_in_mb, aws_request_id = "analytics", 512, "req"
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:analytics"

    monkeypatch.setattr(rollups, "fold", failing)
    answer = module.handler(event, Context())
    assert answer == {"batchItemFailures": [{"itemIdentifier": "000000000000000000200"}]}
    monkeypatch.setattr(rollups, "fold", real_fold)
    assert module.handler(event, Context()) == {"batchItemFailures": []}
    report = reports.usage("pw_demo", "test", "2026-11-20", "2026-11-21", compare=False, today=date(2026, 11, 29))
    assert report["requests"] == 2, "each entry once, the replayed and the retried ones included"


@pytest.mark.usefixtures("aws_mock")
def test_backfill_folds_what_the_stream_never_carried() -> None:
    """ops/backfill_rollups.py: entries written before the stream existed are counted once; those the
    consumer already folded (markers) and a second run count nothing."""
    from ops import backfill_rollups

    paywall_id = f"pw_{uuid.uuid4().hex[:12]}"
    raw = [
        {"type": "charge", "amount": 500 * (n + 1), "user": USERS[n % 3], "env": "live", "day": DAYS[n % 3]}
        | {"hour": n, "model": "m/a", "prompt": 1, "completion": 1, "cost": 0, "shared": n % 2 == 1}
        for n in range(6)
    ]
    items = ledger_items(paywall_id, raw)
    batch = store.ddb()
    for item in items:
        batch.put_item(TableName=store.table_name(), Item=store.encode(item))
    rollups.fold_items(items[:2])  # the live consumer got to these already
    seen, counted = backfill_rollups.backfill(segments=2)
    assert seen >= len(items) and counted == len(items) - 2
    assert backfill_rollups.backfill(segments=2)[1] == 0
    got = reports.usage(paywall_id, "live", DAYS[0], "2026-11-23", compare=False, today=date(2026, 11, 29))
    assert got["requests"] == 6 and got["revenue"] == format_micros(sum(e["amount"] for e in raw))
