"""The wallet ledger (SPEC §4): credits, holds, settlement, direct charges, refunds.

Invariants, each enforced by a DynamoDB condition inside the same TransactWriteItems as the entry:
- `available` (balance minus active holds) never goes below zero through a hold or a charge; only a
  refund debit may take a wallet negative.
- `balance` changes only together with a ledger entry, under an optimistic `version` check, so the
  entries of a wallet always sum to its balance and each entry knows its exact `balance_after`.
- An idempotency key, a hold id or a hold's settlement moves money at most once.
"""

from __future__ import annotations

import base64
import binascii
import logging
import secrets
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from paywalls.core.errors import Conflict, InvalidRequest, PaymentRequired, PaywallsError
from paywalls.infra import store, telemetry
from paywalls.infra.store import Backoff, Get, N, S, Steps, StoreUnavailable, Transact, TransactionCancelled, Update

log = logging.getLogger(__name__)

EntryType = Literal["deposit", "charge", "refund", "adjustment", "withdrawal", "trial"]

# Hold expiry index (gsi1): `HOLDEXP#{expiry minute}#{shard}`. A hold's index entry is written when
# it is placed and removed when it is settled or released, so every chat request writes its minute's
# keys twice. Time buckets keep each key's life to one minute (no ever-growing key) and the shards
# spread one minute's writes: at 10,000 requests/s, 20,000 index writes/s over 64 keys = 313/s per
# key, under the ~500/s per key we allow (DESIGN.md "Hot keys").
HOLD_EXPIRY_SHARDS = 64
HOLD_EXPIRY_BUCKET_S = 60
SWEEP_GRACE_S = 60  # a bucket is done only this long after it ended (clock skew between instances)
MAX_HOLD_TTL_S = 20 * 60
# The first sweep of a table looks back further than any hold lives: before it, no minute was closed.
SWEEP_BOOTSTRAP_BUCKETS = MAX_HOLD_TTL_S // HOLD_EXPIRY_BUCKET_S + 2
SWEEP_MAX_BUCKETS = 120  # catching up after an outage is spread over several runs
SWEEP_WORKERS = 16
POST_ATTEMPTS = 100  # optimistic version races on one wallet; each re-reads and tries again
API_IDEMPOTENCY_TTL_S = 48 * 3600  # SPEC: kept at least 24 h
CONDITION_FAILED = store.CONDITION_FAILED  # a TransactionCancelled reason


class LedgerError(PaywallsError):
    """A ledger rule refused, or (the base class itself) an invariant broke: a 500 if it reaches HTTP."""


class InsufficientFunds(LedgerError, PaymentRequired):
    def __init__(self, available: int, required: int, *, wallet_exists: bool = True):
        super().__init__(f"insufficient funds: available {available}, required {required}")
        self.available = available
        self.required = required
        self.wallet_exists = wallet_exists


class IdempotencyMismatch(LedgerError, Conflict):
    """The same idempotency key arrived with different parameters; nothing was moved."""

    code = "idempotency_key_reused"


class BudgetExceeded(LedgerError, PaymentRequired):
    """The spending cap (Budget) does not cover the amount; the balance may still. `remaining` is
    what the budget had when the hold was refused (None when not known, or the budget is gone)."""

    code = "spending_cap_reached"

    def __init__(self, required: int, remaining: int | None = None):
        super().__init__(f"spending cap reached: {required} more needed")
        self.required = required
        self.remaining = remaining


class QuotaExceeded(LedgerError):
    """A usage limit (Quota) does not cover the request; nothing was reserved."""

    def __init__(self, quota: Quota):
        super().__init__(f"usage limit reached: {quota.sk}")
        self.quota = quota


class HoldNotActive(LedgerError):
    """Settling or releasing a hold that is no longer active: the caller decides (never a client error)."""

    def __init__(self, hold_id: str, status: str):
        super().__init__(f"hold {hold_id} is {status}")
        self.status = status


class InvalidCursor(LedgerError, InvalidRequest):
    code = "invalid_cursor"
    param = "cursor"


@dataclass(frozen=True)
class Wallet:
    wallet_id: str
    balance: int = 0
    available: int = 0
    version: int = 0

    @property
    def exists(self) -> bool:
        return self.version > 0


@dataclass(frozen=True)
class Entry:
    id: str
    wallet_id: str
    type: str
    amount: int
    balance_after: int
    created_at: str
    version: int
    request_id: str | None = None
    model: str | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    provider_cost: int | None = None
    idempotency_key: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    provider: str | None = None  # the paywall's name of the provider that served (chat/routing.py)

    def as_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "amount": str(self.amount),
            "balance_after": str(self.balance_after),
            "request_id": self.request_id,
            "model": self.model,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "provider_cost": None if self.provider_cost is None else str(self.provider_cost),
            "provider": self.provider,
            "created_at": self.created_at,
            "metadata": self.metadata,
        }


@dataclass(frozen=True)
class Posting:
    entry: Entry
    duplicate: bool = False


@dataclass(frozen=True)
class Hold:
    id: str
    wallet_id: str
    amount: int
    status: str
    expires_at: int
    budget: Budget | None = None
    quotas: tuple[dict[str, Any], ...] = ()  # the quota records reserved with it (settled with it)


@dataclass(frozen=True)
class Budget:
    """A second limit beside the balance, e.g. the spending cap a person set when authorizing an app:
    an item whose `remaining` is reserved by holds and charges exactly like `available`, and whose
    `spent` grows by what was charged. Lives wherever its owner keeps it (pk/sk)."""

    pk: str
    sk: str


@dataclass(frozen=True)
class Quota:
    """A usage counter with a ceiling beside the balance, e.g. a user's spend this day (limits.py):
    an item whose `used` grows by what a hold reserves, under the condition that it stays within
    `limit`, in the hold's own transaction, so no burst of concurrent requests can pass it. Settle
    gives back what the request did not use, by `measure` (`money`: the charge, `tokens`: prompt +
    completion tokens, `requests`: nothing, a request counts once made); release gives back a money
    or tokens reservation whole. `expires_at` is the item's TTL (its window is over by then)."""

    pk: str
    sk: str
    limit: int
    reserve: int
    measure: Literal["money", "tokens", "requests"]
    expires_at: int


# Builds extra transaction items from the entry being posted (e.g. a paywall's earnings credit), so
# they land atomically with the balance change or not at all.
Also = Callable[["Entry"], list[dict[str, Any]]]


@dataclass(frozen=True)
class Listing:
    """Where a new wallet shows up in its owner's user list (gsi1), e.g. a paywall's users."""

    index_pk: str
    index_sk: str


# ---- keys ---------------------------------------------------------------------------------------


def _wallet_pk(wallet_id: str) -> str:
    return f"WALLET#{wallet_id}"


def _entry_sk(version: int) -> str:
    return f"ENTRY#{version:012d}"


def _hold_pk(hold_id: str) -> str:
    return f"HOLD#{hold_id}"


def _now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_entry_id() -> str:
    return "le_" + secrets.token_hex(12)


# ---- reads --------------------------------------------------------------------------------------


def get_wallet(wallet_id: str) -> Wallet:
    return _wallet_from_item(wallet_id, store.get(_wallet_pk(wallet_id), "WALLET"))


async def aget_wallet(wallet_id: str) -> Wallet:
    """`get_wallet`, awaited on the event loop (the chat path: store module doc)."""
    return _wallet_from_item(wallet_id, await store.aget(_wallet_pk(wallet_id), "WALLET"))


def _wallet_steps(wallet_id: str) -> Steps[Wallet]:
    return _wallet_from_item(wallet_id, (yield Get(_wallet_pk(wallet_id), "WALLET")))


def _wallet_from_item(wallet_id: str, item: dict[str, Any] | None) -> Wallet:
    if not item:
        return Wallet(wallet_id)
    return Wallet(wallet_id, item.get("balance", 0), item.get("available", 0), item.get("version", 0))


def get_wallets(wallet_ids: list[str]) -> dict[str, Wallet]:
    items = store.batch_get([(_wallet_pk(w), "WALLET") for w in wallet_ids])
    found = {
        i["pk"].removeprefix("WALLET#"): Wallet(
            i["pk"].removeprefix("WALLET#"), i.get("balance", 0), i.get("available", 0), i.get("version", 0)
        )
        for i in items
    }
    return {w: found.get(w, Wallet(w)) for w in wallet_ids}


def _entry_from_item(item: dict[str, Any]) -> Entry:
    return Entry(
        id=item["entry_id"],
        wallet_id=item["pk"].removeprefix("WALLET#"),
        type=item["type"],
        amount=item["amount"],
        balance_after=item["balance_after"],
        created_at=item["created_at"],
        version=item["version"],
        request_id=item.get("request_id"),
        model=item.get("model"),
        prompt_tokens=item.get("prompt_tokens"),
        completion_tokens=item.get("completion_tokens"),
        provider_cost=item.get("provider_cost"),
        idempotency_key=item.get("idempotency_key"),
        metadata=item.get("metadata") or {},
        provider=item.get("provider"),
    )


def list_entries(wallet_id: str, *, limit: int = 20, cursor: str | None = None) -> tuple[list[Entry], str | None]:
    """Newest first. The cursor is opaque to clients (the sort key of the last entry returned)."""
    pk = _wallet_pk(wallet_id)
    start = {"pk": pk, "sk": _decode_cursor(cursor)} if cursor else None
    items, last = store.query(pk, sk_prefix="ENTRY#", newest_first=True, limit=limit, start_key=start)
    entries = [_entry_from_item(i) for i in items]
    next_cursor = _encode_cursor(last["sk"]) if last and len(entries) == limit else None
    return entries, next_cursor


def all_entries(wallet_id: str) -> Iterator[Entry]:
    for item in store.query_all(_wallet_pk(wallet_id), sk_prefix="ENTRY#"):
        yield _entry_from_item(item)


def posted_version(wallet_id: str, idempotency_key: str) -> int | None:
    """The version of the entry a per-wallet idempotency key posted (e.g. `stripe:{session}`, a
    top-up's credit), or None when nothing was posted under it yet."""
    record = store.get(_wallet_pk(wallet_id), f"IDEM#{idempotency_key}")
    return int(record["entry_sk"].removeprefix("ENTRY#")) if record else None


def entries_before(wallet_id: str, version: int, *, after: int = 0, page: int = 100) -> Iterator[Entry]:
    """The entries with after < version' < version, newest first, read page by page (the caller
    stops when it has seen enough)."""
    start: dict[str, str] | None = None
    while True:
        items, start = store.query(
            _wallet_pk(wallet_id), sk_below=_entry_sk(version), newest_first=True, limit=page, start_key=start
        )
        for item in items:
            if not item["sk"].startswith("ENTRY#"):
                continue
            if item["version"] <= after:
                return
            yield _entry_from_item(item)
        if not start:
            return


def _encode_cursor(sk: str) -> str:
    return base64.urlsafe_b64encode(sk.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str:
    try:
        sk = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidCursor("invalid cursor") from None
    # isascii(): str.isdigit() alone also accepts "٣" and "²", which are not the key's digits.
    if not (sk.startswith("ENTRY#") and sk[6:].isascii() and sk[6:].isdigit() and len(sk) == 18):
        raise InvalidCursor("invalid cursor")
    return sk


def get_hold(hold_id: str) -> dict[str, Any] | None:
    return store.get(_hold_pk(hold_id), "HOLD")


# ---- postings (balance changes with an entry) ---------------------------------------------------


@dataclass(frozen=True)
class _Idempotency:
    key: str
    fingerprint: str
    ttl_s: int | None  # None: kept forever (deposits keyed by their payment source id)
    # Where the key is unique. None: per wallet. A scope (e.g. "<paywall>:<env>") makes the key unique
    # across all wallets of that scope, so an app reusing a key for another user cannot move money
    # twice; the record then lives in its own partition (one per key: no hot item).
    scope: str | None = None

    def location(self, wallet_id: str) -> tuple[str, str]:
        if self.scope is None:
            return _wallet_pk(wallet_id), f"IDEM#{self.key}"
        return f"IDEMKEY#{self.scope}#{self.key}", "IDEM"


def _replay(wallet_id: str, idem: _Idempotency) -> Steps[Posting | None]:
    record = yield Get(*idem.location(wallet_id))
    if not record:
        return None
    owner = record.get("wallet_id", wallet_id)
    if record.get("fingerprint") != idem.fingerprint or owner != wallet_id:
        raise IdempotencyMismatch("this Idempotency-Key was already used with different parameters")
    entry_item = yield Get(_wallet_pk(owner), record["entry_sk"])
    if entry_item is None:  # cannot happen: both were written in one transaction
        raise LedgerError("idempotency record without its entry")
    return Posting(_entry_from_item(entry_item), duplicate=True)


def _post(
    wallet_id: str,
    *,
    entry_type: str,
    amount: int,
    available_delta: int,
    require_available: int | None = None,
    idem: _Idempotency | None = None,
    settle_hold: str | None = None,
    budget: Budget | None = None,
    budget_delta: tuple[int, int] = (0, 0),
    also: Also | None = None,
    listing: Listing | None = None,
    details: dict[str, Any] | None = None,
    snapshot: Wallet | None = None,
) -> Steps[Posting]:
    """One balance change + its entry (+ idempotency record, + hold settlement, + budget, + the
    caller's own items such as a paywall's earnings) in one transaction.

    `snapshot`: a recent read of the wallet (e.g. taken while a stream was relayed), tried first
    instead of reading it now. A stale one costs nothing but a retry: the version condition refuses
    it and the refusal carries the wallet as it is (ALL_OLD), which the next attempt uses."""
    details = {k: v for k, v in (details or {}).items() if v is not None}
    # The idempotency record is written by the transaction itself, under attribute_not_exists: a
    # duplicate is caught by that condition, so a first-time key is not read beforehand (one round
    # trip less); only a refused record is read, to replay what it produced.
    for attempt in range(POST_ATTEMPTS):
        wallet = snapshot if snapshot is not None else (yield from _wallet_steps(wallet_id))
        snapshot = None
        if require_available is not None and wallet.available < require_available:
            if idem and (replayed := (yield from _replay(wallet_id, idem))):
                return replayed  # a duplicate of a charge that went through: its answer, not a refusal
            raise InsufficientFunds(wallet.available, require_available)
        version = wallet.version + 1
        entry = Entry(
            id=new_entry_id(),
            wallet_id=wallet_id,
            type=entry_type,
            amount=amount,
            balance_after=wallet.balance + amount,
            created_at=_now_iso(),
            version=version,
            idempotency_key=idem.key if idem else None,
            **details,
        )
        named: list[tuple[str, dict[str, Any]]] = [
            ("wallet", _wallet_update(wallet, entry, available_delta, require_available, listing)),
            ("entry", _entry_put(entry)),
        ]
        if idem:
            named.append(("idem", _idem_put(entry, idem)))
        if settle_hold:
            named.append(("hold", _hold_transition(settle_hold, "settled", {"entry_sk": _entry_sk(version)})))
        if budget:
            named.append(("budget", _budget_update(budget, *budget_delta, check=require_available is not None)))
        if also:
            named += [("also", item) for item in also(entry)]
        try:
            yield Transact([item for _, item in named], token_seed=f"{wallet_id}|{version}|{entry.id}")
            return Posting(entry)
        except TransactionCancelled as cancelled:
            failed = {name for (name, _), code in zip(named, cancelled.codes, strict=False) if code == CONDITION_FAILED}
            if "hold" in failed:
                raise HoldNotActive(settle_hold or "", "not active") from None
            if "idem" in failed:
                # A duplicate (earlier, or concurrent and faster): answer what it produced.
                if idem and (replayed := (yield from _replay(wallet_id, idem))):
                    return replayed
                continue  # the record is gone again (expired): try once more
            if "budget" in failed:
                raise BudgetExceeded(require_available or 0) from None
            if "also" in failed:
                # The caller's items were planned from a read that changed meanwhile (e.g. a loss
                # taking back pending earnings a withdrawal just folded): re-read and re-plan.
                yield Backoff(min(attempt, 4))
                continue
            if "wallet" in failed:
                # Version race (or funds gone): back off so colliding writers spread out instead
                # of re-colliding in lockstep, then decide again on the wallet as the refusal saw it.
                telemetry.emit({"PostingConflicts": 1})
                refused = cancelled.items[[name for name, _ in named].index("wallet")]
                if refused is not None:
                    snapshot = _wallet_from_item(wallet_id, refused)
                yield Backoff(min(attempt, 4))
                continue
            raise
    raise StoreUnavailable("too much contention on this wallet, please retry")


def _budget_update(budget: Budget, remaining_delta: int, spent_delta: int, *, check: bool) -> dict[str, Any]:
    update: dict[str, Any] = {
        "TableName": store.table_name(),
        "Key": store.key(budget.pk, budget.sk),
        "UpdateExpression": "ADD remaining :delta, spent :spent",
        "ExpressionAttributeValues": {":delta": N(remaining_delta), ":spent": N(spent_delta)},
    }
    # Only reservations are checked. Returning money to a budget (settle, release, the sweeper) must
    # never fail, so budget items are never deleted (a revoked connection is marked, not removed).
    if check and remaining_delta < 0:
        update["ConditionExpression"] = "attribute_exists(pk) AND remaining >= :need"
        update["ExpressionAttributeValues"][":need"] = N(-remaining_delta)
    return {"Update": update}


def _wallet_update(
    wallet: Wallet, entry: Entry, available_delta: int, require_available: int | None, listing: Listing | None
) -> dict[str, Any]:
    sets = ["balance = :balance", "version = :version", "updated_at = :now"]
    values: dict[str, Any] = {
        ":balance": N(entry.balance_after),
        ":version": N(entry.version),
        ":now": S(entry.created_at),
        ":delta": N(available_delta),
    }
    if listing:
        sets += ["gsi1pk = if_not_exists(gsi1pk, :ipk)", "gsi1sk = if_not_exists(gsi1sk, :isk)"]
        values |= {":ipk": S(listing.index_pk), ":isk": S(listing.index_sk)}
    if wallet.exists:
        condition = "version = :expected"
        values[":expected"] = N(wallet.version)
    else:
        condition = "attribute_not_exists(pk)"
    if require_available is not None:
        condition = f"({condition}) AND available >= :required"
        values[":required"] = N(require_available)
    return {
        "Update": {
            "TableName": store.table_name(),
            "Key": store.key(_wallet_pk(wallet.wallet_id), "WALLET"),
            "UpdateExpression": "SET " + ", ".join(sets) + " ADD available :delta",
            "ConditionExpression": condition,
            "ExpressionAttributeValues": values,
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
    }


def _entry_put(entry: Entry) -> dict[str, Any]:
    item = {
        "pk": _wallet_pk(entry.wallet_id),
        "sk": _entry_sk(entry.version),
        "entry_id": entry.id,
        "type": entry.type,
        "amount": entry.amount,
        "balance_after": entry.balance_after,
        "created_at": entry.created_at,
        "version": entry.version,
        "request_id": entry.request_id,
        "model": entry.model,
        "prompt_tokens": entry.prompt_tokens,
        "completion_tokens": entry.completion_tokens,
        "provider_cost": entry.provider_cost,
        "provider": entry.provider,
        "idempotency_key": entry.idempotency_key,
        "metadata": entry.metadata or None,
    }
    return {
        "Put": {
            "TableName": store.table_name(),
            "Item": store.encode(item),
            "ConditionExpression": "attribute_not_exists(pk)",
        }
    }


def _idem_put(entry: Entry, idem: _Idempotency) -> dict[str, Any]:
    pk, sk = idem.location(entry.wallet_id)
    item: dict[str, Any] = {
        "pk": pk,
        "sk": sk,
        "wallet_id": entry.wallet_id,
        "entry_sk": _entry_sk(entry.version),
        "fingerprint": idem.fingerprint,
        "created_at": entry.created_at,
    }
    if idem.ttl_s:
        item["expires_at_ttl"] = int(time.time()) + idem.ttl_s
    return {
        "Put": {
            "TableName": store.table_name(),
            "Item": store.encode(item),
            "ConditionExpression": "attribute_not_exists(pk)",
        }
    }


def _hold_transition(hold_id: str, status: str, extra: dict[str, str] | None = None) -> dict[str, Any]:
    sets = ["#status = :to", "closed_at = :now"]
    values: dict[str, Any] = {":to": S(status), ":from": S("active"), ":now": S(_now_iso())}
    for name, value in (extra or {}).items():
        sets.append(f"{name} = :{name}")
        values[f":{name}"] = S(value)
    return {
        "Update": {
            "TableName": store.table_name(),
            "Key": store.key(_hold_pk(hold_id), "HOLD"),
            # Leaving the sparse index is how a hold stops being visible to the sweeper.
            "UpdateExpression": "SET " + ", ".join(sets) + " REMOVE gsi1pk, gsi1sk",
            "ConditionExpression": "#status = :from",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": values,
        }
    }


def _fingerprint(*parts: object) -> str:
    return "|".join(str(p) for p in parts)


def credit(
    wallet_id: str,
    amount: int,
    *,
    idempotency_key: str,
    entry_type: EntryType = "deposit",
    keep_key_forever: bool = False,
    idempotency_scope: str | None = None,
    listing: Listing | None = None,
    metadata: dict[str, Any] | None = None,
    also: Also | None = None,
) -> Posting:
    """Money in. Always idempotent: a credit without a key could be applied twice by a retry. `also`
    adds the caller's items to its transaction (e.g. the webhook outbox's event: events/outbox.py)."""
    _require_positive(amount)
    idem = _Idempotency(
        idempotency_key,
        _fingerprint(entry_type, amount, sorted((metadata or {}).items())),
        None if keep_key_forever else API_IDEMPOTENCY_TTL_S,
        idempotency_scope,
    )
    return store.run(
        _post(
            wallet_id,
            entry_type=entry_type,
            amount=amount,
            available_delta=amount,
            idem=idem,
            listing=listing,
            also=also,
            details={"metadata": metadata or {}},
        )
    )


def _charge(
    wallet_id: str,
    amount: int,
    *,
    idempotency_key: str,
    entry_type: EntryType = "charge",
    listing: Listing | None = None,
    metadata: dict[str, Any] | None = None,
    request_id: str | None = None,
    budget: Budget | None = None,
    also: Also | None = None,
    idempotency_scope: str | None = None,
) -> Steps[Posting]:
    """A direct debit that must be covered by the available balance (and the budget, if any)."""
    _require_positive(amount)
    idem = _Idempotency(
        idempotency_key,
        _fingerprint(entry_type, amount, sorted((metadata or {}).items())),
        API_IDEMPOTENCY_TTL_S,
        idempotency_scope,
    )
    return (
        yield from _post(
            wallet_id,
            entry_type=entry_type,
            amount=-amount,
            available_delta=-amount,
            require_available=amount,
            idem=idem,
            budget=budget,
            budget_delta=(-amount, amount),
            also=also,
            listing=listing,
            details={"metadata": metadata or {}, "request_id": request_id},
        )
    )


charge = store.blocking(_charge)


def debit(
    wallet_id: str,
    amount: int,
    *,
    idempotency_key: str,
    entry_type: EntryType = "refund",
    metadata: dict[str, Any] | None = None,
    also: Also | None = None,
) -> Posting:
    """A debit that is owed whatever the balance (refunds, lost disputes): may take a wallet negative,
    after which holds fail and the user is asked to top up. `also` adds the caller's items to its
    transaction (e.g. the operator's loss record and the earnings it takes back: losses.py)."""
    _require_positive(amount)
    idem = _Idempotency(idempotency_key, _fingerprint(entry_type, amount), None)
    return store.run(
        _post(
            wallet_id,
            entry_type=entry_type,
            amount=-amount,
            available_delta=-amount,
            idem=idem,
            also=also,
            details={"metadata": metadata or {}},
        )
    )


def _require_positive(amount: int) -> None:
    if not isinstance(amount, int) or isinstance(amount, bool) or amount <= 0:
        raise ValueError("ledger amounts are positive integers of micro-units")


# ---- holds --------------------------------------------------------------------------------------


def _hold(
    wallet_id: str,
    amount: int,
    *,
    hold_id: str,
    ttl_s: int = MAX_HOLD_TTL_S,
    budget: Budget | None = None,
    quotas: tuple[Quota, ...] = (),
) -> Steps[Hold]:
    """Reserve `amount` of the available balance (and of the budget and the quotas, if any). Never
    retried on a failed balance check."""
    _require_positive(amount)
    if ttl_s > MAX_HOLD_TTL_S:
        raise ValueError(f"a hold lives at most {MAX_HOLD_TTL_S} s (the sweeper's first run looks back that far)")
    for quota in quotas:
        if quota.reserve > quota.limit:
            raise QuotaExceeded(quota)
    now = int(time.time())
    expires_at = now + ttl_s
    index_pk, index_sk = _expiry_index_key(hold_id, expires_at, now)
    item = {
        "pk": _hold_pk(hold_id),
        "sk": "HOLD",
        "wallet_id": wallet_id,
        "amount": amount,
        "status": "active",
        "created_at": _now_iso(),
        "expires_at": expires_at,
        "gsi1pk": index_pk,
        "gsi1sk": index_sk,
        # Cleanup long after the sweeper has released it; never before (the sweeper needs it).
        "expires_at_ttl": expires_at + 7 * 24 * 3600,
        # Settle and release (also the sweeper's) give the unused part back to the same budget.
        "budget_pk": budget.pk if budget else None,
        "budget_sk": budget.sk if budget else None,
        # Settle and release give back what the request did not use of each quota.
        "quotas": [_quota_record(q) for q in quotas] or None,
    }
    items = [
        {
            "Update": {
                "TableName": store.table_name(),
                "Key": store.key(_wallet_pk(wallet_id), "WALLET"),
                "UpdateExpression": "ADD available :neg",
                "ConditionExpression": "available >= :amount",
                "ExpressionAttributeValues": {":neg": N(-amount), ":amount": N(amount)},
                # A refused hold says why with the state that refused it: no read before holding.
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        },
        {
            "Put": {
                "TableName": store.table_name(),
                "Item": store.encode(item),
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        },
    ]
    if budget:
        items.append(_budget_update(budget, -amount, 0, check=True))
        items[2]["Update"]["ReturnValuesOnConditionCheckFailure"] = "ALL_OLD"
    first_quota = len(items)
    items += [_quota_reserve(q) for q in quotas]
    try:
        yield Transact(items, token_seed=f"hold|{hold_id}")
    except TransactionCancelled as cancelled:
        if budget and cancelled.codes[2] == CONDITION_FAILED:
            # The cap refuses first, even when the wallet is short too: the payer only learns about
            # the wallet once the app's allowance would cover the request.
            old = cancelled.items[2]
            remaining = int(old["remaining"]) if old and "remaining" in old else None
            raise BudgetExceeded(amount, remaining) from None
        for index, quota in enumerate(quotas, start=first_quota):
            codes = cancelled.codes
            if index < len(codes) and codes[index] == CONDITION_FAILED and codes[0] != CONDITION_FAILED:
                raise QuotaExceeded(quota) from None
        if cancelled.codes[1] == CONDITION_FAILED:
            existing = yield Get(_hold_pk(hold_id), "HOLD")
            if existing and existing["wallet_id"] == wallet_id and existing["amount"] == amount:
                return _hold_from_item(existing)
            raise LedgerError(f"hold id {hold_id} already used") from None
        wallet = cancelled.items[0]
        if cancelled.codes[0] == CONDITION_FAILED and wallet is None:
            raise InsufficientFunds(0, amount, wallet_exists=False) from None
        raise InsufficientFunds(int((wallet or {}).get("available", 0)), amount) from None
    return Hold(hold_id, wallet_id, amount, "active", expires_at, budget, tuple(_quota_record(q) for q in quotas))


hold = store.blocking(_hold)
ahold = store.awaited(_hold)  # the chat path: on the event loop, no worker thread (store module doc)


def _quota_record(quota: Quota) -> dict[str, Any]:
    return {
        "pk": quota.pk,
        "sk": quota.sk,
        "reserved": quota.reserve,
        "measure": quota.measure,
        "expires_at": quota.expires_at,
    }


def _quota_reserve(quota: Quota) -> dict[str, Any]:
    return {
        "Update": {
            "TableName": store.table_name(),
            "Key": store.key(quota.pk, quota.sk),
            "UpdateExpression": "ADD used :amount SET expires_at_ttl = :ttl",
            # `used + reserve <= limit`, written as `used <= limit - reserve` (no arithmetic in
            # conditions). The limit is not stored: an operator's change applies to the next request.
            "ConditionExpression": "attribute_not_exists(used) OR used <= :room",
            "ExpressionAttributeValues": {
                ":amount": N(quota.reserve),
                ":room": N(quota.limit - quota.reserve),
                ":ttl": N(quota.expires_at),
            },
        }
    }


def _quota_adjust(record: dict[str, Any], delta: int) -> dict[str, Any]:
    """Unconditional: giving back (or recording a late charge) must never fail. The TTL is set if a
    lagging TTL deletion removed the item, so it never lingers without one."""
    return {
        "Update": {
            "TableName": store.table_name(),
            "Key": store.key(record["pk"], record["sk"]),
            "UpdateExpression": "ADD used :delta SET expires_at_ttl = if_not_exists(expires_at_ttl, :ttl)",
            "ExpressionAttributeValues": {":delta": N(delta), ":ttl": N(record["expires_at"])},
        }
    }


def _quota_usage(record: dict[str, Any], cost: int, tokens: int | None) -> int:
    """What the request used of a quota, at most what it reserved."""
    if record["measure"] == "money":
        used = cost
    elif record["measure"] == "tokens":
        used = record["reserved"] if tokens is None else tokens
    else:
        used = record["reserved"]
    return max(0, min(used, record["reserved"]))


def _quota_settlement(records: tuple[dict[str, Any], ...], cost: int, tokens: int | None) -> list[dict[str, Any]]:
    """Settling a hold: each quota keeps what was used and gets the rest of its reservation back."""
    deltas = [(r, _quota_usage(r, cost, tokens) - r["reserved"]) for r in records]
    return [_quota_adjust(r, delta) for r, delta in deltas if delta]


def _with_items(also: Also | None, extra: list[dict[str, Any]]) -> Also | None:
    if not extra:
        return also
    return lambda entry: [*extra, *(also(entry) if also else [])]


def _tokens(prompt_tokens: int | None, completion_tokens: int | None) -> int | None:
    if prompt_tokens is None and completion_tokens is None:
        return None
    return (prompt_tokens or 0) + (completion_tokens or 0)


def _budget_of(item: dict[str, Any]) -> Budget | None:
    return Budget(item["budget_pk"], item["budget_sk"]) if item.get("budget_pk") else None


def _hold_from_item(item: dict[str, Any]) -> Hold:
    return Hold(
        item["pk"].removeprefix("HOLD#"),
        item["wallet_id"],
        item["amount"],
        item["status"],
        item["expires_at"],
        _budget_of(item),
        tuple(item.get("quotas") or ()),
    )


def _settle(
    hold_id: str,
    cost: int,
    *,
    request_id: str | None = None,
    model: str | None = None,
    prompt_tokens: int | None = None,
    completion_tokens: int | None = None,
    provider_cost: int | None = None,
    provider: str | None = None,
    metadata: dict[str, Any] | None = None,
    also: Also | None = None,
    placed: Hold | None = None,
    snapshot: Wallet | None = None,
) -> Steps[Posting]:
    """Charge `cost` against the hold exactly once and return the unused part to the balance.

    The hold covered the worst case, so cost <= hold; a larger cost is capped (never beyond what was
    reserved) and logged. If the sweeper released the hold first (the request outlived its hold),
    the cost is charged directly, still only from available funds.

    `placed`: the hold as `hold` returned it, so it need not be read again: the settlement's own
    condition (the hold is still active) guards it; if that fails, the hold is read and the slow
    path below decides. `snapshot`: a recent read of the wallet (see _post)."""
    details = {
        "request_id": request_id,
        "model": model,
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "provider_cost": provider_cost,
        "provider": provider,
        "metadata": metadata or {},
    }
    if placed is not None and placed.status == "active":
        try:
            return (yield from _settle_active(placed, cost, also=also, details=details, snapshot=snapshot))
        except HoldNotActive:
            pass  # settled by a duplicate, or swept: read the hold and decide below
    item = yield Get(_hold_pk(hold_id), "HOLD")
    if item is None:
        raise LedgerError(f"unknown hold {hold_id}")
    held = _hold_from_item(item)
    if held.status == "settled":
        entry_item = yield Get(_wallet_pk(held.wallet_id), item["entry_sk"])
        return Posting(_entry_from_item(entry_item), duplicate=True)
    if held.status == "active":
        try:
            return (yield from _settle_active(held, cost, also=also, details=details))
        except HoldNotActive:
            # re-read: settled by a duplicate, or swept
            return (yield from _settle(hold_id, cost, also=also, **details))
    cost = min(cost, held.amount)
    # Released by the sweeper before we settled: charge what the funds still cover, at most once.
    log.warning("settling a released hold as a direct charge", extra={"hold_id": hold_id})
    wallet = yield from _wallet_steps(held.wallet_id)
    cost = max(0, min(cost, wallet.available))
    if cost == 0:
        raise HoldNotActive(hold_id, held.status)
    # The release gave the quotas their reservations back: what was used counts again.
    used = [
        (record, _quota_usage(record, cost, _tokens(prompt_tokens, completion_tokens)))
        for record in item.get("quotas") or []
        if record["measure"] != "requests"
    ]
    return (
        yield from _charge(
            held.wallet_id,
            cost,
            idempotency_key=f"hold:{hold_id}",
            request_id=request_id,
            metadata={**(metadata or {}), "late_settlement": "true"},
            budget=_budget_of(item),
            also=_with_items(also, [_quota_adjust(record, amount) for record, amount in used if amount]),
        )
    )


settle = store.blocking(_settle)
asettle = store.awaited(_settle)


def _settle_active(
    held: Hold, cost: int, *, also: Also | None, details: dict[str, Any], snapshot: Wallet | None = None
) -> Steps[Posting]:
    if cost > held.amount:
        log.error("usage cost exceeded its hold; capped", extra={"hold_id": held.id, "cost": cost, "held": held.amount})
        cost = held.amount
    tokens = _tokens(details.get("prompt_tokens"), details.get("completion_tokens"))
    return (
        yield from _post(
            held.wallet_id,
            entry_type="charge",
            amount=-cost,
            available_delta=held.amount - cost,
            settle_hold=held.id,
            budget=held.budget,
            budget_delta=(held.amount - cost, cost),
            also=_with_items(also, _quota_settlement(held.quotas, cost, tokens)),
            details=details,
            snapshot=snapshot,
        )
    )


def _release(hold_id: str) -> Steps[bool]:
    """Return an unused hold to the balance. False if it was already settled or released."""
    item = yield Get(_hold_pk(hold_id), "HOLD")
    if item is None or item["status"] != "active":
        return False
    return (yield from _release_held(item))


release = store.blocking(_release)
arelease = store.awaited(_release)


def _release_held(item: dict[str, Any]) -> Steps[bool]:
    """Release the hold `item` (as read); the transaction's own condition (status = active) makes a
    stale read harmless: a hold settled meanwhile is left alone."""
    hold_id = item["pk"].removeprefix("HOLD#")
    items = [
        _hold_transition(hold_id, "released"),
        {
            "Update": {
                "TableName": store.table_name(),
                "Key": store.key(_wallet_pk(item["wallet_id"]), "WALLET"),
                "UpdateExpression": "ADD available :amount",
                "ConditionExpression": "attribute_exists(pk)",
                "ExpressionAttributeValues": {":amount": N(item["amount"])},
            }
        },
    ]
    if budget := _budget_of(item):
        items.append(_budget_update(budget, item["amount"], 0, check=False))
    # A request that never ran gives its money and tokens back; it still counted as a request.
    items += [_quota_adjust(r, -r["reserved"]) for r in item.get("quotas") or [] if r["measure"] != "requests"]
    try:
        yield Transact(items, token_seed=f"release|{hold_id}")
    except TransactionCancelled as cancelled:
        if cancelled.codes[0] != CONDITION_FAILED:
            # Still active, but its release cannot be written (its wallet item is gone): keep it where
            # every sweep tries it again and reports it (overdue_hold_expiries), out of the minute keys
            # that the sweeper's cursor leaves behind.
            yield from _park_stuck(hold_id)
        return False
    return True


_release_item = store.blocking(_release_held)


STUCK_HOLDS = "HOLDEXP#STUCK"  # rare by construction: holds whose release failed while still active


def _park_stuck(hold_id: str) -> Steps[None]:
    log.error("an expired hold could not be released; parked for the next sweeps", extra={"hold_id": hold_id})
    try:
        yield Update(
            _hold_pk(hold_id),
            "HOLD",
            "SET gsi1pk = :stuck",
            condition="#status = :active",
            names={"#status": "status"},
            values={":stuck": S(STUCK_HOLDS), ":active": S("active")},
        )
    except Exception:  # settled meanwhile, or the store is failing: the next sweep decides again
        log.warning("could not park a stuck hold", extra={"hold_id": hold_id}, exc_info=True)


def _bucket(at: int) -> int:
    return at // HOLD_EXPIRY_BUCKET_S


def _expiry_index_key(hold_id: str, expires_at: int, now: int) -> tuple[str, str]:
    # A hold that is already expired when placed (tests; ttl <= 0) is indexed in the current minute,
    # which no sweep has closed yet: the sweeper's cursor only passes minutes that ended a while ago.
    bucket = _bucket(max(expires_at, now))
    shard = zlib.crc32(hold_id.encode()) % HOLD_EXPIRY_SHARDS
    return f"HOLDEXP#{bucket}#{shard:02d}", f"{expires_at:012d}#{hold_id}"


SWEEP_CURSOR = ("SWEEPER", "HOLDEXP")  # the last expiry minute fully swept


def expired_hold_ids(now: int | None = None) -> Iterator[str]:
    """Ids of the active holds that expired by `now` (all of them, from the minutes not yet closed)."""
    now = int(time.time()) if now is None else now
    first, _ = _sweep_window(now)
    cutoff = f"{now:012d}~"
    for bucket in range(first, _bucket(now) + 1):
        for shard in range(HOLD_EXPIRY_SHARDS):
            for item in store.query_all(f"HOLDEXP#{bucket}#{shard:02d}", index="gsi1", sk_below=cutoff):
                yield item["pk"].removeprefix("HOLD#")


def _sweep_window(now: int) -> tuple[int, int]:
    """(first minute to query, last minute that this sweep may close)."""
    cursor = store.get(*SWEEP_CURSOR)
    closable = _bucket(now - SWEEP_GRACE_S) - 1
    first = _bucket(now) - SWEEP_BOOTSTRAP_BUCKETS if cursor is None else int(cursor["bucket"]) + 1
    return first, min(closable, first + SWEEP_MAX_BUCKETS - 1)


def overdue_hold_expiries(before: int) -> list[int]:
    """Expiry times of the holds still active that expired before `before`: the sweeper's own health
    (a hold it should have released long ago: one it keeps failing to release, parked under
    STUCK_HOLDS). A sweeper that stopped running publishes nothing (its alarm treats that as
    breaching). Index keys only, one query."""
    cutoff = f"{before:012d}~"
    return [
        int(item["gsi1sk"].split("#", 1)[0]) for item in store.query_all(STUCK_HOLDS, index="gsi1", sk_below=cutoff)
    ]


def sweep_expired_holds(now: int | None = None) -> int:
    """The sweeper's job: release holds whose invocation never settled them (crash, timeout).

    Cost: a fixed 64 index queries per minute swept (run in parallel; each answers only that
    minute's still-active holds, since settled holds leave the index), one BatchGetItem per 100
    expired holds and one release transaction each (in parallel): O(expired holds), whatever the
    traffic or the table size. The minutes fully swept are remembered (a cursor item written once
    per run), so a run never re-reads closed minutes; the current minute is read up to `now`."""
    from concurrent.futures import ThreadPoolExecutor

    now = int(time.time()) if now is None else now
    first, closable = _sweep_window(now)
    last = max(closable, _bucket(now))
    keys = [
        f"HOLDEXP#{bucket}#{shard:02d}"
        for bucket in range(first, min(last, first + SWEEP_MAX_BUCKETS - 1) + 1)
        for shard in range(HOLD_EXPIRY_SHARDS)
    ] + [STUCK_HOLDS]
    cutoff = f"{now:012d}~"
    with ThreadPoolExecutor(SWEEP_WORKERS) as pool:
        found = pool.map(lambda pk: list(store.query_all(pk, index="gsi1", sk_below=cutoff)), keys)
        hold_keys = [(item["pk"], "HOLD") for items in found for item in items]
        holds = [item for item in store.batch_get(hold_keys) if item.get("status") == "active"]
        released = sum(pool.map(_release_item, holds))
    if closable >= first:
        store.advance(*SWEEP_CURSOR, "bucket", closable)
    return released
