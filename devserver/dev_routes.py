"""Dev-only routes of the local stack, mounted under /_dev by devserver (never in template.yaml).

Shared mode: /_dev/mail is the local inbox (wallet sign-in codes, also printed to the console),
/_dev/wallet/topup/simulate/{token} simulates a wallet top-up through the operator's webhook endpoint,
and /_dev/clock moves the clock of the earnings' settlement delay. /_dev/events/drain runs the stream
and queue consumers until nothing is pending (deliveries in a test without waiting on a poll).

Simulated payments (SPEC §5, offline development): with no Stripe key configured, the top-up page's
"Simulate payment" form posts here. We build a Stripe-shaped `checkout.session.completed` event (the
shape of Stripe's own fixture), sign it with the paywall's local webhook secret (generated on first
use and stored where the real `whsec_` would live) and POST it over HTTP to the local webhook
endpoint, which verifies it like any Stripe delivery: there is no bypass."""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import httpx
import stripe
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from paywalls import (
    csrf,
    earnings,
    links,
    mailer,
    operator_stripe,
    page_http,
    pages,
    stripe_config,
    topup,
    wallet_topup,
    web,
)
from paywalls.config import settings
from paywalls.paywall import Conflict, InvalidRequest, NotFound

log = logging.getLogger(__name__)

app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


@app.get("/_dev/")
def index() -> dict[str, object]:
    return {"object": "dev", "local_only": True, "routes": sorted(r.path for r in app.routes)}  # type: ignore[attr-defined]


@app.post("/_dev/events/drain")
async def drain_events(timeout_s: float = 10) -> dict[str, Any]:
    from devserver import event_sources

    sources = event_sources.current
    if sources is None:
        return {"delivered": 0, "running": False}
    delivered = await run_in_threadpool(sources.drain, min(max(timeout_s, 0.0), 60.0))
    return {"delivered": delivered, "running": True}


def simulated_checkout_event(link: topup.TopupLink, micros: int, public_base: str) -> dict[str, Any]:
    """A paid Checkout Session in an event envelope, as Stripe would deliver it for our own page."""
    return paid_session_event(topup.checkout_params(link, micros, public_base), link.paywall.currency, link.mode)


def paid_session_event(params: dict[str, Any], currency: str, mode: str) -> dict[str, Any]:
    """The event of a paid Checkout Session created with `params` (what our page sent Stripe)."""
    livemode = mode == "live"
    prefix = "cs_live_" if livemode else "cs_test_"
    now = int(time.time())
    amount = params["line_items"][0]["price_data"]["unit_amount"]  # type: ignore[index]
    session = {
        "id": prefix + secrets.token_urlsafe(42).replace("-", "a").replace("_", "b"),
        "object": "checkout.session",
        "amount_subtotal": amount,
        "amount_total": amount,
        "cancel_url": params["cancel_url"],
        "client_reference_id": params["client_reference_id"],
        "created": now,
        "currency": currency,
        "customer": None,
        "customer_details": {"email": "dev@example.com", "name": None, "tax_exempt": "none"},
        "expires_at": now + 24 * 3600,
        "livemode": livemode,
        "metadata": params["metadata"],
        "mode": "payment",
        "payment_intent": "pi_dev_" + secrets.token_hex(12),
        "payment_method_types": ["card"],
        "payment_status": "paid",
        "status": "complete",
        "success_url": params["success_url"],
        "url": None,
    }
    return {
        "id": "evt_dev_" + secrets.token_hex(12),
        "object": "event",
        "api_version": stripe.api_version,
        "created": now,
        "data": {"object": session},
        "livemode": livemode,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": "checkout.session.completed",
    }


def _page(title: str, message: str, status: int) -> HTMLResponse:
    return HTMLResponse(pages.message_page(title, message), status_code=status, headers=pages.SECURITY_HEADERS)


Prepared = tuple[str, bytes, str, str]


async def _simulate(request: Request, prepare: Callable[[dict[str, str], str], Prepared], what: str) -> Response:
    """Both simulated payments: `prepare(form, public_base)` checks the form and returns (webhook owner id,
    signed event body, Stripe-Signature header, done path); the event then goes over HTTP to that
    owner's webhook endpoint, and a credited (or already credited) payment lands on the done path."""
    if not settings().local_dev:
        return _page("Not found", "This page does not exist.", 404)
    raw = await request.body()
    form = {k: v[0] for k, v in parse_qs(raw[:4096].decode("utf-8", "replace"), max_num_fields=10).items()}
    base = web.public_base_url(request)
    try:
        owner_id, body, header, done_path = await run_in_threadpool(prepare, form, base)
    except csrf.Rejected:
        return _page("Please reload the page", "This form expired. Reload the top-up page and try again.", 403)
    except Conflict as exc:
        return _page("Not simulated", str(exc), 409)
    except links.InvalidLink as exc:
        return _page("Link not valid", str(exc), 400)
    except NotFound:
        return _page("Not found", "This top-up page does not exist.", 404)
    except InvalidRequest as exc:
        return _page("Please try again", str(exc), 400)
    except Exception:
        log.exception("simulated %s failed", what)
        return _page("Something went wrong", "The simulated payment could not be prepared.", 500)

    try:
        async with httpx.AsyncClient(timeout=15) as client:
            reply = await client.post(
                f"{base}/webhooks/stripe/{owner_id}",
                content=body,
                headers={"Content-Type": "application/json; charset=utf-8", "Stripe-Signature": header},
            )
    except httpx.HTTPError:
        return _page("Simulation failed", "The local webhook endpoint did not answer.", 502)
    is_json = reply.headers.get("content-type", "").startswith("application/json")
    result = reply.json().get("result") if is_json else None
    if reply.status_code != 200 or result not in ("credited", "duplicate"):
        log.warning("simulated webhook not credited", extra={"status": reply.status_code, "result": result})
        return _page("Simulation failed", f"The webhook answered {reply.status_code} ({result or 'error'}).", 502)
    return RedirectResponse(f"{base}{done_path}", status_code=303)


@app.post("/_dev/pay/{token}/simulate")
async def simulate_payment(token: str, request: Request) -> Response:
    def prepare(form: dict[str, str], base: str) -> Prepared:
        link = topup.open_link(token)
        csrf.require_form(form, request.cookies, token)
        micros = topup.choose_amount(link, form.get("amount"))
        if link.method != "simulate":
            raise Conflict("Stripe is configured for this environment: use the real checkout")
        secret = stripe_config.dev_webhook_secret(link.paywall.id, link.mode)
        body = json.dumps(simulated_checkout_event(link, micros, base)).encode()
        header = stripe.WebhookSignature.generate_signature_header(body.decode(), secret)
        return link.paywall.id, body, header, "/pay/success"

    return await _simulate(request, prepare, "payment")


# ---- shared mode: the local inbox and simulated wallet top-ups ------------------------------------


@app.get("/_dev/mail")
def mail(to: str | None = None) -> dict[str, Any]:
    """The local stack's outbox (sign-in codes), newest last. Local only, never deployed."""
    if not settings().local_dev:
        return {"object": "list", "data": []}
    return {
        "object": "list",
        "data": [
            {"to": m.to, "subject": m.subject, "text": m.text, "sent_at": m.sent_at} for m in mailer.sent_mail(to)
        ],
    }


@app.post("/_dev/wallet/topup/simulate/{token}")
async def simulate_wallet_topup(token: str, request: Request) -> Response:
    """The wallet top-up page's "Simulate payment" (no operator Stripe key for that environment): a
    signed Stripe-shaped event through the operator's webhook endpoint, like any delivery, in the Stripe
    mode of the page's environment (livemode true for the live wallet), so it credits the wallet the
    page is for. The token (from the page) names the signed-in person and that environment."""

    def prepare(form: dict[str, str], base: str) -> Prepared:
        person, environment = wallet_topup.open_simulation(token)
        csrf.require_form(form, request.cookies, f"wallet-topup:{token}")
        offer = wallet_topup.open_for(person, environment)
        if offer.method != "simulate":
            raise Conflict("the operator's Stripe is configured for this environment: use the real checkout")
        micros = wallet_topup.choose_amount(offer, form.get("amount"))
        secret = stripe_config.dev_webhook_secret(operator_stripe.OPERATOR_ID, offer.mode)
        # From a consent page's "Add money": the success page leads back to that pending approval.
        params = wallet_topup.checkout_params(offer, micros, base, return_to=page_http.approval_path(form.get("next")))
        body = json.dumps(paid_session_event(params, offer.currency, offer.mode)).encode()
        header = stripe.WebhookSignature.generate_signature_header(body.decode(), secret)
        return operator_stripe.OPERATOR_ID, body, header, params["success_url"].removeprefix(base.rstrip("/"))

    return await _simulate(request, prepare, "wallet top-up")


# ---- shared mode: the settlement delay's clock ----------------------------------------------------

_clock_offset = timedelta(0)


def _shifted_now() -> datetime:
    return datetime.now(UTC) + _clock_offset


@app.post("/_dev/clock", response_model=None)
def dev_clock(request: Request, advance_days: float = 0, reset: bool = False) -> dict[str, Any] | Response:
    """Move the earnings clock (earnings.now: what has matured, when new earnings mature) of the
    local stack by `advance_days`, or back to real time with `reset`, so the settlement delay
    (EarningsHoldDays) can be tried without waiting days. Local only, never deployed."""
    global _clock_offset
    if not settings().local_dev:
        return web.error_response(web.ApiError(404, "not found", code="not_found"), web.request_id_of(request))
    if not 0 <= advance_days <= 3650:
        error = web.ApiError(400, "advance_days must be between 0 and 3650", param="advance_days")
        return web.error_response(error, web.request_id_of(request))
    _clock_offset = timedelta(0) if reset else _clock_offset + timedelta(days=advance_days)
    earnings.now = _shifted_now  # type: ignore[assignment]  # the module's clock, replaceable by design
    return {"object": "dev_clock", "now": _shifted_now().isoformat(), "offset_days": _clock_offset / timedelta(days=1)}
