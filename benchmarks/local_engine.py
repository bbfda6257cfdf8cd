"""The local engine's Query cost as data grows: a ledger page (20 newest entries of one wallet) and a
hold-expiry index query, with 10 and with 10,000 entries in the wallet (and as many other items),
under moto's own Query and under devserver.moto_patches, side by side in one run.
Run: .venv/bin/python benchmarks/local_engine.py"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import boto3  # noqa: E402
from moto import mock_aws  # noqa: E402
from moto.dynamodb.models import dynamodb_backends  # noqa: E402
from moto.dynamodb.models.table import Table  # noqa: E402

from devserver import moto_patches  # noqa: E402
from devserver.stack import create_tables  # noqa: E402

REPEAT = 15


def timed(call) -> float:
    samples = []
    for _ in range(REPEAT):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def main() -> None:
    moto_patches.install()
    patched = (Table.query, Table.all_items)
    original = (moto_patches._original_query, moto_patches._original_all_items)
    print(f"{'entries':>8} {'query':<12} {'moto ms':>9} {'patched ms':>11} {'ratio':>7}")
    for entries in (10, 10_000):
        with mock_aws():
            create_tables()
            client = boto3.client("dynamodb", region_name="us-east-1")
            table = dynamodb_backends["123456789012"]["us-east-1"].get_table("PaywallsTable")
            for i in range(entries):
                table.put_item({"pk": {"S": "WALLET#w"}, "sk": {"S": f"ENTRY#{i:012d}"}, "amount": {"N": "1"}})
                table.put_item({"pk": {"S": f"WALLET#u{i}"}, "sk": {"S": "WALLET"}})
            table.put_item(
                {"pk": {"S": "HOLD#h"}, "sk": {"S": "HOLD"}, "gsi1pk": {"S": "HOLDEXP#00"}, "gsi1sk": {"S": "1"}}
            )
            queries = {
                "ledger page": lambda client=client: client.query(
                    TableName="PaywallsTable",
                    KeyConditionExpression="pk = :p AND begins_with(sk, :e)",
                    ExpressionAttributeValues={":p": {"S": "WALLET#w"}, ":e": {"S": "ENTRY#"}},
                    ScanIndexForward=False,
                    Limit=20,
                ),
                "expired holds": lambda client=client: client.query(
                    TableName="PaywallsTable",
                    IndexName="gsi1",
                    KeyConditionExpression="gsi1pk = :g AND gsi1sk <= :now",
                    ExpressionAttributeValues={":g": {"S": "HOLDEXP#00"}, ":now": {"S": "9"}},
                ),
            }
            for name, call in queries.items():
                Table.query, Table.all_items = original
                before = timed(call)
                Table.query, Table.all_items = patched
                after = timed(call)
                print(f"{entries:>8} {name:<12} {before:>9.2f} {after:>11.2f} {after / before:>7.3f}")


if __name__ == "__main__":
    main()
