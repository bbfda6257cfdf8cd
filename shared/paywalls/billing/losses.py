"""The operator's losses from refunded or disputed wallet top-ups (shared mode, SPEC §6).

A person tops up their wallet with the operator's Stripe account and spends it at apps, whose
earnings grow by what they spend. If the top-up is then refunded or a dispute of it is lost, Stripe
takes the money back from the operator; the wallet is debited (webhooks.py) and may go negative: a
debt the person owes (holds and charges need `available >= amount`, so nothing more is charged until
it is repaid; a later top-up repays it first). What the debit took below zero is the operator's loss.

In the debit's own ledger transaction (`ledger.debit(also=debit_items(...))`) this module
- records the loss on the operator's ledger: `OPLEDGER#{environment}` / `ENTRY#{created_at}#{loss_id}`,
  type `loss`, amount -loss, naming the refund or dispute, the top-up (payment intent, Checkout
  Session), the person and wallet, and per app what was attributed and taken back;
- records the attribution on the person's side, `PLOSS#{wallet_id}` / `LOSS#{created_at}#{loss_id}`
  (`charges`: wallet entry version -> amount of that charge attributed to this loss), so a charge is
  never attributed to two losses;
- takes back the apps' earnings that the refunded money paid for and that are still pending (not
  matured, so never withdrawable yet): per earnings shard, earnings.reverse_items (bucket decrements
  under `m_{day} >= x` and a `reversal` entry, so each shard's entries still sum to its counters).

Attribution rule: the loss is attributed to the person's charges made after the refunded top-up was
credited (wallet entry versions between the top-up's deposit and the debit), newest first, each up to
its amount minus what earlier losses already took of it, until the loss is covered. For each
attributed charge, the app's share is the charge's net earning in proportion (attributed x net /
gross, rounded down; all of it when the whole charge is attributed). Shares whose earning has matured
(`matures_on` <= today: withdrawable, perhaps withdrawn) stay with the app and are the operator's to
recover; pending shares are taken back from that app's shards, from the same maturity day's buckets,
fullest shard first (earnings are fungible across a paywall's shards). The newest charges are the
likeliest to be still pending, so this rule takes back the most the hold allows.

Bounds (one transaction holds at most 100 items): at most MAX_CHARGES charges are examined per loss
and at most MAX_SHARD_ITEMS shard items are reversed (2 items each, + 5); anything beyond stays with
the apps and shows as `not_reversed` in the loss record.

A refund that arrives before its top-up's credit (the credit is then still to land and covers it) is
not a loss; `loss` is only what this debit took below zero, never a debt that existed before."""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from paywalls.billing import earnings, ledger, operator_stripe
from paywalls.billing.stripe_webhooks import Credited, Debit
from paywalls.core.money import format_micros
from paywalls.infra import store

log = logging.getLogger(__name__)

MAX_CHARGES = 2000  # wallet entries examined per loss (the PLOSS record stays far below 400 KB)
MAX_SHARD_ITEMS = 40  # 5 + 2 x 40 = 85 transaction items, below DynamoDB's 100
_PERSON_RE = re.compile(r"ps_[0-9a-f]{20}")


def _person_of(wallet_id: str) -> str | None:
    """The person a person wallet belongs to (wallet ids are built by persons.wallet_id)."""
    found = _PERSON_RE.search(wallet_id)
    return found.group(0) if found else None


@dataclass
class _App:
    attributed: int = 0  # of the person's spending at this app, attributed to the loss (gross)
    reversed: int = 0  # net earnings taken back (were pending)
    not_reversed: int = 0  # net earnings the app keeps (matured, or beyond the transaction's bounds)
    charges: int = 0


@dataclass
class _Plan:
    charges: dict[str, int] = field(default_factory=dict)  # wallet entry version -> attributed
    apps: dict[tuple[str, str], _App] = field(default_factory=lambda: defaultdict(_App))
    # (paywall, environment) -> maturity day -> net to take back
    pending: dict[tuple[str, str], dict[date, int]] = field(default_factory=lambda: defaultdict(dict))
    attributed: int = 0


def debit_items(credited: Credited, debit: Debit) -> ledger.Also:
    """The `also=` of a person-wallet debit (wallet_topup's Account): the loss, if the debit leaves
    the wallet further below zero, with its attribution and reversals (module doc)."""

    def build(entry: ledger.Entry) -> list[dict[str, Any]]:
        before = entry.balance_after - entry.amount
        loss = max(0, -entry.balance_after) - max(0, -before)
        if loss <= 0 or not credited.checkout_session:
            return []
        deposit = ledger.posted_version(credited.wallet_id, f"stripe:{credited.checkout_session}")
        if deposit is None:
            return []  # refunded before its credit landed: the credit still comes and covers it
        day = earnings.today()
        plan = _attribute(credited.wallet_id, deposit, entry.version, loss, day)
        return _items(credited, debit, entry, loss, plan)

    return build


def _attribute(wallet_id: str, deposit: int, version: int, loss: int, day: date) -> _Plan:
    plan = _Plan()
    taken: dict[str, int] = defaultdict(int)
    for record in store.query_all(f"PLOSS#{wallet_id}", sk_prefix="LOSS#"):
        for charge_version, amount in (record.get("charges") or {}).items():
            taken[charge_version] += amount
    chosen: list[tuple[ledger.Entry, int]] = []
    left = loss
    for examined, entry in enumerate(ledger.entries_before(wallet_id, version, after=deposit)):
        if left <= 0 or examined >= MAX_CHARGES:
            break
        meta = entry.metadata or {}
        if entry.type != "charge" or entry.amount >= 0 or not meta.get("paywall_id") or not meta.get("environment"):
            continue
        share = min(-entry.amount - taken[str(entry.version)], left)
        if share <= 0:
            continue
        chosen.append((entry, share))
        plan.charges[str(entry.version)] = share
        left -= share
    plan.attributed = loss - left

    keys = [_earning_key(entry) for entry, _ in chosen]
    found = {(i["pk"], i["sk"]): i for i in store.batch_get(keys)} if keys else {}
    for (entry, share), key in zip(chosen, keys, strict=True):
        app_key = (entry.metadata["paywall_id"], entry.metadata["environment"])
        app = plan.apps[app_key]
        app.attributed += share
        app.charges += 1
        earning = found.get(key)
        if earning is None:
            continue  # no earnings were credited for it (nothing to take back)
        net, gross = int(earning["amount"]), int(earning["gross"])
        part = net if share >= gross else share * net // gross
        matures = date.fromisoformat(earning["matures_on"]) if earning.get("matures_on") else None
        if matures and matures > day:
            days = plan.pending[app_key]
            days[matures] = days.get(matures, 0) + part
        else:
            app.not_reversed += part
    return plan


def _earning_key(entry: ledger.Entry) -> tuple[str, str]:
    """Where earnings.credit_items wrote the earning of this wallet charge."""
    meta = entry.metadata
    shard = earnings.shard_of(entry.request_id or entry.id)
    return earnings.shard_pk(meta["paywall_id"], meta["environment"], shard), f"ENTRY#{entry.created_at}#{entry.id}"


def _allocate(plan: _Plan) -> dict[tuple[str, str, int], dict[date, int]]:
    """Which shard gives what of each app's pending shares: that day's buckets, fullest first, never
    more than a bucket holds (the rest stays with the app). Bounded to MAX_SHARD_ITEMS shards."""
    allocation: dict[tuple[str, str, int], dict[date, int]] = defaultdict(dict)
    for (paywall_id, environment), days in plan.pending.items():
        app = plan.apps[(paywall_id, environment)]
        shards = earnings.shards(paywall_id, environment)
        for day, want in sorted(days.items()):
            left = want
            for shard in sorted(shards, key=lambda s: s.buckets.get(day, 0), reverse=True):
                has = shard.buckets.get(day, 0)
                if left <= 0 or has <= 0:
                    break
                take = min(has, left)
                allocation[(paywall_id, environment, shard.index)][day] = take
                left -= take
            app.not_reversed += left
    # Keep the largest within the transaction's bounds; the others stay with their apps.
    ranked = sorted(allocation.items(), key=lambda kv: sum(kv[1].values()), reverse=True)
    for (paywall_id, environment, _), days in ranked[MAX_SHARD_ITEMS:]:
        plan.apps[(paywall_id, environment)].not_reversed += sum(days.values())
    kept = dict(ranked[:MAX_SHARD_ITEMS])
    for (paywall_id, environment, _), days in kept.items():
        plan.apps[(paywall_id, environment)].reversed += sum(days.values())
    return kept


def _items(credited: Credited, debit: Debit, entry: ledger.Entry, loss: int, plan: _Plan) -> list[dict[str, Any]]:
    loss_id = f"loss_{debit.kind}_{debit.source_id}"
    allocation = _allocate(plan)
    reversed_total = sum(sum(days.values()) for days in allocation.values())
    items: list[dict[str, Any]] = []
    for (paywall_id, environment, shard), days in sorted(allocation.items(), key=lambda kv: kv[0]):
        reversal = {
            "sk": f"ENTRY#{entry.created_at}#{loss_id}",
            "entry_id": f"{loss_id}.{shard:02d}",
            "loss_id": loss_id,
            "payment_intent": debit.metadata.get("payment_intent"),
            "days": {d.isoformat(): v for d, v in sorted(days.items())},
            "created_at": entry.created_at,
        }
        items += earnings.reverse_items(paywall_id, environment, shard, days, reversal)
    apps = [
        {
            "paywall_id": paywall_id,
            "environment": environment,
            "charges": app.charges,
            "attributed": app.attributed,
            "reversed": app.reversed,
            "not_reversed": app.not_reversed,
        }
        for (paywall_id, environment), app in sorted(plan.apps.items())
    ]
    record = {
        "pk": f"OPLEDGER#{credited.environment}",
        "sk": f"ENTRY#{entry.created_at}#{loss_id}",
        "type": "loss",
        "loss_id": loss_id,
        "amount": -loss,
        "currency": operator_stripe.CURRENCY,
        "kind": debit.kind,
        "source_id": debit.source_id,
        "debited": debit.amount,
        "payment_intent": debit.metadata.get("payment_intent"),
        "charge": debit.metadata.get("charge"),
        "checkout_session": credited.checkout_session,
        "person_id": _person_of(credited.wallet_id),
        "wallet_id": credited.wallet_id,
        "wallet_entry": entry.id,
        "balance_after": entry.balance_after,
        "attributed": plan.attributed,
        "reversed": reversed_total,
        "apps": apps,
        "created_at": entry.created_at,
    }
    attribution = {
        "pk": f"PLOSS#{credited.wallet_id}",
        "sk": f"LOSS#{entry.created_at}#{loss_id}",
        "loss_id": loss_id,
        "environment": credited.environment,
        "ledger_sk": record["sk"],
        "charges": plan.charges,
        "created_at": entry.created_at,
    }
    for item in (record, attribution):
        items.append(
            {
                "Put": {
                    "TableName": store.table_name(),
                    "Item": store.encode(item),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
        )
    log.warning(
        "wallet top-up loss recorded",
        extra={"loss_id": loss_id, "amount": loss, "reversed": reversed_total, "apps": len(apps)},
    )
    return items


# ---- the operator's report -----------------------------------------------------------------------


def as_api(item: dict[str, Any]) -> dict[str, Any]:
    loss = -int(item["amount"])
    reversed_total = int(item.get("reversed", 0))
    return {
        "id": item["loss_id"],
        "object": "loss",
        "environment": item["pk"].removeprefix("OPLEDGER#"),
        "kind": item["kind"],
        "source_id": item["source_id"],
        "amount": str(loss),
        "amountFormatted": format_micros(loss),
        "reversed": str(reversed_total),
        "reversedFormatted": format_micros(reversed_total),
        "unrecovered": str(loss - reversed_total),
        "unrecoveredFormatted": format_micros(loss - reversed_total),
        "debited": str(item.get("debited", 0)),
        "topup": {
            "payment_intent": item.get("payment_intent"),
            "checkout_session": item.get("checkout_session"),
            "charge": item.get("charge"),
        },
        "person_id": item.get("person_id"),
        "wallet_id": item.get("wallet_id"),
        "wallet_balance_after": str(item.get("balance_after", 0)),
        "apps": [
            {
                "paywall_id": app["paywall_id"],
                "environment": app["environment"],
                "charges": app.get("charges", 0),
                "attributed": str(app.get("attributed", 0)),
                "reversed": str(app.get("reversed", 0)),
                "not_reversed": str(app.get("not_reversed", 0)),
            }
            for app in item.get("apps") or []
        ],
        "created_at": item["created_at"],
    }


def list_losses(environment: str, *, limit: int = 100) -> list[dict[str, Any]]:
    """The operator's recorded losses of an environment (Stripe mode of the top-ups), newest first."""
    earnings.check_environment(environment)
    found: list[dict[str, Any]] = []
    for item in store.query_all(f"OPLEDGER#{environment}", sk_prefix="ENTRY#", newest_first=True):
        if item.get("type") == "loss":
            found.append(as_api(item))
            if len(found) >= limit:
                break
    return found
