"""The operator's own Stripe account (SPEC §6): wallet top-ups of shared mode and payouts to paywalls.

Configured with PUT /admin/operator/stripe {secret_key, topup_amounts?}. It reuses the default-mode
machinery of stripe_config under the reserved pseudo paywall id `operator` (real paywall ids are
`pw_<hex>`, so it never collides): secrets at `{prefix}/paywall/operator/stripe/{test|live}` ->
{secret_key, webhook_secret, webhook_endpoint_id}, the webhook endpoint at
`/webhooks/stripe/operator`, and the same signature verification. The non-secret status lives in
the item `OPERATOR` / `STRIPE`.

Which key does what:
- payouts (Stripe Connect transfers) of a paywall's `live` earnings use the live key, `test` the test key;
- wallet top-ups of a person's live wallet use the live key only, of their test wallet the test key
  only. There is no fallback: with only a test key configured, live top-ups are unavailable (a test
  payment must never become spendable live money)."""

from __future__ import annotations

import logging
from typing import Any

from paywalls.billing import stripe_config
from paywalls.billing.stripe_config import StripeSecrets
from paywalls.core.money import parse_amount
from paywalls.infra import store

log = logging.getLogger(__name__)

OPERATOR_ID = "operator"
CURRENCY = "usd"  # person wallets are kept in the deployment's currency
# The default-mode pipeline's events: top-ups, and their refunds and lost disputes (wallet_topup).
WEBHOOK_EVENTS = stripe_config.WEBHOOK_EVENTS


def status() -> dict[str, Any]:
    return store.get("OPERATOR", "STRIPE") or {}


def mode_configured(mode: str) -> bool:
    entry = status().get(mode)
    return isinstance(entry, dict) and bool(entry.get("configured"))


def secrets_for(mode: str) -> StripeSecrets | None:
    return stripe_config.load_secrets(OPERATOR_ID, mode)


def topup_mode(environment: str) -> str | None:
    """The Stripe mode that tops up a person's wallet of `environment`, if its key is configured: the
    environment's own mode, never the other one."""
    mode = stripe_config.mode_of_environment(environment)
    return mode if mode_configured(mode) else None


def topup_amounts() -> list[int]:
    configured = status().get("topup_amounts") or stripe_config.DEFAULT_TOPUP_AMOUNTS
    return [parse_amount(a) for a in configured]


def webhook_url(public_base: str) -> str:
    return stripe_config.webhook_url(public_base, OPERATOR_ID)


def public_status(current: dict[str, Any] | None = None) -> dict[str, Any]:
    current = status() if current is None else current
    return {
        "object": "operator_stripe",
        "test": current.get("test"),
        "live": current.get("live"),
        "topup_amounts": current.get("topup_amounts") or list(stripe_config.DEFAULT_TOPUP_AMOUNTS),
    }


def configure(data: dict[str, Any], public_base: str) -> dict[str, Any]:
    """Store the key, create the webhook endpoint for wallet top-ups (its signing secret is returned
    only now) and record a non-secret status."""
    stripe_config.reject_unknown_fields(data)
    secret_key, mode = stripe_config.parse_secret_key(data)
    current = status()
    current.pop("pk", None)
    current.pop("sk", None)
    if "topup_amounts" in data:
        current["topup_amounts"] = stripe_config.parse_topup_amounts(data["topup_amounts"], CURRENCY)

    current[mode] = stripe_config.replace_webhook_endpoint(
        OPERATOR_ID, mode, secret_key, webhook_url(public_base), WEBHOOK_EVENTS, "Paywalls wallet top-ups"
    )
    store.put({"pk": "OPERATOR", "sk": "STRIPE", **current})
    log.info("operator stripe configured", extra={"mode": mode, "endpoint": current[mode]["webhook_endpoint_id"]})
    return {**public_status(current), "mode": mode}
