"""Hosted pages (SPEC §5, §6): the top-up page behind a signed link, the Stripe Checkout hand-off and
its result pages (ANY /pay/{proxy+}); the shared-mode wallet: sign-in, authorization consent, the
wallet with its connected apps, wallet top-ups (ANY /wallet/{proxy+}).

The pages are unauthenticated: the signed link names (paywall, environment, user) and cannot be
altered; forms carry a signed double-submit CSRF token (paywalls.csrf). Every answer is an HTML page,
never a traceback."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import parse_qs, urlencode

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from mangum import Mangum
from starlette.concurrency import run_in_threadpool

from paywalls import (
    connections,
    csrf,
    devices,
    errors,
    ledger,
    links,
    mailer,
    operator_stripe,
    otp,
    pages,
    persons,
    ratelimit,
    sessions,
    shared_mode,
    stripe_config,
    stripe_gateway,
    topup,
    wallet_pages,
    wallet_topup,
    web,
)
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


# What a page says for each failure it knows: (title, text), "{error}" being the error's own client-safe
# message and "{wait}" a retry_after in words. The status and headers are the error table's
# (web.translate), as for the JSON APIs; the closest class of the error picks its entry (errors.nearest).
PageTexts = dict[type[BaseException], tuple[str, str]]
_BUSY = ("Please try again", "The service is busy right now; try again shortly.")
TOPUP_PAGE_TEXTS: PageTexts = {
    links.InvalidLink: ("Link not valid", "{error}. Ask the app for a new top-up link."),
    paywalls.NotFound: ("Not found", "This top-up page does not exist."),
    paywalls.InvalidRequest: ("Please try again", "{error}"),
    stripe_config.StripeNotConfigured: ("Payments unavailable", "{error}"),
    stripe_gateway.StripeRejected: ("Payments unavailable", "The payment provider refused this top-up."),
    stripe_gateway.StripeUnavailable: _BUSY,
    StoreUnavailable: _BUSY,
}


def error_page(exc: Exception, texts: PageTexts = TOPUP_PAGE_TEXTS) -> HTMLResponse:
    """Known failures as friendly pages; anything else a generic one (logged, never shown)."""
    answer = web.translate(exc)
    text = errors.nearest(texts, exc) if answer is not None else None
    if answer is None or text is None:
        log.exception("hosted page failed")
        return html(pages.message_page("Something went wrong", "Please try again in a moment."), 500)
    retry_after = getattr(exc, "retry_after", None)
    wait = _duration(retry_after) if isinstance(retry_after, int) else ""
    title, message = text
    return html(pages.message_page(title, message.format(error=exc, wait=wait)), answer.status, answer.headers)


async def guarded(work: Callable[[], T]) -> T | HTMLResponse:
    try:
        return await run_in_threadpool(work)
    except Exception as exc:
        return error_page(exc)


def csrf_cookie(nonce: str, request: Request) -> str:
    secure = "; Secure" if web.public_base_url(request).startswith("https://") else ""
    return f"{csrf.COOKIE_NAME}={nonce}; Path=/; Max-Age=86400; HttpOnly; SameSite=Lax{secure}"


async def read_form(request: Request) -> dict[str, str]:
    """The form's fields; an oversized form reads as empty (its CSRF check then fails: a 403 page)."""
    try:
        raw = await web.read_body(request, limit=MAX_FORM_BYTES)
    except web.BodyTooLarge:
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
    nonce = csrf.page_nonce(request.cookies)

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
        csrf.require_form(form, request.cookies, token)
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


# ---- shared-mode wallet (SPEC §6): sign-in, consent, the wallet, top-ups ----------------------------
#
# A person signs in with an email code (paywalls.otp) and gets a signed session cookie
# (paywalls.sessions). Every form carries a CSRF token bound to what it acts on: the sign-in forms to
# the step, the consent form to its link, the wallet's forms to the signed-in person.

# \A...\Z: with `$`, "/wallet/home\n" passed and its newline went into the Location header.
_NEXT_RE = re.compile(r"\A/wallet/[A-Za-z0-9._~/-]{0,2400}\Z")


def _next_path(value: str | None) -> str:
    """Where to go after signing in: only our own wallet pages (no open redirect, no way out of
    /wallet through "." or ".." segments)."""
    if value and _NEXT_RE.fullmatch(value):
        segments = value.split("/")[2:]  # after "/wallet/"
        # An empty segment ("//") or a "." / ".." one would lead out of /wallet once resolved.
        if not any(s in (".", "..") for s in segments) and "" not in segments[:-1]:
            return value
    return "/wallet/home"


def _client_key(request: Request) -> str:
    """Who is asking, for rate limits: API Gateway's source IP in AWS, the peer address locally. Never
    a header the client writes (X-Forwarded-For): the local server does not apply proxy headers
    (devserver/stack.py), and in AWS the source IP is what API Gateway saw connect."""
    event = request.scope.get("aws.event") or {}
    identity = (event.get("requestContext") or {}).get("identity") or {}
    return str(identity.get("sourceIp") or (request.client.host if request.client else "unknown"))


def _sign_in_channel(request: Request, email: str, next_path: str) -> otp.Channel:
    """Whose sending quota pays for a code (otp module doc): this browser's known-device cookie for the
    address, else the signed authorization link the sign-in started from (it is in `next`), else the
    open form. Someone using up the open quota of an address thus never blocks these two."""
    device = devices.read(request.cookies.get(devices.COOKIE_NAME), email)
    if device:
        return otp.device_channel(device)
    prefix = "/wallet/authorize/"
    if next_path.startswith(prefix):
        try:
            return otp.link_channel(links.verify(next_path[len(prefix) :], "authorize"))
        except links.InvalidLink:
            pass  # expired or not ours: the open form's quota
    return otp.OPEN


async def _session(request: Request) -> sessions.Session | None:
    """The signed-in person's session. Checking its MAC reads the signing key from Secrets Manager
    (blocking, on a cold cache), so it runs in the threadpool, never on the event loop."""
    return await run_in_threadpool(sessions.read, request.cookies.get(sessions.COOKIE_NAME))


def _wallet_html(body: str, request: Request, nonce: str, status: int = 200) -> Response:
    """A page whose forms carry CSRF tokens for `nonce`: (re)sets the nonce cookie they must match."""
    return html(body, status, {"Set-Cookie": csrf_cookie(nonce, request)})


def _redirect(url: str, cookies: list[str] | None = None) -> Response:
    response = RedirectResponse(url, status_code=303, headers=pages.SECURITY_HEADERS)
    for cookie in cookies or []:
        response.headers.append("Set-Cookie", cookie)
    return response


def _sign_in_redirect(request: Request, next_path: str) -> Response:
    return _redirect(f"{web.public_base_url(request)}/wallet/signin?{urlencode({'next': next_path})}")


def _duration(seconds: int) -> str:
    """A wait as people say it (the day's cap on wrong codes can mean hours)."""
    if seconds < 120:
        return f"{seconds} seconds"
    if seconds < 2 * 3600:
        return f"{(seconds + 59) // 60} minutes"
    return f"about {(seconds + 1799) // 3600} hours"


WALLET_PAGE_TEXTS: PageTexts = {
    **TOPUP_PAGE_TEXTS,
    links.InvalidLink: ("Link not valid", "{error}. Ask the app for a new authorization link."),
    ratelimit.RateLimited: ("Please wait", "Too many attempts. Please try again in {wait}."),
    mailer.MailUnavailable: ("Sign-in unavailable", "{error}"),
    connections.NotConnected: ("Not found", "{error}"),
    csrf.Rejected: (
        "Please reload the page",
        "This form expired or did not come from this page. Go back, reload and try again.",
    ),
}


def wallet_error(exc: Exception) -> HTMLResponse:
    """Known failures of the wallet pages as friendly pages; anything else generic (logged)."""
    return error_page(exc, WALLET_PAGE_TEXTS)


async def _guarded_page(request: Request, work: Callable[[], Response]) -> Response:
    try:
        return await run_in_threadpool(work)
    except Exception as exc:
        return wallet_error(exc)


async def _person_page(request: Request, path: str, render: Callable[[persons.Person, str], str]) -> Response:
    """A page of the signed-in person (`path` is where signing in returns to); `render` gets the person
    and the CSRF nonce its forms are bound to."""
    session = await _session(request)
    if session is None:
        return _sign_in_redirect(request, path)
    nonce = csrf.page_nonce(request.cookies)

    def build() -> Response:
        person = persons.get(session.person_id)
        if person is None:
            return _sign_in_redirect(request, path)
        return _wallet_html(render(person, nonce), request, nonce)

    return await _guarded_page(request, build)


async def _person_action(
    request: Request, path: str, act: Callable[[sessions.Session, dict[str, str]], Response]
) -> Response:
    """A form the signed-in person posts from their wallet (CSRF-bound to them); `act` gets the session
    and the form once the token checked out."""
    form = await read_form(request)
    session = await _session(request)
    if session is None:
        return _sign_in_redirect(request, path)

    def run() -> Response:
        csrf.require_form(form, request.cookies, f"wallet:{session.person_id}")
        return act(session, form)

    return await _guarded_page(request, run)


@app.get("/wallet/signin")
async def wallet_sign_in(request: Request) -> Response:
    base = web.public_base_url(request)
    nonce = csrf.page_nonce(request.cookies)
    next_path = _next_path(request.query_params.get("next"))

    def build() -> Response:
        page = wallet_pages.sign_in_page(
            action=f"{base}/wallet/signin", csrf_token=csrf.form_token(nonce, "wallet:signin"), next_path=next_path
        )
        return _wallet_html(page, request, nonce)

    return await _guarded_page(request, build)


@app.post("/wallet/signin")
async def wallet_send_code(request: Request) -> Response:
    form = await read_form(request)
    base = web.public_base_url(request)
    nonce = csrf.page_nonce(request.cookies)
    next_path = _next_path(form.get("next"))

    def send() -> Response:
        csrf.require_form(form, request.cookies, "wallet:signin")
        try:
            email = persons.normalize_email(form.get("email") or "")
            channel = _sign_in_channel(request, email, next_path)
            challenge = otp.start(email, _client_key(request), channel=channel)
        except persons.InvalidEmail as exc:
            page = wallet_pages.sign_in_page(
                action=f"{base}/wallet/signin",
                csrf_token=csrf.form_token(nonce, "wallet:signin"),
                next_path=next_path,
                error=str(exc).capitalize() + ".",
                email=(form.get("email") or "")[:254],
            )
            return _wallet_html(page, request, nonce, 400)
        mailer.send(mailer.sign_in_code_mail(challenge.email, challenge.code, otp.CODE_TTL_S // 60))
        page = wallet_pages.code_page(
            action=f"{base}/wallet/signin/verify",
            csrf_token=csrf.form_token(nonce, f"wallet:verify:{challenge.id}"),
            challenge=challenge.id,
            email=challenge.email,
            next_path=next_path,
        )
        return _wallet_html(page, request, nonce)

    return await _guarded_page(request, send)


@app.post("/wallet/signin/verify")
async def wallet_verify_code(request: Request) -> Response:
    form = await read_form(request)
    base = web.public_base_url(request)
    nonce = csrf.page_nonce(request.cookies)
    next_path = _next_path(form.get("next"))
    challenge = form.get("challenge") or ""

    def verify() -> Response:
        csrf.require_form(form, request.cookies, f"wallet:verify:{challenge}")
        try:
            email = otp.verify(challenge, form.get("code") or "", _client_key(request))
        except otp.CodeRejected as exc:
            page = wallet_pages.code_page(
                action=f"{base}/wallet/signin/verify",
                csrf_token=csrf.form_token(nonce, f"wallet:verify:{challenge}"),
                challenge=challenge,
                email="your inbox",
                next_path=next_path,
                error=str(exc),
            )
            return _wallet_html(page, request, nonce, 400)
        person = persons.get_or_create(email)
        secure = sessions.secure_cookies(base)
        cookie = sessions.cookie(sessions.issue(person.id), secure=secure)
        # This browser proved it reads the inbox: from now on it is a known device of this address.
        known = devices.read(request.cookies.get(devices.COOKIE_NAME), email)
        device = devices.cookie(devices.issue(email, device_id=known), secure=secure)
        log.info("wallet sign-in", extra={"person_id": person.id})
        return _redirect(f"{base}{next_path}", [cookie, device])

    return await _guarded_page(request, verify)


@app.post("/wallet/signout")
async def wallet_sign_out(request: Request) -> Response:
    form = await read_form(request)
    base = web.public_base_url(request)
    session = await _session(request)

    def sign_out() -> Response:
        if session:
            csrf.require_form(form, request.cookies, f"wallet:{session.person_id}")
        return _redirect(f"{base}/wallet/signin", [sessions.clear_cookie(secure=sessions.secure_cookies(base))])

    return await _guarded_page(request, sign_out)


# A person's two wallets have their own pages: the live wallet at /wallet/{home,topup}, the test wallet
# at /wallet/test/{home,topup} (shared_mode.wallet_path). Links from apps carry their key's environment.


@app.get("/wallet/home")
async def wallet_home(request: Request) -> Response:
    return await _wallet_home(request, "live")


@app.get("/wallet/test/home")
async def wallet_test_home(request: Request) -> Response:
    return await _wallet_home(request, "test")


async def _wallet_home(request: Request, environment: str) -> Response:
    base = web.public_base_url(request)

    def render(person: persons.Person, nonce: str) -> str:
        names: dict[str, str] = {}

        def app_name(paywall_id: str | None) -> str:
            if not paywall_id:
                return ""
            if paywall_id not in names:
                try:
                    names[paywall_id] = paywalls.get(paywall_id).name
                except paywalls.NotFound:
                    names[paywall_id] = "(deleted app)"
            return names[paywall_id]

        wallet = ledger.get_wallet(person.wallet_for(environment))
        entries, _ = ledger.list_entries(wallet.wallet_id, limit=20)
        every = connections.list_for_person(person.id)
        test_section = None
        if environment == "live":
            # The test wallet appears once the person has used it (money or a test-mode app), so a
            # wallet that never saw test mode shows one balance only.
            test_wallet = ledger.get_wallet(person.wallet_for("test"))
            if test_wallet.exists or any(c.environment == "test" for c in every):
                test_section = wallet_pages.TestSection(test_wallet.balance, shared_mode.wallet_url(base, "test"))
        view = wallet_pages.WalletView(
            email=person.email,
            environment=environment,
            balance=wallet.balance,
            available=wallet.available,
            currency=operator_stripe.CURRENCY,
            topup_url=shared_mode.wallet_topup_url(base, environment),
            signout_url=f"{base}/wallet/signout",
            csrf_token=csrf.form_token(nonce, f"wallet:{person.id}"),
            connections=[
                wallet_pages.ConnectionRow(
                    id=c.id,
                    app_name=app_name(c.paywall_id),
                    user=c.user,
                    environment=c.environment,
                    status=c.status,
                    spent=c.spent,
                    cap=c.cap,
                    revoke_url=f"{base}/wallet/connections/{c.id}/revoke",
                )
                for c in every
                if c.environment == environment
            ],
            entries=[
                wallet_pages.EntryRow(e.created_at, e.type, e.amount, app_name(e.metadata.get("paywall_id")))
                for e in entries
            ],
            test_section=test_section,
            live_url=shared_mode.wallet_url(base, "live") if environment == "test" else None,
        )
        return wallet_pages.wallet_page(view)

    return await _person_page(request, links.wallet_path(environment, "home"), render)


@app.post("/wallet/connections/{connection_id}/revoke")
async def wallet_revoke(connection_id: str, request: Request) -> Response:
    base = web.public_base_url(request)

    def revoke(session: sessions.Session, form: dict[str, str]) -> Response:
        # Ownership is the lookup itself: only this person's connections are found.
        connection = connections.get_for_person(session.person_id, connection_id)
        if connection.active:
            connections.revoke(connection)
            log.info("connection revoked by its owner", extra={"connection_id": connection.id})
        return _redirect(shared_mode.wallet_url(base, connection.environment))

    return await _person_action(request, "/wallet/home", revoke)


@app.get("/wallet/authorize/{token}")
async def wallet_consent(token: str, request: Request) -> Response:
    base = web.public_base_url(request)
    nonce = csrf.page_nonce(request.cookies)
    session = await _session(request)

    def build() -> Response:
        asked = shared_mode.open_authorization(token)  # a bad link fails before anything else
        if session is None or (person := persons.get(session.person_id)) is None:
            return _sign_in_redirect(request, f"/wallet/authorize/{token}")
        current = connections.active(asked.paywall.id, asked.environment, asked.user)
        mine = current if current and current.person_id == person.id else None
        view = wallet_pages.ConsentView(
            app_name=asked.paywall.name,
            description=asked.paywall.description,
            icon_url=asked.paywall.icon_url,
            user=asked.user,
            environment=asked.environment,
            email=person.email,
            balance=ledger.get_wallet(person.wallet_for(asked.environment)).balance,
            currency=operator_stripe.CURRENCY,
            action_url=f"{base}/wallet/authorize/{token}",
            csrf_token=csrf.form_token(nonce, f"authorize:{person.id}:{token}"),
            default_cap=connections.default_cap(),
            current_cap=mine.cap if mine else None,
            already_connected=mine is not None,
        )
        return _wallet_html(wallet_pages.consent_page(view), request, nonce)

    return await _guarded_page(request, build)


@app.post("/wallet/authorize/{token}")
async def wallet_authorize(token: str, request: Request) -> Response:
    form = await read_form(request)
    base = web.public_base_url(request)
    session = await _session(request)
    if session is None:
        return _sign_in_redirect(request, f"/wallet/authorize/{token}")

    def decide() -> Response:
        asked = shared_mode.open_authorization(token)  # expired since the page was shown: refused
        bound = f"authorize:{session.person_id}:{token}"
        csrf.require_form(form, request.cookies, bound)
        if persons.get(session.person_id) is None:
            return _sign_in_redirect(request, f"/wallet/authorize/{token}")
        if form.get("decision") != "approve":
            return html(pages.message_page("Not connected", f"{asked.paywall.name} was not given access."))
        cap = connections.parse_cap_choice(form.get("limit"), form.get("cap"))
        connections.connect(asked.paywall.id, asked.environment, asked.user, session.person_id, cap)
        log.info("app authorized", extra={"paywall_id": asked.paywall.id, "environment": asked.environment})
        which = "your test wallet (test money only)" if asked.environment == "test" else "your wallet"
        return html(
            pages.message_page(
                "Connected",
                f"{asked.paywall.name} can now charge {which}. You can return to the app.",
                ("Manage your wallet", shared_mode.wallet_url(base, asked.environment)),
            )
        )

    return await _guarded_page(request, decide)


@app.get("/wallet/topup")
async def wallet_topup_page(request: Request) -> Response:
    return await _wallet_topup_page(request, "live")


@app.get("/wallet/test/topup")
async def wallet_test_topup_page(request: Request) -> Response:
    return await _wallet_topup_page(request, "test")


async def _wallet_topup_page(request: Request, environment: str) -> Response:
    base = web.public_base_url(request)

    def render(person: persons.Person, nonce: str) -> str:
        offer = wallet_topup.open_for(person, environment)
        if offer.method == "simulate":
            token = wallet_topup.simulation_token(person, environment)
            action, bound = f"{base}/_dev/wallet/topup/simulate/{token}", f"wallet-topup:{token}"
        else:
            action, bound = shared_mode.wallet_topup_url(base, environment), f"wallet:{person.id}"
        view = wallet_pages.WalletTopupView(
            email=person.email,
            environment=environment,
            balance=ledger.get_wallet(offer.wallet_id).balance,
            currency=offer.currency,
            amounts=offer.presets,
            method=offer.method,
            action_url=action,
            csrf_token=csrf.form_token(nonce, bound),
            back_url=shared_mode.wallet_url(base, environment),
            unavailable_reason=offer.unavailable_reason(),
        )
        return wallet_pages.topup_page(view)

    return await _person_page(request, links.wallet_path(environment, "topup"), render)


@app.post("/wallet/topup")
async def wallet_checkout(request: Request) -> Response:
    return await _wallet_checkout(request, "live")


@app.post("/wallet/test/topup")
async def wallet_test_checkout(request: Request) -> Response:
    return await _wallet_checkout(request, "test")


async def _wallet_checkout(request: Request, environment: str) -> Response:
    base = web.public_base_url(request)
    path = links.wallet_path(environment, "topup")

    def start(session: sessions.Session, form: dict[str, str]) -> Response:
        person = persons.get(session.person_id)
        if person is None:
            return _sign_in_redirect(request, path)
        # The page's environment decides the Stripe key: live only with the live key, never the test one.
        url = wallet_topup.start_checkout(wallet_topup.open_for(person, environment), form.get("amount"), base)
        return _redirect(url)

    return await _person_action(request, path, start)


@app.get("/wallet/topup/success")
def wallet_topup_success(request: Request) -> HTMLResponse:
    return _topup_success(request, "live")


@app.get("/wallet/test/topup/success")
def wallet_test_topup_success(request: Request) -> HTMLResponse:
    return _topup_success(request, "test")


def _topup_success(request: Request, environment: str) -> HTMLResponse:
    which = "Your test wallet" if environment == "test" else "Your wallet"
    return html(
        pages.message_page(
            "Payment received",
            f"Thank you! {which} is credited as soon as the payment is confirmed, usually within seconds.",
            ("Back to your wallet", shared_mode.wallet_url(web.public_base_url(request), environment)),
        )
    )


@app.api_route("/wallet/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def wallet_not_found() -> HTMLResponse:
    return html(pages.message_page("Not found", "This page does not exist."), 404)


handler = Mangum(app, lifespan="off")
