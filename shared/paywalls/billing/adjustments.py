"""Operator balance corrections (SPEC §3 `adjustment` entries)."""

from __future__ import annotations

from paywalls.billing import accounts, ledger
from paywalls.billing.identity import app_wallet_listing, idempotency_scope
from paywalls.billing.paywall import ENVIRONMENTS, InvalidRequest, Paywall
from paywalls.core.money import InvalidAmount, parse_amount


def correct(
    wallet_id: str,
    amount: object,
    *,
    idempotency_key: str,
    reason: object = None,
    idempotency_scope: str | None = None,
    listing: ledger.Listing | None = None,
) -> ledger.Posting:
    """An operator correction of any wallet (an app user's, a person's): a signed decimal amount, a
    leading "-" debits (never below what is available, holds included); `reason` is recorded on the
    `adjustment` entry. The one rule for both kinds of wallet."""
    if reason is not None and (not isinstance(reason, str) or len(reason) > 500):
        raise InvalidRequest("reason must be a string of at most 500 characters", "reason")
    # Nothing else is trimmed or converted (money.parse_amount is strict).
    negative = isinstance(amount, str) and amount.startswith("-")
    micros = parse_amount(amount[1:] if negative else amount)  # type: ignore[index]
    metadata = {"reason": reason} if reason else {}
    key = f"adjust:{idempotency_key}"
    if negative:
        return ledger.charge(
            wallet_id,
            micros,
            idempotency_key=key,
            idempotency_scope=idempotency_scope,
            entry_type="adjustment",
            metadata=metadata,
        )
    return ledger.credit(
        wallet_id,
        micros,
        idempotency_key=key,
        idempotency_scope=idempotency_scope,
        entry_type="adjustment",
        listing=listing,
        metadata=metadata,
    )


def adjust(
    paywall: Paywall, environment: str, user: str, amount: object, *, idempotency_key: str, reason: object = None
) -> ledger.Posting:
    """A correction of an app user's own wallet (default mode; in shared mode the person's wallet is
    corrected by person, persons.adjust: an app never moves a person's money)."""
    if environment not in ENVIRONMENTS:
        raise InvalidRequest("environment must be 'live' or 'test'", "environment")
    if paywall.mode != "default":
        raise InvalidRequest("adjustments apply to default-mode paywalls", "mode")
    return correct(
        accounts.wallet_id(paywall, environment, user),
        amount,
        idempotency_key=idempotency_key,
        reason=reason,
        idempotency_scope=idempotency_scope(paywall.id, environment),
        listing=app_wallet_listing(paywall.id, environment, user),
    )


__all__ = ["adjust", "correct", "InvalidAmount"]
