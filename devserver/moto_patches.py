"""Fixes to moto's DynamoDB engine that the local stack (and the in-process tests) install.

1. Transactions. moto's transact_write_items deep-copies the *whole table* once per item of every transaction so it
can roll back: each transaction costs O(table size), and a long `make run` session or a test suite
slows down with every write (measured: ~1 ms per transaction on an empty table, tens of ms after a
few thousand items). This version checks every condition first and snapshots only the items it
touches, with the same semantics: all conditions are evaluated against the state before the
transaction, and either every write lands or none does.

2. Queries. moto's Query builds and sorts the list of *every item of the table* on each call, then
walks it: a ledger page or a sweep costs O(table) (measured: a ledger page 6 ms -> 418 ms from 10 to
10k entries), and in `make run` it holds the engine's one lock that long. Here a Query sees only the
candidates it can return:
- on the table: the partition's sort keys are kept sorted (maintained on every write), so the key
  condition, the ExclusiveStartKey and the Limit become a slice found by bisection: O(log n + page);
- on a global secondary index: an index hash value -> item keys map (built on first use, maintained
  on every write): O(items under that index key).
moto's own query then runs unchanged on those candidates (same ordering, paging, filters and
projections), so the semantics are moto's; only the work is smaller.

3. Streams (the table's StreamSpecification; devserver/event_sources.py reads them). moto appends a
record per item write, including each item of a transaction (tests/test_event_sources.py checks);
here a transaction that fails half-way also takes back the records of the writes it undoes (DynamoDB
never streams a cancelled transaction), a shard keeps the last STREAM_RETENTION records (moto keeps
all, for as long as `make run` lives; an older iterator starts at the oldest record kept, as on a
trimmed real stream), and GetRecords forgets the iterator it consumed (moto keeps every one issued)."""

from __future__ import annotations

import bisect
import contextvars
import copy
from typing import Any

from moto.dynamodb.comparisons import get_filter_expression
from moto.dynamodb.exceptions import (
    ConditionalCheckFailed,
    MockValidationException,
    MultipleTransactionsException,
    TooManyTransactionsException,
    TransactionCanceledException,
    TransactWriteSingleOpException,
)
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.dynamo_type import DynamoType
from moto.dynamodb.models.table import StreamShard, Table
from moto.dynamodbstreams.models import DynamoDBStreamsBackend

_OPERATIONS = {"ConditionCheck", "Put", "Delete", "Update"}


def _key_of(backend: DynamoDBBackend, op_type: str, op: dict[str, Any]) -> dict[str, Any]:
    if op_type != "Put":
        return op["Key"]
    table = backend.get_table(op["TableName"])
    attrs = op["Item"]
    key = {table.hash_key_attr: attrs[table.hash_key_attr]}
    if table.range_key_attr is not None:
        key[table.range_key_attr] = attrs[table.range_key_attr]
    return key


def transact_write_items(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
    if len(transact_items) > 100:
        raise TooManyTransactionsException()
    parsed: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    seen: set[tuple[str, str]] = set()
    for item in transact_items:
        if len(item) > 1:
            raise TransactWriteSingleOpException
        op_type, op = next(iter(item.items()))
        if op_type not in _OPERATIONS:
            raise MockValidationException("Unsupported transaction operation")
        key = _key_of(self, op_type, op)
        identity = (str(op["TableName"]), str(dict(sorted(key.items()))))
        if identity in seen:
            raise MultipleTransactionsException()
        seen.add(identity)
        parsed.append((op_type, op, key))

    # Phase 1: every condition against the state before the transaction; nothing is written.
    errors: list[tuple[Any, Any, Any]] = []
    for _op_type, op, key in parsed:
        condition = op.get("ConditionExpression")
        current = self.get_item(op["TableName"], key)
        if condition is not None and not get_filter_expression(
            condition, op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
        ).expr(current):
            old = (
                current.to_json()["Attributes"]
                if current and op.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD"
                else None
            )
            errors.append(("ConditionalCheckFailed", "The conditional request failed", old))
        else:
            errors.append((None, None, None))
    if any(code is not None for code, _, _ in errors):
        raise TransactionCanceledException(errors)

    # Phase 2: apply, keeping copies of only the touched items to undo a failure half-way.
    snapshots: list[tuple[Any, Any, Any, Any]] = []
    streamed = [
        (table.stream_shard, len(table.stream_shard.items))
        for table in {id(t): t for t in (self.get_table(op["TableName"]) for _t, op, _k in parsed)}.values()
        if table.stream_shard is not None
    ]
    try:
        for op_type, op, key in parsed:
            table = self.get_table(op["TableName"])
            hash_value, range_value = self.get_keys_value(table, key)
            snapshots.append((table, hash_value, range_value, copy.deepcopy(table.get_item(hash_value, range_value))))
            names, values = op.get("ExpressionAttributeNames"), op.get("ExpressionAttributeValues")
            if op_type == "Put":
                self.put_item(
                    op["TableName"], op["Item"], expression_attribute_names=names, expression_attribute_values=values
                )
            elif op_type == "Delete":
                self.delete_item(
                    op["TableName"], key, expression_attribute_names=names, expression_attribute_values=values
                )
            elif op_type == "Update":
                self.update_item(
                    op["TableName"],
                    key,
                    update_expression=op["UpdateExpression"],
                    expression_attribute_names=names,
                    expression_attribute_values=values,
                )
    except (ConditionalCheckFailed, Exception):
        for table, hash_value, range_value, previous in reversed(snapshots):
            if previous is None:
                table.delete_item(hash_value, range_value)
            elif range_value is not None:
                table.items[hash_value][range_value] = previous
            else:
                table.items[hash_value] = previous
            _touched(table, hash_value, range_value)
        for shard, length in streamed:
            del shard.items[length:]
        raise


# ---- query indexes (module doc, 2) ----------------------------------------------------------------

_SORTED = "_paywalls_sorted_keys"  # Table attr: {hash DynamoType: sorted [range DynamoType]} (lazy)
_GSI = "_paywalls_gsi"  # Table attr: {index name: ({hash DynamoType: {item key}}, {item key: hash})}
_candidates: contextvars.ContextVar[list[Any] | None] = contextvars.ContextVar("moto_query_candidates", default=None)
_original_all_items = Table.all_items
_original_query = Table.query
_original_put_item = DynamoDBBackend.put_item
_original_delete_item = DynamoDBBackend.delete_item
_original_update_item = DynamoDBBackend.update_item
_TOP = "\U0010ffff"  # sorts after any character a key can continue with (begins_with upper bound)


def _item(table: Table, hash_value: Any, range_value: Any) -> Any:
    partition = table.items.get(hash_value)
    if partition is None:
        return None
    if table.range_key_attr is None:
        return partition
    return partition.get(range_value)


def _gsi_hash_attr(index: Any) -> str | None:
    hashes = [k["AttributeName"] for k in index.schema if k["KeyType"] == "HASH"]
    return hashes[0] if len(hashes) == 1 else None


def _touched(table: Table, hash_value: Any, range_value: Any) -> None:
    """Bring the query indexes of one item key up to date after any write to it."""
    item = _item(table, hash_value, range_value)
    sorted_keys = getattr(table, _SORTED, None)
    if sorted_keys is not None and range_value is not None and hash_value in sorted_keys:
        keys = sorted_keys[hash_value]
        at = bisect.bisect_left(keys, range_value)
        present = at < len(keys) and keys[at] == range_value
        if item is not None and not present:
            keys.insert(at, range_value)
        elif item is None and present:
            del keys[at]
    indexes = getattr(table, _GSI, None)
    if indexes is None:
        return
    key = (hash_value, range_value)
    for name, (members, of_key) in indexes.items():
        index = next(i for i in table.global_indexes if i.name == name)
        attr = _gsi_hash_attr(index)
        new = item.attrs.get(attr) if item is not None and attr else None
        old = of_key.get(key)
        if (old is None and new is None) or (old is not None and new is not None and old == new):
            continue
        if old is not None:
            members[old].discard(key)
            if not members[old]:
                del members[old]
            del of_key[key]
        if new is not None:
            members.setdefault(new, set()).add(key)
            of_key[key] = new


def _gsi_members(table: Table, index: Any) -> tuple[dict[Any, set[Any]], dict[Any, Any]]:
    indexes = getattr(table, _GSI, None)
    if indexes is None:
        indexes = {}
        setattr(table, _GSI, indexes)
    if index.name not in indexes:
        attr = _gsi_hash_attr(index)
        members: dict[Any, set[Any]] = {}
        of_key: dict[Any, Any] = {}
        for item in _original_all_items(table):
            value = item.attrs.get(attr)
            if value is not None:
                key = (item.hash_key, item.range_key)
                members.setdefault(value, set()).add(key)
                of_key[key] = value
        indexes[index.name] = (members, of_key)
    return indexes[index.name]


def _partition_keys(table: Table, hash_value: Any) -> list[Any]:
    sorted_keys = getattr(table, _SORTED, None)
    if sorted_keys is None:
        sorted_keys = {}
        setattr(table, _SORTED, sorted_keys)
    if hash_value not in sorted_keys:
        sorted_keys[hash_value] = sorted(table.items.get(hash_value, {}))
    return sorted_keys[hash_value]


def _key_range(keys: list[Any], comparison: str | None, values: list[Any]) -> tuple[int, int] | None:
    """The slice of sorted `keys` a key condition selects, or None if it is not understood."""
    n = len(keys)
    op = (comparison or "").upper()
    if not op:
        return 0, n
    if op in ("=", "EQ"):
        return bisect.bisect_left(keys, values[0]), bisect.bisect_right(keys, values[0])
    if op in ("<", "LT"):
        return 0, bisect.bisect_left(keys, values[0])
    if op in ("<=", "LE"):
        return 0, bisect.bisect_right(keys, values[0])
    if op in (">", "GT"):
        return bisect.bisect_right(keys, values[0]), n
    if op in (">=", "GE"):
        return bisect.bisect_left(keys, values[0]), n
    if op == "BETWEEN":
        return bisect.bisect_left(keys, values[0]), bisect.bisect_right(keys, values[1])
    if op == "BEGINS_WITH" and values[0].type == "S":
        prefix = values[0].value
        return bisect.bisect_left(keys, values[0]), bisect.bisect_left(keys, DynamoType({"S": prefix + _TOP}))
    return None


def _table_candidates(
    table: Table,
    hash_key: Any,
    comparison: str | None,
    values: list[Any],
    limit: int | None,
    start: dict[str, Any] | None,
    forward: bool,
) -> list[Any] | None:
    if table.range_key_attr is None or hash_key is None:
        return None
    keys = _partition_keys(table, hash_key)
    bounds = _key_range(keys, comparison, values)
    if bounds is None:
        return None
    lo, hi = bounds
    if start is not None and table.range_key_attr in start:
        after = DynamoType(start[table.range_key_attr])
        if forward:
            lo = max(lo, bisect.bisect_right(keys, after))
        else:
            hi = min(hi, bisect.bisect_left(keys, after))
    if limit:
        # One more than the page, so moto still sees that the page was cut (LastEvaluatedKey).
        if forward:
            hi = min(hi, lo + limit + 1)
        else:
            lo = max(lo, hi - limit - 1)
    partition = table.items[hash_key]
    return [partition[k] for k in keys[lo:hi]]


def query(self: Table, hash_key: Any, range_comparison: Any, range_objs: Any, limit: Any, exclusive_start_key: Any,
          scan_index_forward: Any, projection_expressions: Any, index_name: Any = None, consistent_read: bool = False,
          filter_expression: Any = None, hash_key_conditions: Any = None, range_key_conditions: Any = None,
          **filter_kwargs: Any) -> Any:  # fmt: skip
    candidates = None
    if not filter_kwargs:
        if index_name is None and len(range_key_conditions or []) <= 1:
            candidates = _table_candidates(
                self, hash_key, range_comparison, range_objs, limit, exclusive_start_key, scan_index_forward
            )
        if index_name is not None and hash_key_conditions and len(hash_key_conditions) == 1:
            index = next((i for i in self.global_indexes or [] if i.name == index_name), None)
            if index is not None and _gsi_hash_attr(index) == hash_key_conditions[0][0]:
                members, _ = _gsi_members(self, index)
                keys = members.get(hash_key_conditions[0][1], set())
                candidates = sorted(
                    (i for i in (_item(self, h, r) for h, r in keys) if i is not None),
                    key=lambda x: (x.hash_key, x.range_key) if x.range_key else x.hash_key,
                )
    token = _candidates.set(candidates)
    try:
        return _original_query(
            self, hash_key, range_comparison, range_objs, limit, exclusive_start_key, scan_index_forward,
            projection_expressions, index_name=index_name, consistent_read=consistent_read,
            filter_expression=filter_expression, hash_key_conditions=hash_key_conditions,
            range_key_conditions=range_key_conditions, **filter_kwargs,
        )  # fmt: skip
    finally:
        _candidates.reset(token)


def all_items(self: Table) -> list[Any]:
    candidates = _candidates.get()
    return candidates if candidates is not None else _original_all_items(self)


def _key_values(backend: DynamoDBBackend, table_name: str, key: dict[str, Any]) -> tuple[Any, Any]:
    return backend.get_keys_value(backend.get_table(table_name), key)


def put_item(self: DynamoDBBackend, table_name: str, item_attrs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
    result = _original_put_item(self, table_name, item_attrs, *args, **kwargs)
    table = self.get_table(table_name)
    _touched(table, *_key_values(self, table_name, _key_of(self, "Put", {"TableName": table_name, "Item": item_attrs})))
    return result


def delete_item(self: DynamoDBBackend, table_name: str, key: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return _original_delete_item(self, table_name, key, *args, **kwargs)
    finally:
        _touched(self.get_table(table_name), *_key_values(self, table_name, key))


def update_item(self: DynamoDBBackend, table_name: str, key: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return _original_update_item(self, table_name, key, *args, **kwargs)
    finally:
        _touched(self.get_table(table_name), *_key_values(self, table_name, key))


# ---- streams (module doc, 3) -----------------------------------------------------------------------

STREAM_RETENTION = 20_000
_original_stream_add = StreamShard.add


def stream_add(self: StreamShard, old: Any, new: Any) -> None:
    _original_stream_add(self, old, new)
    excess = len(self.items) - STREAM_RETENTION
    if excess > 0:
        # Sequence numbers stay those already issued: the first kept record is the new start.
        del self.items[:excess]
        self.starting_sequence_number += excess


def stream_get(self: StreamShard, start: int, quantity: int) -> list[dict[str, Any]]:
    begin = max(0, start - self.starting_sequence_number)
    return [i.to_json() for i in self.items[begin : begin + quantity]]


def get_records(self: DynamoDBStreamsBackend, iterator_arn: str, limit: int) -> dict[str, Any]:
    return self.shard_iterators.pop(iterator_arn).get(limit)  # type: ignore[no-any-return]


_installed = False


def install() -> None:
    global _installed
    if not _installed:
        DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]
        DynamoDBBackend.put_item = put_item  # type: ignore[method-assign]
        DynamoDBBackend.delete_item = delete_item  # type: ignore[method-assign]
        DynamoDBBackend.update_item = update_item  # type: ignore[method-assign]
        Table.query = query  # type: ignore[method-assign]
        Table.all_items = all_items  # type: ignore[method-assign]
        StreamShard.add = stream_add  # type: ignore[method-assign]
        StreamShard.get = stream_get  # type: ignore[method-assign]
        DynamoDBStreamsBackend.get_records = get_records  # type: ignore[method-assign]
        _installed = True
