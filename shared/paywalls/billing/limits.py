"""Per-user usage limits of a paywall (default and shared mode): requests per minute, tokens per day,
spend per day and per month, each optional, as paywall defaults and per-user overrides.

Enforcement is the ledger's: every limit is a `ledger.Quota` reserved in the same transaction as the
request's hold (condition `used <= limit - reserve`), so no burst of concurrent requests passes a
limit; settle gives back what the request did not use, release all of a money or tokens reservation.

Windows are fixed UTC calendar windows, one item per (paywall, environment, user) and window:

    pk LIMIT#{paywall}#{env}#{user}   sk REQ#MIN#{yyyy-mm-ddThh:mm} | TOK#DAY#{yyyy-mm-dd}
                                         SPEND#DAY#{yyyy-mm-dd} | SPEND#MONTH#{yyyy-mm} | OVERRIDE

Per user, so no item is shared by a paywall's users (no hot partition); each window item expires
(TTL) a day after its window ends. A fixed minute window lets a user send up to twice the per-minute
limit across a minute boundary (the usual fixed-window trade: one item, one condition).

Over a limit: requests per minute and tokens per day are rate limits (429, Retry-After, OpenAI's
error shape); spend per day / month answer the paywall reply (`X-Paywall-Action: limit`, template
`limit`) saying when the window resets.

Cost on the chat path: nothing when the paywall has no limits and no overrides. Otherwise one
GetItem for the user's override (only when the paywall has overrides) and, for tokens or spend
limits, one BatchGetItem of the current windows (to size the hold to what the limits still allow,
as it is sized to the balance); the requests-per-minute check is only a condition in the hold."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from paywalls.billing import ledger
from paywalls.billing import paywall as paywalls
from paywalls.billing.paywall import LIMIT_NAMES, MONEY_LIMITS, InvalidRequest, Paywall, limits_as_api
from paywalls.core.errors import RateLimited
from paywalls.core.money import InvalidAmount, format_micros, parse_amount
from paywalls.infra import store

OVERRIDE_SK = "OVERRIDE"
WINDOW_TTL_S = 24 * 3600  # kept a day after the window ends: longer than any hold it could be settled by
MAX_COUNT = 10**12

RATE_LIMITS = ("requests_per_minute", "tokens_per_day")  # 429; the others are spend limits (paywall reply)
_MEASURE = {
    "requests_per_minute": "requests",
    "tokens_per_day": "tokens",
    "spend_per_day": "money",
    "spend_per_month": "money",
}


class LimitReached(RateLimited):
    """The user may not spend / send more until `resets_at` (epoch seconds, UTC). The chat proxy answers
    it as a paywall reply; anywhere else it is a 429 with Retry-After."""

    code = "limit_reached"

    def __init__(self, name: str, limit: int, resets_at: int, now: float):
        super().__init__(f"{name} limit reached", retry_after=max(1, int(resets_at - now + 0.999)))
        self.name = name
        self.limit = limit
        self.resets_at = resets_at

    @property
    def is_rate_limit(self) -> bool:
        return self.name in RATE_LIMITS


# ---- validation (operator input) -----------------------------------------------------------------


def parse(data: Any, *, allow_inherit: bool = False) -> dict[str, int | None]:
    """{name: value} from the admin API: counts as positive integers, spend as decimal amounts;
    null means no limit. Without `allow_inherit` (paywall defaults) absent names are dropped;
    with it (a user override) absent names inherit the paywall's and null means unlimited."""
    if not isinstance(data, dict):
        raise InvalidRequest("limits must be an object", "limits")
    unknown = sorted(set(data) - set(LIMIT_NAMES))
    if unknown:
        raise InvalidRequest(f"unknown limit(s): {', '.join(unknown)}; limits: {', '.join(LIMIT_NAMES)}", unknown[0])
    parsed: dict[str, int | None] = {}
    for name in LIMIT_NAMES:
        if name not in data:
            continue
        value = data[name]
        if value is None:
            if allow_inherit:
                parsed[name] = None
            continue
        parsed[name] = _parse_value(name, value)
    return parsed


def _parse_value(name: str, value: Any) -> int:
    if name in MONEY_LIMITS:
        try:
            return parse_amount(value)
        except InvalidAmount as exc:
            raise InvalidRequest(f"{name}: {exc}", name) from None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_COUNT:
        raise InvalidRequest(f"{name} must be a whole number from 1 to {MAX_COUNT} (or null: no limit)", name)
    return value


def set_defaults(paywall_id: str, data: Any) -> Paywall:
    """Replace the paywall's default limits (names absent or null: no limit)."""
    limits = {k: v for k, v in parse(data).items() if v is not None}
    return paywalls.save(replace(paywalls.get(paywall_id), limits=limits))


# ---- per-user overrides --------------------------------------------------------------------------


def _pk(paywall_id: str, environment: str, user: str) -> str:
    return f"LIMIT#{paywall_id}#{environment}#{user}"


def get_override(paywall_id: str, environment: str, user: str) -> dict[str, int | None] | None:
    item = store.get(_pk(paywall_id, environment, user), OVERRIDE_SK)
    return dict(item["limits"]) if item and isinstance(item.get("limits"), dict) else None


def set_override(paywall: Paywall, environment: str, user: str, data: Any) -> dict[str, int | None]:
    """A user's own limits: given names replace the paywall's (null: no limit for this user), absent
    ones inherit them. The paywall is flagged so requests of its users read overrides from now on."""
    override = parse(data, allow_inherit=True)
    store.put({"pk": _pk(paywall.id, environment, user), "sk": OVERRIDE_SK, "limits": override})
    if not paywall.user_limits:
        # Read again: save() writes the whole record, so start from the freshest one.
        paywalls.save(replace(paywalls.get(paywall.id), user_limits=True))
    return override


def delete_override(paywall: Paywall, environment: str, user: str) -> bool:
    existed = get_override(paywall.id, environment, user) is not None
    key = store.key(_pk(paywall.id, environment, user), OVERRIDE_SK)
    store.with_retries(lambda: store.ddb().delete_item(TableName=store.table_name(), Key=key))
    return existed


def effective(defaults: dict[str, int], override: dict[str, int | None] | None) -> dict[str, int]:
    merged: dict[str, int | None] = {**defaults, **(override or {})}
    return {name: value for name, value in merged.items() if value is not None and name in LIMIT_NAMES}


# ---- windows -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    name: str
    sk: str
    limit: int
    resets_at: int  # epoch seconds, UTC

    @property
    def measure(self) -> str:
        return _MEASURE[self.name]


def _window(name: str, limit: int, now: float) -> Window:
    moment = datetime.fromtimestamp(now, UTC)
    if name == "requests_per_minute":
        start = moment.replace(second=0, microsecond=0)
        return Window(name, f"REQ#MIN#{start:%Y-%m-%dT%H:%M}", limit, int((start + timedelta(minutes=1)).timestamp()))
    day = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    next_day = int((day + timedelta(days=1)).timestamp())
    if name == "tokens_per_day":
        return Window(name, f"TOK#DAY#{day:%Y-%m-%d}", limit, next_day)
    if name == "spend_per_day":
        return Window(name, f"SPEND#DAY#{day:%Y-%m-%d}", limit, next_day)
    month = day.replace(day=1)
    next_month = (month + timedelta(days=32)).replace(day=1)
    return Window(name, f"SPEND#MONTH#{month:%Y-%m}", limit, int(next_month.timestamp()))


@dataclass(frozen=True)
class Room:
    """What the limits still allow this user now (None: that kind is not limited)."""

    spend: int | None
    spend_window: Window | None  # the tighter spend window
    tokens: int | None
    tokens_window: Window | None
    now: float

    def cap_available(self, available: int) -> int:
        return available if self.spend is None else min(available, self.spend)

    def cap_limit(self, requested_limit: int | None, default_limit: int, prompt_bound: int, n: int) -> int | None:
        """The completion limit per choice the tokens window still allows (the hold and the limit
        sent upstream follow it), or raises LimitReached when not even one token per choice fits."""
        if self.tokens is None or self.tokens_window is None:
            return requested_limit
        fits = (self.tokens - prompt_bound) // max(n, 1)
        if fits < 1:
            raise LimitReached("tokens_per_day", self.tokens_window.limit, self.tokens_window.resets_at, self.now)
        wanted = requested_limit if requested_limit is not None else default_limit
        return min(wanted, fits)

    def short_of(self, available: int) -> LimitReached | None:
        """When no hold fits: the spend limit, if it (not the balance) is what ran out."""
        if self.spend is None or self.spend_window is None or self.spend >= available:
            return None
        window = self.spend_window
        return LimitReached(window.name, window.limit, window.resets_at, self.now)


@dataclass(frozen=True)
class UserLimits:
    """The limits in force for one (paywall, environment, user) at `now`."""

    paywall_id: str
    environment: str
    user: str
    limits: dict[str, int]
    now: float

    @property
    def pk(self) -> str:
        return _pk(self.paywall_id, self.environment, self.user)

    def windows(self) -> list[Window]:
        return [_window(name, self.limits[name], self.now) for name in LIMIT_NAMES if name in self.limits]

    def usage(self, names: tuple[str, ...] = LIMIT_NAMES) -> dict[str, tuple[Window, int]]:
        """Each limited window with what it has used (one consistent BatchGetItem)."""
        windows = [w for w in self.windows() if w.name in names]
        if not windows:
            return {}
        items = store.batch_get([(self.pk, w.sk) for w in windows])
        used = {item["sk"]: int(item.get("used") or 0) for item in items}
        return {w.name: (w, max(used.get(w.sk, 0), 0)) for w in windows}

    def room(self) -> Room:
        usage = self.usage(("tokens_per_day", "spend_per_day", "spend_per_month"))
        spend = [(w.limit - used, w) for name, (w, used) in usage.items() if name in MONEY_LIMITS]
        tightest = min(spend, key=lambda pair: pair[0]) if spend else None
        tokens = usage.get("tokens_per_day")
        return Room(
            spend=max(tightest[0], 0) if tightest else None,
            spend_window=tightest[1] if tightest else None,
            tokens=max(tokens[0].limit - tokens[1], 0) if tokens else None,
            tokens_window=tokens[0] if tokens else None,
            now=self.now,
        )

    def quotas(self, amount: int, tokens: int) -> tuple[ledger.Quota, ...]:
        reserve = {"requests": 1, "tokens": tokens, "money": amount}
        return tuple(
            ledger.Quota(
                self.pk,
                w.sk,
                w.limit,
                reserve[w.measure],
                w.measure,
                w.resets_at + WINDOW_TTL_S,  # type: ignore[arg-type]
            )
            for w in self.windows()
        )

    def reached(self, exceeded: ledger.QuotaExceeded) -> LimitReached:
        window = next(w for w in self.windows() if w.sk == exceeded.quota.sk)
        return LimitReached(window.name, window.limit, window.resets_at, self.now)

    def status(self, currency: str) -> dict[str, Any]:
        """What /v1/user/balance shows: each limit, what is left of it, and when it resets."""
        shown: dict[str, Any] = {}
        for name, (window, used) in self.usage().items():
            left = max(window.limit - used, 0)
            entry: dict[str, Any] = {"limit": window.limit, "remaining": left}
            if name in MONEY_LIMITS:
                entry = {
                    "limit": str(window.limit),
                    "limitFormatted": format_micros(window.limit),
                    "remaining": str(left),
                    "remainingFormatted": format_micros(left),
                    "currency": currency,
                }
            entry["resets_at"] = _iso(window.resets_at)
            shown[name] = entry
        return shown


def for_user(paywall: Paywall, environment: str, user: str, *, now: float | None = None) -> UserLimits | None:
    """The user's limits, or None when none apply. Reads nothing unless the paywall has overrides."""
    if not paywall.limits and not paywall.user_limits:
        return None
    override = get_override(paywall.id, environment, user) if paywall.user_limits else None
    limits = effective(paywall.limits, override)
    if not limits:
        return None
    return UserLimits(paywall.id, environment, user, limits, time.time() if now is None else now)


def _iso(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def describe(paywall: Paywall, environment: str, user: str) -> dict[str, Any]:
    """The admin view of a user's limits: the paywall's defaults, the override, what is in force."""
    override = get_override(paywall.id, environment, user)
    limits = effective(paywall.limits, override)
    in_force = UserLimits(paywall.id, environment, user, limits, time.time())
    return {
        "object": "user_limits",
        "user": user,
        "environment": environment,
        "defaults": limits_as_api(paywall.limits),
        "override": None if override is None else limits_as_api(override),
        "effective": limits_as_api(limits),
        "usage": in_force.status(paywall.currency),
    }


def refusal_text(paywall: Paywall, reached: LimitReached) -> str:
    """The paywall reply for a spend limit, in the paywall's `limit` template."""
    period = "daily" if reached.name == "spend_per_day" else "monthly"
    resets = datetime.fromtimestamp(reached.resets_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
    amount = f"{_readable(reached.limit)} {paywall.currency.upper()}"
    return (
        paywall.template("limit")
        .replace("{{period}}", period)
        .replace("{{limit}}", amount)
        .replace("{{resets}}", resets)
        .replace("{{name}}", paywall.name)
    )


def _readable(micros: int) -> str:
    """5000000 -> "5.00", 10 -> "0.00001": at least cents, no trailing zeros beyond."""
    whole, _, frac = format_micros(micros).partition(".")
    return f"{whole}.{frac.rstrip('0').ljust(2, '0')}"


def rate_limit_message(reached: LimitReached) -> str:
    what = "requests per minute" if reached.name == "requests_per_minute" else "tokens per day"
    return (
        f"Rate limit reached: {reached.limit} {what} for this user. "
        f"Retry after {_iso(reached.resets_at)} ({reached.retry_after} s)."
    )
