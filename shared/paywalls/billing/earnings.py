"""A shared-mode paywall's earnings (SPEC §6): what its users spend, minus the operator's platform fee.

Credited in the same transaction as the charge on the person's wallet (ledger `also=`), so a charge
and its earnings exist together or not at all, exactly once.

Sharding (why: DESIGN.md "Earnings"): a paywall's earnings are SHARDS counter items, each in its own
partition `EARN#{paywall_id}#{environment}#{shard:02d}` / `EARN`, the shard chosen by a hash of the
request id (or entry id). Each shard holds `available`, `pending`, `earned`, `withdrawn`, `reversed`,
`gross`, `fees` and `charges`.

Settlement delay (DESIGN.md "Earnings: settlement delay"): a charge's net earning is withdrawable only
from `matures_on` = the first 00:00 UTC at or after the charge (`now()`) + EarningsHoldDays, so a
refund or lost dispute of the top-up that paid for it can still take it back (losses.py). Until then
it sits in a per-day bucket of its shard, the top-level attribute `m_{yyyymmdd}` (ADDed blindly by
charges: no read, no condition, no contention), counted in `pending`. Buckets whose day has come are
matured: they are withdrawable at once, and folded into `available` lazily, by the next withdrawal
(in its own transaction, under `m_{day} = value read`) or report. So per shard, at any time:
    available + pending == earned - withdrawn - reversed,  pending == sum of the buckets,
    withdrawable(day) = available + sum of the buckets with day <= today.

The earnings ledger lives beside each counter (`ENTRY#{created_at}#{id}` in the shard's partition):
one `charge` entry per credited charge (net amount, gross, fee, app user, request id, matures_on),
one `withdrawal` entry per shard a withdrawal drew from and one `reversal` entry per shard a loss took
pending earnings back from. Per shard, the entries sum to `available + pending` (folding moves money
between the two and writes no entry).

Platform fee rounding: fee = floor(charge x percent / 100), net = charge - fee. The fee never exceeds
the advertised percentage of any charge, and fee + net == charge exactly (no micro-unit is created or
lost)."""

from __future__ import annotations

import logging
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from paywalls.billing import ledger
from paywalls.billing.paywall import ENVIRONMENTS, InvalidRequest, Paywall
from paywalls.core.money import format_micros
from paywalls.infra import store
from paywalls.infra.config import settings
from paywalls.infra.store import N, S, TransactionCancelled

log = logging.getLogger(__name__)

SHARDS = 32
BUCKET_PREFIX = "m_"


def now() -> datetime:
    """The clock every maturity decision reads (what is withdrawable, what a loss may still take
    back). A module function so tests and the local stack's dev clock can move it without sleeping."""
    return datetime.now(UTC)


def today() -> date:
    return now().date()


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


# ---- maturity -----------------------------------------------------------------------------------


def matures_on(earned_at: datetime, hold_days: int) -> date:
    """The day from whose 00:00 UTC an earning made at `earned_at` is withdrawable: the first UTC
    midnight at or after earned_at + hold_days (so never sooner than the hold, at most a day later)."""
    moment = earned_at.astimezone(UTC) + timedelta(days=hold_days)
    day = moment.date()
    return day if moment == datetime(day.year, day.month, day.day, tzinfo=UTC) else day + timedelta(days=1)


def bucket_name(day: date) -> str:
    return f"{BUCKET_PREFIX}{day:%Y%m%d}"


def _bucket_day(name: str) -> date | None:
    digits = name.removeprefix(BUCKET_PREFIX)
    if not (name.startswith(BUCKET_PREFIX) and len(digits) == 8 and digits.isdigit()):
        return None
    return date(int(digits[:4]), int(digits[4:6]), int(digits[6:]))


def midnight(day: date) -> str:
    return f"{day.isoformat()}T00:00:00Z"


# ---- crediting (in the charge's transaction) -----------------------------------------------------


def credit_items(paywall: Paywall, environment: str, user: str, connection_id: str) -> ledger.Also:
    """The `also=` builder for a charge on a person's wallet made by (paywall, environment, user)."""

    def build(entry: ledger.Entry) -> list[dict[str, Any]]:
        gross = -entry.amount
        if gross <= 0:
            return []
        parts = split(gross, paywall.platform_fee_percent)
        shard = shard_of(entry.request_id or entry.id)
        pk = shard_pk(paywall.id, environment, shard)
        hold_days = settings().earnings_hold_days
        # The maturity clock (not the entry's timestamp) so a test moving `now` moves both ends.
        matures = matures_on(now(), hold_days) if hold_days else None
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
            "matures_on": matures.isoformat() if matures else None,
        }
        names: dict[str, str] = {}
        if matures:
            # Pending until its day: a blind ADD into that day's bucket (never a condition on this
            # hot item, so charges do not contend with each other or with withdrawals).
            target = "pending :net, #bucket :net"
            names["#bucket"] = bucket_name(matures)
        else:
            target = "available :net"  # EarningsHoldDays = 0: withdrawable at once
        update: dict[str, Any] = {
            "TableName": store.table_name(),
            "Key": store.key(pk, "EARN"),
            "UpdateExpression": (
                f"ADD {target}, earned :net, gross :gross, fees :fee, charges :one "
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
        if names:
            update["ExpressionAttributeNames"] = names
        return [
            {"Update": update},
            {
                "Put": {
                    "TableName": store.table_name(),
                    "Item": store.encode(record),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
        ]

    return build


# ---- reading ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shard:
    index: int
    available: int  # matured and folded, not withdrawn
    earned: int
    withdrawn: int
    gross: int
    fees: int
    charges: int
    pending: int = 0  # sum of the buckets (matured ones not folded yet included)
    reversed: int = 0  # pending earnings taken back by losses (losses.py)
    buckets: Mapping[date, int] = field(default_factory=dict)  # maturity day -> net amount

    def matured(self, day: date) -> dict[date, int]:
        return {d: v for d, v in self.buckets.items() if d <= day}

    def withdrawable(self, day: date) -> int:
        return self.available + sum(self.matured(day).values())

    def pending_after(self, day: date) -> dict[date, int]:
        return {d: v for d, v in self.buckets.items() if d > day}


def _shard_from_item(index: int, item: dict[str, Any]) -> Shard:
    buckets = {d: v for name, v in item.items() if (d := _bucket_day(name)) is not None}
    return Shard(
        index,
        item.get("available", 0),
        item.get("earned", 0),
        item.get("withdrawn", 0),
        item.get("gross", 0),
        item.get("fees", 0),
        item.get("charges", 0),
        item.get("pending", 0),
        item.get("reversed", 0),
        buckets,
    )


def shards(paywall_id: str, environment: str) -> list[Shard]:
    """Every shard, read consistently (a withdrawal plans from these)."""
    return [
        _shard_from_item(index, store.get(shard_pk(paywall_id, environment, index), "EARN") or {})
        for index in range(SHARDS)
    ]


def summary(paywall_id: str, environment: str) -> dict[str, Any]:
    """Totals over the shards as of today: `available` is what a withdrawal may take now, `pending`
    what is still held, `pending_by_day` when it matures (00:00 UTC of each day)."""
    check_environment(environment)
    day = today()
    all_shards = shards(paywall_id, environment)
    by_day: dict[date, int] = {}
    for shard in all_shards:
        for d, v in shard.pending_after(day).items():
            by_day[d] = by_day.get(d, 0) + v
    money = {
        "available": sum(s.withdrawable(day) for s in all_shards),
        "pending": sum(by_day.values()),
        **{
            name: sum(getattr(s, name) for s in all_shards)
            for name in ("earned", "withdrawn", "reversed", "gross", "fees")
        },
    }
    fold(paywall_id, environment, all_shards, day)
    return {
        "object": "earnings",
        "paywall_id": paywall_id,
        "environment": environment,
        **{k: str(v) for k, v in money.items()},
        **{f"{k}Formatted": format_micros(v) for k, v in money.items()},
        "pending_by_day": [
            {"matures_at": midnight(d), "amount": str(v), "amountFormatted": format_micros(v)}
            for d, v in sorted(by_day.items())
            if v
        ],
        "next_matures_at": next((midnight(d) for d, v in sorted(by_day.items()) if v), None),
        "hold_days": settings().earnings_hold_days,
        "charges": sum(s.charges for s in all_shards),
        "shards": SHARDS,
    }


def entries(paywall_id: str, environment: str, shard: int) -> list[dict[str, Any]]:
    """The earnings ledger of one shard, oldest first."""
    return list(store.query_all(shard_pk(paywall_id, environment, shard), sk_prefix="ENTRY#"))


# ---- moving matured and pending money (withdrawals, folds, reversals) -----------------------------


def draw_update(paywall_id: str, environment: str, shard: Shard, day: date, take: int) -> dict[str, Any] | None:
    """The transaction item that folds `shard`'s matured buckets into `available` and takes `take`
    from it (take 0: fold only; None when there is nothing to do). Conditions: each folded bucket
    still holds exactly what was read (so two withdrawals never both fold, hence both spend, the same
    bucket), and the folded-in `available` covers `take`."""
    matured = sorted(shard.matured(day).items())
    folded = sum(v for _, v in matured)
    if take <= 0 and not matured:
        return None
    names: dict[str, str] = {}
    values: dict[str, Any] = {":avail": N(folded - take)}
    adds = ["available :avail"]
    conditions = []
    if take > 0:
        adds.append("withdrawn :take")
        values[":take"] = N(take)
    if matured:
        adds.append("pending :fold")
        values[":fold"] = N(-folded)
    for i, (d, amount) in enumerate(matured):
        names[f"#m{i}"] = bucket_name(d)
        values[f":m{i}"] = N(amount)
        conditions.append(f"#m{i} = :m{i}")
    if take - folded > 0:
        conditions.append("available >= :need")
        values[":need"] = N(take - folded)
    update: dict[str, Any] = {
        "TableName": store.table_name(),
        "Key": store.key(shard_pk(paywall_id, environment, shard.index), "EARN"),
        "UpdateExpression": "ADD " + ", ".join(adds) + (" REMOVE " + ", ".join(names) if names else ""),
        "ConditionExpression": " AND ".join(conditions),
        "ExpressionAttributeValues": values,
    }
    if names:
        update["ExpressionAttributeNames"] = names
    return {"Update": update}


def fold(paywall_id: str, environment: str, read: list[Shard], day: date) -> int:
    """Fold the matured buckets of the shards just read into `available` (keeps the items small: a
    bucket is ~16 bytes, and a transactional write costs per KB of item). Each shard on its own, under
    its own conditions; a shard that changed meanwhile is left for the next fold. Moves nothing
    withdrawable either way. Returns how many shards were folded."""
    folded = 0
    for shard in read:
        item = draw_update(paywall_id, environment, shard, day, 0)
        if item is None:
            continue
        try:
            store.transact([item])
            folded += 1
        except (TransactionCancelled, store.StoreUnavailable):
            pass  # a withdrawal or another fold got there first, or charges kept it busy: next time
    return folded


def reverse_items(
    paywall_id: str, environment: str, shard: int, amounts: Mapping[date, int], entry: dict[str, Any]
) -> list[dict[str, Any]]:
    """Take pending earnings back (a loss, losses.py): per bucket `ADD m_{day} -x` under
    `m_{day} >= x` (never below zero, and never a bucket a withdrawal already folded: it is gone),
    `pending -total`, `reversed +total`, and the `reversal` entry (-total) beside the counter, so the
    shard's entries still sum to available + pending."""
    total = sum(amounts.values())
    names: dict[str, str] = {}
    values: dict[str, Any] = {":neg": N(-total), ":total": N(total)}
    adds = ["pending :neg", "reversed :total"]
    conditions = []
    for i, (d, amount) in enumerate(sorted(amounts.items())):
        names[f"#m{i}"] = bucket_name(d)
        values[f":r{i}"] = N(amount)
        values[f":n{i}"] = N(-amount)
        adds.append(f"#m{i} :n{i}")
        conditions.append(f"#m{i} >= :r{i}")
    pk = shard_pk(paywall_id, environment, shard)
    record = {**entry, "pk": pk, "type": "reversal", "amount": -total}
    return [
        {
            "Update": {
                "TableName": store.table_name(),
                "Key": store.key(pk, "EARN"),
                "UpdateExpression": "ADD " + ", ".join(adds),
                "ConditionExpression": " AND ".join(conditions),
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
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
