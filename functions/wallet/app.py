"""Hosted pages (SPEC §5): the top-up page behind a signed link, the Stripe Checkout hand-off and
its result pages. Routes: ANY /pay/{proxy+} (and /wallet/{proxy+}, shared mode, not here yet).

The pages are unauthenticated: the signed link names (paywall, environment, user) and cannot be
altered; forms carry a signed double-submit CSRF token (paywalls.csrf). Every answer is an HTML page,
never a traceback."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from mangum import Mangum
from starlette.concurrency import run_in_threadpool

from paywalls import csrf, links, pages, stripe_config, stripe_gateway, topup, web
from paywalls import paywall as paywalls
from paywalls.store import StoreUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_FORM_BYTES = 4096

app = web.install(FastAPI(docs_url=None, redoc_url=None, openapi_url=None))


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


def html(body: str, status: int = 200, headers: dict[str, str] | None = None) -> HTMLResponse:
    return HTMLResponse(body, status_code=status, headers={**pages.SECURITY_HEADERS, **(headers or {})})


def error_page(exc: Exception) -> HTMLResponse:
    """Known failures as friendly pages; anything else a generic one (logged, never shown)."""
    if isinstance(exc, links.InvalidLink):
        return html(pages.message_page("Link not valid", f"{exc}. Ask the app for a new top-up link."), 400)
    if isinstance(exc, paywalls.NotFound):
        return html(pages.message_page("Not found", "This top-up page does not exist."), 404)
    if isinstance(exc, paywalls.InvalidRequest):
        return html(pages.message_page("Please try again", str(exc)), 400)
    if isinstance(exc, stripe_config.StripeNotConfigured):
        return html(pages.message_page("Payments unavailable", str(exc)), 503)
    if isinstance(exc, stripe_gateway.StripeRejected):
        return html(pages.message_page("Payments unavailable", "The payment provider refused this top-up."), 502)
    if isinstance(exc, stripe_gateway.StripeUnavailable | StoreUnavailable):
        return html(pages.message_page("Please try again", "The service is busy right now; try again shortly."), 503)
    log.exception("hosted page failed")
    return html(pages.message_page("Something went wrong", "Please try again in a moment."), 500)


async def guarded(work: Callable[[], T]) -> T | HTMLResponse:
    try:
        return await run_in_threadpool(work)
    except Exception as exc:
        return error_page(exc)


def csrf_cookie(nonce: str, request: Request) -> str:
    secure = "; Secure" if web.public_base_url(request).startswith("https://") else ""
    return f"{csrf.COOKIE_NAME}={nonce}; Path=/; Max-Age=86400; HttpOnly; SameSite=Lax{secure}"


async def read_form(request: Request) -> dict[str, str]:
    raw = await request.body()
    if len(raw) > MAX_FORM_BYTES:
        return {}
    try:
        parsed = parse_qs(raw.decode("utf-8"), max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        return {}
    return {k: v[0] for k, v in parsed.items() if v}


def forbidden(token: str, request: Request) -> HTMLResponse:
    return html(
        pages.message_page(
            "Please reload the page",
            "This form expired or did not come from this page. Reload the top-up page and try again.",
            ("Back to the top-up page", f"{web.public_base_url(request)}/pay/{token}"),
        ),
        403,
    )


# ---- result pages (literal paths first: tokens always contain a dot) ------------------------------


@app.get("/pay/success")
def success() -> HTMLResponse:
    return html(
        pages.message_page(
            "Payment received",
            "Thank you! Your balance is updated as soon as the payment is confirmed, usually within seconds. "
            "You can close this page and return to the app.",
        )
    )


@app.get("/pay/cancel")
async def cancel(request: Request) -> HTMLResponse:
    token = request.query_params.get("link") or ""
    back = None
    if token:
        verified = await guarded(lambda: links.verify(token, "topup"))
        if isinstance(verified, links.LinkClaims):
            back = ("Choose another amount", f"{web.public_base_url(request)}/pay/{token}")
    return html(pages.message_page("Payment canceled", "Nothing was charged.", back))


# ---- the top-up page ----------------------------------------------------------------------------


@app.get("/pay/{token}")
async def topup_page(token: str, request: Request) -> Response:
    base = web.public_base_url(request)
    nonce = csrf.usable_nonce(request.cookies.get(csrf.COOKIE_NAME)) or csrf.new_nonce()

    def build() -> str:
        link = topup.open_link(token)
        action = f"{base}/_dev/pay/{token}/simulate" if link.method == "simulate" else f"{base}/pay/{token}/checkout"
        return pages.topup_page(
            pages.TopupView(
                app_name=link.paywall.name,
                description=link.paywall.description,
                icon_url=link.paywall.icon_url,
                user=link.user,
                balance=link.balance(),
                currency=link.paywall.currency,
                amounts=link.presets,
                method=link.method,
                action_url=action,
                csrf_token=csrf.form_token(nonce, token),
            )
        )

    page = await guarded(build)
    if isinstance(page, HTMLResponse):
        return page
    return html(page, headers={"Set-Cookie": csrf_cookie(nonce, request)})


@app.post("/pay/{token}/checkout")
async def checkout(token: str, request: Request) -> Response:
    """Create a Checkout Session for one of the page's presets and send the browser to Stripe."""
    form = await read_form(request)
    base = web.public_base_url(request)

    def start() -> str:
        link = topup.open_link(token)
        csrf.require(form.get("csrf"), request.cookies.get(csrf.COOKIE_NAME), token)
        return topup.start_checkout(link, form.get("amount"), base)

    try:
        url = await run_in_threadpool(start)
    except csrf.Rejected:
        return forbidden(token, request)
    except Exception as exc:
        return error_page(exc)
    return RedirectResponse(url, status_code=303, headers=pages.SECURITY_HEADERS)


@app.api_route("/pay/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def pay_not_found() -> HTMLResponse:
    return html(pages.message_page("Not found", "This page does not exist."), 404)


@app.api_route("/wallet/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def wallet_not_yet(request: Request) -> Any:
    raise web.ApiError(501, f"{request.url.path} is not available yet", code="not_implemented")


handler = Mangum(app, lifespan="off")
