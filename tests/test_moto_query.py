"""The local engine's Query (devserver.moto_patches): same answers as moto's own, at O(result) cost.

- Differential: random writes (put, update that adds/removes the index key, delete, transactions,
  failed transactions that roll back) then random queries (key conditions, Limit, paging with
  ExclusiveStartKey, both directions, the GSI); every page must equal what moto's original Query
  answers on the same data.
- Cost: with 10,000 entries in one partition and 10,000 items elsewhere, a ledger page and a GSI
  query hand moto only the candidates of their page, and never list the table (counted, not timed).
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from moto import mock_aws

from devserver import moto_patches
from devserver.stack import create_tables

TABLE = "PaywallsTable"
PARTITIONS = ["WALLET#a", "WALLET#b", "HOLD#x"]
SORT_KEYS = [f"ENTRY#{i:03d}" for i in range(12)] + ["IDEM#k", "WALLET", "HOLD"]
GSI_KEYS = ["HOLDEXP#00", "HOLDEXP#01", "USERS#p"]


@pytest.fixture
def dynamodb():
    moto_patches.install()
    with mock_aws():
        create_tables()
        yield boto3.client("dynamodb", region_name="us-east-1")


def _original(fn):
    """Run `fn` with moto's own Query (the patch switched off for the call)."""
    from moto.dynamodb.models.table import Table

    patched_query, patched_all = Table.query, Table.all_items
    Table.query, Table.all_items = moto_patches._original_query, moto_patches._original_all_items
    try:
        return fn()
    finally:
        Table.query, Table.all_items = patched_query, patched_all


def _pages(client, **query: Any) -> list[list[dict[str, Any]]]:
    pages = []
    while True:
        answer = client.query(TableName=TABLE, **query)
        pages.append(answer["Items"])
        if "LastEvaluatedKey" not in answer or len(pages) > 50:
            return pages
        query["ExclusiveStartKey"] = answer["LastEvaluatedKey"]


partition, sort_key, maybe_gsi = (
    st.sampled_from(PARTITIONS),
    st.sampled_from(SORT_KEYS),
    st.sampled_from([None, *GSI_KEYS]),
)
write = st.one_of(
    st.tuples(st.sampled_from(["put", "update"]), partition, sort_key, maybe_gsi),
    st.tuples(st.just("delete"), partition, sort_key, st.none()),
    st.tuples(st.sampled_from(["tx", "failed-tx"]), partition, sort_key, st.sampled_from(GSI_KEYS)),
)

key_condition = st.one_of(
    st.just(("pk = :p", {})),
    st.sampled_from(SORT_KEYS).map(lambda k: ("pk = :p AND sk = :v", {":v": {"S": k}})),
    st.sampled_from(SORT_KEYS).map(lambda k: ("pk = :p AND sk < :v", {":v": {"S": k}})),
    st.sampled_from(SORT_KEYS).map(lambda k: ("pk = :p AND sk <= :v", {":v": {"S": k}})),
    st.sampled_from(SORT_KEYS).map(lambda k: ("pk = :p AND sk > :v", {":v": {"S": k}})),
    st.sampled_from(SORT_KEYS).map(lambda k: ("pk = :p AND sk >= :v", {":v": {"S": k}})),
    st.sampled_from(["ENTRY#", "ENTRY#00", "IDEM#", "W", "ZZ"]).map(
        lambda k: ("pk = :p AND begins_with(sk, :v)", {":v": {"S": k}})
    ),
    st.tuples(st.sampled_from(SORT_KEYS), st.sampled_from(SORT_KEYS)).map(
        lambda ab: ("pk = :p AND sk BETWEEN :a AND :b", {":a": {"S": min(ab)}, ":b": {"S": max(ab)}})
    ),
)


def _apply(client, op: str, pk: str, sk: str, gsi: str | None) -> None:
    item: dict[str, Any] = {"pk": {"S": pk}, "sk": {"S": sk}, "n": {"N": "1"}}
    if gsi:
        item.update({"gsi1pk": {"S": gsi}, "gsi1sk": {"S": f"{sk}#{pk}"}})
    if op == "put":
        client.put_item(TableName=TABLE, Item=item)
    elif op == "update":
        key = {"pk": {"S": pk}, "sk": {"S": sk}}
        if gsi:
            client.update_item(
                TableName=TABLE,
                Key=key,
                UpdateExpression="SET gsi1pk = :g, gsi1sk = :s ADD n :one",
                ExpressionAttributeValues={":g": {"S": gsi}, ":s": {"S": sk}, ":one": {"N": "1"}},
            )
        else:
            client.update_item(TableName=TABLE, Key=key, UpdateExpression="REMOVE gsi1pk, gsi1sk")
    elif op == "delete":
        client.delete_item(TableName=TABLE, Key={"pk": {"S": pk}, "sk": {"S": sk}})
    else:
        other = {"pk": {"S": "WALLET#tx"}, "sk": {"S": sk}, "gsi1pk": {"S": gsi}, "gsi1sk": {"S": sk}}
        items = [{"Put": {"TableName": TABLE, "Item": item}}, {"Put": {"TableName": TABLE, "Item": other}}]
        if op == "failed-tx":
            items.append(
                {
                    "ConditionCheck": {
                        "TableName": TABLE,
                        "Key": {"pk": {"S": "NOPE"}, "sk": {"S": "NOPE"}},
                        "ConditionExpression": "attribute_exists(pk)",
                    }
                }
            )
        try:
            client.transact_write_items(TransactItems=items)
        except client.exceptions.TransactionCanceledException:
            assert op == "failed-tx"


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    writes=st.lists(write, max_size=40),
    queries=st.lists(
        st.tuples(
            st.sampled_from([*PARTITIONS, "WALLET#tx"]), key_condition, st.sampled_from([None, 1, 2, 5]), st.booleans()
        ),
        min_size=1,
        max_size=6,
    ),
    gsi_queries=st.lists(
        st.tuples(st.sampled_from(GSI_KEYS), st.sampled_from([None, 1, 3]), st.booleans()), max_size=3
    ),
)
def test_query_answers_like_moto(dynamodb, writes, queries, gsi_queries):
    client = dynamodb
    # Indexes built early (queries before any write) and late (first query after the writes) must agree.
    _check(client, queries, gsi_queries)
    for op in writes:
        _apply(client, *op)
    _check(client, queries, gsi_queries)
    for item in client.scan(TableName=TABLE)["Items"]:  # the next example starts from an empty table
        client.delete_item(TableName=TABLE, Key={"pk": item["pk"], "sk": item["sk"]})


def _check(client, queries, gsi_queries) -> None:
    table_queries = [
        {
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": {":p": {"S": pk}, **values},
            "ScanIndexForward": forward,
            **({"Limit": limit} if limit else {}),
        }
        for pk, (condition, values), limit, forward in queries
    ]
    index_queries = [
        {
            "IndexName": "gsi1",
            "KeyConditionExpression": "gsi1pk = :g",
            "ExpressionAttributeValues": {":g": {"S": gsi}},
            "ScanIndexForward": forward,
            **({"Limit": limit} if limit else {}),
        }
        for gsi, limit, forward in gsi_queries
    ]
    for query in table_queries + index_queries:
        ours = _pages(client, **query)
        theirs = _original(lambda q=query: _pages(client, **q))
        # Pages are cut at the same items; moto may add one empty last page where it saw more
        # (non-matching) items after the limit. DynamoDB allows both: a client pages until no key.
        assert [i for page in ours for i in page] == [i for page in theirs for i in page], query
        assert all(len(page) <= query.get("Limit", 10**9) for page in ours), query


def test_a_ledger_page_and_a_gsi_query_cost_their_result_not_the_table(dynamodb, monkeypatch):
    client = dynamodb
    from moto.dynamodb.models import dynamodb_backends

    table = dynamodb_backends["123456789012"]["us-east-1"].get_table(TABLE)
    for i in range(10_000):
        table.put_item({"pk": {"S": "WALLET#big"}, "sk": {"S": f"ENTRY#{i:012d}"}, "amount": {"N": "1"}})
        table.put_item(
            {
                "pk": {"S": f"WALLET#u{i}"},
                "sk": {"S": "WALLET"},
                "gsi1pk": {"S": f"USERS#{i % 500}"},
                "gsi1sk": {"S": f"u{i}"},
            }
        )
    table.put_item({"pk": {"S": "HOLD#h1"}, "sk": {"S": "HOLD"}, "gsi1pk": {"S": "HOLDEXP#07"}, "gsi1sk": {"S": "1"}})

    listed: list[int] = []
    seen: list[int] = []
    original_all_items = moto_patches._original_all_items
    monkeypatch.setattr(moto_patches, "_original_all_items", lambda t: listed.append(1) or original_all_items(t))
    original_before = type(table)._item_comes_before_dct

    def counting(self, *args: Any, **kwargs: Any) -> bool:
        seen.append(1)
        return original_before(self, *args, **kwargs)

    monkeypatch.setattr(type(table), "_item_comes_before_dct", counting)

    newest_entries: dict[str, Any] = {
        "TableName": TABLE,
        "KeyConditionExpression": "pk = :p AND begins_with(sk, :e)",
        "ExpressionAttributeValues": {":p": {"S": "WALLET#big"}, ":e": {"S": "ENTRY#"}},
        "ScanIndexForward": False,
        "Limit": 20,
    }
    first = client.query(**newest_entries)
    assert [i["sk"]["S"] for i in first["Items"]] == [f"ENTRY#{i:012d}" for i in range(9_999, 9_979, -1)]
    second = client.query(**newest_entries, ExclusiveStartKey=first["LastEvaluatedKey"])
    assert [i["sk"]["S"] for i in second["Items"]] == [f"ENTRY#{i:012d}" for i in range(9_979, 9_959, -1)]
    # The second page skipped nothing item by item: the start key was found by bisection.
    assert len(seen) <= 1, f"{len(seen)} items walked to find the start of the page"
    assert not listed, "a table query listed the whole table"

    holds = client.query(
        TableName=TABLE,
        IndexName="gsi1",
        KeyConditionExpression="gsi1pk = :g",
        ExpressionAttributeValues={":g": {"S": "HOLDEXP#07"}},
    )
    assert [i["pk"]["S"] for i in holds["Items"]] == ["HOLD#h1"]
    listed.clear()
    users = client.query(
        TableName=TABLE,
        IndexName="gsi1",
        KeyConditionExpression="gsi1pk = :g",
        ExpressionAttributeValues={":g": {"S": "USERS#3"}},
    )
    assert len(users["Items"]) == 20
    assert not listed, "the index, once built, is maintained: no query lists the table again"
