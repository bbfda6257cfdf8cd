"""Operator balance corrections (SPEC §3 `adjustment` entries)."""

from __future__ import annotations

from paywalls.billing import accounts, ledger
from paywalls.billing.identity import app_wallet_listing, idempotency_scope
from paywalls.billing.paywall import ENVIRONMENTS, InvalidRequest, Paywall
from paywalls.core.money import InvalidAmount, parse_amount


def adjust(
    paywall: Paywall, environment: str, user: str, amount: object, *, idempotency_key: str, reason: object = None
) -> ledger.Posting:
    if environment not in ENVIRONMENTS:
        raise InvalidRequest("environment must be 'live' or 'test'", "environment")
    if paywall.mode != "default":
        raise InvalidRequest("adjustments apply to default-mode paywalls", "mode")
    if reason is not None and (not isinstance(reason, str) or len(reason) > 500):
        raise InvalidRequest("reason must be a string of at most 500 characters", "reason")
    # Signed: a leading "-" debits. Nothing else is trimmed or converted (money.parse_amount is strict).
    negative = isinstance(amount, str) and amount.startswith("-")
    micros = parse_amount(amount[1:] if negative else amount)  # type: ignore[index]
    metadata = {"reason": reason} if reason else {}
    wallet_id = accounts.wallet_id(paywall, environment, user)
    key = f"adjust:{idempotency_key}"
    scope = idempotency_scope(paywall.id, environment)
    if negative:
        return ledger.charge(
            wallet_id, micros, idempotency_key=key, idempotency_scope=scope, entry_type="adjustment", metadata=metadata
        )
    listing = app_wallet_listing(paywall.id, environment, user)
    return ledger.credit(
        wallet_id,
        micros,
        idempotency_key=key,
        idempotency_scope=scope,
        entry_type="adjustment",
        listing=listing,
        metadata=metadata,
    )


__all__ = ["adjust", "InvalidAmount"]
