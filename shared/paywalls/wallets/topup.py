"""Person wallet top-ups (SPEC §6) through the operator's Stripe account, on the same pipeline as
default-mode top-ups: hosted page -> Checkout Session -> signed webhook -> idempotent ledger credit.

A top-up fills the person's wallet of one environment, in the Stripe mode of that environment only:
the live wallet with the operator's live key, the test wallet with the test key (no fallback between
them; operator_stripe). The Checkout Session names the wallet in `client_reference_id` and in its
metadata (`purpose=wallet_topup`, person_id, environment, wallet_id, amount_micros); the webhook
credits it only if the event's livemode is that environment. The webhook endpoint
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
from urllib.parse import urlencode

from paywalls.billing import checkout, losses, operator_stripe, stripe_config
from paywalls.billing import stripe_webhooks as webhooks
from paywalls.billing.stripe_config import MODES
from paywalls.billing.stripe_webhooks import Outcome
from paywalls.infra import links, stripe_gateway
from paywalls.infra.config import settings
from paywalls.wallets import persons
from paywalls.wallets.persons import Person

log = logging.getLogger(__name__)

Method = Literal["stripe", "simulate", "unavailable"]
PURPOSE = "wallet_topup"


@dataclass(frozen=True)
class WalletTopup:
    person: Person
    environment: str  # whose money: the person's live or test wallet
    method: Method
    presets: list[int]
    currency: str = operator_stripe.CURRENCY

    @property
    def mode(self) -> str:
        """The Stripe mode the payment runs in: always the environment's own."""
        return stripe_config.mode_of_environment(self.environment)

    @property
    def wallet_id(self) -> str:
        return self.person.wallet_for(self.environment)

    def unavailable_reason(self) -> str:
        if self.environment == "live":
            return "Card payments for live wallets are not set up yet. Please try again later."
        return "Test-mode card payments are not set up for wallets yet."


def open_for(person: Person, environment: str) -> WalletTopup:
    """How the person's wallet of `environment` can be topped up: with the operator's key of that
    environment, by a simulated payment on the local stack, or not at all."""
    presets = operator_stripe.topup_amounts()
    if operator_stripe.topup_mode(environment):
        return WalletTopup(person, environment, "stripe", presets)
    if settings().local_dev:
        return WalletTopup(person, environment, "simulate", presets)
    return WalletTopup(person, environment, "unavailable", presets)


def choose_amount(topup: WalletTopup, value: object) -> int:
    return checkout.choose_preset(topup.presets, value)


def metadata(person: Person, environment: str, micros: int) -> dict[str, str]:
    return {
        "purpose": PURPOSE,
        "person_id": person.id,
        "environment": environment,
        "wallet_id": person.wallet_for(environment),
        "amount_micros": str(micros),
    }


def checkout_params(
    topup: WalletTopup, micros: int, public_base: str, *, return_to: str | None = None
) -> dict[str, Any]:
    """`return_to`: a wallet path (already checked by the caller: a pending approval) that the result
    pages lead back to, so a person who tops up from a consent page returns to it."""
    base = public_base.rstrip("/")
    back = f"?{urlencode({'next': return_to})}" if return_to else ""
    return checkout.session_params(
        currency=topup.currency,
        micros=micros,
        product_name="Wallet credits" if topup.environment == "live" else "Wallet test credits",
        client_reference_id=topup.wallet_id,
        customer_email=topup.person.email,
        metadata=metadata(topup.person, topup.environment, micros),
        success_url=base + links.wallet_path(topup.environment, "topup/success") + back,
        cancel_url=base + links.wallet_path(topup.environment, "topup" if return_to else "home") + back,
    )


def start_checkout(topup: WalletTopup, amount: object, public_base: str, *, return_to: str | None = None) -> str:
    """A Checkout Session with the operator's key of the top-up's own mode; refused (nothing created)
    when that key is not configured, whatever the other mode has."""
    micros = choose_amount(topup, amount)
    if topup.method != "stripe":
        raise stripe_config.StripeNotConfigured(topup.unavailable_reason())
    keys = operator_stripe.secrets_for(topup.mode)
    if keys is None or not keys.secret_key:
        raise stripe_config.StripeNotConfigured(topup.unavailable_reason())
    params = checkout_params(topup, micros, public_base, return_to=return_to)
    return stripe_gateway.create_checkout_session(keys.secret_key, params).url


SIMULATION_TTL_S = 3600


def simulation_token(person: Person, environment: str) -> str:
    """Local stack only: the simulated-payment form posts to a dev route outside /wallet (never
    deployed), which the session cookie (Path=/wallet) does not reach; this signed, expiring token
    names the person and the wallet's environment there instead, as a top-up link names a
    default-mode user."""
    expires_at = int(time.time()) + SIMULATION_TTL_S
    claims = links.LinkClaims("wallet-topup", operator_stripe.OPERATOR_ID, environment, person.id, expires_at)
    return links.sign(claims)


def open_simulation(token: str) -> tuple[Person, str]:
    """(person, environment) the simulated top-up is for."""
    claims = links.verify(token, "wallet-topup")
    person = persons.get(claims.user)
    if claims.paywall_id != operator_stripe.OPERATOR_ID or person is None or claims.environment not in MODES:
        raise links.InvalidLink("this link is not valid")
    return person, claims.environment


# ---- webhook ------------------------------------------------------------------------------------

# A debit that leaves a person's wallet negative is the operator's loss (losses.py).
ACCOUNT = webhooks.Account(operator_stripe.OPERATOR_ID, operator_stripe.CURRENCY, losses.debit_items)


def _person_wallet(environment: str, session: dict[str, Any], context: dict[str, Any]) -> webhooks.Payer | Outcome:
    """The person wallet a wallet top-up names, in the environment of the event (its livemode, checked
    against the secret that verified it): a test-mode payment can only ever fill a test wallet."""
    meta = session.get("metadata") or {}
    if not isinstance(meta, dict) or meta.get("purpose") != PURPOSE:
        return _ignored("not a wallet top-up", **context)
    if meta.get("environment") != environment:
        return _ignored("session environment does not match livemode", **context)
    person = persons.get(str(meta.get("person_id") or ""))
    if person is None:
        return _ignored("session names no known wallet", **context)
    wallet_id = person.wallet_for(environment)
    if meta.get("wallet_id") != wallet_id:
        return _ignored("session names no known wallet", **context)
    if session.get("client_reference_id") not in (None, wallet_id):
        return _ignored("client_reference_id does not match the metadata", **context)
    return webhooks.Payer(wallet_id)


def _ignored(reason: str, **context: Any) -> Outcome:
    log.warning("operator stripe event ignored: %s", reason, extra=context)
    return Outcome("ignored", reason)


def handle(mode: str, event: dict[str, Any], *, list_refunds: webhooks.RefundLister | None = None) -> Outcome:
    """A verified event of the operator's endpoint (`mode` = the secret that verified it, which must
    agree with the event's livemode): the default-mode pipeline (webhooks.process) with person
    wallets of that environment. A paid top-up credits its wallet once
    per Checkout Session and maps its payment intent to the wallet; a succeeded refund or a lost
    dispute of it debits that wallet once per refund / dispute id (even below zero), also when it
    arrives before the top-up's credit (parked until then); what it takes below zero is recorded as
    the operator's loss, with the pending earnings it paid for taken back (losses.py)."""
    return webhooks.process(ACCOUNT, mode, event, resolve_wallet=_person_wallet, list_refunds=list_refunds)
