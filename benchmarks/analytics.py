"""The usage report from the roll-ups against the ledger-scanning report it replaced, on the same data.

1. Real ledgers of growing size (users x entries per user), written as the ledger writes them and
   folded into roll-ups by the real consumer code (rollups.fold_items): both reports on each, side by
   side. The old one reads every entry of every user; the new one reads SHARDS range queries of
   roll-up items and the top-user boards.
2. 10,000 users and 1,000,000 ledger entries' worth of roll-ups over 30 days and 6 models (the items
   the fold would have written for them: day, hour and day x model items in every shard, full top-user
   boards), and the same report over them. The old report on that data would read 1,000,000 entries:
   its time is extrapolated from its measured cost per entry above.

In-process moto (the engine the tests use), so absolute times are the local engine's, not DynamoDB's;
what matters is how each grows. Run: .venv/bin/python benchmarks/analytics.py [--quick]."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "shared")]
os.environ.update(
    {
        "TABLE_NAME": "PaywallsTable",
        "SECRET_PREFIX": "paywalls/bench",
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
    }
)
os.environ.pop("AWS_ENDPOINT_URL", None)
os.environ.pop("AWS_PROFILE", None)

from moto import mock_aws  # noqa: E402

from devserver import moto_patches  # noqa: E402
from devserver.stack import create_tables  # noqa: E402
from paywalls.analytics import reports, rollups  # noqa: E402
from paywalls.billing import ledger  # noqa: E402
from paywalls.billing.identity import app_wallet_id  # noqa: E402
from paywalls.core.money import format_micros  # noqa: E402
from paywalls.infra import aws, store  # noqa: E402

TODAY = date(2026, 11, 29)
DAYS = 30
MODELS = [f"vendor/model-{i}" for i in range(6)]
REPEAT = 5


# ---- the report this replaced (admin_reports.usage before the roll-ups), kept here only ---------


def old_usage(paywall_id: str, environment: str, start: str | None, end: str | None) -> dict[str, Any]:
    """Aggregates charge entries of every user of the paywall between ISO timestamps [start, end)."""
    totals = {"revenue": 0, "provider_cost": 0, "requests": 0}
    by_model: dict[str, dict[str, int]] = defaultdict(lambda: {"revenue": 0, "provider_cost": 0, "requests": 0})
    by_user: dict[str, dict[str, int]] = defaultdict(lambda: {"revenue": 0, "provider_cost": 0, "requests": 0})
    for item in store.query_all(f"USERS#{paywall_id}#{environment}", index="gsi1"):
        user = item["gsi1sk"]
        for entry in ledger.all_entries(app_wallet_id(paywall_id, environment, user)):
            if entry.type != "charge" or (start and entry.created_at < start) or (end and entry.created_at >= end):
                continue
            for bucket in (totals, by_model[entry.model or "(manual)"], by_user[user]):
                bucket["revenue"] += -entry.amount
                bucket["provider_cost"] += entry.provider_cost or 0
                bucket["requests"] += 1
    return {"revenue": format_micros(totals["revenue"]), "requests": totals["requests"], "by_model": by_model}


# ---- seeding ------------------------------------------------------------------------------------


def batch_put(items: list[dict[str, Any]]) -> None:
    client = store.ddb()
    for i in range(0, len(items), 25):
        pending = {store.table_name(): [{"PutRequest": {"Item": store.encode(x)}} for x in items[i : i + 25]]}
        while pending:
            pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}


def seed_ledger(paywall_id: str, users: int, per_user: int) -> list[dict[str, Any]]:
    """Wallets (listed in gsi1 as the ledger lists them) and their charge entries, spread over DAYS."""
    items: list[dict[str, Any]] = []
    entries: list[dict[str, Any]] = []
    for u in range(users):
        user = f"user-{u:05d}"
        wallet = app_wallet_id(paywall_id, "live", user)
        balance = 100_000_000
        for v in range(1, per_user + 1):
            amount = 1_000 + (u * 7 + v * 13) % 5_000
            balance -= amount
            day = TODAY - timedelta(days=(u + v) % DAYS)
            entries.append(
                {
                    "pk": f"WALLET#{wallet}",
                    "sk": f"ENTRY#{v:012d}",
                    "entry_id": f"le_{uuid.uuid4().hex[:24]}",
                    "type": "charge",
                    "amount": -amount,
                    "balance_after": balance,
                    "created_at": f"{day.isoformat()}T{(u + v) % 24:02d}:30:00.000Z",
                    "version": v,
                    "model": MODELS[(u + v) % len(MODELS)],
                    "prompt_tokens": 300,
                    "completion_tokens": 200,
                    "provider_cost": amount // 2,
                }
            )
        items.append(
            {
                "pk": f"WALLET#{wallet}",
                "sk": "WALLET",
                "balance": balance,
                "available": balance,
                "version": per_user,
                "gsi1pk": f"USERS#{paywall_id}#live",
                "gsi1sk": user,
            }
        )
    batch_put(items + entries)
    return entries


def aggregate_rollups(entries: list[dict[str, Any]]) -> None:
    """The roll-up items the fold leaves for `entries` (day, day x model, boards), written in bulk: the
    consumer's one transaction per entry is too slow on the local engine for thousands of entries
    (the smallest tier is folded for real, and every tier checks its totals against the old report)."""
    cells: dict[tuple[str, str], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    spend: dict[tuple[str, str, str], int] = defaultdict(int)  # (paywall, day, user) -> spend
    for fact in filter(None, map(rollups.fact_of, entries)):
        pk = rollups.shard_pk(fact.paywall_id, fact.environment, fact.shard)
        for sk in (rollups.day_sk(fact.day), rollups.model_sk(fact.day, fact.model or rollups.MANUAL_MODEL)):
            for name, value in fact.measures.items():
                cells[(pk, sk)][name] += value
        if fact.user:
            spend[(fact.paywall_id, fact.day, fact.user)] += fact.spend
    boards: dict[tuple[str, str], dict[str, int]] = defaultdict(dict)
    for (paywall_id, day, user), value in spend.items():
        boards[(rollups.board_pk(paywall_id, "live", day), f"S#{rollups.board_shard(user):02d}")][user] = value
    items = [{"pk": pk, "sk": sk, **values} for (pk, sk), values in cells.items()]
    for (pk, sk), top in boards.items():
        best = dict(sorted(top.items(), key=lambda kv: (-kv[1], kv[0]))[: rollups.TOP_USERS])
        items.append({"pk": pk, "sk": sk, "top": best, "version": 1})
    batch_put(items)


def seed_big_rollups(paywall_id: str, users: int, entries: int) -> None:
    """What folding `entries` charges of `users` users over DAYS days and the MODELS would leave in the
    items the report reads: per shard, each day's total, its 24 hours and its models; per day, the
    boards (full: TOP_USERS users each)."""
    per_cell = entries // (DAYS * rollups.SHARDS)
    items: list[dict[str, Any]] = []
    for shard in range(rollups.SHARDS):
        pk = rollups.shard_pk(paywall_id, "live", shard)
        for d in range(DAYS):
            day = (TODAY - timedelta(days=d)).isoformat()
            measures = {"requests": per_cell, "revenue": per_cell * 3_000, "provider_cost": per_cell * 1_500}
            measures |= {"tokens_in": per_cell * 300, "tokens_out": per_cell * 200}
            items.append({"pk": pk, "sk": rollups.day_sk(day), **measures})
            # (hour items too in a real table: a report longer than two days never reads them)
            items += [{"pk": pk, "sk": rollups.model_sk(day, m), **measures} for m in MODELS]
    for d in range(DAYS):
        day = (TODAY - timedelta(days=d)).isoformat()
        for s in range(rollups.BOARD_SHARDS):
            top = {f"user-{(s * 977 + k * 31 + d) % users:05d}": 50_000 + k for k in range(rollups.TOP_USERS)}
            items.append(
                {"pk": rollups.board_pk(paywall_id, "live", day), "sk": f"S#{s:02d}", "top": top, "version": 1}
            )
    batch_put(items)


# ---- measuring ----------------------------------------------------------------------------------


READ = {"items": 0}


def count_reads() -> None:
    """Count the items every query answers (what a report reads), beside its time."""
    query = store.query

    def counted(*args: Any, **kwargs: Any) -> Any:
        items, last = query(*args, **kwargs)
        READ["items"] += len(items)
        return items, last

    store.query = counted  # type: ignore[assignment]


def items_read(call: Callable[[], Any]) -> int:
    READ["items"] = 0
    call()
    return READ["items"]


def timed(call: Callable[[], Any]) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(REPEAT):
        started = time.perf_counter()
        result = call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller real ledgers (a fast check)")
    args = parser.parse_args()
    tiers = [(20, 10), (100, 10), (300, 10)] if args.quick else [(20, 10), (500, 10), (1000, 20)]
    start, end = (TODAY - timedelta(days=DAYS - 1)).isoformat(), (TODAY + timedelta(days=1)).isoformat()
    moto_patches.install()
    with mock_aws():
        aws.reset_clients()
        create_tables()
        print(f"usage report over {DAYS} days, median of {REPEAT} runs (in-process moto)\n")
        count_reads()
        print(
            f"{'users':>7} {'entries':>10} | {'ledger scan (old)':>18} | {'roll-ups (new)':>15} | "
            "items read old/new | same totals"
        )
        per_entry: list[float] = []
        for n, (users, per_user) in enumerate(tiers):
            paywall_id = f"pw_{uuid.uuid4().hex[:16]}"
            entries = seed_ledger(paywall_id, users, per_user)
            if n == 0:
                rollups.fold_items(entries)  # what the stream consumer does, entry by entry
            else:
                aggregate_rollups(entries)
            old_ms, old = timed(lambda pid=paywall_id: old_usage(pid, "live", start, end))
            new_ms, new = timed(
                lambda pid=paywall_id: reports.usage(pid, "live", start, end, compare=False, today=TODAY)
            )
            same = (old["revenue"], old["requests"]) == (new["revenue"], new["requests"])
            per_entry.append(old_ms / len(entries))
            read_old = items_read(lambda pid=paywall_id: old_usage(pid, "live", start, end))
            read_new = items_read(
                lambda pid=paywall_id: reports.usage(pid, "live", start, end, compare=False, today=TODAY)
            )
            print(
                f"{users:>7} {len(entries):>10} | {old_ms:>15.1f} ms | {new_ms:>12.1f} ms | "
                f"{read_old:>8} / {read_new:<7} | {same}"
            )
        big_users, big_entries = 10_000, 1_000_000
        paywall_id = f"pw_{uuid.uuid4().hex[:16]}"
        seed_big_rollups(paywall_id, big_users, big_entries)
        old_estimate = statistics.median(per_entry) * big_entries
        for compare in (False, True):
            new_ms, new = timed(lambda c=compare: reports.usage(paywall_id, "live", start, end, compare=c, today=TODAY))
            read_new = items_read(
                lambda c=compare: reports.usage(paywall_id, "live", start, end, compare=c, today=TODAY)
            )
            print(
                f"{big_users:>7} {big_entries:>10} | ~{old_estimate / 1000:>12.0f} s * | {new_ms:>12.1f} ms | "
                f"{big_entries + big_users:>8} / {read_new:<7} | {new['requests']} requests, "
                f"{len(new['by_model'])} models, {len(new['by_user'])} top users{', compare' if compare else ''}"
            )
        print(
            f"\n(first row folded entry by entry by the consumer's code; the others' roll-ups written in bulk)"
            "\n* extrapolated: the old report reads every entry (measured cost per entry above x 1,000,000);\n"
            "  the new one reads the same number of roll-up items whatever the users and entries\n"
            f"  ({rollups.SHARDS} shards x {DAYS} days x (1 + models) items + "
            f"{rollups.BOARD_SHARDS} boards per day), with compare=True it reads twice the days."
        )
        aws.reset_clients()


if __name__ == "__main__":
    main()
