"""Stripe webhooks (SPEC §5, §6): POST /webhooks/stripe/{paywall_id}; `operator` is the operator's own
account (shared-mode wallet top-ups, wallet_topup), every other id a default-mode paywall's.

The signature is checked on the raw body exactly as Stripe sent it. API Gateway hands a body it
considers binary to Lambda base64-encoded (`isBase64Encoded: true`); Mangum decodes it before the
ASGI app sees it, so the body read (web.read_body) is always the original bytes (tests run such an event
through `handler`). Each event is tried against the paywall's test and live signing secrets; the one
that verifies tells the mode, which must agree with the event's `livemode`.

Replies: 2xx for everything verified (credited, duplicate, ignored: Stripe must not retry those),
503 when storage is busy (Stripe retries), and for everything else one and the same 400 (status and
body): an unknown paywall id, a paywall without Stripe secrets, a missing, bad or stale signature.
Nothing is answered before the signature is checked, so the endpoint does not tell which paywall ids
exist or which have Stripe configured (the logs say which it was). A missing secret is remembered for
a while (secrets_store), so forged calls do not each cost Secrets Manager reads."""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial
from typing import Any

from fastapi import FastAPI, Request
from mangum import Mangum
from starlette.concurrency import run_in_threadpool

from paywalls.billing import operator_stripe, stripe_config
from paywalls.billing import paywall as paywalls
from paywalls.billing import stripe_webhooks as webhooks
from paywalls.http import web
from paywalls.infra import stripe_gateway, telemetry
from paywalls.wallets import topup as wallet_topup

log = logging.getLogger(__name__)

MAX_BODY = 512 * 1024  # Stripe events are a few KB; anything near this is not from Stripe

app = web.install(FastAPI(docs_url=None, redoc_url=None, openapi_url=None))


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


def _rejected(paywall_id: str, reason: str) -> web.ApiError:
    """The one answer to every unverified call, whatever went wrong (see the module doc)."""
    log.warning("stripe webhook rejected: %s", reason, extra={"paywall_id": paywall_id[:64]})
    # Every unverified call counts alike (the StripeSignatureFailures alarm: misconfigured secret or probing).
    telemetry.emit({"StripeWebhookEvents": 1}, by={"outcome": "invalid_signature"})
    return web.ApiError(400, "webhook signature verification failed", code="invalid_signature")


@app.post("/webhooks/stripe/{paywall_id}")
async def stripe_webhook(paywall_id: str, request: Request) -> dict[str, Any]:
    raw = await web.read_body(request, limit=MAX_BODY, message="body too large for a Stripe event")
    return await run_in_threadpool(_process, paywall_id, raw, request.headers.get("stripe-signature"))


def _handler(paywall_id: str) -> Callable[..., webhooks.Outcome] | None:
    """Who handles this endpoint's events, or None for no such paywall (a malformed id costs no read)."""
    if paywall_id == operator_stripe.OPERATOR_ID:
        # The operator's account: shared-mode wallet top-ups (and their refunds), with its own secrets.
        return wallet_topup.handle
    try:
        return partial(webhooks.handle, paywalls.get(paywall_id))
    except paywalls.NotFound:
        return None


def _process(paywall_id: str, raw: bytes, signature: str | None) -> dict[str, Any]:
    handle = _handler(paywall_id)
    if handle is None:
        raise _rejected(paywall_id, "unknown paywall")
    if not signature:
        raise _rejected(paywall_id, "no Stripe-Signature header")
    mode, event = _verify(paywall_id, raw, signature)
    keys = stripe_config.load_secrets(paywall_id, mode)
    api_key = keys.secret_key if keys else None

    def list_refunds(charge_id: str) -> list[dict[str, Any]]:
        return stripe_gateway.list_refunds(api_key or "", charge_id)

    try:
        outcome = handle(mode, event, list_refunds=list_refunds if api_key else None)
    except (stripe_gateway.StripeUnavailable, stripe_gateway.StripeRejected) as exc:
        # Only reached for a refund whose details we must fetch: let Stripe deliver it again later.
        telemetry.emit({"StripeWebhookEvents": 1}, by={"outcome": "retry_later"})
        raise web.ApiError(503, str(exc), code="stripe_unavailable", headers={"Retry-After": "60"}) from None
    telemetry.emit({"StripeWebhookEvents": 1}, by={"outcome": "processed"})
    log.info(
        "stripe event processed",
        extra={"paywall_id": paywall_id, "event_id": event.get("id"), "type": event.get("type"), **outcome.as_api()},
    )
    return outcome.as_api()


def _verify(paywall_id: str, raw: bytes, signature: str) -> tuple[str, dict[str, Any]]:
    candidates = stripe_config.webhook_secrets(paywall_id)
    if not candidates:
        raise _rejected(paywall_id, "no Stripe webhook secret configured")
    try:
        return stripe_gateway.verify_event(raw, signature, {m: s.webhook_secret for m, s in candidates.items()})
    except stripe_gateway.InvalidSignature:
        pass
    # The secret may have changed moments ago (reconfigured); cached values are re-read, rate-limited.
    fresh = stripe_config.webhook_secrets(paywall_id, refresh=True)
    if fresh and fresh != candidates:
        try:
            return stripe_gateway.verify_event(raw, signature, {m: s.webhook_secret for m, s in fresh.items()})
        except stripe_gateway.InvalidSignature:
            pass
    raise _rejected(paywall_id, "bad signature")


handler = telemetry.lambda_handler(Mangum(app, lifespan="off"))
