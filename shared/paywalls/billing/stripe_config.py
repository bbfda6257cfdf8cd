"""A default-mode paywall's own Stripe account (SPEC §5): which key serves which environment, where its
secrets live, the top-up presets, and configuring it (which creates the webhook endpoint).

Secrets (Secrets Manager, JSON): `{prefix}/paywall/{id}/stripe/{test|live}` ->
`{secret_key, webhook_secret, webhook_endpoint_id}`. A paywall key of environment `test` uses the
Stripe test-mode config, `live` the live one: the two never meet. The paywall record keeps only a
non-secret status (`paywall.stripe`)."""

from __future__ import annotations

import json
import logging
import secrets
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from paywalls.billing import paywall as paywalls
from paywalls.billing.paywall import Conflict, InvalidRequest, Paywall
from paywalls.core.currency import UnsupportedAmount, micros_to_minor
from paywalls.core.errors import Unavailable
from paywalls.core.money import MICROS_PER_UNIT, InvalidAmount, decimal_str, parse_amount
from paywalls.infra import secrets as secrets_store
from paywalls.infra import stripe_gateway
from paywalls.infra.config import settings
from paywalls.infra.store import StoreUnavailable

log = logging.getLogger(__name__)

MODES = ("test", "live")
WEBHOOK_EVENTS = [
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
    "charge.refunded",
    # A pending refund is debited only once it succeeds, which this event reports (webhooks.py).
    "refund.updated",
    "charge.dispute.closed",
]
DEFAULT_TOPUP_AMOUNTS = ["5", "10", "20"]
MAX_PRESETS = 6
MIN_TOPUP_MICROS = 500_000  # Stripe's smallest card charge is 0.50 in most currencies
MAX_TOPUP_MICROS = 10_000 * 1_000_000
_KEY_PREFIXES = {"sk_test_": "test", "rk_test_": "test", "sk_live_": "live", "rk_live_": "live"}


class StripeNotConfigured(Unavailable):
    """Card payments are not set up (no Stripe key for this mode); the message is client-safe."""

    code = "stripe_not_configured"


@dataclass(frozen=True)
class StripeSecrets:
    secret_key: str | None  # None: a local-dev webhook secret only (simulated payments)
    webhook_secret: str
    webhook_endpoint_id: str | None = None


def mode_of_environment(environment: str) -> str:
    """Paywall key environment -> Stripe mode. Same names, kept as a function so the rule is in one place."""
    if environment not in MODES:
        raise InvalidRequest("environment must be 'live' or 'test'", "environment")
    return environment


def key_mode(secret_key: str) -> str:
    for prefix, mode in _KEY_PREFIXES.items():
        if secret_key.startswith(prefix):
            return mode
    raise InvalidRequest(
        "secret_key must be a Stripe secret or restricted key (sk_test_, rk_test_, sk_live_ or rk_live_)",
        "secret_key",
    )


def secret_name(paywall_id: str, mode: str) -> str:
    return f"{settings().secret_prefix}/paywall/{paywall_id}/stripe/{mode}"


# ---- secrets ------------------------------------------------------------------------------------


def load_secrets(paywall_id: str, mode: str, *, force_fetch: bool = False) -> StripeSecrets | None:
    """The mode's secrets, or None if that mode was never configured (a miss secrets_store remembers
    for a while, so repeated lookups of an unconfigured mode do not each read Secrets Manager)."""
    try:
        data = secrets_store.get_json_secret_if_exists(secret_name(paywall_id, mode), force_fetch=force_fetch)
    except secrets_store.SecretUnavailable:
        log.warning("stripe secret unreadable", extra={"paywall_id": paywall_id, "mode": mode})
        raise StoreUnavailable("the secrets store is not available, please retry") from None
    if not isinstance(data, dict) or not data.get("webhook_secret"):
        return None
    return StripeSecrets(data.get("secret_key"), data["webhook_secret"], data.get("webhook_endpoint_id"))


def save_secrets(paywall_id: str, mode: str, value: StripeSecrets) -> None:
    secrets_store.put_secret(secret_name(paywall_id, mode), json.dumps(asdict(value)))


def dev_webhook_secret(paywall_id: str, mode: str) -> str:
    """Local development without a Stripe key: a webhook signing secret generated on first use and
    stored where the real `whsec_` would be, so simulated events take the normal verification path.
    Concurrent first uses agree on one secret (create-if-absent, then read)."""
    if not settings().local_dev:
        raise StripeNotConfigured("simulated payments exist only on the local stack")
    existing = load_secrets(paywall_id, mode, force_fetch=True)
    if existing:
        return existing.webhook_secret
    candidate = StripeSecrets(None, "whsec_dev_" + secrets.token_hex(24))
    secrets_store.create_if_absent(secret_name(paywall_id, mode), json.dumps(asdict(candidate)))
    stored = load_secrets(paywall_id, mode, force_fetch=True)
    if stored is None:
        raise StripeNotConfigured("the local webhook secret could not be stored")
    return stored.webhook_secret


# ---- top-up presets -----------------------------------------------------------------------------


def parse_topup_amounts(value: object, currency: str) -> list[str]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_PRESETS:
        raise InvalidRequest(
            f'topup_amounts must be a list of 1-{MAX_PRESETS} decimal strings, e.g. ["5", "10", "20"]', "topup_amounts"
        )
    result: list[int] = []
    for item in value:
        try:
            micros = parse_amount(item)
            micros_to_minor(micros, currency)
        except (InvalidAmount, UnsupportedAmount) as exc:
            raise InvalidRequest(f"topup_amounts: {exc}", "topup_amounts") from None
        if not MIN_TOPUP_MICROS <= micros <= MAX_TOPUP_MICROS:
            raise InvalidRequest("topup_amounts must each be between 0.50 and 10000", "topup_amounts")
        result.append(micros)
    if len(set(result)) != len(result):
        raise InvalidRequest("topup_amounts must not repeat", "topup_amounts")
    return [decimal_str(Decimal(m) / MICROS_PER_UNIT) for m in sorted(result)]


def topup_amounts(paywall: Paywall) -> list[int]:
    """The presets of the hosted top-up page, in micro-units."""
    configured = (paywall.stripe or {}).get("topup_amounts") or DEFAULT_TOPUP_AMOUNTS
    return [parse_amount(a) for a in configured]


def mode_status(paywall: Paywall, mode: str) -> dict[str, Any] | None:
    status = (paywall.stripe or {}).get(mode)
    return status if isinstance(status, dict) and status.get("configured") else None


# ---- configuring (admin) ------------------------------------------------------------------------


def webhook_url(public_base: str, paywall_id: str) -> str:
    return f"{public_base.rstrip('/')}/webhooks/stripe/{paywall_id}"


def reject_unknown_fields(data: dict[str, Any]) -> None:
    """PUT bodies of a Stripe configuration (a paywall's or the operator's) take these fields only."""
    unknown = sorted(set(data) - {"secret_key", "topup_amounts"})
    if unknown:
        raise InvalidRequest(f"unknown field(s): {', '.join(unknown)}", unknown[0])


def parse_secret_key(data: dict[str, Any]) -> tuple[str, str]:
    """The body's Stripe key, trimmed, and the mode it belongs to (from its prefix)."""
    secret_key = data.get("secret_key")
    if not isinstance(secret_key, str) or not secret_key.strip() or len(secret_key) > 512:
        raise InvalidRequest("secret_key is required", "secret_key")
    secret_key = secret_key.strip()
    if not secret_key.isascii() or any(c.isspace() for c in secret_key):
        raise InvalidRequest("secret_key must not contain spaces", "secret_key")
    return secret_key, key_mode(secret_key)


def replace_webhook_endpoint(
    owner_id: str, mode: str, secret_key: str, url: str, events: list[str], description: str
) -> dict[str, Any]:
    """Create the webhook endpoint for `secret_key`, store its signing secret with the key (the only
    time Stripe reveals it), drop the endpoint it replaces, and return the non-secret status of `mode`."""
    previous = load_secrets(owner_id, mode, force_fetch=True)
    endpoint = stripe_gateway.create_webhook_endpoint(secret_key, url, events, description=description)
    save_secrets(owner_id, mode, StripeSecrets(secret_key, endpoint.secret, endpoint.id))
    if (
        previous
        and previous.secret_key
        and previous.webhook_endpoint_id
        and previous.webhook_endpoint_id != endpoint.id
    ):
        # Events still queued for the replaced endpoint would fail verification forever.
        stripe_gateway.delete_webhook_endpoint(previous.secret_key, previous.webhook_endpoint_id)
    return {
        "configured": True,
        "key_type": "restricted" if secret_key.startswith("rk_") else "secret",
        "webhook_endpoint_id": endpoint.id,
        "webhook_url": url,
        "enabled_events": list(events),
        "configured_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }


def configure(paywall_id: str, data: dict[str, Any], public_base: str) -> dict[str, Any]:
    """Store the key, create the webhook endpoint (its signing secret is returned only now) and
    record a non-secret status on the paywall. Returns that status."""
    paywall = paywalls.get(paywall_id)
    reject_unknown_fields(data)
    if paywall.mode != "default":
        raise Conflict("a paywall's own Stripe account is for default-mode paywalls (shared mode uses the operator's)")
    secret_key, mode = parse_secret_key(data)
    current = dict(paywall.stripe or {})
    if "topup_amounts" in data:
        amounts = parse_topup_amounts(data["topup_amounts"], paywall.currency)
    else:
        amounts = current.get("topup_amounts") or list(DEFAULT_TOPUP_AMOUNTS)

    url = webhook_url(public_base, paywall_id)
    description = f"Paywalls top-ups for {paywall.name}"[:500]
    current[mode] = replace_webhook_endpoint(paywall_id, mode, secret_key, url, WEBHOOK_EVENTS, description)
    current["topup_amounts"] = amounts
    saved = paywalls.set_stripe(paywall_id, current)
    from paywalls.events import outbox  # noqa: PLC0415 (events imports the paywall layer)

    outbox.emit(saved, "paywall.integration.stripe.webhook.rotated", {"environment": mode})
    endpoint_id = current[mode]["webhook_endpoint_id"]
    log.info("stripe configured", extra={"paywall_id": paywall_id, "mode": mode, "endpoint": endpoint_id})
    return {"object": "stripe_config", "paywall_id": paywall_id, "mode": mode, **public_status(current)}


def public_status(status: dict[str, Any]) -> dict[str, Any]:
    return {
        "test": status.get("test"),
        "live": status.get("live"),
        "topup_amounts": status.get("topup_amounts") or list(DEFAULT_TOPUP_AMOUNTS),
    }


# ---- reading secrets on the hot path (webhooks) --------------------------------------------------

_REFETCH_INTERVAL_S = 30.0
_last_refetch: dict[str, float] = {}


def webhook_secrets(paywall_id: str, *, refresh: bool = False) -> dict[str, StripeSecrets]:
    """Both modes' secrets that exist. `refresh` re-reads Secrets Manager (after a failed verification:
    the key may just have been reconfigured), at most every 30 s per paywall so forged requests cannot
    turn into a flood of Secrets Manager calls. A mode recently found missing is not re-read by a
    refresh: its remembered miss expires on its own (secrets_store.miss_ttl_s), so forged calls to a
    paywall without Stripe cost at most one read per mode per that TTL."""
    if refresh:
        now = time.monotonic()
        if now - _last_refetch.get(paywall_id, -_REFETCH_INTERVAL_S) < _REFETCH_INTERVAL_S:
            return {}
        _last_refetch[paywall_id] = now
    found = {}
    for mode in MODES:
        force = refresh and not secrets_store.known_missing(secret_name(paywall_id, mode))
        value = load_secrets(paywall_id, mode, force_fetch=force)
        if value:
            found[mode] = value
    return found
