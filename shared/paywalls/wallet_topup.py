"""Person wallet top-ups (SPEC §6) through the operator's Stripe account, on the same pipeline as
default-mode top-ups: hosted page -> Checkout Session -> signed webhook -> idempotent ledger credit.

The Checkout Session names the wallet in `client_reference_id` and in its metadata
(`purpose=wallet_topup`, person_id, wallet_id, amount_micros). The webhook endpoint
`/webhooks/stripe/operator` verifies the event with the operator's signing secret (operator_stripe),
then `handle` credits the wallet once per Checkout Session id (kept forever), whatever the number or
order of deliveries, and debits it for the top-up's succeeded refunds and lost disputes, exactly as
default mode does for app wallets (webhooks.process). Without an operator key, the local stack offers
a simulated payment (dev route) that sends a correctly signed event to that same endpoint."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Literal

from paywalls import checkout, links, losses, operator_stripe, persons, stripe_config, stripe_gateway, webhooks
from paywalls.config import settings
from paywalls.persons import Person
from paywalls.webhooks import Outcome

log = logging.getLogger(__name__)

Method = Literal["stripe", "simulate", "unavailable"]
PURPOSE = "wallet_topup"


@dataclass(frozen=True)
class WalletTopup:
    person: Person
    method: Method
    mode: str  # Stripe mode the payment runs in
    presets: list[int]
    currency: str = operator_stripe.CURRENCY


def open_for(person: Person) -> WalletTopup:
    mode = operator_stripe.topup_mode()
    if mode:
        return WalletTopup(person, "stripe", mode, operator_stripe.topup_amounts())
    if settings().local_dev:
        return WalletTopup(person, "simulate", "test", operator_stripe.topup_amounts())
    return WalletTopup(person, "unavailable", "test", operator_stripe.topup_amounts())


def choose_amount(topup: WalletTopup, value: object) -> int:
    return checkout.choose_preset(topup.presets, value)


def metadata(person: Person, micros: int) -> dict[str, str]:
    return {
        "purpose": PURPOSE,
        "person_id": person.id,
        "wallet_id": person.wallet_id,
        "amount_micros": str(micros),
    }


def checkout_params(topup: WalletTopup, micros: int, public_base: str) -> dict[str, Any]:
    base = public_base.rstrip("/")
    return checkout.session_params(
        currency=topup.currency,
        micros=micros,
        product_name="Wallet credits",
        client_reference_id=topup.person.wallet_id,
        customer_email=topup.person.email,
        metadata=metadata(topup.person, micros),
        success_url=f"{base}/wallet/topup/success",
        cancel_url=f"{base}/wallet/home",
    )


def start_checkout(topup: WalletTopup, amount: object, public_base: str) -> str:
    micros = choose_amount(topup, amount)
    keys = operator_stripe.secrets_for(topup.mode)
    if topup.method != "stripe" or keys is None or not keys.secret_key:
        raise stripe_config.StripeNotConfigured("card payments are not set up for wallets yet")
    return stripe_gateway.create_checkout_session(keys.secret_key, checkout_params(topup, micros, public_base)).url


SIMULATION_TTL_S = 3600


def simulation_token(person: Person) -> str:
    """Local stack only: the simulated-payment form posts to a dev route outside /wallet (never
    deployed), which the session cookie (Path=/wallet) does not reach; this signed, expiring token
    names the person there instead, as a top-up link names a default-mode user."""
    expires_at = int(time.time()) + SIMULATION_TTL_S
    return links.sign(links.LinkClaims("wallet-topup", operator_stripe.OPERATOR_ID, "test", person.id, expires_at))


def open_simulation(token: str) -> Person:
    claims = links.verify(token, "wallet-topup")
    person = persons.get(claims.user)
    if claims.paywall_id != operator_stripe.OPERATOR_ID or person is None:
        raise links.InvalidLink("this link is not valid")
    return person


# ---- webhook ------------------------------------------------------------------------------------

# A debit that leaves a person's wallet negative is the operator's loss (losses.py).
ACCOUNT = webhooks.Account(operator_stripe.OPERATOR_ID, operator_stripe.CURRENCY, losses.debit_items)


def _person_wallet(environment: str, session: dict[str, Any], context: dict[str, Any]) -> webhooks.Payer | Outcome:
    """The person wallet a wallet top-up names (one wallet per person, whatever the Stripe mode)."""
    meta = session.get("metadata") or {}
    if not isinstance(meta, dict) or meta.get("purpose") != PURPOSE:
        return _ignored("not a wallet top-up", **context)
    person = persons.get(str(meta.get("person_id") or ""))
    if person is None or meta.get("wallet_id") != person.wallet_id:
        return _ignored("session names no known wallet", **context)
    if session.get("client_reference_id") not in (None, person.wallet_id):
        return _ignored("client_reference_id does not match the metadata", **context)
    return webhooks.Payer(person.wallet_id)


def _ignored(reason: str, **context: Any) -> Outcome:
    log.warning("operator stripe event ignored: %s", reason, extra=context)
    return Outcome("ignored", reason)


def handle(mode: str, event: dict[str, Any], *, list_refunds: webhooks.RefundLister | None = None) -> Outcome:
    """A verified event of the operator's endpoint (`mode` = the secret that verified it): the
    default-mode pipeline (webhooks.process) with person wallets. A paid top-up credits its wallet once
    per Checkout Session and maps its payment intent to the wallet; a succeeded refund or a lost
    dispute of it debits that wallet once per refund / dispute id (even below zero), also when it
    arrives before the top-up's credit (parked until then); what it takes below zero is recorded as
    the operator's loss, with the pending earnings it paid for taken back (losses.py)."""
    return webhooks.process(ACCOUNT, mode, event, resolve_wallet=_person_wallet, list_refunds=list_refunds)
