"""Card-network amounts (Stripe's smallest currency unit) <-> our micro-units. Exact integers only.

Stripe expresses amounts in the currency's minor unit: cents for USD (exponent 2), whole yen for JPY
(exponent 0), fils for KWD (exponent 3). https://docs.stripe.com/currencies#zero-decimal"""

from __future__ import annotations

from paywalls.core.errors import InvalidRequest
from paywalls.core.money import MICROS_PER_UNIT

_ZERO_DECIMAL = frozenset(
    "bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split()  # noqa: SIM905
)
_THREE_DECIMAL = frozenset("bhd jod kwd omr tnd".split())  # noqa: SIM905


class UnsupportedAmount(InvalidRequest):
    """An amount that has no exact representation on the other side (e.g. a fraction of a cent)."""

    code = "invalid_amount"
    param = "amount"


def minor_unit_exponent(currency: str) -> int:
    code = currency.lower()
    if code in _ZERO_DECIMAL:
        return 0
    if code in _THREE_DECIMAL:
        return 3
    return 2


def minor_to_micros(amount: int, currency: str) -> int:
    """1234 (cents, USD) -> 12_340_000 micro-units."""
    if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
        raise UnsupportedAmount("a minor-unit amount is a non-negative integer")
    return amount * (MICROS_PER_UNIT // 10 ** minor_unit_exponent(currency))


def micros_to_minor(micros: int, currency: str) -> int:
    """12_340_000 micro-units -> 1234 cents; refuses amounts that are not a whole minor unit."""
    step = MICROS_PER_UNIT // 10 ** minor_unit_exponent(currency)
    if micros % step:
        raise UnsupportedAmount(f"amount is not a whole number of {currency.upper()} minor units")
    return micros // step
