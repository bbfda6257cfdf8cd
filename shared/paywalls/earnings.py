"""A shared-mode paywall's earnings (SPEC §6): what its users spend, minus the operator's platform fee.

Credited in the same transaction as the charge on the person's wallet (ledger `also=`), so a charge
and its earnings exist together or not at all, exactly once.

Sharding (why: DESIGN.md "Earnings"): a paywall's earnings are SHARDS counter items, each in its own
partition `EARN#{paywall_id}#{environment}#{shard:02d}` / `EARN`, the shard chosen by a hash of the
request id (or entry id). Each shard holds `available` (earned - withdrawn), `earned`, `withdrawn`,
`gross`, `fees` and `charges`. Available earnings = the sum of the shards' `available`.

The earnings ledger lives beside each counter (`ENTRY#{created_at}#{id}` in the shard's partition):
one `charge` entry per credited charge (net amount, gross, fee, app user, request id) and one
`withdrawal` entry per shard a withdrawal drew from. Per shard, the entries sum to `available`.

Platform fee rounding: fee = floor(charge x percent / 100), net = charge - fee. The fee never exceeds
the advertised percentage of any charge, and fee + net == charge exactly (no micro-unit is created or
lost)."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from paywalls import ledger, store
from paywalls.money import format_micros
from paywalls.paywall import ENVIRONMENTS, InvalidRequest, Paywall
from paywalls.store import N, S

SHARDS = 32


@dataclass(frozen=True)
class Split:
    gross: int
    fee: int
    net: int


def split(charge: int, fee_percent: Decimal) -> Split:
    fee = int((Decimal(charge) * fee_percent / 100).to_integral_value(rounding=ROUND_FLOOR))
    fee = min(max(fee, 0), charge)
    return Split(charge, fee, charge - fee)


def shard_of(key: str) -> int:
    return zlib.crc32(key.encode()) % SHARDS


def shard_pk(paywall_id: str, environment: str, shard: int) -> str:
    return f"EARN#{paywall_id}#{environment}#{shard:02d}"


def check_environment(environment: str) -> None:
    if environment not in ENVIRONMENTS:
        raise InvalidRequest("environment must be 'live' or 'test'", "environment")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def credit_items(paywall: Paywall, environment: str, user: str, connection_id: str) -> ledger.Also:
    """The `also=` builder for a charge on a person's wallet made by (paywall, environment, user)."""

    def build(entry: ledger.Entry) -> list[dict[str, Any]]:
        gross = -entry.amount
        if gross <= 0:
            return []
        parts = split(gross, paywall.platform_fee_percent)
        shard = shard_of(entry.request_id or entry.id)
        pk = shard_pk(paywall.id, environment, shard)
        record = {
            "pk": pk,
            "sk": f"ENTRY#{entry.created_at}#{entry.id}",
            "entry_id": entry.id,
            "type": "charge",
            "amount": parts.net,
            "gross": parts.gross,
            "fee": parts.fee,
            "user": user,
            "connection_id": connection_id,
            "request_id": entry.request_id,
            "model": entry.model,
            "created_at": entry.created_at,
        }
        return [
            {
                "Update": {
                    "TableName": store.table_name(),
                    "Key": store.key(pk, "EARN"),
                    "UpdateExpression": (
                        "ADD available :net, earned :net, gross :gross, fees :fee, charges :one "
                        "SET paywall_id = if_not_exists(paywall_id, :pw), "
                        "environment = if_not_exists(environment, :env)"
                    ),
                    "ExpressionAttributeValues": {
                        ":net": N(parts.net),
                        ":gross": N(parts.gross),
                        ":fee": N(parts.fee),
                        ":one": N(1),
                        ":pw": S(paywall.id),
                        ":env": S(environment),
                    },
                }
            },
            {
                "Put": {
                    "TableName": store.table_name(),
                    "Item": store.encode(record),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
        ]

    return build


@dataclass(frozen=True)
class Shard:
    index: int
    available: int
    earned: int
    withdrawn: int
    gross: int
    fees: int
    charges: int


def shards(paywall_id: str, environment: str) -> list[Shard]:
    """Every shard, read consistently (a withdrawal plans from these)."""
    found = []
    for index in range(SHARDS):
        item = store.get(shard_pk(paywall_id, environment, index), "EARN") or {}
        found.append(
            Shard(
                index,
                item.get("available", 0),
                item.get("earned", 0),
                item.get("withdrawn", 0),
                item.get("gross", 0),
                item.get("fees", 0),
                item.get("charges", 0),
            )
        )
    return found


def summary(paywall_id: str, environment: str) -> dict[str, Any]:
    check_environment(environment)
    all_shards = shards(paywall_id, environment)
    totals = {
        name: sum(getattr(s, name) for s in all_shards)
        for name in ("available", "earned", "withdrawn", "gross", "fees", "charges")
    }
    money = {k: v for k, v in totals.items() if k != "charges"}
    return {
        "object": "earnings",
        "paywall_id": paywall_id,
        "environment": environment,
        **{k: str(v) for k, v in money.items()},
        **{f"{k}Formatted": format_micros(v) for k, v in money.items()},
        "charges": totals["charges"],
        "shards": SHARDS,
    }


def entries(paywall_id: str, environment: str, shard: int) -> list[dict[str, Any]]:
    """The earnings ledger of one shard, oldest first."""
    return list(store.query_all(shard_pk(paywall_id, environment, shard), sk_prefix="ENTRY#"))
