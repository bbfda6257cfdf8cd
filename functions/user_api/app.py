"""User and wallet API (SPEC §3) and the model list (SPEC §2), buffered responses through Mangum."""

from __future__ import annotations

from typing import Annotated, Any, cast

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from mangum import Mangum
from starlette.concurrency import run_in_threadpool

from paywalls.billing import deposits, ledger, limits
from paywalls.billing.identity import app_wallet_id, resolve_user
from paywalls.chat import routing
from paywalls.core.money import format_micros
from paywalls.events import outbox
from paywalls.http import api_models as m
from paywalls.http import web, webhook_routes
from paywalls.infra import telemetry
from paywalls.wallets import payers, shared_mode

# The document is published as docs/openapi.json (paywalls.http.openapi_doc), not served.
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


@app.get("/v1/user/balance", **m.answers(m.Balance | m.Allowance, 400, 401, 503, parameters=USER))
def balance(request: Request) -> dict[str, Any]:
    """Default mode: the user's balance. Shared mode: the app's allowance, never the person's wallet
    balance (payers.PersonWallet)."""
    caller = web.authenticate(request)
    user = _user(request)
    shown = payers.payer_for(caller.paywall, caller.environment, user).balance()
    # The user's limits (limits.py), only when some apply: what is left of each and when it resets.
    user_limits = limits.for_user(caller.paywall, caller.environment, user)
    if user_limits is not None:
        shown["limits"] = user_limits.status(caller.paywall.currency)
    return shown


@app.get("/v1/user/balance/topup", **m.answers(m.TopupLink, 400, 401, 503, parameters=USER))
def topup(request: Request) -> dict[str, Any]:
    """Where this user adds money: our hosted top-up page (default mode), the person's wallet page
    (shared mode)."""
    caller = web.authenticate(request)
    user = _user(request)
    payer = payers.payer_for(caller.paywall, caller.environment, user)
    url = payer.topup_url(web.public_base_url(request))
    if isinstance(payer, payers.OwnWallet):  # the hosted top-up page's link (shared mode: the person's wallet page)
        data = {"externalUserId": user, "environment": caller.environment, "url": url, "expiresAt": None}
        outbox.emit(caller.paywall, "paywall.balance.topup.link.created", data)
    return {"url": url}


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
        **payers.balance_fields(posting.entry.balance_after, caller.paywall.currency),
        "entry": posting.entry.as_api(),
    }
    return JSONResponse(content, headers=_replayed(posting))


@app.post("/v1/user/charge", **m.answers(m.Charged | m.SharedCharged, 400, 401, 409, 413, 503, parameters=MONEY))
async def charge(request: Request, caller: Caller, body: MoneyBody) -> JSONResponse:
    """A manual charge, from whoever pays for this user (payers.payer_for). Not enough funds (or, in
    shared mode, not connected / cap reached) is not an error: 200 with success=false, the paywall's
    ready-to-render message and X-Paywall-Action (nothing charged)."""
    user, key = _money_request(request, body)
    return await run_in_threadpool(_charge, request, caller, body, user, key)


def _charge(request: Request, caller: web.Caller, body: m.MoneyRequest, user: str, key: str) -> JSONResponse:
    paywall = caller.paywall
    payer = payers.payer_for(paywall, caller.environment, user)
    charged = payer.charge(body.amount, idempotency_key=key, metadata=body.metadata)
    shown = payer.after_charge(charged)
    if charged.posting is None:
        refusal = charged.refusal or "topup"
        message = payer.refusal_text(refusal, web.public_base_url(request))
        return JSONResponse({"success": False, "message": message, **shown}, headers={"X-Paywall-Action": refusal})
    amount = format_micros(-charged.posting.entry.amount)
    content = {"success": True, "message": f"charged {amount} {paywall.currency.upper()}", **shown}
    return JSONResponse(content, headers=_replayed(charged.posting))


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


async def _caller_paywall(request: Request) -> str:
    return (await run_in_threadpool(web.authenticate, request)).paywall.id


# Outbound webhooks (http/webhook_routes.py; the operator's mirror is under /admin/paywalls/{id}/webhooks).
webhook_routes.mount(app, "/v1/webhooks", _caller_paywall, (401, 503), names="webhooks")


def _require_shared(caller: web.Caller) -> None:
    if caller.paywall.mode != "shared":
        raise web.ApiError(
            409, "connect and disconnect are for shared-mode paywalls; this paywall is in default mode", code="conflict"
        )


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
