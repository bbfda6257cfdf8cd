"""The operator's own Stripe account (SPEC §6): wallet top-ups of shared mode and payouts to paywalls.

Configured with PUT /admin/operator/stripe {secret_key, topup_amounts?}. It reuses the default-mode
machinery of stripe_config under the reserved pseudo paywall id `operator` (real paywall ids are
`pw_<hex>`, so it never collides): secrets at `{prefix}/paywall/operator/stripe/{test|live}` ->
{secret_key, webhook_secret, webhook_endpoint_id}, the webhook endpoint at
`/webhooks/stripe/operator`, and the same signature verification. The non-secret status lives in
the item `OPERATOR` / `STRIPE`.

Which key does what:
- payouts (Stripe Connect transfers) of a paywall's `live` earnings use the live key, `test` the test key;
- wallet top-ups use the live key when one is configured, else the test key (a test-only deployment
  works end to end). Person wallets are not split by environment (one wallet per person)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from paywalls import store, stripe_config, stripe_gateway
from paywalls.money import parse_amount
from paywalls.paywall import InvalidRequest
from paywalls.stripe_config import StripeSecrets

log = logging.getLogger(__name__)

OPERATOR_ID = "operator"
CURRENCY = "usd"  # person wallets are kept in the deployment's currency
WEBHOOK_EVENTS = [
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
]


def status() -> dict[str, Any]:
    return store.get("OPERATOR", "STRIPE") or {}


def mode_configured(mode: str) -> bool:
    entry = status().get(mode)
    return isinstance(entry, dict) and bool(entry.get("configured"))


def secrets_for(mode: str) -> StripeSecrets | None:
    return stripe_config.load_secrets(OPERATOR_ID, mode)


def topup_mode() -> str | None:
    for mode in ("live", "test"):
        if mode_configured(mode):
            return mode
    return None


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
    unknown = sorted(set(data) - {"secret_key", "topup_amounts"})
    if unknown:
        raise InvalidRequest(f"unknown field(s): {', '.join(unknown)}", unknown[0])
    secret_key = data.get("secret_key")
    if not isinstance(secret_key, str) or not secret_key.strip() or len(secret_key) > 512:
        raise InvalidRequest("secret_key is required", "secret_key")
    secret_key = secret_key.strip()
    if not secret_key.isascii() or any(c.isspace() for c in secret_key):
        raise InvalidRequest("secret_key must not contain spaces", "secret_key")
    mode = stripe_config.key_mode(secret_key)
    current = status()
    current.pop("pk", None)
    current.pop("sk", None)
    if "topup_amounts" in data:
        current["topup_amounts"] = stripe_config.parse_topup_amounts(data["topup_amounts"], CURRENCY)

    url = webhook_url(public_base)
    previous = stripe_config.load_secrets(OPERATOR_ID, mode, force_fetch=True)
    endpoint = stripe_gateway.create_webhook_endpoint(
        secret_key, url, WEBHOOK_EVENTS, description="Paywalls wallet top-ups"
    )
    stripe_config.save_secrets(OPERATOR_ID, mode, StripeSecrets(secret_key, endpoint.secret, endpoint.id))
    if previous and previous.secret_key and previous.webhook_endpoint_id not in (None, endpoint.id):
        stripe_gateway.delete_webhook_endpoint(previous.secret_key, previous.webhook_endpoint_id or "")
    current[mode] = {
        "configured": True,
        "key_type": "restricted" if secret_key.startswith("rk_") else "secret",
        "webhook_endpoint_id": endpoint.id,
        "webhook_url": url,
        "enabled_events": list(WEBHOOK_EVENTS),
        "configured_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
    store.put({"pk": "OPERATOR", "sk": "STRIPE", **current})
    log.info("operator stripe configured", extra={"mode": mode, "endpoint": endpoint.id})
    return {**public_status(current), "mode": mode}
