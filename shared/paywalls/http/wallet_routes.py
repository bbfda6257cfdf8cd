"""The `/wallet` router of WalletFunction (SPEC §6), and the site's front page `/`: sign-in with an
email code, the authorization consent, the wallet with its connected apps (their spending limits,
revocation), wallet top-ups. Rules are in the domain modules (otp, persons, connections, shared_mode,
wallet_topup); this module parses, calls them and renders (wallet_pages, templates).

A person signs in with an email code (paywalls.wallets.otp) and gets a signed session cookie
(paywalls.wallets.sessions). Every form carries a CSRF token bound to what it acts on: the sign-in forms to
the step, the consent form to its link, the wallet's forms to the signed-in person. A person's two
wallets have their own pages: the live wallet at /wallet/{home,topup}, the test wallet at
/wallet/test/{home,topup} (links.wallet_path). Links from apps carry their key's environment."""

from __future__ import annotations

import logging
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from paywalls.billing import ledger, operator_stripe
from paywalls.billing import paywall as paywalls
from paywalls.billing.paywall import InvalidRequest
from paywalls.core.money import format_micros
from paywalls.events import outbox
from paywalls.http import pages, wallet_pages
from paywalls.http.page_http import (
    APPROVAL_PREFIX,
    BaseUrl,
    Csrf,
    CsrfGuard,
    CurrentSession,
    Form,
    PageRoute,
    SignedIn,
    SignInRequired,
    approval_path,
    clear_cookie,
    client_key,
    html,
    message,
    next_path,
    redirect,
    secure_cookies,
    sentence,
    set_cookie,
    sign_in_url,
)
from paywalls.infra import links, mailer
from paywalls.wallets import connections, devices, otp, persons, sessions, shared_mode
from paywalls.wallets import topup as wallet_topup

log = logging.getLogger(__name__)

router = APIRouter(route_class=PageRoute)

COOKIE_PATH = "/wallet"  # the session and known-device cookies reach the wallet pages only


# `?next=`: where to go back to (a wallet path, checked by page_http before any use).
NextParam = Annotated[str | None, Query(alias="next")]


# ---- the front door: `/` and `/wallet` are pages, not JSON 404s -------------------------------------


@router.get("/")
def front_page(base: BaseUrl) -> HTMLResponse:
    return html(pages.render("landing.html", wallet_url=shared_mode.wallet_url(base, "live")))


@router.get("/wallet")
@router.get("/wallet/")
def wallet_root(base: BaseUrl) -> Response:
    return redirect(shared_mode.wallet_url(base, "live"))


# ---- sign-in ----------------------------------------------------------------------------------------


def _asking(next_to: str | None) -> wallet_pages.AppAsking | None:
    """The app whose authorization link the sign-in started from (it is in `next`), named on the
    sign-in pages; None for any other sign-in or a link that is not (or no longer) valid."""
    if not next_to or not next_to.startswith(APPROVAL_PREFIX):
        return None
    try:
        asked = shared_mode.open_authorization(next_to[len(APPROVAL_PREFIX) :])
    except (links.InvalidLink, paywalls.NotFound):
        return None
    return wallet_pages.AppAsking(asked.paywall.name, asked.paywall.icon_url, asked.environment)


def _sign_in_channel(request: Request, email: str, next_to: str) -> otp.Channel:
    """Whose sending quota pays for a code (otp module doc): this browser's known-device cookie for the
    address, else the signed authorization link the sign-in started from (it is in `next`), else the
    open form. Someone using up the open quota of an address thus never blocks these two."""
    device = devices.read(request.cookies.get(devices.COOKIE_NAME), email)
    if device:
        return otp.device_channel(device)
    if next_to.startswith(APPROVAL_PREFIX):
        try:
            return otp.link_channel(links.verify(next_to[len(APPROVAL_PREFIX) :], "authorize"))
        except links.InvalidLink:
            pass  # expired or not ours: the open form's quota
    return otp.OPEN


def _sign_in_page(base: str, guard: Csrf, next_to: str, *, error: str | None = None, email: str = "") -> str:
    return wallet_pages.sign_in_page(
        action=f"{base}/wallet/signin",
        csrf_token=guard.token("wallet:signin"),
        next_path=next_to,
        error=error,
        email=email,
        asking=_asking(next_to),
    )


def _code_page(base: str, guard: Csrf, challenge: str, email: str, next_to: str, error: str | None = None) -> str:
    return wallet_pages.code_page(
        action=f"{base}/wallet/signin/verify",
        csrf_token=guard.token(f"wallet:verify:{challenge}"),
        challenge=challenge,
        email=email,
        next_path=next_to,
        resend_action=f"{base}/wallet/signin",
        resend_csrf_token=guard.token("wallet:signin"),
        other_email_url=sign_in_url(base, next_to),
        error=error,
        asking=_asking(next_to),
    )


@router.get("/wallet/signin")
def sign_in(base: BaseUrl, guard: CsrfGuard, next_to: NextParam = None) -> HTMLResponse:
    return html(_sign_in_page(base, guard, next_path(next_to)), csrf=guard)


@router.post("/wallet/signin")
def send_code(request: Request, form: Form, base: BaseUrl, guard: CsrfGuard) -> HTMLResponse:
    """Email a code (also "Send a new code" on the code page, which posts the same fields)."""
    next_to = next_path(form.get("next"))
    guard.require(form, "wallet:signin")
    try:
        email = persons.normalize_email(form.get("email") or "")
        channel = _sign_in_channel(request, email, next_to)
        challenge = otp.start(email, client_key(request), channel=channel)
    except persons.InvalidEmail as exc:
        page = _sign_in_page(base, guard, next_to, error=sentence(str(exc)), email=(form.get("email") or "")[:254])
        return html(page, 400, csrf=guard)
    mailer.send(mailer.sign_in_code_mail(challenge.email, challenge.code, otp.CODE_TTL_S // 60))
    return html(_code_page(base, guard, challenge.id, challenge.email, next_to), csrf=guard)


def _shown_email(value: str | None) -> str:
    """The address a code page names, from its own form (only ever shown back to the browser that
    posted it, whose CSRF token checked out); "" when it is not an address."""
    try:
        return persons.normalize_email(value or "")
    except persons.InvalidEmail:
        return ""


@router.post("/wallet/signin/verify")
def verify_code(request: Request, form: Form, base: BaseUrl, guard: CsrfGuard) -> Response:
    next_to = next_path(form.get("next"))
    challenge = form.get("challenge") or ""
    guard.require(form, f"wallet:verify:{challenge}")
    try:
        email = otp.verify(challenge, form.get("code") or "", client_key(request))
    except otp.CodeRejected as exc:
        # The same page again, still naming the address, with the way to a new code.
        page = _code_page(base, guard, challenge, _shown_email(form.get("email")), next_to, error=str(exc))
        return html(page, 400, csrf=guard)
    person = persons.get_or_create(email)
    secure = secure_cookies(base)
    response = redirect(f"{base}{next_to}")
    session = sessions.issue(person.id)
    set_cookie(response, sessions.COOKIE_NAME, session, max_age=sessions.SESSION_TTL_S, path=COOKIE_PATH, secure=secure)
    # This browser proved it reads the inbox: from now on it is a known device of this address.
    device = devices.issue(email, device_id=devices.read(request.cookies.get(devices.COOKIE_NAME), email))
    set_cookie(response, devices.COOKIE_NAME, device, max_age=devices.DEVICE_TTL_S, path=COOKIE_PATH, secure=secure)
    log.info("wallet sign-in", extra={"person_id": person.id})
    return response


@router.post("/wallet/signout")
def sign_out(form: Form, base: BaseUrl, guard: CsrfGuard, session: CurrentSession) -> Response:
    if session:
        guard.require(form, f"wallet:{session.person_id}")
    response = redirect(f"{base}/wallet/signin")
    # The known-device cookie stays: it describes the browser, not the session (devices.py).
    clear_cookie(response, sessions.COOKIE_NAME, path=COOKIE_PATH, secure=secure_cookies(base))
    return response


# ---- the wallet ---------------------------------------------------------------------------------------


class _AppNames:
    """Paywall names for a page, each read once."""

    def __init__(self) -> None:
        self._found: dict[str, paywalls.Paywall | None] = {}

    def paywall(self, paywall_id: str | None) -> paywalls.Paywall | None:
        if not paywall_id:
            return None
        if paywall_id not in self._found:
            try:
                self._found[paywall_id] = paywalls.get(paywall_id)
            except paywalls.NotFound:
                self._found[paywall_id] = None
        return self._found[paywall_id]

    def name(self, paywall_id: str | None) -> str:
        if not paywall_id:
            return ""
        found = self.paywall(paywall_id)
        return found.name if found else "(deleted app)"


def _connection_url(base: str, connection_id: str, page: str = "") -> str:
    return f"{base}/wallet/connections/{connection_id}{'/' + page if page else ''}"


@router.get("/wallet/home")
def wallet_home(person: SignedIn, base: BaseUrl, guard: CsrfGuard) -> HTMLResponse:
    return _wallet_home(person, base, guard, "live")


@router.get("/wallet/test/home")
def wallet_test_home(person: SignedIn, base: BaseUrl, guard: CsrfGuard) -> HTMLResponse:
    return _wallet_home(person, base, guard, "test")


def _wallet_home(person: persons.Person, base: str, guard: Csrf, environment: str) -> HTMLResponse:
    names = _AppNames()
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
        csrf_token=guard.token(f"wallet:{person.id}"),
        connections=[
            wallet_pages.ConnectionRow(
                id=c.id,
                app_name=names.name(c.paywall_id),
                user=c.user,
                environment=c.environment,
                status=c.status,
                spent=c.spent,
                cap=c.cap,
                cap_remaining=c.cap_remaining,
                manage_url=_connection_url(base, c.id),
                revoke_url=_connection_url(base, c.id, "revoke"),
            )
            for c in every
            if c.environment == environment
        ],
        entries=[
            wallet_pages.EntryRow(e.created_at, e.type, e.amount, names.name(e.metadata.get("paywall_id")))
            for e in entries
        ],
        test_section=test_section,
        live_url=shared_mode.wallet_url(base, "live") if environment == "test" else None,
    )
    return html(wallet_pages.wallet_page(view), csrf=guard)


# ---- one connected app: its spending limit (raise, lower, remove) and revocation -------------------


def _connection_view(
    connection: connections.Connection,
    base: str,
    guard: Csrf,
    person: persons.Person,
    **shown: object,
) -> wallet_pages.ConnectionView:
    paywall = _AppNames().paywall(connection.paywall_id)
    return wallet_pages.ConnectionView(
        app_name=paywall.name if paywall else "(deleted app)",
        icon_url=paywall.icon_url if paywall else None,
        user=connection.user,
        environment=connection.environment,
        active=connection.active,
        created_at=connection.created_at,
        revoked_at=connection.revoked_at,
        spent=connection.spent,
        cap=connection.cap,
        cap_remaining=connection.cap_remaining,
        currency=operator_stripe.CURRENCY,
        action_url=_connection_url(base, connection.id),
        revoke_url=_connection_url(base, connection.id, "revoke"),
        wallet_url=shared_mode.wallet_url(base, connection.environment),
        csrf_token=guard.token(f"wallet:{person.id}"),
        default_cap=connections.default_cap(),
        **shown,  # type: ignore[arg-type]
    )


@router.get("/wallet/connections/{connection_id}")
def connection_page(
    connection_id: str, person: SignedIn, base: BaseUrl, guard: CsrfGuard, saved: str | None = None
) -> HTMLResponse:
    # Ownership is the lookup itself: only this person's connections are found (else a 404 page).
    connection = connections.get_for_person(person.id, connection_id)
    notice = "Spending limit saved." if saved and connection.active else None
    return html(
        wallet_pages.connection_page(_connection_view(connection, base, guard, person, notice=notice)), csrf=guard
    )


@router.post("/wallet/connections/{connection_id}")
def set_limit(connection_id: str, form: Form, person: SignedIn, base: BaseUrl, guard: CsrfGuard) -> Response:
    """Raise, lower or remove the spending limit of one connected app (the "limit reached" reply
    leads here through the wallet page). A bad amount shows the form again with the error."""
    guard.require(form, f"wallet:{person.id}")
    connection = connections.get_for_person(person.id, connection_id)

    def again(error: str, status: int) -> HTMLResponse:
        entered = {"entered_cap": (form.get("cap") or "")[:40], "entered_uncapped": form.get("limit") == "none"}
        view = _connection_view(connection, base, guard, person, error=error, **entered)
        return html(wallet_pages.connection_page(view), status, csrf=guard)

    if not connection.active:
        return again("This app is no longer connected: there is no limit to change.", 409)
    try:
        cap = connections.parse_cap_choice(form.get("limit"), form.get("cap"))
    except InvalidRequest as exc:
        return again(sentence(str(exc)), 400)
    if cap != connection.cap:
        try:
            connections.set_cap(connection, cap)
        except connections.NotConnected as exc:  # revoked or changed meanwhile: nothing was written
            connection = connections.get_for_person(person.id, connection_id)
            return again(sentence(str(exc)), 409)
        log.info("spending limit changed by its owner", extra={"connection_id": connection.id})
    return redirect(_connection_url(base, connection.id) + "?saved=1")


@router.get("/wallet/connections/{connection_id}/revoke")
def confirm_revoke(connection_id: str, person: SignedIn, base: BaseUrl, guard: CsrfGuard) -> Response:
    """Revoking asks first; the confirmation's form is what revokes."""
    connection = connections.get_for_person(person.id, connection_id)
    if not connection.active:
        return redirect(shared_mode.wallet_url(base, connection.environment))
    view = wallet_pages.RevokeView(
        app_name=_AppNames().name(connection.paywall_id),
        user=connection.user,
        environment=connection.environment,
        spent=connection.spent,
        currency=operator_stripe.CURRENCY,
        action_url=_connection_url(base, connection.id, "revoke"),
        cancel_url=shared_mode.wallet_url(base, connection.environment),
        csrf_token=guard.token(f"wallet:{person.id}"),
    )
    return html(wallet_pages.revoke_page(view), csrf=guard)


@router.post("/wallet/connections/{connection_id}/revoke")
def revoke(connection_id: str, form: Form, person: SignedIn, base: BaseUrl, guard: CsrfGuard) -> Response:
    guard.require(form, f"wallet:{person.id}")
    connection = connections.get_for_person(person.id, connection_id)
    if connection.active:
        if connections.revoke(connection):
            _revoked_event(connection)
        log.info("connection revoked by its owner", extra={"connection_id": connection.id})
    return redirect(shared_mode.wallet_url(base, connection.environment))


def _who(environment: str, user: str) -> dict[str, str]:
    return {"externalUserId": user, "environment": environment}


def _revoked_event(connection: connections.Connection) -> None:
    try:
        paywall = paywalls.get(connection.paywall_id)
    except paywalls.NotFound:
        return
    data = {**_who(connection.environment, connection.user), "connectionId": connection.id}
    outbox.emit(paywall, "paywall.authorization.revoked", data)


# ---- authorization consent -----------------------------------------------------------------------------


def _consent_view(
    asked: shared_mode.AuthorizationRequest, person: persons.Person, base: str, guard: Csrf, **shown: object
) -> wallet_pages.ConsentView:
    current = connections.active(asked.paywall.id, asked.environment, asked.user)
    mine = current if current and current.person_id == person.id else None
    here = f"{APPROVAL_PREFIX}{asked.token}"
    return wallet_pages.ConsentView(
        app_name=asked.paywall.name,
        description=asked.paywall.description,
        icon_url=asked.paywall.icon_url,
        user=asked.user,
        environment=asked.environment,
        email=person.email,
        balance=ledger.get_wallet(person.wallet_for(asked.environment)).balance,
        currency=operator_stripe.CURRENCY,
        action_url=f"{base}{here}",
        csrf_token=guard.token(f"authorize:{person.id}:{asked.token}"),
        topup_url=_topup_url(base, asked.environment, here),
        default_cap=connections.default_cap(),
        current_cap=mine.cap if mine else None,
        already_connected=mine is not None,
        **shown,  # type: ignore[arg-type]
    )


@router.get("/wallet/authorize/{token}")
def consent(token: str, session: CurrentSession, base: BaseUrl, guard: CsrfGuard) -> HTMLResponse:
    asked = shared_mode.open_authorization(token)  # a bad link fails before anything else
    person = persons.get(session.person_id) if session else None
    if person is None:
        raise SignInRequired(f"{APPROVAL_PREFIX}{token}")  # the sign-in page names the app asking
    return html(wallet_pages.consent_page(_consent_view(asked, person, base, guard)), csrf=guard)


@router.post("/wallet/authorize/{token}")
def decide(token: str, form: Form, session: CurrentSession, base: BaseUrl, guard: CsrfGuard) -> Response:
    if session is None:
        raise SignInRequired(f"{APPROVAL_PREFIX}{token}")
    asked = shared_mode.open_authorization(token)  # expired since the page was shown: refused
    guard.require(form, f"authorize:{session.person_id}:{token}")
    person = persons.get(session.person_id)
    if person is None:
        raise SignInRequired(f"{APPROVAL_PREFIX}{token}")
    wallet = ("Manage your wallet", shared_mode.wallet_url(base, asked.environment))
    if form.get("decision") != "approve":
        outbox.emit(asked.paywall, "paywall.authorization.declined", _who(asked.environment, asked.user))
        return message("Not connected", f"{asked.paywall.name} was not given access.", wallet)
    try:
        cap = connections.parse_cap_choice(form.get("limit"), form.get("cap"))
    except InvalidRequest as exc:
        # The same form again, with what was typed and what is wrong with it.
        view = _consent_view(
            asked, person, base, guard, error=sentence(str(exc)), entered_cap=(form.get("cap") or "")[:40]
        )
        return html(wallet_pages.consent_page(view), 400, csrf=guard)
    connection = connections.connect(asked.paywall.id, asked.environment, asked.user, session.person_id, cap)
    outbox.emit(
        asked.paywall,
        "paywall.authorization.completed",
        {
            **_who(asked.environment, asked.user),
            "connectionId": connection.id,
            "spendingCap": None if cap is None else format_micros(cap),
        },
    )
    log.info("app authorized", extra={"paywall_id": asked.paywall.id, "environment": asked.environment})
    which = "your test wallet (test money only)" if asked.environment == "test" else "your wallet"
    return message("Connected", f"{asked.paywall.name} can now charge {which}. You can return to the app.", wallet)


# ---- wallet top-ups --------------------------------------------------------------------------------------


def _topup_url(base: str, environment: str, return_to: str | None) -> str:
    query = f"?{urlencode({'next': return_to})}" if return_to else ""
    return shared_mode.wallet_topup_url(base, environment) + query


@router.get("/wallet/topup")
def topup_page(person: SignedIn, base: BaseUrl, guard: CsrfGuard, next_to: NextParam = None) -> HTMLResponse:
    return _topup_page(person, base, guard, "live", approval_path(next_to))


@router.get("/wallet/test/topup")
def test_topup_page(person: SignedIn, base: BaseUrl, guard: CsrfGuard, next_to: NextParam = None) -> HTMLResponse:
    return _topup_page(person, base, guard, "test", approval_path(next_to))


def _topup_page(
    person: persons.Person, base: str, guard: Csrf, environment: str, return_to: str | None
) -> HTMLResponse:
    offer = wallet_topup.open_for(person, environment)
    if offer.method == "simulate":
        token = wallet_topup.simulation_token(person, environment)
        action, bound = f"{base}/_dev/wallet/topup/simulate/{token}", f"wallet-topup:{token}"
    else:
        action, bound = shared_mode.wallet_topup_url(base, environment), f"wallet:{person.id}"
    asking = _asking(return_to)
    view = wallet_pages.WalletTopupView(
        email=person.email,
        environment=environment,
        balance=ledger.get_wallet(offer.wallet_id).balance,
        currency=offer.currency,
        amounts=offer.presets,
        method=offer.method,
        action_url=action,
        csrf_token=guard.token(bound),
        back_url=f"{base}{return_to}" if return_to else shared_mode.wallet_url(base, environment),
        back_label=f"Back to approving {asking.name}" if asking else "Back to your wallet",
        unavailable_reason=offer.unavailable_reason(),
        returning_to=asking.name if asking else None,
        extra_fields=[("next", return_to)] if return_to else [],
    )
    return html(wallet_pages.topup_page(view), csrf=guard)


@router.post("/wallet/topup")
def checkout(form: Form, person: SignedIn, base: BaseUrl, guard: CsrfGuard) -> Response:
    return _checkout(form, person, base, guard, "live")


@router.post("/wallet/test/topup")
def test_checkout(form: Form, person: SignedIn, base: BaseUrl, guard: CsrfGuard) -> Response:
    return _checkout(form, person, base, guard, "test")


def _checkout(form: dict[str, str], person: persons.Person, base: str, guard: Csrf, environment: str) -> Response:
    guard.require(form, f"wallet:{person.id}")
    # The page's environment decides the Stripe key: live only with the live key, never the test one.
    offer = wallet_topup.open_for(person, environment)
    return_to = approval_path(form.get("next"))
    return redirect(wallet_topup.start_checkout(offer, form.get("amount"), base, return_to=return_to))


@router.get("/wallet/topup/success")
def topup_success(base: BaseUrl, next_to: NextParam = None) -> HTMLResponse:
    return _topup_success(base, "live", approval_path(next_to))


@router.get("/wallet/test/topup/success")
def test_topup_success(base: BaseUrl, next_to: NextParam = None) -> HTMLResponse:
    return _topup_success(base, "test", approval_path(next_to))


def _topup_success(base: str, environment: str, return_to: str | None) -> HTMLResponse:
    which = "Your test wallet" if environment == "test" else "Your wallet"
    text = f"Thank you! {which} is credited as soon as the payment is confirmed, usually within seconds."
    if return_to:
        asking = _asking(return_to)
        label = f"Continue to approve {asking.name}" if asking else "Back to the approval"
        return message("Payment received", text, (label, f"{base}{return_to}"))
    return message("Payment received", text, ("Back to your wallet", shared_mode.wallet_url(base, environment)))


@router.api_route("/wallet/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
def not_found() -> HTMLResponse:
    return message("Not found", "This page does not exist.", status=404)
