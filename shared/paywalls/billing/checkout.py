"""What the two hosted top-ups have in common: an app user's (the paywall's own Stripe, SPEC §5) and a
person's wallet top-up (the operator's Stripe, SPEC §6). Both sell only the page's presets and open
the same kind of Checkout Session. Pure: no I/O, callers pick the key and create the session."""

from __future__ import annotations

from typing import Any

from paywalls.billing.paywall import InvalidRequest
from paywalls.core.currency import micros_to_minor
from paywalls.core.money import InvalidAmount, parse_amount


def choose_preset(presets: list[int], value: object) -> int:
    """Only the page's presets can be bought: the amount is never free-form client input."""
    try:
        micros = parse_amount(value)
    except InvalidAmount:
        raise InvalidRequest("choose one of the amounts on the page", "amount") from None
    if micros not in presets:
        raise InvalidRequest("choose one of the amounts on the page", "amount")
    return micros


def session_params(
    *,
    currency: str,
    micros: int,
    product_name: str,
    client_reference_id: str,
    metadata: dict[str, str],
    success_url: str,
    cancel_url: str,
    customer_email: str | None = None,
) -> dict[str, Any]:
    """A one-item payment Checkout Session; `metadata` is what the webhook reads back to know whose
    wallet the paid session fills."""
    params: dict[str, Any] = {
        "mode": "payment",
        "line_items": [
            {
                "quantity": 1,
                "price_data": {
                    "currency": currency,
                    "unit_amount": micros_to_minor(micros, currency),
                    "product_data": {"name": product_name},
                },
            }
        ],
        "client_reference_id": client_reference_id,
    }
    if customer_email is not None:
        params["customer_email"] = customer_email
    params["metadata"] = metadata
    # Copied onto the PaymentIntent too, so refunds and disputes are traceable in Stripe's dashboard.
    params["payment_intent_data"] = {"metadata": metadata}
    params["success_url"] = success_url
    params["cancel_url"] = cancel_url
    return params
