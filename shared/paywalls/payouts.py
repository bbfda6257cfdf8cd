"""Stripe Connect transfers (the payout of a withdrawal): the adapter, next to stripe_gateway's.

Transfer.create moves money from the operator's Stripe balance to the paywall's connected account.
The withdrawal id is the Stripe idempotency key, so retrying a payout never transfers twice."""

from __future__ import annotations

from dataclasses import dataclass

import stripe

from paywalls import stripe_gateway
from paywalls.stripe_gateway import StripeRejected, StripeUnavailable

__all__ = ["Transfer", "create_transfer", "StripeRejected", "StripeUnavailable"]


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
    client = stripe.StripeClient(api_key, base_addresses={"api": stripe_gateway.api_base()}, max_network_retries=2)
    try:
        transfer = client.v1.transfers.create(
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
