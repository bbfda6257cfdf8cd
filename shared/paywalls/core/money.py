"""Money in integer micro-units (1 unit = 10^-6 of the currency). Never floats."""

from __future__ import annotations

import re
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal

from paywalls.core.errors import InvalidRequest

MICROS_PER_UNIT = 1_000_000
# A single API amount above this (one million currency units) is refused as absurd: it protects the
# ledger from typos and overflow-sized numbers without limiting any real top-up.
MAX_AMOUNT_MICROS = 1_000_000 * MICROS_PER_UNIT

# ASCII digits only, anchored at the very end (\Z: `$` would also accept a trailing newline). `\d` and
# int()/Decimal() accept any Unicode digit ("１", "٣"), and Decimal() also "1_000", " 1" and "1e2":
# an amount is exactly what the client typed, or refused.
_DECIMAL_RE = re.compile(r"\A[0-9]{1,16}(?:\.[0-9]{1,6})?\Z")
_TOO_PRECISE_RE = re.compile(r"\A[0-9]{1,16}\.[0-9]{7,}\Z")
_PRICE_RE = re.compile(r"\A[0-9]{1,16}(?:\.[0-9]{1,18})?\Z")


class InvalidAmount(InvalidRequest):
    """A user-supplied amount that cannot be turned into micro-units; the message is client-safe."""

    code = "invalid_amount"
    param = "amount"


def parse_amount(value: object, *, allow_zero: bool = False) -> int:
    """Decimal string (or int) in currency units -> positive micro-units. Strict: no floats, signs,
    exponents, spaces, underscores, non-ASCII digits or more than six decimals, so what the client
    meant is exactly what is charged."""
    if isinstance(value, bool) or value is None:
        raise InvalidAmount('amount must be a decimal string such as "10" or "0.25"')
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, str):
        text = value
    else:
        raise InvalidAmount('amount must be a decimal string such as "10" or "0.25", not a float')
    if text.startswith("-"):
        raise InvalidAmount("amount must be positive")
    if not _DECIMAL_RE.fullmatch(text):
        if _TOO_PRECISE_RE.fullmatch(text):
            raise InvalidAmount("amount has more than 6 decimal places")
        raise InvalidAmount('amount must be a decimal string such as "10" or "0.25"')
    micros = int(Decimal(text) * MICROS_PER_UNIT)
    if micros == 0 and not allow_zero:
        raise InvalidAmount("amount must be greater than zero")
    if micros > MAX_AMOUNT_MICROS:
        raise InvalidAmount("amount is too large (at most 1000000 per operation)")
    return micros


def format_micros(micros: int) -> str:
    """-1500 -> "-0.001500"; always six decimals, matching `balanceFormatted`."""
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), MICROS_PER_UNIT)
    return f"{sign}{whole}.{frac:06d}"


_SYMBOLS = {"usd": "$", "eur": "\u20ac", "gbp": "\u00a3"}


def format_for_people(micros: int, currency: str) -> str:
    """An amount as a person reads it on our pages: the currency's usual decimals (two for USD:
    5_999_401 -> "$6.00", 12_500_000 -> "$12.50"), rounded half up; more only for an amount below one
    minor unit, which would otherwise read as nothing (4_200 -> "$0.0042", 1 -> "$0.000001"); thousands
    separated (1_234_500_000 -> "$1,234.50"). APIs keep
    the exact six decimals (`format_micros`); this is for display only."""
    from paywalls.core.currency import minor_unit_exponent  # here: currency imports this module

    places = minor_unit_exponent(currency)
    sign = "-" if micros < 0 else ""
    value = Decimal(abs(micros)) / MICROS_PER_UNIT
    if 0 < abs(micros) * 10**places < MICROS_PER_UNIT:
        text = f"{value:.6f}".rstrip("0")  # every significant digit, at least `places` decimals
        whole, _, frac = text.partition(".")
        number = f"{whole}.{frac.ljust(places, '0')}"
    else:
        number = format(value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP), ",f")
    symbol = _SYMBOLS.get(currency.lower())
    if symbol:
        return f"{sign}{symbol}{number}"
    return f"{sign}{number} {currency.upper()}"


def parse_price(value: object) -> Decimal:
    """A price (currency units per 1M tokens, or per request) as an exact non-negative Decimal: a whole
    number or a plain ASCII decimal string (no sign, exponent, spaces or underscores)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidAmount('prices must be decimal strings such as "2.50"')
    text = str(value)
    if not _PRICE_RE.fullmatch(text):
        raise InvalidAmount(f'invalid price {value!r}: use a decimal string such as "2.50"')
    price = Decimal(text)
    if price > 1_000_000:
        raise InvalidAmount(f"price {value!r} is too large")
    return price


def parse_percent(value: object, *, maximum: int = 1000) -> Decimal:
    percent = parse_price(value)
    if percent > maximum:
        raise InvalidAmount(f"percentage {value!r} is too large")
    return percent


def usage_cost_micros(
    *,
    prompt_tokens: int,
    completion_tokens: int,
    prompt_price: Decimal,
    completion_price: Decimal,
    request_price: Decimal = Decimal(0),
    markup_percent: Decimal = Decimal(0),
) -> int:
    """SPEC §1: ceil((p x prompt + c x completion + request x 10^6) x (1 + markup/100)).

    A price per 1M tokens times a token count is already micro-units; the request fee is in units.
    Exact decimal arithmetic, rounded up once per request."""
    raw = (
        Decimal(prompt_tokens) * prompt_price
        + Decimal(completion_tokens) * completion_price
        + request_price * MICROS_PER_UNIT
    ) * (1 + markup_percent / 100)
    return int(raw.to_integral_value(rounding=ROUND_CEILING))


def decimal_str(value: Decimal) -> str:
    """Prices back to clients without exponent noise: Decimal("2.50") -> "2.5", Decimal("0") -> "0"."""
    text = format(value.normalize(), "f")
    return text
