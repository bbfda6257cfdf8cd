"""User and wallet API (SPEC §3) and the model list (SPEC §2), buffered responses through Mangum."""

from __future__ import annotations

from typing import Annotated, Any, cast

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from mangum import Mangum
from starlette.concurrency import run_in_threadpool

from paywalls import accounts, deposits, ledger, limits, links, shared_mode, telemetry, web
from paywalls import api_models as m
from paywalls.chat import routing
from paywalls.identity import app_wallet_id, resolve_user
from paywalls.money import format_micros

# The document is published as docs/openapi.json (paywalls.openapi_doc), not served.
app = web.install(FastAPI(title="Paywalls user API", docs_url=None, redoc_url=None, openapi_url=None))
USER = m.USER_PARAMETERS


@app.get("/health", **m.answers(m.Health))
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/v1/models", **m.answers(m.ModelList, 401, 503))
def models(request: Request) -> dict[str, Any]:
    """The priced models at what the user pays (explicit or a provider's price, chat/routing.py) with
    the paywall's markup, exact, and the endpoints (chat, responses, embeddings) that serve each
    (the provider's base prices are for the operator: the admin API). `features`: the surcharges of
    the paid extras this paywall serves (web search...), also with markup."""
    caller = web.authenticate(request)
    paywall = caller.paywall
    listing: dict[str, Any] = {
        "object": "list",
        "data": [
            {
                "id": model,
                "object": "model",
                "created": 0,
                "owned_by": paywall.provider.kind if paywall.provider else "paywalls",
                "name": model,
                "display_name": model,
                "description": f"{model} via {paywall.name}",
                # The most a request may be charged per token (the dearest provider that may serve it).
                "pricing": price.with_markup(paywall.markup_percent).as_api(),
                "endpoints": list(endpoints),
            }
            for model, (price, endpoints) in routing.listed_models(paywall).items()
        ],
    }
    if paywall.features:
        listing["features"] = {
            name: price.with_markup(paywall.markup_percent).as_api() for name, price in sorted(paywall.features.items())
        }
    return listing


def _user(request: Request, body_user: str | None = None) -> str:
    """SPEC §1: body `user` > X-Paywall-User > ?user= (a bad explicit id is an error, not skipped)."""
    return resolve_user(body_user, request.headers.get("x-paywall-user"), request.query_params.get("user"))


def _balance_fields(balance: int, currency: str) -> dict[str, Any]:
    return {"balance": str(balance), "balanceFormatted": format_micros(balance), "currency": currency}


@app.get("/v1/user/balance", **m.answers(m.Balance | m.Allowance, 400, 401, 503, parameters=USER))
def balance(request: Request) -> dict[str, Any]:
    caller = web.authenticate(request)
    user = _user(request)
    if caller.paywall.mode == "shared":
        # The app's own allowance, never the person's wallet balance (shared_mode.Allowance).
        shown = shared_mode.allowance(caller.paywall, caller.environment, user).as_api(caller.paywall.currency)
    else:
        accounts.ensure_trial(caller.paywall, caller.environment, user)
        wallet = ledger.get_wallet(app_wallet_id(caller.paywall.id, caller.environment, user))
        shown = _balance_fields(wallet.balance, caller.paywall.currency)
    # The user's limits (limits.py), only when some apply: what is left of each and when it resets.
    user_limits = limits.for_user(caller.paywall, caller.environment, user)
    if user_limits is not None:
        shown["limits"] = user_limits.status(caller.paywall.currency)
    return shown


def _topup_url(request: Request, caller: web.Caller, user: str) -> str:
    return links.topup_url(web.public_base_url(request), caller.paywall.id, caller.environment, user)


@app.get("/v1/user/balance/topup", **m.answers(m.TopupLink, 400, 401, 503, parameters=USER))
def topup(request: Request) -> dict[str, Any]:
    """A stable link to our hosted top-up page for this user (default mode)."""
    caller = web.authenticate(request)
    user = _user(request)
    if caller.paywall.mode == "shared":
        # The person tops up their own wallet (after signing in), in the environment of this key.
        return {"url": shared_mode.wallet_topup_url(web.public_base_url(request), caller.environment)}
    accounts.ensure_trial(caller.paywall, caller.environment, user)
    return {"url": _topup_url(request, caller, user)}


async def _caller(request: Request) -> web.Caller:
    return await run_in_threadpool(web.authenticate, request)


# Dependencies run in this order: the key (401) before the body (400/413), as before bodies were typed.
Caller = Annotated[web.Caller, Depends(_caller)]
MoneyBody = Annotated[m.MoneyRequest, m.from_json(m.MoneyRequest, limit=16_384)]
MONEY = [m.IDEMPOTENCY_KEY, *USER]


def _money_request(request: Request, body: m.MoneyRequest) -> tuple[str, str]:
    """(user, Idempotency-Key), checked after the body."""
    key = cast(str, web.idempotency_key(request, required=True))
    return _user(request, body.user), key


def _replayed(posting: ledger.Posting) -> dict[str, str]:
    return {"Idempotent-Replayed": "true"} if posting.duplicate else {}


@app.post("/v1/user/balance/deposit", **m.answers(m.Deposited, 400, 401, 409, 413, 503, parameters=MONEY))
async def deposit(request: Request, caller: Caller, body: MoneyBody) -> JSONResponse:
    """Credit from the app's own payment rails (default mode). Idempotency-Key required: the same key
    never credits twice; a replay answers the first result."""
    user, key = _money_request(request, body)
    posting = await run_in_threadpool(
        lambda: deposits.deposit(
            caller.paywall, caller.environment, user, body.amount, idempotency_key=key, metadata=body.metadata
        )
    )
    content = {
        **_balance_fields(posting.entry.balance_after, caller.paywall.currency),
        "entry": posting.entry.as_api(),
    }
    return JSONResponse(content, headers=_replayed(posting))


@app.post("/v1/user/charge", **m.answers(m.Charged | m.SharedCharged, 400, 401, 409, 413, 503, parameters=MONEY))
async def charge(request: Request, caller: Caller, body: MoneyBody) -> JSONResponse:
    """A manual charge. Not enough funds is not an error: 200 with success=false and the paywall's
    ready-to-render top-up message (nothing charged)."""
    user, key = _money_request(request, body)
    if caller.paywall.mode == "shared":
        return await run_in_threadpool(_shared_charge, request, caller, body, user, key)
    result = await run_in_threadpool(
        lambda: deposits.charge(
            caller.paywall, caller.environment, user, body.amount, idempotency_key=key, metadata=body.metadata
        )
    )
    if result.posting is None:
        return JSONResponse(
            await run_in_threadpool(_short_of_funds, request, caller, user), headers={"X-Paywall-Action": "topup"}
        )
    entry = result.posting.entry
    content = {
        "success": True,
        "message": f"charged {format_micros(-entry.amount)} {caller.paywall.currency.upper()}",
        **_balance_fields(entry.balance_after, caller.paywall.currency),
        "entry": entry.as_api(),
    }
    return JSONResponse(content, headers=_replayed(result.posting))


def _shared_charge(request: Request, caller: web.Caller, body: m.MoneyRequest, user: str, key: str) -> JSONResponse:
    """Shared mode: the person's wallet pays within the cap; the paywall earns the charge minus the
    platform fee. Not connected / too little / cap reached: 200, success=false, the paywall text."""
    paywall = caller.paywall
    result = shared_mode.charge(
        paywall, caller.environment, user, body.amount, idempotency_key=key, metadata=body.metadata
    )
    # Both answers carry the app's allowance after the attempt, never the wallet balance (no entry
    # either: its balance_after is the person's).
    allowance = shared_mode.allowance(paywall, caller.environment, user).as_api(paywall.currency)
    if result.posting is None:
        refusal = result.refusal or "topup"
        message = shared_mode.refusal_text(paywall, refusal, web.public_base_url(request), caller.environment, user)
        content = {"success": False, "message": message, **allowance}
        return JSONResponse(content, headers={"X-Paywall-Action": refusal})
    entry = result.posting.entry
    content = {
        "success": True,
        "message": f"charged {format_micros(-entry.amount)} {paywall.currency.upper()}",
        **allowance,
    }
    return JSONResponse(content, headers=_replayed(result.posting))


@app.get("/v1/user/connect", **m.answers(m.Connected | m.NotConnected, 400, 401, 409, 503, parameters=USER))
def connect(request: Request) -> dict[str, Any]:
    """Shared mode: is this app user connected to a wallet? If not, the authorization link."""
    caller = web.authenticate(request)
    user = _user(request)
    _require_shared(caller)
    return shared_mode.connect_status(caller.paywall, caller.environment, user, web.public_base_url(request))


@app.get("/v1/user/disconnect", **m.answers(m.Disconnected, 400, 401, 409, 503, parameters=USER))
def disconnect(request: Request) -> dict[str, Any]:
    """Shared mode: revoke this app user's authorization (the person can re-authorize later)."""
    caller = web.authenticate(request)
    user = _user(request)
    _require_shared(caller)
    return shared_mode.disconnect(caller.paywall, caller.environment, user)


def _require_shared(caller: web.Caller) -> None:
    if caller.paywall.mode != "shared":
        raise web.ApiError(
            409, "connect and disconnect are for shared-mode paywalls; this paywall is in default mode", code="conflict"
        )


def _short_of_funds(request: Request, caller: web.Caller, user: str) -> dict[str, Any]:
    wallet = ledger.get_wallet(app_wallet_id(caller.paywall.id, caller.environment, user))
    return {
        "success": False,
        "message": caller.paywall.render("topup", _topup_url(request, caller, user)),
        **_balance_fields(wallet.balance, caller.paywall.currency),
    }


@app.get("/v1/user/ledger", **m.answers(m.LedgerPage, 400, 401, 409, 503, parameters=USER))
def entries(
    request: Request,
    # Read as text and checked by web.count_param (FastAPI's int would take " 1", "1_000", "1.0").
    limit: Annotated[
        str | None, Query(description="Page size, 1-100 (default 20).", json_schema_extra={"pattern": "^[0-9]{1,9}$"})
    ] = None,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page.")] = None,
) -> dict[str, Any]:
    caller = web.authenticate(request)
    if caller.paywall.mode == "shared":
        # A person's wallet entries (and balances after them) would show other apps' activity.
        raise web.ApiError(
            409, "shared wallets are private to their owner: the ledger is on the wallet page", code="conflict"
        )
    size = web.count_param(limit, "limit", default=20, minimum=1, maximum=100)
    wallet_id = app_wallet_id(caller.paywall.id, caller.environment, _user(request))
    page, next_cursor = ledger.list_entries(wallet_id, limit=size, cursor=cursor)
    return {
        "object": "list",
        "data": [e.as_api() for e in page],
        "has_more": next_cursor is not None,
        "next_cursor": next_cursor,
    }


handler = telemetry.lambda_handler(Mangum(app, lifespan="off"))
