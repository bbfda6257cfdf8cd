"""A paywall's ledger for operators: one user's entries or every user's, newest first per user,
filtered by date, type and model, a bounded page at a time (JSON or CSV), never one huge read.

Default mode only: a shared-mode app user has no wallet of their own (the person's wallet serves
every app they use; what an app may see of it is in shared_mode)."""

from __future__ import annotations

import base64
import binascii
import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from paywalls.analytics.reports import parse_instant
from paywalls.billing import ledger
from paywalls.billing.identity import USER_ID_RE, app_wallet_id
from paywalls.billing.paywall import InvalidRequest, Paywall
from paywalls.core.errors import Conflict
from paywalls.core.money import format_micros
from paywalls.infra import store

ENTRY_TYPES = ("deposit", "charge", "refund", "adjustment", "trial", "withdrawal")
READ_BUDGET = 2000  # entries read per page at most: a page may come back short, with a cursor
TOP_VERSION = 10**12 - 1  # above every entry version (`ENTRY#{version:012d}`)
CSV_COLUMNS = (
    "created_at",
    "user",
    "id",
    "type",
    "amount",
    "amount_formatted",
    "balance_after",
    "model",
    "prompt_tokens",
    "completion_tokens",
    "provider_cost",
    "request_id",
)


@dataclass(frozen=True)
class Filters:
    user: str | None = None
    type: str | None = None
    model: str | None = None
    start: str | None = None  # ISO timestamps, compared as the ledger writes them (UTC, "Z")
    end: str | None = None

    def check(self) -> Filters:
        if self.user is not None and not USER_ID_RE.fullmatch(self.user):
            raise InvalidRequest("invalid user id", "user")
        if self.type is not None and self.type not in ENTRY_TYPES:
            raise InvalidRequest(f"type must be one of {', '.join(ENTRY_TYPES)}", "type")
        if self.model is not None and not 1 <= len(self.model) <= 200:
            raise InvalidRequest("model must be 1-200 characters", "model")
        return Filters(self.user, self.type, self.model, _instant(self.start, "from"), _instant(self.end, "to"))

    def keeps(self, entry: ledger.Entry) -> bool:
        return (self.type is None or entry.type == self.type) and (self.model is None or entry.model == self.model)


def _instant(value: str | None, name: str) -> str | None:
    """The ledger's own timestamp form (`2026-11-20T10:15:00.000Z`), so string order is time order."""
    if value is None:
        return None
    return parse_instant(value, name).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _encode(user: str, version: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"u": user, "v": version}).encode()).decode()


def _decode(cursor: str) -> tuple[str, int]:
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        user, version = data["u"], data["v"]
    except (binascii.Error, ValueError, UnicodeError, TypeError, KeyError, RecursionError):
        raise InvalidRequest("invalid cursor", "cursor") from None
    if not (
        isinstance(user, str) and USER_ID_RE.fullmatch(user) and type(version) is int and 0 < version <= TOP_VERSION
    ):
        raise InvalidRequest("invalid cursor", "cursor")
    return user, version


def _users_from(paywall_id: str, environment: str, first: str | None) -> Iterator[str]:
    """The paywall's users in id order (gsi1), from `first` (inclusive) on."""
    index_pk = f"USERS#{paywall_id}#{environment}"
    start: dict[str, str] | None = None
    if first is not None:
        yield first
        wallet = f"WALLET#{app_wallet_id(paywall_id, environment, first)}"
        start = {"gsi1pk": index_pk, "gsi1sk": first, "pk": wallet, "sk": "WALLET"}
    while True:
        items, start = store.query(index_pk, index="gsi1", limit=100, start_key=start)
        for item in items:
            yield item["gsi1sk"]
        if not start:
            return


def page(
    paywall: Paywall, environment: str, filters: Filters, *, limit: int = 100, cursor: str | None = None
) -> tuple[list[tuple[str, ledger.Entry]], str | None]:
    """(user, entry) rows and the cursor of the next page (None: done)."""
    if paywall.mode == "shared":
        raise SharedMode()
    filters = filters.check()
    position = _decode(cursor) if cursor else None
    if filters.user is not None and position is not None and position[0] != filters.user:
        raise InvalidRequest("invalid cursor", "cursor")
    users: Iterator[str] = (
        iter([filters.user]) if filters.user else _users_from(paywall.id, environment, position and position[0])
    )
    rows: list[tuple[str, ledger.Entry]] = []
    read = 0
    for user in users:
        below = position[1] if position and position[0] == user else TOP_VERSION
        for entry in ledger.entries_before(app_wallet_id(paywall.id, environment, user), below):
            read += 1
            if filters.start and entry.created_at < filters.start:
                break  # newest first: everything after this is older still
            if (filters.end is None or entry.created_at < filters.end) and filters.keeps(entry):
                rows.append((user, entry))
            if len(rows) == limit or read >= READ_BUDGET:
                return rows, _encode(user, entry.version) if entry.version > 1 else _next_user(users)
    return rows, None


def _next_user(users: Iterator[str]) -> str | None:
    following = next(users, None)
    return _encode(following, TOP_VERSION) if following else None


class SharedMode(Conflict):
    """A shared-mode paywall: its users have no ledger of their own here."""


def row_api(user: str, entry: ledger.Entry) -> dict[str, Any]:
    return {"user": user, **entry.as_api(), "amountFormatted": format_micros(entry.amount)}


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    # A spreadsheet runs a cell starting with = + - @ as a formula: free text gets a leading quote.
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def csv_text(rows: list[tuple[str, ledger.Entry]], *, header: bool) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    if header:
        writer.writerow(CSV_COLUMNS)
    for user, entry in rows:
        writer.writerow(
            [
                entry.created_at,
                _cell(user),
                entry.id,
                entry.type,
                entry.amount,
                format_micros(entry.amount),
                entry.balance_after,
                _cell(entry.model),
                entry.prompt_tokens,
                entry.completion_tokens,
                entry.provider_cost,
                _cell(entry.request_id),
            ]
        )
    return out.getvalue()
