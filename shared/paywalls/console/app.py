"""The operator console: a small Starlette app on 127.0.0.1 that is a client of the admin API.

It holds no credentials of its own and opens no new door: every call goes to the admin API through
`cli.AdminClient` (SigV4 from the operator's AWS credentials when deployed, the local admin token
against `make run`), so IAM stays the only authorization. Its own protection, for the browser on the
operator's machine (any local process or web page could otherwise reach 127.0.0.1):

- a random token per start, printed in the URL (like Jupyter): `GET /?token=...` exchanges it for a
  random session cookie (HttpOnly, SameSite=Strict), then redirects to drop it from the address bar;
  every other request needs that cookie;
- a CSRF token per session in every form, checked on every POST (and the Origin, when sent);
- a strict CSP: scripts only from the console itself (the vendored Chart.js and console.js), no
  inline script, no framing.

Pages: overview (KPIs, charts, period selector, compare to the previous period, top users), users
(search, balance, spend, last seen), one user (spend by day, ledger with filters, top-up / authorize
link to copy, credit / adjust with a reason), ledger (filters, CSV export of every page), settings
(pricing with the marked-up price, provider, Stripe status, templates with preview, keys create /
revoke shown once), earnings and withdrawals (shared mode), webhook subscriptions and deliveries."""

from __future__ import annotations

import hmac
import json
import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import iterate_in_threadpool, run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from paywalls.billing.paywall import ModelPrice, render_template
from paywalls.cli import AdminClient, CliError
from paywalls.core.errors import PaywallsError
from paywalls.core.money import MICROS_PER_UNIT, format_for_people
from paywalls.http.page_http import form_fields
from paywalls.http.pages import when_for_people

HERE = Path(__file__).resolve().parent
SESSION_COOKIE = "pwc_session"
PERIODS = {"1": "Today", "7": "7 days", "30": "30 days", "90": "90 days"}
ENTRY_TYPES = ("charge", "deposit", "refund", "adjustment", "trial", "withdrawal")
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # same-origin (not no-referrer): the browser then sends a real Origin on our own forms, checked on POST.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def json_for_page(value: Any) -> str:
    """JSON to embed in a page's data block: `<` escaped, so no value can close the block."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def micros_of(formatted: str | None) -> int:
    """An API amount ("1.234500", six decimals) as micro-units."""
    if not formatted:
        return 0
    return int(Decimal(formatted) * MICROS_PER_UNIT)


@lru_cache(maxsize=1)
def templates() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    # Money for people as the hosted pages show it (two decimals, more below a cent); times in UTC, saying so.
    env.filters["money"] = lambda formatted, currency: format_for_people(micros_of(formatted), currency)
    env.filters["micros"] = lambda micros, currency: format_for_people(int(micros), currency)
    env.filters["when"] = when_for_people
    env.filters["urlpart"] = lambda value: quote(str(value), safe="")
    return env


@dataclass
class Console:
    """Per start: the admin API client, the login token, the sessions and their CSRF tokens."""

    client: AdminClient
    token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    sessions: dict[str, str] = field(default_factory=dict)  # session id -> CSRF token

    def login_url(self, base: str) -> str:
        return f"{base.rstrip('/')}/?token={self.token}"

    async def api(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        return await run_in_threadpool(self.client.request, method, path, body, headers)


class Problem(PaywallsError):
    """A page that cannot be shown: its status and a message for the operator."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


Handler = Callable[[Request, Console, str], Awaitable[Response]]


def page(html: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def render(request: Request, name: str, **context: Any) -> HTMLResponse:
    context.setdefault("notice", request.query_params.get("notice"))
    return page(templates().get_template(name).render(request=request, **context))


def build_app(client: AdminClient, *, token: str | None = None) -> tuple[Starlette, Console]:
    console = Console(client) if token is None else Console(client, token)

    def guarded(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            offered = request.query_params.get("token")
            if offered is not None:
                return _login(request, console, offered)
            session = request.cookies.get(SESSION_COOKIE)
            csrf = console.sessions.get(session or "")
            if csrf is None:
                return _message(request, 401, "Open the console with the link `paywalls console` printed.")
            if request.method == "POST":
                # Read once, here (the size-capped reader of the hosted pages); handlers use request.state.form.
                request.state.form = form = await form_fields(request)
                origin = request.headers.get("origin")
                fresh = hmac.compare_digest(str(form.get("csrf", "")), csrf)
                if not fresh or (origin and origin != f"{request.url.scheme}://{request.url.netloc}"):
                    return _message(request, 403, "This form expired or came from elsewhere: reload the page.")
            try:
                return await handler(request, console, csrf)
            except Problem as problem:
                return _message(request, problem.status, str(problem))
            except CliError as exc:
                return _message(request, exc.status or 502, str(exc))

        return endpoint

    routes = [
        Route("/", guarded(home)),
        Route("/p/{pid}", guarded(overview)),
        Route("/p/{pid}/users", guarded(users)),
        Route("/p/{pid}/users/{user}", guarded(user_page)),
        Route("/p/{pid}/users/{user}/adjust", guarded(adjust), methods=["POST"]),
        Route("/p/{pid}/ledger", guarded(ledger_page)),
        Route("/p/{pid}/ledger.csv", guarded(ledger_csv)),
        Route("/p/{pid}/settings", guarded(settings_page)),
        Route("/p/{pid}/pricing", guarded(set_price), methods=["POST"]),
        Route("/p/{pid}/keys", guarded(create_key), methods=["POST"]),
        Route("/p/{pid}/keys/{kid}/revoke", guarded(revoke_key), methods=["POST"]),
        Route("/p/{pid}/earnings", guarded(earnings_page)),
        Route("/p/{pid}/webhooks", guarded(webhooks_page)),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    return Starlette(routes=routes), console


def _login(request: Request, console: Console, offered: str) -> Response:
    if not hmac.compare_digest(offered, console.token):
        return _message(request, 403, "This console link is not valid (it changes at every start).")
    session = secrets.token_urlsafe(32)
    console.sessions[session] = secrets.token_urlsafe(32)
    response = RedirectResponse(request.url.path, status_code=303, headers={"Cache-Control": "no-store"})
    response.set_cookie(SESSION_COOKIE, session, httponly=True, samesite="strict", path="/")
    return response


def _message(request: Request, status: int, text: str) -> HTMLResponse:
    html = templates().get_template("message.html").render(request=request, status=status, text=text, notice=None)
    return page(html, status)


def _environment(request: Request) -> str:
    env = request.query_params.get("env", "live")
    if env not in ("live", "test"):
        raise Problem(400, "environment must be live or test")
    return env


async def _paywall(console: Console, pid: str) -> dict[str, Any]:
    return await console.api("GET", f"/paywalls/{quote(pid, safe='')}")


def _back(path: str, notice: str, **params: str) -> RedirectResponse:
    return RedirectResponse(f"{path}?{urlencode({**params, 'notice': notice})}", status_code=303)


# ---- pages ----------------------------------------------------------------------------------------


async def home(request: Request, console: Console, csrf: str) -> Response:
    listed = await console.api("GET", "/paywalls?limit=100")
    return render(request, "home.html", paywalls=listed["data"], csrf=csrf)


def _period(request: Request, today: datetime | None = None) -> tuple[str, str, str]:
    """(period key, from, to) for the selector: the last N whole UTC days, today included."""
    key = request.query_params.get("period", "30")
    if key not in PERIODS:
        raise Problem(400, "unknown period")
    end = (today or datetime.now(UTC)).date() + timedelta(days=1)
    start = end - timedelta(days=int(key))
    return key, start.isoformat(), end.isoformat()


def _change(current: str, previous: str) -> str | None:
    """The change against the previous period, for people ("+12%"), or None when there was nothing."""
    now, before = micros_of(current), micros_of(previous)
    if before == 0:
        return None
    return f"{(now - before) * 100 / abs(before):+.0f}%"


async def overview(request: Request, console: Console, csrf: str) -> Response:
    pid, env = request.path_params["pid"], _environment(request)
    paywall = await _paywall(console, pid)
    key, start, end = _period(request)
    # The form always sends `period`; an unticked box sends nothing. First visit: compare.
    compare = request.query_params.get("compare") == "on" or "period" not in request.query_params
    query = urlencode({"environment": env, "from": start, "to": end, "compare": str(compare).lower()})
    usage = await console.api("GET", f"/paywalls/{quote(pid, safe='')}/usage?{query}")
    previous = usage["previous"]
    kpis = [
        ("Revenue", usage["revenue"], previous and previous["revenue"], True),
        ("Provider cost", usage["provider_cost"], previous and previous["provider_cost"], True),
        ("Profit", usage["profit"], previous and previous["profit"], True),
        ("Requests", str(usage["requests"]), previous and str(previous["requests"]), False),
    ]
    changes = {
        name: _change(now, before) if before is not None and money else None for name, now, before, money in kpis
    }
    if previous:
        changes["Requests"] = _change(f"{usage['requests']}", f"{previous['requests']}")
    # A short period (today) is charted by hour, a longer one by day.
    points, label = (usage["by_hour"], "hour") if usage["by_hour"] is not None else (usage["by_day"], "date")
    chart = {
        "days": [p[label][11:16] + " UTC" if label == "hour" else p[label] for p in points],
        "revenue": [p["revenue"] for p in points],
        "provider_cost": [p["provider_cost"] for p in points],
        "profit": [p["profit"] for p in points],
        "requests": [p["requests"] for p in points],
        "models": list(usage["by_model"]),
        "model_revenue": [b["revenue"] for b in usage["by_model"].values()],
        "currency": paywall["currency"],
    }
    return render(
        request,
        "overview.html",
        paywall=paywall,
        env=env,
        csrf=csrf,
        usage=usage,
        kpis=kpis,
        changes=changes,
        period=key,
        periods=PERIODS,
        compare=compare,
        chart=json_for_page(chart),
        by="hour" if usage["by_hour"] is not None else "day",
        section="overview",
    )


async def users(request: Request, console: Console, csrf: str) -> Response:
    pid, env = request.path_params["pid"], _environment(request)
    paywall = await _paywall(console, pid)
    search = request.query_params.get("q", "").strip()
    if search:
        # Users are found by their exact id (the app's own): straight to their page.
        return RedirectResponse(f"/p/{quote(pid, safe='')}/users/{quote(search, safe='')}?env={env}", status_code=303)
    cursor = request.query_params.get("cursor")
    query = {"environment": env, "limit": "50", **({"cursor": cursor} if cursor else {})}
    listed = await console.api("GET", f"/paywalls/{quote(pid, safe='')}/users?{urlencode(query)}")
    return render(request, "users.html", paywall=paywall, env=env, csrf=csrf, listed=listed, section="users")


def _ledger_filters(request: Request) -> dict[str, str]:
    """The ledger filters of a page's query string, as the admin API takes them."""
    params = request.query_params
    found = {name: params.get(name, "").strip() for name in ("type", "model", "from", "to", "user")}
    return {k: v for k, v in found.items() if v}


async def _ledger(console: Console, pid: str, env: str, filters: dict[str, str], cursor: str | None) -> dict[str, Any]:
    query = {"environment": env, "limit": "50", **filters, **({"cursor": cursor} if cursor else {})}
    return await console.api("GET", f"/paywalls/{quote(pid, safe='')}/ledger?{urlencode(query)}")


async def user_page(request: Request, console: Console, csrf: str) -> Response:
    pid, env, user = request.path_params["pid"], _environment(request), request.path_params["user"]
    paywall = await _paywall(console, pid)
    base = f"/paywalls/{quote(pid, safe='')}/users/{quote(user, safe='')}"
    view = await console.api("GET", f"{base}?environment={env}")
    link = await console.api("GET", f"{base}/link?environment={env}")
    filters = {**_ledger_filters(request), "user": user}
    entries = None
    if paywall["mode"] == "default":
        entries = await _ledger(console, pid, env, filters, request.query_params.get("cursor"))
    chart = {
        "days": [d["date"] for d in view["spend_by_day"]],
        "spend": [d["spend"] for d in view["spend_by_day"]],
        "currency": paywall["currency"],
    }
    return render(
        request,
        "user.html",
        paywall=paywall,
        env=env,
        csrf=csrf,
        view=view,
        link=link,
        entries=entries,
        filters=filters,
        types=ENTRY_TYPES,
        idempotency_key=uuid.uuid4().hex,  # one per form shown: a double submit adjusts once
        chart=json_for_page(chart),
        section="users",
    )


async def adjust(request: Request, console: Console, csrf: str) -> Response:
    pid, user = request.path_params["pid"], request.path_params["user"]
    form = request.state.form
    env = str(form.get("environment", "live"))
    amount = str(form.get("amount", "")).strip()
    body: dict[str, Any] = {"amount": amount, "environment": env}
    if reason := str(form.get("reason", "")).strip():
        body["reason"] = reason
    path = f"/p/{quote(pid, safe='')}/users/{quote(user, safe='')}"
    try:
        await console.api(
            "POST",
            f"/paywalls/{quote(pid, safe='')}/users/{quote(user, safe='')}/adjustments",
            body,
            {"Idempotency-Key": str(form.get("idempotency_key", "")) or uuid.uuid4().hex},
        )
    except CliError as exc:
        return _back(path, f"Not adjusted: {exc}", env=env)
    return _back(path, f"Adjusted by {amount}", env=env)


async def ledger_page(request: Request, console: Console, csrf: str) -> Response:
    pid, env = request.path_params["pid"], _environment(request)
    paywall = await _paywall(console, pid)
    filters = _ledger_filters(request)
    entries = None
    if paywall["mode"] == "default":
        entries = await _ledger(console, pid, env, filters, request.query_params.get("cursor"))
    export = f"/p/{quote(pid, safe='')}/ledger.csv?{urlencode({'env': env, **filters})}"
    return render(
        request,
        "ledger.html",
        paywall=paywall,
        env=env,
        csrf=csrf,
        entries=entries,
        filters=filters,
        types=ENTRY_TYPES,
        export=export,
        section="ledger",
    )


async def ledger_csv(request: Request, console: Console, csrf: str) -> Response:
    """Every page of the admin API's CSV export, streamed to the browser as one file."""
    pid, env = request.path_params["pid"], _environment(request)
    filters = _ledger_filters(request)
    path = f"/paywalls/{quote(pid, safe='')}/ledger.csv"
    first = await run_in_threadpool(console.client.send, "GET", f"{path}?{urlencode({'environment': env, **filters})}")
    if first.status_code >= 400:
        raise Problem(first.status_code, first.json().get("error", {}).get("message", "export refused"))

    def pages() -> Any:
        response = first
        while True:
            yield response.content
            cursor = response.headers.get("x-next-cursor")
            if not cursor:
                return
            query = urlencode({"environment": env, **filters, "cursor": cursor, "limit": "1000"})
            response = console.client.send("GET", f"{path}?{query}")
            if response.status_code >= 400:
                raise CliError(f"HTTP {response.status_code} during the export", response.status_code)

    async def body() -> AsyncIterator[bytes]:
        async for chunk in iterate_in_threadpool(pages()):
            yield chunk

    name = f"ledger-{pid}-{env}.csv"
    headers = {**SECURITY_HEADERS, "Content-Disposition": f'attachment; filename="{name}"'}
    return StreamingResponse(body(), media_type="text/csv; charset=utf-8", headers=headers)


def _marked_up(paywall: dict[str, Any]) -> list[dict[str, Any]]:
    """Each model's base price and what a user pays (markup included), as the user API shows it."""
    markup = Decimal(paywall["markup_percent"])
    rows = []
    for model, price in sorted(paywall["pricing"].items()):
        base = ModelPrice(Decimal(price["prompt"]), Decimal(price["completion"]), Decimal(price.get("request", "0")))
        rows.append({"model": model, "base": base.as_api(), "pays": base.with_markup(markup).as_api()})
    return rows


async def settings_page(request: Request, console: Console, csrf: str, *, created: Any = None) -> Response:
    pid, env = request.path_params["pid"], _environment(request)
    paywall = await _paywall(console, pid)
    keys = await console.api("GET", f"/paywalls/{quote(pid, safe='')}/keys")
    example = "https://pay.example.com/pay/EXAMPLE"
    previews = {name: render_template(text, paywall["name"], example) for name, text in paywall["templates"].items()}
    return render(
        request,
        "settings.html",
        paywall=paywall,
        env=env,
        csrf=csrf,
        prices=_marked_up(paywall),
        keys=keys["data"],
        previews=previews,
        created=created,
        section="settings",
    )


async def set_price(request: Request, console: Console, csrf: str) -> Response:
    pid = request.path_params["pid"]
    form = request.state.form
    paywall = await _paywall(console, pid)
    model = str(form.get("model", "")).strip()
    price = {name: str(form.get(name, "")).strip() for name in ("prompt", "completion", "request")}
    try:
        for value in price.values():
            if value:
                Decimal(value)
    except InvalidOperation:
        return _back(f"/p/{quote(pid, safe='')}/settings", "Not saved: prices are decimal numbers")
    models = {**paywall["pricing"], model: {k: v for k, v in price.items() if v or k != "request"}}
    try:
        await console.api("PUT", f"/paywalls/{quote(pid, safe='')}/pricing", {"models": models})
    except CliError as exc:
        return _back(f"/p/{quote(pid, safe='')}/settings", f"Not saved: {exc}")
    return _back(f"/p/{quote(pid, safe='')}/settings", f"Price of {model} saved")


async def create_key(request: Request, console: Console, csrf: str) -> Response:
    pid = request.path_params["pid"]
    form = request.state.form
    env = str(form.get("environment", "test"))
    created = await console.api("POST", f"/paywalls/{quote(pid, safe='')}/keys", {"environment": env})
    # Shown once, on this answer only (no-store; never in a URL or a redirect).
    return await settings_page(request, console, csrf, created=created)


async def revoke_key(request: Request, console: Console, csrf: str) -> Response:
    pid, kid = request.path_params["pid"], request.path_params["kid"]
    await console.api("DELETE", f"/paywalls/{quote(pid, safe='')}/keys/{quote(kid, safe='')}")
    return _back(f"/p/{quote(pid, safe='')}/settings", f"Key {kid} revoked")


async def earnings_page(request: Request, console: Console, csrf: str) -> Response:
    pid, env = request.path_params["pid"], _environment(request)
    paywall = await _paywall(console, pid)
    summary = withdrawals = None
    if paywall["mode"] == "shared":
        summary = await console.api("GET", f"/paywalls/{quote(pid, safe='')}/earnings?environment={env}")
        withdrawals = await console.api("GET", f"/paywalls/{quote(pid, safe='')}/withdrawals?environment={env}")
    return render(
        request,
        "earnings.html",
        paywall=paywall,
        env=env,
        csrf=csrf,
        summary=summary,
        withdrawals=withdrawals,
        section="earnings",
    )


async def webhooks_page(request: Request, console: Console, csrf: str) -> Response:
    """Webhook subscriptions and their delivery log (the admin API's `/webhooks/subscriptions` and
    `/webhooks/logs`). A deployment without outbound webhooks answers 404 there: the page says so."""
    pid = request.path_params["pid"]
    env = _environment(request)
    paywall = await _paywall(console, pid)
    base = f"/paywalls/{quote(pid, safe='')}/webhooks"
    try:
        subscriptions = await console.api("GET", f"{base}/subscriptions")
    except CliError as exc:
        if exc.status != 404:
            raise
        subscriptions = None
    logs = None
    if subscriptions is not None:
        status = request.query_params.get("status", "")
        query = {"limit": "50", **({"status": status} if status in ("pending", "success", "error") else {})}
        if cursor := request.query_params.get("cursor"):
            query["cursor"] = cursor
        logs = await console.api("GET", f"{base}/logs?{urlencode(query)}")
    return render(
        request,
        "webhooks.html",
        paywall=paywall,
        env=env,
        csrf=csrf,
        subscriptions=subscriptions,
        logs=logs,
        status=request.query_params.get("status", ""),
        section="webhooks",
    )
