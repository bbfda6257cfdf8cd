"""The transactional outbox: an event is an item of the table, written in the same TransactWriteItems
as the money movement it records (ledger `also=`), so it exists exactly when the movement does. The
table's stream carries it to the dispatcher (functions/event_dispatcher), which fans it out to the
subscriptions.

Only events some active subscription wants are written: the paywall item holds the union of its
active subscriptions' patterns (`webhook_events`, kept by subscriptions.py), and the paywall is
already read (and cached) on every request path, so a paywall without subscriptions writes nothing
extra and reads nothing extra.

Keys: each event is its own partition `EVT#{event id}` (a fresh random id), so no outbox key is hot
whatever the request rate (DESIGN.md "Hot keys"). Items expire after OUTBOX_TTL_S (TTL); the stream
has already carried them (24 h retention) long before."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from paywalls.billing import ledger
from paywalls.billing.paywall import Paywall
from paywalls.core.money import format_micros
from paywalls.events.catalog import CATALOG, VERSION, wanted
from paywalls.infra import store

OUTBOX_PREFIX = "EVT#"
OUTBOX_TTL_S = 7 * 24 * 3600


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_event_id() -> str:
    return "evt_" + secrets.token_hex(12)


def wants(paywall: Paywall, event_type: str) -> bool:
    return bool(paywall.webhook_events) and wanted(paywall.webhook_events, event_type)


def envelope(
    paywall_id: str,
    event_type: str,
    data: dict[str, Any],
    *,
    event_id: str | None = None,
    created_at: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The `event` object of a delivery body (docs/webhooks.md)."""
    if event_type not in CATALOG:
        raise ValueError(f"unknown event type {event_type!r}")
    user = data.get("externalUserId")
    subject = f"user:{user}" if user is not None else f"paywall:{paywall_id}"
    if "subscriptionId" in data:
        subject = f"subscription:{data['subscriptionId']}"
    return {
        "id": event_id or new_event_id(),
        "paywallId": paywall_id,
        "type": event_type,
        "version": VERSION,
        "createdAt": created_at or now_iso(),
        "subject": subject,
        "data": data,
        "metadata": metadata or {},
    }


def item(event: dict[str, Any]) -> dict[str, Any]:
    """The outbox item of an event, as a TransactWriteItems Put (no condition: the id is fresh, and a
    condition could only make the money movement fail)."""
    return {
        "Put": {
            "TableName": store.table_name(),
            "Item": store.encode(
                {
                    "pk": OUTBOX_PREFIX + event["id"],
                    "sk": "EVENT",
                    "paywall_id": event["paywallId"],
                    "type": event["type"],
                    "created_at": event["createdAt"],
                    "payload": json.dumps(event, separators=(",", ":")),
                    "expires_at_ttl": int(time.time()) + OUTBOX_TTL_S,
                }
            ),
        }
    }


def emit(paywall: Paywall, event_type: str, data: dict[str, Any]) -> dict[str, Any] | None:
    """A non-money event (a link created, settings changed...): one PutItem, only when wanted."""
    if not wants(paywall, event_type):
        return None
    event = envelope(paywall.id, event_type, data)
    put = item(event)["Put"]
    store.with_retries(lambda: store.ddb().put_item(TableName=put["TableName"], Item=put["Item"]))
    return event


# ---- money events: ledger `also=` builders ----------------------------------------------------------

DataOf = Callable[[ledger.Entry], dict[str, Any]]


def money_data(entry: ledger.Entry, user: str, environment: str, currency: str) -> dict[str, Any]:
    return {
        "externalUserId": user,
        "environment": environment,
        "amount": str(abs(entry.amount)),
        "amountFormatted": format_micros(abs(entry.amount)),
        "balance": str(entry.balance_after),
        "balanceFormatted": format_micros(entry.balance_after),
        "currency": currency,
        "entryId": entry.id,
    }


def posting_events(
    paywall: Paywall,
    environment: str,
    user: str,
    event_type: str,
    extra: DataOf | None = None,
    *,
    depletes: bool = False,
) -> ledger.Also | None:
    """The `also=` that adds `event_type` (and `paywall.balance.depleted` when the posting takes the
    balance from above zero to zero or below, if `depletes`) to the posting's transaction; None when
    no subscription wants either, so the transaction stays as it was."""
    main = wants(paywall, event_type)
    # Shared mode: an app never sees a figure derived from the person's wallet (DESIGN.md), so no
    # balance and no depletion event.
    shared = paywall.mode == "shared"
    depleted = depletes and not shared and wants(paywall, "paywall.balance.depleted")
    if not main and not depleted:
        return None

    def items(entry: ledger.Entry) -> list[dict[str, Any]]:
        # Ids derive from the entry (unique per committed posting): a retried attempt builds new ones.
        base = money_data(entry, user, environment, paywall.currency)
        if shared:
            base = {k: v for k, v in base.items() if k not in ("balance", "balanceFormatted")}
        meta = {"environment": environment}
        out = []
        if main:
            data = {**base, **(extra(entry) if extra else {})}
            out.append(
                item(
                    envelope(
                        paywall.id,
                        event_type,
                        data,
                        event_id=f"evt_{entry.id}",
                        created_at=entry.created_at,
                        metadata=meta,
                    )
                )
            )
        if depleted and entry.balance_after <= 0 < entry.balance_after - entry.amount:
            data = {**base, "cause": event_type}
            out.append(
                item(
                    envelope(
                        paywall.id,
                        "paywall.balance.depleted",
                        data,
                        event_id=f"evt_{entry.id}_depleted",
                        created_at=entry.created_at,
                        metadata=meta,
                    )
                )
            )
        return out

    return items


def combine(*builders: ledger.Also | None) -> ledger.Also | None:
    """Several `also=` builders as one (None when none is set)."""
    present = [b for b in builders if b is not None]
    if not present:
        return None
    if len(present) == 1:
        return present[0]
    return lambda entry: [i for b in present for i in b(entry)]
