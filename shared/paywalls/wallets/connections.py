"""Authorizations of shared-mode paywalls to a person's wallet ("connections", SPEC §6).

A connection ties (paywall, environment, app user id) to one person's wallet of that environment
(`person:{person}:{environment}`: a test key's user pays from test money only). It is also the ledger
`Budget` of everything that app user spends: `remaining` (cap - spent - held) is reserved by holds
and charges under the ledger's own condition, `spent` grows with each charge.

Items, in the partition `CONN#{paywall_id}#{environment}#{user}`:
- `C#{connection_id}`: the connection: person, status, cap (absent: uncapped), remaining, spent,
  created_at, revoked_at; gsi1 `PCONN#{person_id}` / `{created_at}#{connection_id}` lists a person's
  connections on the wallet page.
- `ACTIVE`: {connection_id, person_id} while the app user is connected. Exactly one per partition,
  created and removed together with the connection's status (transactions).

Rules:
- Connection items are never deleted: holds in flight refer to them as their budget, and settling or
  releasing such a hold must still be able to return the unused part.
- Revoking marks the item and subtracts REVOKED_OFFSET from `remaining` in the same write, so a hold
  racing with the revocation fails on the ledger's budget condition (`remaining >= amount`) although
  it read the connection as active a moment before. Returns from holds in flight still add up.
- Re-authorizing after a revocation (or with another wallet) creates a new connection item, so a new
  cap never mixes with the old one's spending.
- Uncapped connections start with `remaining` = UNCAPPED_REMAINING, larger than any wallet can hold;
  the wallet balance is then the only limit."""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from paywalls.billing import ledger
from paywalls.billing.paywall import InvalidRequest
from paywalls.core.errors import NotFound
from paywalls.core.money import InvalidAmount, format_micros, parse_amount
from paywalls.infra import store
from paywalls.infra.config import settings
from paywalls.infra.store import N, S, TransactionCancelled
from paywalls.wallets import persons

log = logging.getLogger(__name__)

UNCAPPED_REMAINING = 10**18  # a million million currency units: more than any wallet holds
REVOKED_OFFSET = 10**24  # pushes a revoked connection's `remaining` far below any amount
ATTEMPTS = 5


class NotConnected(NotFound):
    """No such connection of this person (or it changed meanwhile)."""

    code = "not_connected"


@dataclass(frozen=True)
class Connection:
    id: str
    paywall_id: str
    environment: str
    user: str
    person_id: str
    status: str  # "active" | "revoked"
    cap: int | None
    remaining: int
    spent: int
    created_at: str
    revoked_at: str | None = None

    @property
    def active(self) -> bool:
        return self.status == "active"

    @property
    def wallet_id(self) -> str:
        """The person's wallet of this connection's environment: the only money it can ever move."""
        return persons.wallet_id(self.person_id, self.environment)

    @property
    def budget(self) -> ledger.Budget:
        return ledger.Budget(partition(self.paywall_id, self.environment, self.user), f"C#{self.id}")

    @property
    def cap_remaining(self) -> int | None:
        """What the cap still allows (holds in flight count as spent); None when uncapped."""
        if self.cap is None:
            return None
        return max(0, self.remaining if self.active else 0)

    def spendable(self, wallet_available: int) -> int:
        """What this app user may spend now: the wallet's available balance, within the cap."""
        if not self.active:
            return 0
        return max(0, min(wallet_available, self.remaining))

    def as_api(self) -> dict[str, Any]:
        """What the paywall may see: never the person's identity, email or other apps."""
        return {
            "id": self.user,
            "connectionId": self.id,
            "connectedAt": self.created_at,
            "spendingCap": None if self.cap is None else str(self.cap),
            "spendingCapFormatted": None if self.cap is None else format_micros(self.cap),
            "spent": str(self.spent),
            "spentFormatted": format_micros(self.spent),
        }


def partition(paywall_id: str, environment: str, user: str) -> str:
    return f"CONN#{paywall_id}#{environment}#{user}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# The consent form's prefilled spending limit. Per deployment: template parameter DefaultSpendingCap
# -> DEFAULT_SPENDING_CAP on the wallet function (a decimal amount; "no limit" cannot be the default).
DEFAULT_CAP = "10"


def default_cap() -> int:
    configured = settings().default_spending_cap or DEFAULT_CAP
    try:
        return parse_amount(configured)
    except InvalidAmount:
        log.error("DEFAULT_SPENDING_CAP is not a positive amount; using the built-in default")
        return parse_amount(DEFAULT_CAP)


def parse_cap(value: object) -> int:
    """A positive decimal amount (e.g. "5" or "12.50"). A person types it into a form, so surrounding
    ASCII spaces are dropped; the amount itself is parsed strictly."""
    if isinstance(value, str):
        value = value.strip(" \t")
    if value is None or value == "":
        raise InvalidRequest("enter a spending limit, or choose no limit", "cap")
    try:
        return parse_amount(value)
    except ValueError as exc:
        raise InvalidRequest(f"spending cap: {exc}", "cap") from None


def parse_cap_choice(limit: object, cap: object) -> int | None:
    """The consent form's choice: `limit=cap` with an amount, or `limit=none` for no limit. "No limit" is
    only ever an explicit choice: an empty amount, a missing or unknown choice are refused, never read
    as uncapped."""
    if limit == "none":
        return None
    if limit == "cap":
        return parse_cap(cap)
    raise InvalidRequest("choose a spending limit or no limit", "limit")


def _from_item(item: dict[str, Any]) -> Connection:
    return Connection(
        id=item["connection_id"],
        paywall_id=item["paywall_id"],
        environment=item["environment"],
        user=item["user"],
        person_id=item["person_id"],
        status=item["status"],
        cap=item.get("cap"),
        remaining=item.get("remaining", 0),
        spent=item.get("spent", 0),
        created_at=item["created_at"],
        revoked_at=item.get("revoked_at"),
    )


# ---- reads --------------------------------------------------------------------------------------


def active(paywall_id: str, environment: str, user: str) -> Connection | None:
    """The app user's current connection, or None when not connected (never connected or revoked)."""
    pk = partition(paywall_id, environment, user)
    pointer = store.get(pk, "ACTIVE")
    if not pointer:
        return None
    item = store.get(pk, f"C#{pointer['connection_id']}")
    if not item or item.get("status") != "active":
        return None
    return _from_item(item)


@dataclass(frozen=True)
class Pointer:
    """Who an app user is connected to, as the `ACTIVE` item says: enough to charge them."""

    paywall_id: str
    environment: str
    user: str
    connection_id: str
    person_id: str

    @property
    def wallet_id(self) -> str:
        return persons.wallet_id(self.person_id, self.environment)

    @property
    def budget(self) -> ledger.Budget:
        return ledger.Budget(partition(self.paywall_id, self.environment, self.user), f"C#{self.connection_id}")


_pointers: dict[tuple[str, str, str], tuple[float, Pointer]] = {}
POINTER_TTL_S = settings().cache_ttl_s  # a module attribute (copied at load) the in-process stack warms


def cached_pointer(paywall_id: str, environment: str, user: str) -> Pointer | None:
    """The pointer while this instance's cache entry is fresh, else None: no read, nothing blocks
    (the chat path asks this on the event loop before `pointer` would read in a worker thread)."""
    cached = _pointers.get((paywall_id, environment, user))
    return cached[1] if cached and cached[0] > time.monotonic() else None


def pointer(paywall_id: str, environment: str, user: str, *, fresh: bool = False) -> Pointer | None:
    """The app user's connection, cached per instance for POINTER_TTL_S (the chat hot path reads
    nothing per request). A stale entry is harmless: revoking or replacing a connection makes its
    `remaining` negative in the same write, so a hold through it fails on the ledger's own condition
    and the caller asks again with fresh=True. "Not connected" is never cached: a person who just
    approved must be charged at once."""
    key = (paywall_id, environment, user)
    now = time.monotonic()
    cached = _pointers.get(key)
    if cached and cached[0] > now and not fresh:
        return cached[1]
    item = store.get(partition(paywall_id, environment, user), "ACTIVE")
    if not item:
        _pointers.pop(key, None)
        return None
    found = Pointer(paywall_id, environment, user, item["connection_id"], item["person_id"])
    if POINTER_TTL_S > 0:
        if len(_pointers) > 50_000:
            _pointers.clear()
        _pointers[key] = (now + POINTER_TTL_S, found)
    return found


def list_for_person(person_id: str) -> list[Connection]:
    """Active ones first, then newest first (KEYS_ONLY index, then the items themselves)."""
    keys = [(i["pk"], i["sk"]) for i in store.query_all(f"PCONN#{person_id}", index="gsi1")]
    items = store.batch_get(keys) if keys else []
    found = [_from_item(i) for i in items if i.get("person_id") == person_id]
    return sorted(found, key=lambda c: (c.active, c.created_at, c.id), reverse=True)


def get_for_person(person_id: str, connection_id: str) -> Connection:
    """A connection of this person (ownership is the check): NotConnected otherwise."""
    for key in store.query_all(f"PCONN#{person_id}", index="gsi1"):
        if key["sk"] == f"C#{connection_id}":
            item = store.get(key["pk"], key["sk"])
            if item and item.get("person_id") == person_id:
                return _from_item(item)
    raise NotConnected("no such connection")


def reload(connection: Connection) -> Connection:
    item = store.get(connection.budget.pk, connection.budget.sk)
    if not item:
        raise NotConnected("no such connection")
    return _from_item(item)


# ---- writes -------------------------------------------------------------------------------------


def _revoke_items(connection: Connection, when: str) -> list[dict[str, Any]]:
    return [
        {
            "Update": {
                "TableName": store.table_name(),
                "Key": store.key(connection.budget.pk, connection.budget.sk),
                "UpdateExpression": "SET #status = :revoked, revoked_at = :now ADD remaining :offset",
                "ConditionExpression": "#status = :active",
                "ExpressionAttributeNames": {"#status": "status"},
                "ExpressionAttributeValues": {
                    ":revoked": S("revoked"),
                    ":active": S("active"),
                    ":now": S(when),
                    ":offset": N(-REVOKED_OFFSET),
                },
            }
        }
    ]


def connect(paywall_id: str, environment: str, user: str, person_id: str, cap: int | None) -> Connection:
    """Authorize: connect the app user to the person's wallet with an optional cap. The same person
    approving again only updates the cap; another person's approval replaces the old connection."""
    pk = partition(paywall_id, environment, user)
    for _ in range(ATTEMPTS):
        current = active(paywall_id, environment, user)
        if current and current.person_id == person_id:
            return current if current.cap == cap else set_cap(current, cap)
        now = _now()
        connection = Connection(
            id="conn_" + secrets.token_hex(10),
            paywall_id=paywall_id,
            environment=environment,
            user=user,
            person_id=person_id,
            status="active",
            cap=cap,
            remaining=UNCAPPED_REMAINING if cap is None else cap,
            spent=0,
            created_at=now,
        )
        item = {
            "pk": pk,
            "sk": f"C#{connection.id}",
            "connection_id": connection.id,
            "paywall_id": paywall_id,
            "environment": environment,
            "user": user,
            "person_id": person_id,
            "status": "active",
            "cap": cap,
            "remaining": connection.remaining,
            "spent": 0,
            "created_at": now,
            "gsi1pk": f"PCONN#{person_id}",
            "gsi1sk": f"{now}#{connection.id}",
        }
        pointer = {"pk": pk, "sk": "ACTIVE", "connection_id": connection.id, "person_id": person_id}
        items: list[dict[str, Any]] = [
            {
                "Put": {
                    "TableName": store.table_name(),
                    "Item": store.encode(item),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
        ]
        if current:
            items += _revoke_items(current, now)
            items.append(
                {
                    "Put": {
                        "TableName": store.table_name(),
                        "Item": store.encode(pointer),
                        "ConditionExpression": "connection_id = :old",
                        "ExpressionAttributeValues": {":old": S(current.id)},
                    }
                }
            )
        else:
            items.append(
                {
                    "Put": {
                        "TableName": store.table_name(),
                        "Item": store.encode(pointer),
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                }
            )
        try:
            store.transact(items)
            return connection
        except TransactionCancelled:
            continue  # a concurrent approval or revocation: decide again on fresh state
    raise store.StoreUnavailable("the authorization could not be saved, please retry")


def revoke(connection: Connection) -> bool:
    """Disconnect. True if this call revoked it; False if it was not active any more."""
    when = _now()
    items = _revoke_items(connection, when) + [
        {
            "Delete": {
                "TableName": store.table_name(),
                "Key": store.key(connection.budget.pk, "ACTIVE"),
                "ConditionExpression": "connection_id = :id",
                "ExpressionAttributeValues": {":id": S(connection.id)},
            }
        }
    ]
    try:
        store.transact(items)
    except TransactionCancelled:
        return False
    return True


def disconnect(paywall_id: str, environment: str, user: str) -> bool:
    """The app's GET /v1/user/disconnect. True if a connection was revoked."""
    for _ in range(ATTEMPTS):
        current = active(paywall_id, environment, user)
        if current is None:
            return False
        if revoke(current):
            return True
    return False


def set_cap(connection: Connection, cap: int | None) -> Connection:
    """Change the cap of an active connection: `remaining` moves by the difference (it may go below
    zero when the new cap is under what was spent: further holds then fail, nothing is undone)."""
    old_budget = UNCAPPED_REMAINING if connection.cap is None else connection.cap
    new_budget = UNCAPPED_REMAINING if cap is None else cap
    values: dict[str, Any] = {":delta": N(new_budget - old_budget), ":active": S("active")}
    if connection.cap is None:
        condition = "#status = :active AND attribute_not_exists(cap)"
    else:
        condition = "#status = :active AND cap = :old"
        values[":old"] = N(connection.cap)
    if cap is None:
        update = "REMOVE cap ADD remaining :delta"
    else:
        update = "SET cap = :cap ADD remaining :delta"
        values[":cap"] = N(cap)
    try:
        store.transact(
            [
                {
                    "Update": {
                        "TableName": store.table_name(),
                        "Key": store.key(connection.budget.pk, connection.budget.sk),
                        "UpdateExpression": update,
                        "ConditionExpression": condition,
                        "ExpressionAttributeNames": {"#status": "status"},
                        "ExpressionAttributeValues": values,
                    }
                }
            ]
        )
    except TransactionCancelled:
        raise NotConnected("this connection changed meanwhile; reload and try again") from None
    return reload(connection)
