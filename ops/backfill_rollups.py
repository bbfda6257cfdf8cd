"""Fold the ledger entries a new deployment's stream never carried into the analytics roll-ups.

The table's stream (and so AnalyticsFunction) sees only entries written after it was enabled, plus
the 24 h it retains at first start: a stack upgraded to the roll-ups has older entries no report
counts. Run this once, with the operator's AWS credentials, within 7 days of the deploy that added
AnalyticsFunction: it scans the table (parallel segments) for ledger entries and folds each through
the same code as the consumer (rollups.fold). An entry the stream already folded has its marker
(kept 7 days, `rollups.SEEN_TTL_S`) and counts nothing, so running it twice, or beside the live
consumer, is harmless; later than 7 days it would count again the entries whose markers expired.

usage: python -m ops.backfill_rollups --table TABLE [--region R] [--segments N]"""

from __future__ import annotations

import argparse
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from paywalls.analytics import rollups
from paywalls.infra import store


def _segment(segment: int, total: int) -> tuple[int, int]:
    """(entries seen, entries counted now) of one scan segment, page by page (never one huge read)."""
    seen = counted = 0
    kwargs: dict[str, Any] = {
        "TableName": store.table_name(),
        "Segment": segment,
        "TotalSegments": total,
        "FilterExpression": "begins_with(sk, :entry)",
        "ExpressionAttributeValues": {":entry": {"S": "ENTRY#"}},
    }
    while True:
        page = store.with_retries(lambda: store.ddb().scan(**kwargs))
        items = [store.decode(i) for i in page.get("Items", [])]
        ledger_items = [i for i in items if rollups.is_ledger_item(i)]
        seen += len(ledger_items)
        counted += rollups.fold_items(ledger_items)
        if "LastEvaluatedKey" not in page:
            return seen, counted
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def backfill(segments: int = 8) -> tuple[int, int]:
    """(ledger entries seen, entries counted now)."""
    with ThreadPoolExecutor(segments) as pool:
        results = list(pool.map(lambda s: _segment(s, segments), range(segments)))
    return sum(r[0] for r in results), sum(r[1] for r in results)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", required=True, help="the stack's PaywallsTable name")
    parser.add_argument("--region", help="AWS region (default: your configuration's)")
    parser.add_argument("--segments", type=int, default=8, help="parallel scan segments")
    args = parser.parse_args(argv)
    os.environ["TABLE_NAME"] = args.table
    if args.region:
        os.environ["AWS_REGION"] = os.environ["AWS_DEFAULT_REGION"] = args.region
    seen, counted = backfill(args.segments)
    print(f"{seen} ledger entries, {counted} folded now, {seen - counted} already counted (or adding nothing)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
