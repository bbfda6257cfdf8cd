"""Stripe adapter: the only module that talks to the `stripe` library.

The API base comes from STRIPE_API_BASE (default Stripe's own), so tests and offline development point
the real library at a local stub. Stripe's errors become two client-safe exceptions whose messages
never carry a key or a signing secret."""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import stripe

from paywalls.core.errors import InvalidRequest, Unavailable, UpstreamFailed
from paywalls.infra import telemetry
from paywalls.infra.config import settings

log = logging.getLogger(__name__)

SIGNATURE_TOLERANCE_S = 300
_SECRET_RE = re.compile(r"\b(sk|rk|pk|whsec)_[A-Za-z0-9_*]+")


class StripeRejected(UpstreamFailed):
    """Stripe refused the request (bad key, missing permission, invalid parameter). Client-safe."""

    code = "stripe_rejected"


class StripeUnavailable(Unavailable):
    """Stripe could not be reached or failed; retrying later may work. Client-safe."""

    code = "stripe_unavailable"


class InvalidSignature(InvalidRequest):
    """The webhook body is not signed by any of the given secrets, or the signature is too old (a 400,
    as Stripe expects of an endpoint refusing an event)."""

    code = "invalid_signature"


def api_base() -> str:
    return (settings().stripe_api_base or stripe.DEFAULT_API_BASE).rstrip("/")


F = TypeVar("F", bound=Callable[..., Any])


def traced(func: F) -> F:
    """An X-Ray subsegment `## stripe <operation>` around a Stripe call (when tracing is on)."""
    name = f"## stripe {func.__name__}"

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with telemetry.subsegment(name):
            return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _client(api_key: str) -> stripe.StripeClient:
    return stripe.StripeClient(api_key, base_addresses={"api": api_base()}, max_network_retries=2)


def _scrub(text: str) -> str:
    return _SECRET_RE.sub(lambda m: f"{m.group(1)}_***", text)


def _translate(exc: stripe.StripeError, doing: str) -> Exception:
    message = _scrub(getattr(exc, "user_message", None) or str(exc) or "")
    log.warning("stripe call failed", extra={"doing": doing, "stripe_error": type(exc).__name__})
    if isinstance(exc, stripe.AuthenticationError):
        return StripeRejected("Stripe rejected the secret key (invalid, expired or revoked)")
    if isinstance(exc, stripe.PermissionError):
        return StripeRejected(f"the Stripe key is not allowed to {doing}: grant it that permission")
    if isinstance(exc, stripe.InvalidRequestError | stripe.CardError | stripe.IdempotencyError):
        return StripeRejected(f"Stripe refused to {doing}: {message}".rstrip(": "))
    return StripeUnavailable(f"Stripe is not available right now ({doing}); please retry")


# ---- webhook endpoints --------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookEndpoint:
    id: str
    secret: str
    livemode: bool


@traced
def create_webhook_endpoint(api_key: str, url: str, events: list[str], *, description: str) -> WebhookEndpoint:
    try:
        endpoint = _client(api_key).v1.webhook_endpoints.create(
            params={
                "url": url,
                "enabled_events": events,  # type: ignore[typeddict-item]
                "description": description,
                "api_version": stripe.api_version,  # type: ignore[typeddict-item]
            }
        )
    except stripe.StripeError as exc:
        raise _translate(exc, "create the webhook endpoint") from None
    data = endpoint.to_dict()
    secret = data.get("secret")
    if not isinstance(secret, str) or not secret.startswith("whsec_"):
        raise StripeUnavailable("Stripe did not return the webhook signing secret; please retry")
    return WebhookEndpoint(str(data.get("id")), secret, bool(data.get("livemode")))


@traced
def delete_webhook_endpoint(api_key: str, endpoint_id: str) -> bool:
    try:
        _client(api_key).v1.webhook_endpoints.delete(endpoint_id)
    except stripe.StripeError as exc:
        log.warning("could not delete a replaced webhook endpoint", extra={"stripe_error": type(exc).__name__})
        return False
    return True


# ---- checkout -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class CheckoutSession:
    id: str
    url: str


@traced
def create_checkout_session(api_key: str, params: dict[str, Any]) -> CheckoutSession:
    # The library adds an Idempotency-Key of its own to a POST it retries, so a retry never opens two.
    try:
        session = _client(api_key).v1.checkout.sessions.create(params=params)  # type: ignore[arg-type]
    except stripe.StripeError as exc:
        raise _translate(exc, "create the checkout session") from None
    data = session.to_dict()
    url = data.get("url")
    if not isinstance(url, str) or not url.startswith(("https://", "http://")):
        raise StripeUnavailable("Stripe did not return a checkout URL; please retry")
    return CheckoutSession(str(data.get("id")), url)


# ---- refunds ------------------------------------------------------------------------------------


@traced
def list_refunds(api_key: str, charge_id: str) -> list[dict[str, Any]]:
    """Every refund of a charge (the charge in a webhook lists them only for old API versions)."""
    try:
        page = _client(api_key).v1.refunds.list(params={"charge": charge_id, "limit": 100})
        return [r.to_dict() for r in page.auto_paging_iter()]
    except stripe.StripeError as exc:
        raise _translate(exc, "list the charge's refunds") from None


# ---- webhooks -----------------------------------------------------------------------------------


def verify_event(raw: bytes, signature: str | None, secrets: dict[str, str]) -> tuple[str, dict[str, Any]]:
    """(the name of the secret that verified, the event as plain JSON). Tries each secret in turn."""
    if not signature:
        raise InvalidSignature("missing Stripe-Signature header")
    for name, secret in secrets.items():
        # Signature first (Stripe's own check), then our own parse: construct_event would also build
        # a StripeObject we do not use, and fail in ways of its own on a signed body that is no object.
        try:
            stripe.WebhookSignature.verify_header(raw, signature, secret, tolerance=SIGNATURE_TOLERANCE_S)
            event = json.loads(raw)
        except stripe.SignatureVerificationError:
            continue
        except (ValueError, UnicodeDecodeError, RecursionError):  # signed, but not JSON we can read
            raise InvalidSignature("the body is not a JSON Stripe event") from None
        if not isinstance(event, dict) or event.get("object") != "event":
            raise InvalidSignature("the body is not a Stripe event")
        return name, event
    raise InvalidSignature("no valid signature for this endpoint (wrong secret, altered body or too old)")
