"""Reports read from the roll-ups only (rollups.py): their cost is O(days x models) items over
SHARDS parallel range queries, whatever the number of users or ledger entries."""

from __future__ import annotations

from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from typing import Any

from paywalls.analytics import rollups
from paywalls.analytics.rollups import MEASURES
from paywalls.billing import ledger
from paywalls.billing.identity import app_wallet_id
from paywalls.billing.paywall import InvalidRequest, Paywall
from paywalls.core.money import format_micros
from paywalls.infra import store
from paywalls.wallets import connections

MAX_DAYS = 366  # one report spans at most this (and its previous period as much again)
HOURLY_UP_TO_DAYS = 2  # periods this short also answer by hour
MONEY = ("revenue", "provider_cost", "fees", "deposits", "trials", "refunds", "adjustments")
QUERY_WORKERS = 16

Totals = dict[str, int]


def _empty() -> Totals:
    return dict.fromkeys(MEASURES, 0)


def parse_instant(value: str, name: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidRequest(f"{name} must be an ISO date or timestamp", name) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def period(
    start: str | None, end: str | None, *, default_days: int = 30, today: date | None = None
) -> tuple[date, date]:
    """[first, last] whole UTC days covering [start, end): a timestamp inside a day counts that day
    (roll-ups are per day). No `to`: through today; no `from`: `default_days` back from the end."""
    today = today or datetime.now(UTC).date()
    if end:
        instant = parse_instant(end, "to")
        last = (instant - timedelta(microseconds=1)).date()
    else:
        last = today
    first = parse_instant(start, "from").date() if start else last - timedelta(days=default_days - 1)
    if first > last:
        raise InvalidRequest("from must be before to", "from")
    if (last - first).days + 1 > MAX_DAYS:
        raise InvalidRequest(f"a report spans at most {MAX_DAYS} days", "from")
    return first, last


def _days(first: date, last: date) -> list[str]:
    return [(first + timedelta(days=i)).isoformat() for i in range((last - first).days + 1)]


def _hours(first: date, last: date) -> list[str]:
    """Every hour of [first, last] as the report names it (zeros included, like the days)."""
    return [f"{d}T{h:02d}:00:00Z" for d in _days(first, last) for h in range(24)]


def _read_shards(paywall_id: str, environment: str, low: str, high: str) -> list[dict[str, Any]]:
    """The roll-up items with low <= sk <= high of every shard: SHARDS range queries, in parallel."""

    def one(shard: int) -> list[dict[str, Any]]:
        pk = rollups.shard_pk(paywall_id, environment, shard)
        return list(store.query_all(pk, sk_between=(low, high)))

    with ThreadPoolExecutor(QUERY_WORKERS) as pool:
        return [item for items in pool.map(one, range(rollups.SHARDS)) for item in items]


def _money(bucket: Totals) -> dict[str, Any]:
    """A bucket as the API answers it: money as decimal strings (and formatted), counts as ints."""
    out: dict[str, Any] = {
        "revenue": format_micros(bucket["revenue"]),
        "provider_cost": format_micros(bucket["provider_cost"]),
        "profit": format_micros(bucket["revenue"] - bucket["provider_cost"]),
        "requests": bucket["requests"],
        "tokens_in": bucket["tokens_in"],
        "tokens_out": bucket["tokens_out"],
    }
    for name in ("fees", "deposits", "trials", "refunds", "adjustments"):
        out[name] = format_micros(bucket[name])
    return out


def _accumulate(target: Totals, item: dict[str, Any]) -> None:
    for name in MEASURES:
        target[name] += int(item.get(name, 0))


def usage(
    paywall_id: str,
    environment: str,
    start: str | None,
    end: str | None,
    *,
    compare: bool = True,
    top: int = rollups.TOP_USERS,
    today: date | None = None,
) -> dict[str, Any]:
    """Totals, by model, by day (by hour for short periods), top users and the previous period of
    the same length, for the whole UTC days of [from, to)."""
    first, last = period(start, end, today=today)
    length = (last - first).days + 1
    previous_first = first - timedelta(days=length)
    low = rollups.day_sk((previous_first if compare else first).isoformat())
    items = _read_shards(paywall_id, environment, low, rollups.day_sk(last.isoformat()) + "~")
    hourly = length <= HOURLY_UP_TO_DAYS
    if hourly:
        high = rollups.hour_sk(last.isoformat(), "~")
        items += _read_shards(paywall_id, environment, rollups.hour_sk(first.isoformat(), ""), high)
    totals, previous = _empty(), _empty()
    by_day: dict[str, Totals] = {d: _empty() for d in _days(first, last)}
    by_model: dict[str, Totals] = defaultdict(_empty)
    by_provider: dict[str, Totals] = defaultdict(_empty)
    by_hour: dict[str, Totals] = defaultdict(_empty)
    for item in items:
        if item["sk"].startswith("H#"):
            _accumulate(by_hour[item["sk"][2:] + ":00:00Z"], item)
            continue
        day, _, rest = item["sk"].removeprefix("D#").partition("#")
        current = day >= first.isoformat()
        if rest == "":
            _accumulate(totals if current else previous, item)
            if current:
                _accumulate(by_day[day], item)
                for name, value in item.items():  # rollups.provider_attribute: p#{provider}#{measure}
                    if name.startswith("p#"):
                        _, provider, measure = name.split("#", 2)
                        by_provider[provider][measure] += int(value)
        elif rest.startswith("M#") and current:
            _accumulate(by_model[rest[2:]], item)
    users = rollups.top_users(paywall_id, environment, list(by_day), limit=top)
    answer: dict[str, Any] = {
        "object": "usage",
        "from": f"{first.isoformat()}T00:00:00Z",
        "to": f"{(last + timedelta(days=1)).isoformat()}T00:00:00Z",
        "currency_unit": "micro",
        **_money(totals),
        "by_model": {m: _money(v) for m, v in sorted(by_model.items())},
        # Profit per provider (chat/routing.py): the serving provider's cost on each charge.
        "by_provider": {p: _money(v) for p, v in sorted(by_provider.items())},
        # The biggest spenders first (top users, not every user: that would be O(users)).
        "by_user": {u: {"spend": format_micros(v)} for u, v in users},
        "by_day": [{"date": d, **_money(v)} for d, v in by_day.items()],
        "by_hour": [{"hour": h, **_money(by_hour[h])} for h in _hours(first, last)] if hourly else None,
        "previous": (
            {
                "from": f"{previous_first.isoformat()}T00:00:00Z",
                "to": f"{first.isoformat()}T00:00:00Z",
                **_money(previous),
            }
            if compare
            else None
        ),
    }
    return answer


def user_totals(paywall_id: str, environment: str, users: list[str]) -> dict[str, dict[str, Any]]:
    """Each user's all-time spend, requests and last activity (one BatchGetItem per 100 users)."""
    keys = [(rollups.user_pk(paywall_id, environment, u), "TOTAL") for u in users]
    prefix = rollups.user_pk(paywall_id, environment, "")
    found = {i["pk"].removeprefix(prefix): i for i in store.batch_get(keys)}
    return {
        u: {
            "spend": int(found.get(u, {}).get("spend", 0)),
            "requests": int(found.get(u, {}).get("requests", 0)),
            "last_at": found.get(u, {}).get("last_at"),
        }
        for u in users
    }


def user_days(paywall_id: str, environment: str, user: str, first: date, last: date) -> list[dict[str, Any]]:
    """One user's spend per day of [first, last] (days without spend included, as zero)."""
    pk = rollups.user_pk(paywall_id, environment, user)
    found = {
        i["sk"][2:]: i for i in store.query_all(pk, sk_between=(f"D#{first.isoformat()}", f"D#{last.isoformat()}"))
    }
    return [
        {
            "date": d,
            "spend": format_micros(int(found.get(d, {}).get("spend", 0))),
            "requests": int(found.get(d, {}).get("requests", 0)),
        }
        for d in _days(first, last)
    ]


def user_view(
    paywall: Paywall, environment: str, user: str, *, days: int = 30, today: date | None = None
) -> dict[str, Any]:
    """One app user for the operator: balance (default mode) or authorization (shared mode), total
    spend, requests, last activity, spend per day over the last `days` days."""
    totals = store.get(rollups.user_pk(paywall.id, environment, user), "TOTAL") or {}
    last = today or datetime.now(UTC).date()
    view: dict[str, Any] = {
        "object": "app_user",
        "user": user,
        "environment": environment,
        "mode": paywall.mode,
        "total_spend": format_micros(int(totals.get("spend", 0))),
        "requests": int(totals.get("requests", 0)),
        "last_activity": totals.get("last_at"),
        "spend_by_day": user_days(paywall.id, environment, user, last - timedelta(days=days - 1), last),
        "balance": None,
        "available": None,
        "connected": None,
        "spending_cap": None,
        "cap_spent": None,
    }
    if paywall.mode == "shared":
        # What the app may see of a person (shared_mode): authorization and its cap, never the wallet.
        connection = connections.active(paywall.id, environment, user)
        view["status"] = "connected" if connection else "not_connected"
        view["connected"] = connection is not None
        if connection:
            view["spending_cap"] = None if connection.cap is None else format_micros(connection.cap)
            view["cap_spent"] = format_micros(connection.spent)
    else:
        wallet = ledger.get_wallet(app_wallet_id(paywall.id, environment, user))
        view["status"] = "active" if wallet.exists else "unknown"
        view["balance"] = format_micros(wallet.balance)
        view["available"] = format_micros(wallet.available)
    return view
