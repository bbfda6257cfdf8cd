"""Operator reports: the paywalls of the deployment, a paywall's users with balances, and usage
(revenue, provider cost, profit)."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from paywalls import ledger, store
from paywalls import paywall as paywalls
from paywalls.identity import USER_ID_RE, app_wallet_id
from paywalls.money import format_micros
from paywalls.paywall import ENVIRONMENTS, PAYWALLS_INDEX_PK, InvalidRequest


def _check_environment(environment: str) -> None:
    if environment not in ENVIRONMENTS:
        raise InvalidRequest("environment must be 'live' or 'test'", "environment")


def _users_index_pk(paywall_id: str, environment: str) -> str:
    return f"USERS#{paywall_id}#{environment}"


def users_page(paywall_id: str, environment: str, *, limit: int = 100, cursor: str | None = None) -> dict[str, Any]:
    _check_environment(environment)
    if not 1 <= limit <= 1000:
        raise InvalidRequest("limit must be between 1 and 1000", "limit")
    start = _decode_cursor(cursor, paywall_id, environment) if cursor else None
    items, last = store.query(_users_index_pk(paywall_id, environment), index="gsi1", limit=limit, start_key=start)
    users = [i["gsi1sk"] for i in items]
    wallets = ledger.get_wallets([app_wallet_id(paywall_id, environment, u) for u in users])
    data = []
    for user in users:
        wallet = wallets[app_wallet_id(paywall_id, environment, user)]
        data.append(
            {
                "user": user,
                "balance": str(wallet.balance),
                "balanceFormatted": format_micros(wallet.balance),
                "available": str(wallet.available),
            }
        )
    return {
        "object": "list",
        "data": data,
        "has_more": last is not None,
        "next_cursor": _encode_cursor(last) if last else None,
    }


def paywalls_page(*, limit: int = 100, cursor: str | None = None) -> dict[str, Any]:
    """Every paywall of the deployment, oldest first (gsi1 `PAYWALLS`, written by paywall.save)."""
    if not 1 <= limit <= 100:  # one BatchGetItem
        raise InvalidRequest("limit must be between 1 and 100", "limit")
    start = _decode_key(cursor, PAYWALLS_INDEX_PK, _PAYWALL_SK.fullmatch) if cursor else None
    items, last = store.query(PAYWALLS_INDEX_PK, index="gsi1", limit=limit, start_key=start)
    listed = paywalls.get_many([i["pk"].removeprefix("PAYWALL#") for i in items])
    return {
        "object": "list",
        "data": [p.as_api() for p in listed],
        "has_more": last is not None,
        "next_cursor": _encode_cursor(last) if last else None,
    }


_PAYWALL_SK = re.compile(r"[0-9TZ:.+-]{1,40}#pw_[0-9a-f]{1,40}")  # {created_at}#{id}


def _encode_cursor(key: dict[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode()


def _decode_cursor(cursor: str, paywall_id: str, environment: str) -> dict[str, str]:
    return _decode_key(cursor, _users_index_pk(paywall_id, environment), USER_ID_RE.match)


def _decode_key(cursor: str, index_pk: str, valid_sk: Callable[[str], object]) -> dict[str, str]:
    """The start key of a gsi1 listing page, accepted only in the exact shape _encode_cursor wrote for
    this listing: anything else would reach DynamoDB as an ExclusiveStartKey it rejects (a 500), or
    start a listing of another partition (e.g. another paywall's users)."""
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (binascii.Error, ValueError, UnicodeError, RecursionError):
        raise InvalidRequest("invalid cursor", "cursor") from None
    if (
        not isinstance(key, dict)
        or set(key) != _CURSOR_KEYS
        or not all(_valid_key_value(v) for v in key.values())
        or key["gsi1pk"] != index_pk
        or not valid_sk(key["gsi1sk"])
    ):
        raise InvalidRequest("invalid cursor", "cursor")
    return key


_CURSOR_KEYS = {"gsi1pk", "gsi1sk", "pk", "sk"}  # gsi1's keys plus the table's: what DynamoDB returns


def _valid_key_value(value: object) -> bool:
    """A string DynamoDB takes as a key: non-empty, valid UTF-8, within the 1024-byte sort key limit."""
    if not isinstance(value, str) or not value:
        return False
    try:
        return len(value.encode("utf-8")) <= 1024
    except UnicodeEncodeError:  # a lone surrogate from a "\ud800" escape
        return False


def usage(paywall_id: str, environment: str, start: str | None, end: str | None) -> dict[str, Any]:
    """Aggregates charge entries of every user of the paywall between ISO timestamps [start, end).
    Reads the ledger directly: fine for an operator report, not meant for a hot path."""
    _check_environment(environment)
    totals = {"revenue": 0, "provider_cost": 0, "requests": 0}
    by_model: dict[str, dict[str, int]] = defaultdict(lambda: {"revenue": 0, "provider_cost": 0, "requests": 0})
    by_user: dict[str, dict[str, int]] = defaultdict(lambda: {"revenue": 0, "provider_cost": 0, "requests": 0})
    # Profit per provider (chat/routing.py): a charge not served by a provider is `(none)`.
    by_provider: dict[str, dict[str, int]] = defaultdict(lambda: {"revenue": 0, "provider_cost": 0, "requests": 0})
    for item in store.query_all(_users_index_pk(paywall_id, environment), index="gsi1"):
        user = item["gsi1sk"]
        for entry in ledger.all_entries(app_wallet_id(paywall_id, environment, user)):
            if entry.type != "charge" or (start and entry.created_at < start) or (end and entry.created_at >= end):
                continue
            buckets = (
                totals,
                by_model[entry.model or "(manual)"],
                by_user[user],
                by_provider[entry.provider or "(none)"],
            )
            for bucket in buckets:
                bucket["revenue"] += -entry.amount
                bucket["provider_cost"] += entry.provider_cost or 0
                bucket["requests"] += 1
    return {
        "object": "usage",
        "from": start,
        "to": end,
        "currency_unit": "micro",
        **_render(totals),
        "by_model": {m: _render(v) for m, v in sorted(by_model.items())},
        "by_provider": {p: _render(v) for p, v in sorted(by_provider.items())},
        "by_user": {u: _render(v) for u, v in sorted(by_user.items())},
    }


def _render(bucket: dict[str, int]) -> dict[str, Any]:
    profit = bucket["revenue"] - bucket["provider_cost"]
    return {
        "revenue": format_micros(bucket["revenue"]),
        "provider_cost": format_micros(bucket["provider_cost"]),
        "profit": format_micros(profit),
        "requests": bucket["requests"],
    }
