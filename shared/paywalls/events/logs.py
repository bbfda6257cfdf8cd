"""GET /v1/webhooks/logs: a paywall's deliveries, newest first, with cursor paging.

Delivery records are indexed in gsi1 under LOG_SHARDS partitions per paywall (`WHLOG#{paywall}#{nn}`,
sort key `{created_at}#{event}#{subscription}`; delivery.py), so no index partition takes more than
its share of a busy paywall's deliveries (DESIGN.md "Hot keys"). A page queries every shard for the
keys below the cursor (newest first, `limit` each), merges them, and reads the records it keeps;
filters apply to the records, so a filtered page may take a few rounds (at most MAX_ROUNDS)."""

from __future__ import annotations

import base64
import heapq
from typing import Any

from paywalls.billing.paywall import InvalidRequest
from paywalls.events.delivery import LOG_SHARDS, as_log
from paywalls.infra import store

DEFAULT_LIMIT = 20
MAX_LIMIT = 100
MAX_ROUNDS = 5
STATUSES = ("pending", "success", "error")


def _encode(sort_key: str) -> str:
    return base64.urlsafe_b64encode(sort_key.encode()).decode().rstrip("=")


def _decode(cursor: str) -> str:
    try:
        value = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest("invalid cursor", "cursor") from None
    if value.count("#") != 2 or len(value) > 200:
        raise InvalidRequest("invalid cursor", "cursor")
    return value


def parse_limit(value: object) -> int:
    if value is None or value == "":
        return DEFAULT_LIMIT
    try:
        limit = int(str(value))
    except ValueError:
        raise InvalidRequest(f"limit must be an integer between 1 and {MAX_LIMIT}", "limit") from None
    if not 1 <= limit <= MAX_LIMIT or not str(value).isascii():
        raise InvalidRequest(f"limit must be an integer between 1 and {MAX_LIMIT}", "limit")
    return limit


def list_logs(
    paywall_id: str,
    *,
    subscription_id: str | None = None,
    status: str | None = None,
    event_type: str | None = None,
    limit: object = None,
    cursor: str | None = None,
) -> dict[str, Any]:
    size = parse_limit(limit)
    if status is not None and status not in STATUSES:
        raise InvalidRequest("status must be one of pending, success, error", "status")
    below = _decode(cursor) if cursor else None
    out: list[dict[str, Any]] = []
    more = False
    for _ in range(MAX_ROUNDS):
        keys = _newest_keys(paywall_id, below, size)
        if not keys:
            more = False
            break
        records = {(r["pk"], r["sk"]): r for r in store.batch_get([(k["pk"], k["sk"]) for k in keys])}
        for k in keys:
            below = k["gsi1sk"]
            record = records.get((k["pk"], k["sk"]))
            if record is None or not _keep(record, subscription_id, status, event_type):
                continue
            out.append(as_log(record))
            if len(out) == size:
                break
        more = len(keys) == size or len(out) == size
        if len(out) == size or len(keys) < size:
            break
    next_cursor = _encode(below) if more and below and out else None
    return {"object": "list", "data": out, "hasMore": next_cursor is not None, "nextCursor": next_cursor}


def _keep(record: dict[str, Any], subscription_id: str | None, status: str | None, event_type: str | None) -> bool:
    if subscription_id is not None and record.get("subscription_id") != subscription_id:
        return False
    if status is not None and record.get("status") != status:
        return False
    return event_type is None or record.get("event_type") == event_type


def _newest_keys(paywall_id: str, below: str | None, size: int) -> list[dict[str, Any]]:
    """The `size` newest index keys below `below` across every shard."""
    pages = []
    for shard in range(LOG_SHARDS):
        items, _ = store.query(
            f"WHLOG#{paywall_id}#{shard:02d}", index="gsi1", newest_first=True, limit=size, sk_below=below
        )
        pages.append(items)
    merged = heapq.merge(*pages, key=lambda k: k["gsi1sk"], reverse=True)
    return [k for _, k in zip(range(size), merged, strict=False)]
