"""The hosted top-up page's rules (SPEC §5): what a signed top-up link may do, which amounts it offers,
and the Stripe Checkout Session it opens. No HTTP or HTML here: functions/wallet renders it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from paywalls.billing import accounts, checkout, ledger, stripe_config
from paywalls.billing.identity import open_user_link
from paywalls.billing.paywall import Paywall
from paywalls.infra import stripe_gateway
from paywalls.infra.config import settings

Method = Literal["stripe", "simulate", "unavailable"]


@dataclass(frozen=True)
class TopupLink:
    """A verified top-up link: whose wallet it fills and how."""

    token: str
    paywall: Paywall
    environment: str
    user: str
    presets: list[int]  # micro-units
    method: Method

    @property
    def mode(self) -> str:
        return stripe_config.mode_of_environment(self.environment)

    @property
    def wallet_id(self) -> str:
        return accounts.wallet_id(self.paywall, self.environment, self.user)

    def balance(self) -> int:
        return ledger.get_wallet(self.wallet_id).balance


def open_link(token: str) -> TopupLink:
    """Raises links.InvalidLink (forged, altered, wrong purpose) or paywall.NotFound."""
    claims, paywall = open_user_link(token, "topup", "default", "top-ups for this app are not handled here")
    mode = stripe_config.mode_of_environment(claims.environment)
    method: Method
    if stripe_config.mode_status(paywall, mode):
        method = "stripe"
    elif settings().local_dev:
        method = "simulate"
    else:
        method = "unavailable"
    return TopupLink(token, paywall, claims.environment, claims.user, stripe_config.topup_amounts(paywall), method)


def choose_amount(link: TopupLink, value: object) -> int:
    return checkout.choose_preset(link.presets, value)


def payment_metadata(link: TopupLink, micros: int) -> dict[str, str]:
    """What the webhook reads back to know whose wallet a paid session fills (Stripe metadata: strings)."""
    return {
        "paywall_id": link.paywall.id,
        "environment": link.environment,
        "user": link.user,
        "amount_micros": str(micros),
    }


def checkout_params(link: TopupLink, micros: int, public_base: str) -> dict[str, Any]:
    base = public_base.rstrip("/")
    return checkout.session_params(
        currency=link.paywall.currency,
        micros=micros,
        product_name=f"{link.paywall.name} credits"[:250],
        client_reference_id=link.wallet_id,
        metadata=payment_metadata(link, micros),
        success_url=f"{base}/pay/success",
        cancel_url=f"{base}/pay/cancel?link={link.token}",
    )


def start_checkout(link: TopupLink, amount: object, public_base: str) -> str:
    """Create the Checkout Session with the paywall's key for this link's mode; returns its URL."""
    micros = choose_amount(link, amount)
    keys = stripe_config.load_secrets(link.paywall.id, link.mode)
    if link.method != "stripe" or keys is None or not keys.secret_key:
        raise stripe_config.StripeNotConfigured("card payments are not set up for this app yet")
    session = stripe_gateway.create_checkout_session(keys.secret_key, checkout_params(link, micros, public_base))
    return session.url
