"""Operator reports: the paywalls of the deployment and a paywall's users with balances and spend.
Usage (revenue, provider cost, profit) is read from the roll-ups: paywalls.analytics.reports."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from typing import Any

from paywalls.analytics import reports as analytics_reports
from paywalls.billing import ledger
from paywalls.billing import paywall as paywalls
from paywalls.billing.identity import USER_ID_RE, app_wallet_id
from paywalls.billing.paywall import ENVIRONMENTS, PAYWALLS_INDEX_PK, InvalidRequest
from paywalls.core.money import format_micros
from paywalls.infra import store


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
    spent = analytics_reports.user_totals(paywall_id, environment, users)
    data = []
    for user in users:
        wallet = wallets[app_wallet_id(paywall_id, environment, user)]
        data.append(
            {
                "user": user,
                "balance": str(wallet.balance),
                "balanceFormatted": format_micros(wallet.balance),
                "available": str(wallet.available),
                "total_spend": format_micros(spent[user]["spend"]),
                "last_activity": spent[user]["last_at"],
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
