"""DynamoDB adapter: attribute encoding, the single table's key shapes, and transaction execution with
jittered backoff on the failures DynamoDB says are transient (TransactionConflict, throttling).

The service's errors stop here: a failed condition is `ConditionFailed` (one item) or
`TransactionCancelled` (a transaction), exhausted retries `StoreUnavailable`; no module above this one
catches `aws.ServiceError` (or botocore's ClientError).

Blocking and awaitable, one logic ("Steps" below): a rule that must also run on the event loop
without a worker thread (the ledger's hold, settle, release: the chat path) is written once as a
generator that yields its store operations (`Get`, `Transact`, `Update`, `Backoff`) and receives
their results; `run(steps)` drives it with blocking calls, `await arun(steps)` with awaited ones
(aws.JsonClient.acall). A failed operation is thrown into the generator where it yielded, so the
rule handles `TransactionCancelled` as it would around a plain call."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Generator, Iterator
from typing import Any, NamedTuple, ParamSpec, TypeVar

from paywalls.core.errors import PaywallsError, Unavailable
from paywalls.infra import aws, telemetry
from paywalls.infra.aws_json import ServiceError
from paywalls.infra.config import settings

log = logging.getLogger(__name__)

T = TypeVar("T")
P = ParamSpec("P")

RETRYABLE_CODES = frozenset(
    {
        "TransactionConflict",  # inside CancellationReasons
        "TransactionConflictException",
        "TransactionInProgressException",
        "ThrottlingException",
        "ThrottlingError",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
    }
)
MAX_ATTEMPTS = 8
BASE_DELAY_S = 0.02
MAX_DELAY_S = 1.0


class StoreUnavailable(Unavailable):
    """DynamoDB kept refusing (throttling/conflicts) after every retry; callers answer 503/429."""

    code = "busy"
    retry_after = 1


class ConditionFailed(PaywallsError):
    """A single-item write's condition did not hold: nothing was written. `item` is the item as it
    was, when the write asked for it (ReturnValuesOnConditionCheckFailure ALL_OLD) and it existed.
    Of no kind: the caller decides what a failed condition means (a rate limit, a used code...)."""

    def __init__(self, item: dict[str, Any] | None = None):
        super().__init__("the condition of the write did not hold")
        self.item = item


CONDITION_FAILED_CODE = "ConditionalCheckFailedException"
# The reason DynamoDB gives in a cancelled transaction for an item whose condition did not hold
# (TransactionCancelled.codes[i]); retryable reasons never reach callers (RETRYABLE_CODES).
CONDITION_FAILED = "ConditionalCheckFailed"


def _condition_failed(exc: ServiceError) -> ConditionFailed | None:
    if exc.response.get("Error", {}).get("Code") != CONDITION_FAILED_CODE:
        return None
    item = exc.response.get("Item")
    return ConditionFailed(decode(item) if item else None)


# ---- attribute values ---------------------------------------------------------------------------


def S(value: str) -> dict[str, str]:
    return {"S": value}


def N(value: int) -> dict[str, str]:
    return {"N": str(int(value))}


def decode(item: dict[str, Any]) -> dict[str, Any]:
    """Low-level attribute map -> plain Python (numbers as int: we store no fractional numbers)."""
    return {k: _decode_value(v) for k, v in item.items()}


def _decode_value(value: dict[str, Any]) -> Any:
    ((kind, raw),) = value.items()
    if kind == "S":
        return raw
    if kind == "N":
        return int(raw)
    if kind == "BOOL":
        return raw
    if kind == "NULL":
        return None
    if kind == "M":
        return decode(raw)
    if kind == "L":
        return [_decode_value(v) for v in raw]
    if kind == "SS":
        return set(raw)
    raise ValueError(f"unsupported attribute type {kind}")


def encode_value(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int):
        return N(value)
    if isinstance(value, str):
        return S(value)
    if value is None:
        return {"NULL": True}
    if isinstance(value, dict):
        return {"M": {str(k): encode_value(v) for k, v in value.items()}}
    if isinstance(value, list | tuple):
        return {"L": [encode_value(v) for v in value]}
    raise TypeError(f"cannot store {type(value).__name__}")


def encode(item: dict[str, Any]) -> dict[str, Any]:
    return {k: encode_value(v) for k, v in item.items() if v is not None}


# ---- table access -------------------------------------------------------------------------------


def table_name() -> str:
    return settings().table_name


def ddb() -> Any:
    return aws.client("dynamodb")


def key(pk: str, sk: str) -> dict[str, Any]:
    return {"pk": S(pk), "sk": S(sk)}


def _get_params(pk: str, sk: str, consistent: bool) -> dict[str, Any]:
    return {"TableName": table_name(), "Key": key(pk, sk), "ConsistentRead": consistent}


def _item_of(response: dict[str, Any]) -> dict[str, Any] | None:
    item = response.get("Item")
    return decode(item) if item else None


def get(pk: str, sk: str, *, consistent: bool = True) -> dict[str, Any] | None:
    return _item_of(with_retries(lambda: ddb().call("GetItem", _get_params(pk, sk, consistent))))


async def aget(pk: str, sk: str, *, consistent: bool = True) -> dict[str, Any] | None:
    params = _get_params(pk, sk, consistent)
    return _item_of(await awith_retries(lambda: ddb().acall("GetItem", params)))


def _write(call: Callable[[], T]) -> T:
    """A single-item write with retries; its failed condition as ConditionFailed."""
    try:
        return with_retries(call)
    except ServiceError as exc:
        failed = _condition_failed(exc)
        if failed is None:
            raise
        raise failed from None


def put(item: dict[str, Any], *, condition: str | None = None, values: dict | None = None) -> None:
    """PutItem; ConditionFailed when `condition` does not hold."""
    kwargs: dict[str, Any] = {"TableName": table_name(), "Item": encode(item)}
    if condition:
        kwargs["ConditionExpression"] = condition
    if values:
        kwargs["ExpressionAttributeValues"] = values
    _write(lambda: ddb().call("PutItem", kwargs))


def update(
    pk: str,
    sk: str,
    expression: str,
    *,
    condition: str | None = None,
    values: dict[str, Any] | None = None,
    names: dict[str, str] | None = None,
    return_new: bool = False,
) -> dict[str, Any] | None:
    """UpdateItem; ConditionFailed when `condition` does not hold. With `return_new`, the item as the
    update left it (decoded), else None."""
    kwargs: dict[str, Any] = {"TableName": table_name(), "Key": key(pk, sk), "UpdateExpression": expression}
    if condition:
        kwargs["ConditionExpression"] = condition
    if values:
        kwargs["ExpressionAttributeValues"] = values
    if names:
        kwargs["ExpressionAttributeNames"] = names
    if return_new:
        kwargs["ReturnValues"] = "ALL_NEW"
    response = _write(lambda: ddb().call("UpdateItem", kwargs))
    attributes = response.get("Attributes")
    return decode(attributes) if return_new and attributes else None


def advance(pk: str, sk: str, attribute: str, value: int) -> bool:
    """Set a numeric `attribute` to `value` unless it is already at least that (a monotonic
    cursor: a slower concurrent writer can never move it back). False if it was not moved."""
    try:
        update(
            pk,
            sk,
            "SET #a = :v",
            condition="attribute_not_exists(#a) OR #a < :v",
            names={"#a": attribute},
            values={":v": N(value)},
        )
    except ConditionFailed:
        return False
    return True


def query(
    pk: str,
    *,
    sk_prefix: str | None = None,
    newest_first: bool = False,
    limit: int | None = None,
    start_key: dict[str, str] | None = None,
    index: str | None = None,
    sk_below: str | None = None,
    sk_between: tuple[str, str] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, str] | None]:
    """One page of a partition (or of a gsi1 partition). Returns (items, key to continue after)."""
    pk_name, sk_name = ("gsi1pk", "gsi1sk") if index else ("pk", "sk")
    expr = f"{pk_name} = :pk"
    values: dict[str, Any] = {":pk": S(pk)}
    if sk_prefix is not None:
        expr += f" AND begins_with({sk_name}, :prefix)"
        values[":prefix"] = S(sk_prefix)
    elif sk_below is not None:
        expr += f" AND {sk_name} < :below"
        values[":below"] = S(sk_below)
    elif sk_between is not None:
        expr += f" AND {sk_name} BETWEEN :low AND :high"
        values[":low"], values[":high"] = S(sk_between[0]), S(sk_between[1])
    kwargs: dict[str, Any] = {
        "TableName": table_name(),
        "KeyConditionExpression": expr,
        "ExpressionAttributeValues": values,
        "ScanIndexForward": not newest_first,
    }
    if index:
        kwargs["IndexName"] = index
    else:
        kwargs["ConsistentRead"] = True
    if limit:
        kwargs["Limit"] = limit
    if start_key:
        kwargs["ExclusiveStartKey"] = {k: S(v) for k, v in start_key.items()}
    response = with_retries(lambda: ddb().call("Query", kwargs))
    items = [decode(i) for i in response.get("Items", [])]
    last = response.get("LastEvaluatedKey")
    return items, (decode(last) if last else None)


def query_all(pk: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
    start: dict[str, str] | None = None
    while True:
        items, start = query(pk, start_key=start, **kwargs)
        yield from items
        if not start:
            return


def batch_get(keys: list[tuple[str, str]]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for i in range(0, len(keys), 100):
        pending: dict[str, Any] = {table_name(): {"Keys": [key(pk, sk) for pk, sk in keys[i : i + 100]]}}
        for _ in range(MAX_ATTEMPTS):
            response = with_retries(lambda p=pending: ddb().call("BatchGetItem", {"RequestItems": p}))
            found.extend(decode(x) for x in response.get("Responses", {}).get(table_name(), []))
            pending = response.get("UnprocessedKeys") or {}
            if not pending:
                break
            backoff(1)
    return found


# ---- transactions -------------------------------------------------------------------------------


class TransactionCancelled(PaywallsError):
    """A condition in the transaction failed. `codes[i]` is the reason for the i-th item; `items[i]`
    is that item as it was, when the operation asked for it (ReturnValuesOnConditionCheckFailure
    ALL_OLD) and it existed: the state that made the condition fail, without another read."""

    def __init__(self, codes: list[str], items: list[dict[str, Any] | None] | None = None):
        super().__init__(", ".join(codes))
        self.codes = codes
        self.items = items or [None] * len(codes)


def _transact_params(items: list[dict[str, Any]], token_seed: str | None) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"TransactItems": items}
    if token_seed:
        # ClientRequestToken makes a retry of this exact transaction (e.g. after a timeout whose write
        # did land) a no-op in DynamoDB for 10 minutes; derived from the operation, never random.
        kwargs["ClientRequestToken"] = hashlib.sha256(token_seed.encode()).hexdigest()[:36]
    return kwargs


def _cancelled(exc: ServiceError) -> PaywallsError:
    """A refused transaction as _Retryable (a conflict: try again) or TransactionCancelled (a failed
    condition: retrying a failed balance check would be wrong)."""
    if exc.aws_code != "TransactionCanceledException":
        raise exc
    reasons = exc.response.get("CancellationReasons", [])
    codes = [r.get("Code", "None") for r in reasons]
    if any(c in RETRYABLE_CODES for c in codes):
        return _Retryable(codes)
    items = [decode(r["Item"]) if r.get("Item") else None for r in reasons]
    return TransactionCancelled(codes, items)


def transact(items: list[dict[str, Any]], *, token_seed: str | None = None) -> None:
    """TransactWriteItems with retries on transient failures only. A failed condition is raised as
    TransactionCancelled at once."""
    params = _transact_params(items, token_seed)

    def attempt() -> None:
        try:
            ddb().call("TransactWriteItems", params)
        except ServiceError as exc:
            raise _cancelled(exc) from exc

    with_retries(attempt)


async def atransact(items: list[dict[str, Any]], *, token_seed: str | None = None) -> None:
    """`transact`, awaited."""
    params = _transact_params(items, token_seed)

    async def attempt() -> None:
        try:
            await ddb().acall("TransactWriteItems", params)
        except ServiceError as exc:
            raise _cancelled(exc) from exc

    await awith_retries(attempt)


class _Retryable(PaywallsError):
    def __init__(self, codes: list[str]):
        super().__init__(", ".join(codes))


def _is_retryable(exc: Exception) -> bool:
    if isinstance(exc, _Retryable):
        return True
    if isinstance(exc, ServiceError):
        return exc.aws_code in RETRYABLE_CODES
    return False


def _jitter_s(attempt: int) -> float:
    # "Full jitter": spreads retries of colliding writers apart instead of re-colliding in lockstep.
    return random.uniform(0, min(MAX_DELAY_S, BASE_DELAY_S * (2**attempt)))


def backoff(attempt: int) -> None:
    time.sleep(_jitter_s(attempt))


def _retry_delay(exc: Exception, attempt: int, attempts: int) -> float:
    """After `exc` on attempt `attempt`: how long to wait before the next one. Raises `exc` when it
    is not transient, StoreUnavailable when the attempts are used up."""
    if not _is_retryable(exc):
        raise exc
    log.warning("dynamodb transient failure, retrying", extra={"attempt": attempt + 1, "error": str(exc)})
    if attempt + 1 == attempts:
        telemetry.emit({"StoreUnavailable": 1})
        raise StoreUnavailable("the database is busy, please retry") from exc
    telemetry.emit({"DynamoDBRetries": 1})
    return _jitter_s(attempt)


def with_retries(call: Callable[[], T], *, attempts: int = MAX_ATTEMPTS) -> T:
    for attempt in range(attempts):
        try:
            return call()
        except Exception as exc:
            delay = _retry_delay(exc, attempt, attempts)
        time.sleep(delay)
    raise AssertionError("unreachable")


async def awith_retries(call: Callable[[], Awaitable[T]], *, attempts: int = MAX_ATTEMPTS) -> T:
    for attempt in range(attempts):
        try:
            return await call()
        except Exception as exc:
            delay = _retry_delay(exc, attempt, attempts)
        await asyncio.sleep(delay)
    raise AssertionError("unreachable")


# ---- steps: one rule, driven blocking or awaited (module doc) --------------------------------------


# The operations a rule yields. NamedTuples, not dataclasses: a dataclass compiles its generated
# methods at import (~1 ms each on the chat function's cold start); these need none of them.
class Get(NamedTuple):
    pk: str
    sk: str
    consistent: bool = True


class Transact(NamedTuple):
    items: list[dict[str, Any]]
    token_seed: str | None = None


class Update(NamedTuple):
    """`update(pk, sk, expression, condition=..., values=..., names=...)`: answers None."""

    pk: str
    sk: str
    expression: str
    condition: str | None = None
    values: dict[str, Any] | None = None
    names: dict[str, str] | None = None


class Backoff(NamedTuple):
    attempt: int


Op = Get | Transact | Update | Backoff
Steps = Generator[Op, Any, T]


def _execute(op: Op) -> Any:
    match op:
        case Get():
            return get(op.pk, op.sk, consistent=op.consistent)
        case Transact():
            return transact(op.items, token_seed=op.token_seed)
        case Update():
            return update(op.pk, op.sk, op.expression, condition=op.condition, values=op.values, names=op.names)
        case Backoff():
            return backoff(op.attempt)


async def _aexecute(op: Op) -> Any:
    match op:
        case Get():
            return await aget(op.pk, op.sk, consistent=op.consistent)
        case Transact():
            return await atransact(op.items, token_seed=op.token_seed)
        case Update():
            # Rare (a stuck hold parked by the sweeper's path): not worth an awaitable twin.
            return await asyncio.to_thread(_execute, op)
        case Backoff():
            return await asyncio.sleep(_jitter_s(op.attempt))


class _Driver:
    """Where a Steps generator stands: the next operation, then its answer (or its failure) sent back
    in. The blocking and the awaited driver differ only in how they run an operation."""

    def __init__(self, steps: Steps[Any]):
        self.steps = steps
        self.answer: Any = None
        self.failure: Exception | None = None
        self.result: Any = None

    def next_op(self) -> Op | None:
        """The next operation, or None when the rule returned (its value in `result`)."""
        try:
            if self.failure is None:
                return self.steps.send(self.answer)
            return self.steps.throw(self.failure)
        except StopIteration as done:
            self.result = done.value
            return None

    def answered(self, answer: Any = None, failure: Exception | None = None) -> None:
        self.answer, self.failure = answer, failure


def run(steps: Steps[T]) -> T:
    """Drive `steps` with blocking calls; returns what the generator returns."""
    driver = _Driver(steps)
    while (op := driver.next_op()) is not None:
        try:
            driver.answered(_execute(op))
        except Exception as exc:
            driver.answered(failure=exc)
    return driver.result


async def arun(steps: Steps[T]) -> T:
    """Drive `steps` on the event loop, each operation awaited (no worker thread on the http
    transport)."""
    driver = _Driver(steps)
    while (op := driver.next_op()) is not None:
        try:
            driver.answered(await _aexecute(op))
        except Exception as exc:
            driver.answered(failure=exc)
    return driver.result


def blocking(rule: Callable[P, Steps[T]]) -> Callable[P, T]:
    """The rule `rule` (a Steps generator function) as a plain blocking function."""

    @functools.wraps(rule)
    def driven(*args: P.args, **kwargs: P.kwargs) -> T:
        return run(rule(*args, **kwargs))

    return driven


def awaited(rule: Callable[P, Steps[T]]) -> Callable[P, Awaitable[T]]:
    """The rule `rule` as a coroutine function whose store calls are awaited (arun)."""

    @functools.wraps(rule)
    async def driven(*args: P.args, **kwargs: P.kwargs) -> T:
        return await arun(rule(*args, **kwargs))

    return driven
