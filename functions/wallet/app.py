"""WalletFunction: our hosted pages (SPEC §5, §6). Two routers from the paywalls package:
- `/pay/*` (paywalls.http.pay_routes): the default-mode top-up page behind a signed link, the Stripe
  Checkout hand-off and its result pages;
- `/wallet/*` and `/` (paywalls.http.wallet_routes): shared-mode sign-in, authorization consent, the wallet
  with its connected apps, wallet top-ups.

Their dependencies (public base URL, form, CSRF, session) and error pages are in paywalls.http.page_http;
the HTML comes from Jinja2 templates (paywalls.http.pages). The pages are unauthenticated or signed in by
email code; every answer is an HTML page, never a traceback."""

from __future__ import annotations

from fastapi import FastAPI
from mangum import Mangum

from paywalls.http import pay_routes, wallet_routes, web
from paywalls.infra import telemetry

app = web.install(FastAPI(docs_url=None, redoc_url=None, openapi_url=None))


@app.get("/health")
def health() -> dict[str, str]:
    return {"status": "ok"}


app.include_router(pay_routes.router)
app.include_router(wallet_routes.router)

handler = telemetry.lambda_handler(Mangum(app, lifespan="off"))
