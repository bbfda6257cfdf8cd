"""Stripe Connect transfers (the payout of a withdrawal): the adapter, next to stripe_gateway's.

Transfer.create moves money from the operator's Stripe balance to the paywall's connected account.
The withdrawal id is the Stripe idempotency key and the transfer's `transfer_group` (and metadata
`withdrawal_id`). The key alone only dedupes retries within Stripe's 24 h window; a retry after a
lost answer can come later, so withdrawals.pay_out first looks the withdrawal's transfer up by its
group (`find_transfer`) and adopts it."""

from __future__ import annotations

from dataclasses import dataclass

import stripe

from paywalls.infra import stripe_gateway
from paywalls.infra.stripe_gateway import StripeRejected, StripeUnavailable

__all__ = ["Transfer", "create_transfer", "find_transfer", "StripeRejected", "StripeUnavailable"]


@dataclass(frozen=True)
class Transfer:
    id: str
    amount: int  # minor units
    destination: str


@stripe_gateway.traced
def create_transfer(
    api_key: str,
    *,
    amount_minor: int,
    currency: str,
    destination: str,
    idempotency_key: str,
    metadata: dict[str, str],
    description: str,
) -> Transfer:
    try:
        transfer = stripe_gateway._client(api_key).v1.transfers.create(
            params={
                "amount": amount_minor,
                "currency": currency,
                "destination": destination,
                "transfer_group": idempotency_key,
                "metadata": metadata,  # type: ignore[typeddict-item]
                "description": description,
            },
            options={"idempotency_key": idempotency_key},
        )
    except stripe.StripeError as exc:
        raise stripe_gateway._translate(exc, "create the transfer") from None  # the same client-safe error policy
    data = transfer.to_dict()
    return Transfer(str(data.get("id")), int(data.get("amount") or amount_minor), str(data.get("destination")))


def find_transfer(api_key: str, *, transfer_group: str, withdrawal_id: str) -> Transfer | None:
    """The transfer already made for this withdrawal, if any (the oldest, should there be several:
    Stripe lists newest first). Only ours count: same group and metadata naming the withdrawal."""
    try:
        page = stripe_gateway._client(api_key).v1.transfers.list(
            params={"transfer_group": transfer_group, "limit": 100}
        )
        found = [t.to_dict() for t in page.auto_paging_iter()]
    except stripe.StripeError as exc:
        raise stripe_gateway._translate(exc, "list the withdrawal's transfers") from None
    ours = [
        t
        for t in found
        if t.get("transfer_group") == transfer_group and (t.get("metadata") or {}).get("withdrawal_id") == withdrawal_id
    ]
    if not ours:
        return None
    oldest = min(ours, key=lambda t: (int(t.get("created") or 0), str(t.get("id"))))
    return Transfer(str(oldest.get("id")), int(oldest.get("amount") or 0), str(oldest.get("destination")))
