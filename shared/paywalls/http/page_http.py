"""The HTTP side of the hosted pages (WalletFunction: the `/pay` and `/wallet` routers): FastAPI
dependencies for the public base URL, the posted form, the CSRF double-submit nonce and the signed-in
person; HTML and redirect answers with the security headers; cookies with one rule for `Secure`; and
every failure as an HTML page (never JSON, never a traceback).

Routers built with `route_class=PageRoute` get the last point for free: whatever a dependency or an
endpoint raises becomes a page. Its status and message come from `web.translate` (the one mapping of
domain errors to HTTP) where it knows the error; the few errors only pages meet (a bad link, a stale
form, a rate limit, the payment provider) are described here."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import parse_qs, urlencode, urlsplit

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute

from paywalls.billing.stripe_config import StripeNotConfigured
from paywalls.core.errors import Unauthorized
from paywalls.http import csrf, pages, web
from paywalls.infra import links, mailer
from paywalls.infra.stripe_gateway import StripeRejected, StripeUnavailable
from paywalls.wallets import connections, persons, ratelimit, sessions

log = logging.getLogger(__name__)

MAX_FORM_BYTES = 4096
CSRF_COOKIE_MAX_AGE_S = 24 * 3600

# ---- cookies: one rule for Secure -----------------------------------------------------------------

_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost"})


def secure_cookies(public_base_url: str) -> bool:
    """Every cookie of ours is `Secure`, except on a local stack served over plain http://127.0.0.1 or
    http://localhost (browsers drop Secure cookies there). Anything else, even a misconfigured
    http:// base URL, gets Secure: a cookie never travels in clear text to a real host."""
    parts = urlsplit(public_base_url)
    return not (parts.scheme == "http" and parts.hostname in _LOCAL_HOSTS)


def set_cookie(response: Response, name: str, value: str, *, max_age: int, path: str, secure: bool) -> None:
    """HttpOnly (no script of any page reads it) and SameSite=Lax (not sent on cross-site POSTs)."""
    response.set_cookie(name, value, max_age=max_age, path=path, secure=secure, httponly=True, samesite="Lax")


def clear_cookie(response: Response, name: str, *, path: str, secure: bool) -> None:
    response.delete_cookie(name, path=path, secure=secure, httponly=True, samesite="Lax")


# ---- dependencies ---------------------------------------------------------------------------------


async def base_url(request: Request) -> str:
    """The deployment's public URL (custom domain, API Gateway stage, or the local stack's). No I/O:
    `async`, so FastAPI calls it on the loop instead of handing it to the threadpool."""
    return web.public_base_url(request)


BaseUrl = Annotated[str, Depends(base_url)]


async def form_fields(request: Request) -> dict[str, str]:
    """The posted form's fields (first value of each). An oversized or unreadable form reads as empty:
    its CSRF check then fails, a 403 page."""
    try:
        raw = await web.read_body(request, limit=MAX_FORM_BYTES)
    except web.BodyTooLarge:
        return {}
    try:
        parsed = parse_qs(raw.decode("utf-8"), max_num_fields=10)
    except (UnicodeDecodeError, ValueError):
        return {}
    return {k: v[0] for k, v in parsed.items() if v}


Form = Annotated[dict[str, str], Depends(form_fields)]


@dataclass(frozen=True)
class Csrf:
    """The browser's CSRF nonce (paywalls.http.csrf): tokens for a page's forms, and the check of a posted
    form. A page with forms sets the nonce cookie its tokens are bound to (`page(..., csrf=)`)."""

    nonce: str
    cookies: Mapping[str, str]
    secure: bool

    def token(self, bound_to: str) -> str:
        return csrf.form_token(self.nonce, bound_to)

    def require(self, form: Mapping[str, str], bound_to: str) -> None:
        """Raises csrf.Rejected (a 403 page) unless the form's token matches the cookie and `bound_to`."""
        csrf.require_form(form, self.cookies, bound_to)

    def set_cookie(self, response: Response) -> None:
        set_cookie(response, csrf.COOKIE_NAME, self.nonce, max_age=CSRF_COOKIE_MAX_AGE_S, path="/", secure=self.secure)


async def page_csrf(request: Request, base: BaseUrl) -> Csrf:
    """Reads cookies only (tokens are made later, in the endpoint's thread: they need the key)."""
    return Csrf(csrf.page_nonce(request.cookies), request.cookies, secure_cookies(base))


CsrfGuard = Annotated[Csrf, Depends(page_csrf)]


def current_session(request: Request) -> sessions.Session | None:
    """The signed-in person's session, if any. A plain `def`: FastAPI runs it in its threadpool, and
    checking the MAC may read the signing key from Secrets Manager (blocking, on a cold cache)."""
    return sessions.read(request.cookies.get(sessions.COOKIE_NAME))


CurrentSession = Annotated[sessions.Session | None, Depends(current_session)]


class SignInRequired(Unauthorized):
    """Not signed in (or the person is gone): PageRoute answers with the sign-in page, which returns
    to `next_path` afterwards."""

    def __init__(self, next_path: str):
        super().__init__(next_path)
        self.next_path = next_path


def signed_in_person(request: Request, session: CurrentSession) -> persons.Person:
    """The signed-in person. Signing in returns to this very path: every page that needs a person
    answers GET there (a POST's path is also its form's page)."""
    person = persons.get(session.person_id) if session else None
    if person is None:
        raise SignInRequired(request.url.path)
    return person


SignedIn = Annotated[persons.Person, Depends(signed_in_person)]


# \A...\Z: with `$`, "/wallet/home\n" passed and its newline went into the Location header.
_NEXT_RE = re.compile(r"\A/wallet/[A-Za-z0-9._~/-]{0,2400}\Z")
HOME = "/wallet/home"


def safe_next(value: str | None) -> str | None:
    """A path to return to after signing in or paying: only our own wallet pages (no open redirect,
    no way out of /wallet through "." or ".." segments), else None."""
    if value and _NEXT_RE.fullmatch(value):
        segments = value.split("/")[2:]  # after "/wallet/"
        # An empty segment ("//") or a "." / ".." one would lead out of /wallet once resolved.
        if not any(s in (".", "..") for s in segments) and "" not in segments[:-1]:
            return value
    return None


def next_path(value: str | None) -> str:
    return safe_next(value) or HOME


APPROVAL_PREFIX = "/wallet/authorize/"


def approval_path(value: str | None) -> str | None:
    """Where a person goes back to after topping up from a consent page: that pending approval (its
    path), else None (the top-up then leads back to the wallet)."""
    path = safe_next(value)
    return path if path and path.startswith(APPROVAL_PREFIX) and len(path) > len(APPROVAL_PREFIX) else None


def client_key(request: Request) -> str:
    """Who is asking, for rate limits: API Gateway's source IP in AWS, the peer address locally. Never
    a header the client writes (X-Forwarded-For): the local server does not apply proxy headers
    (devserver/stack.py), and in AWS the source IP is what API Gateway saw connect."""
    event = request.scope.get("aws.event") or {}
    identity = (event.get("requestContext") or {}).get("identity") or {}
    return str(identity.get("sourceIp") or (request.client.host if request.client else "unknown"))


# ---- answers ----------------------------------------------------------------------------------------


def html(
    body: str, status: int = 200, *, csrf: Csrf | None = None, headers: dict[str, str] | None = None
) -> HTMLResponse:
    """A page with the security headers; with `csrf`, (re)sets the nonce cookie its forms are bound to."""
    response = HTMLResponse(body, status_code=status, headers={**pages.SECURITY_HEADERS, **(headers or {})})
    if csrf is not None:
        csrf.set_cookie(response)
    return response


def message(title: str, text: str, link: tuple[str, str] | None = None, status: int = 200) -> HTMLResponse:
    return html(pages.message_page(title, text, link), status)


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers=pages.SECURITY_HEADERS)


def sign_in_url(base: str, next_to: str) -> str:
    return f"{base}/wallet/signin?{urlencode({'next': next_to})}"


# ---- failures as pages -------------------------------------------------------------------------------


@dataclass(frozen=True)
class PageError:
    status: int
    title: str
    text: str
    headers: dict[str, str] = field(default_factory=dict)


_TITLES = {400: "Please try again", 403: "Not allowed", 404: "Not found", 409: "Please try again"}
# Shown instead of the error's own text where that names internals (ids) or says nothing to a person.
_TEXTS = {
    404: "This page does not exist, or the link points to something that is gone.",
    503: "The service is busy right now; try again shortly.",
}


def _duration(seconds: int) -> str:
    """A wait as people say it (the day's cap on wrong codes can mean hours)."""
    if seconds < 120:
        return f"{seconds} seconds"
    if seconds < 2 * 3600:
        return f"{(seconds + 59) // 60} minutes"
    return f"about {(seconds + 1799) // 3600} hours"


def sentence(text: str) -> str:
    """An error's text as a sentence on a page: "amount must be positive" -> "Amount must be positive."."""
    text = text.strip()
    return (text[:1].upper() + text[1:]).rstrip(".") + "." if text else text


def describe(exc: Exception) -> PageError | None:
    """How a failure reads as a page; None: unexpected (a generic 500 page, logged)."""
    if isinstance(exc, csrf.Rejected):
        return PageError(
            403,
            "Please reload the page",
            "This form expired or did not come from this page. Go back, reload the page and try again.",
        )
    if isinstance(exc, ratelimit.RateLimited):
        wait = f"Too many attempts. Please try again in {_duration(exc.retry_after)}."
        return PageError(429, "Please wait", wait, {"Retry-After": str(exc.retry_after)})
    if isinstance(exc, links.InvalidLink):
        return PageError(400, "Link not valid", f"{sentence(str(exc))} Ask the app for a new link.")
    if isinstance(exc, StripeRejected):  # its text is Stripe's, meant for the operator, not for people
        return PageError(502, "Payments unavailable", "The payment provider refused this top-up.")
    if isinstance(exc, StripeUnavailable):
        return PageError(503, "Please try again", _TEXTS[503])
    if isinstance(exc, StripeNotConfigured):
        return PageError(503, "Payments unavailable", sentence(str(exc)))
    if isinstance(exc, mailer.MailUnavailable):
        return PageError(503, "Sign-in unavailable", sentence(str(exc)))
    if isinstance(exc, connections.NotConnected):
        return PageError(404, "Not found", "This app is not connected to your wallet.")
    error = web.translate(exc)
    if error is None or error.status >= 500 and error.status != 503:
        return None
    title = _TITLES.get(error.status, "Please try again")
    return PageError(error.status, title, _TEXTS.get(error.status) or sentence(error.message), dict(error.headers))


def error_page(exc: Exception) -> HTMLResponse:
    problem = describe(exc)
    if problem is None:
        log.exception("hosted page failed")
        return message("Something went wrong", "Please try again in a moment.", status=500)
    return html(pages.message_page(problem.title, problem.text), problem.status, headers=problem.headers)


class PageRoute(APIRoute):
    """A route whose every failure is a page: not signed in -> the sign-in page (returning here);
    anything raised by a dependency or the endpoint -> `error_page`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired as exc:
                return redirect(sign_in_url(web.public_base_url(request), next_path(exc.next_path)))
            except Exception as exc:
                return error_page(exc)

        return guarded
