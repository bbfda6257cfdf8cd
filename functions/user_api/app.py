"""User and wallet API (SPEC §3) and the model list (SPEC §2), buffered responses through Mangum."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from mangum import Mangum

from paywalls import ledger, web
from paywalls.identity import app_wallet_id, resolve_user
from paywalls.money import format_micros

app = web.install(FastAPI(title="Paywalls user API", docs_url=None, redoc_url=None, openapi_url=None))


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/v1/models")
def models(request: Request) -> dict[str, Any]:
    caller = web.authenticate(request)
    return {
        "object": "list",
        "data": [
            {
                "id": model,
                "object": "model",
                "created": 0,
                "owned_by": caller.paywall.provider.kind if caller.paywall.provider else "paywalls",
                "name": model,
                "display_name": model,
                "description": f"{model} via {caller.paywall.name}",
                "pricing": price.as_api(),
            }
            for model, price in sorted(caller.paywall.pricing.items())
        ],
    }


def _user(request: Request) -> str:
    return resolve_user(request.headers.get("x-paywall-user"), request.query_params.get("user"))


@app.get("/v1/user/balance")
def balance(request: Request) -> dict[str, Any]:
    caller = web.authenticate(request)
    wallet = ledger.get_wallet(app_wallet_id(caller.paywall.id, caller.environment, _user(request)))
    return {
        "balance": str(wallet.balance),
        "balanceFormatted": format_micros(wallet.balance),
        "currency": caller.paywall.currency,
    }


@app.get("/v1/user/ledger")
def entries(request: Request, limit: int = 20, cursor: str | None = None) -> dict[str, Any]:
    caller = web.authenticate(request)
    if not 1 <= limit <= 100:
        raise web.ApiError(400, "limit must be between 1 and 100", param="limit", code="invalid_limit")
    wallet_id = app_wallet_id(caller.paywall.id, caller.environment, _user(request))
    page, next_cursor = ledger.list_entries(wallet_id, limit=limit, cursor=cursor)
    return {
        "object": "list",
        "data": [e.as_api() for e in page],
        "has_more": next_cursor is not None,
        "next_cursor": next_cursor,
    }


handler = Mangum(app, lifespan="off")
