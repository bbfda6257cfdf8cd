"""Admin API (SPEC §7): the operator's control plane. IAM-authenticated behind API Gateway in AWS,
bearer admin token locally.

Every handler is a plain `def`: FastAPI runs it in its threadpool, so its DynamoDB, Secrets Manager and
Stripe calls (all blocking) never hold the event loop, which locally also serves the chat streams. A
JSON body arrives as its typed model (`paywalls.http.api_models`), read asynchronously and checked by the
`from_json` dependency before the handler runs; the domain functions take `body.sent()`, the fields
exactly as sent."""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from mangum import Mangum

from paywalls.analytics import ledger_pages
from paywalls.analytics import listings as admin_reports
from paywalls.analytics import reports as analytics_reports
from paywalls.billing import adjustments, earnings, limits, losses, operator_stripe, stripe_config, withdrawals
from paywalls.billing import paywall as paywalls
from paywalls.billing.identity import resolve_user
from paywalls.chat import routing
from paywalls.http import api_models as m
from paywalls.http import openapi_doc, web, webhook_routes
from paywalls.infra import links, stripe_gateway, telemetry
from paywalls.infra import secrets as secrets_store
from paywalls.infra.config import settings
from paywalls.wallets import persons, shared_mode

app = web.install(FastAPI(title="Paywalls admin API", docs_url=None, redoc_url=None, openapi_url="/admin/openapi.json"))
# Request bodies, error responses and security schemes, as in the published docs/openapi.json.
app.openapi = lambda: openapi_doc.served(app)  # type: ignore[method-assign]


def require_admin(request: Request) -> None:
    config = settings()
    if config.admin_auth == "iam":
        # API Gateway already verified the SigV4 signature (AWS_IAM); we only check that it did.
        event = request.scope.get("aws.event") or {}
        identity = (event.get("requestContext") or {}).get("identity") or {}
        if identity.get("userArn") or identity.get("caller"):
            return
        raise web.ApiError(403, "admin routes require IAM authentication", code="forbidden")
    token = web.bearer_token(request)
    if not config.admin_token or not token or not hmac.compare_digest(token, config.admin_token):
        raise web.ApiError(401, "invalid admin token", code="invalid_admin_token")


# Route dependencies run first: an unauthenticated request is a 401/403 before its body is read.
admin = [Depends(require_admin)]
# Every admin operation may answer these: no admin token (local) / no IAM signature (AWS), a busy store.
AUTH = (401, 403, 503)


# Each body arrives as its model, read and checked by api_models.from_json before the handler runs.
CreatePaywallBody = Annotated[m.CreatePaywall, m.from_json(m.CreatePaywall)]
PatchPaywallBody = Annotated[m.PatchPaywall, m.from_json(m.PatchPaywall)]
IssueKeyBody = Annotated[m.IssueKey, m.from_json(m.IssueKey)]
SetLimitsBody = Annotated[m.SetLimits, m.from_json(m.SetLimits)]
SetUserLimitsBody = Annotated[m.SetUserLimits, m.from_json(m.SetUserLimits)]
ProviderBody = Annotated[m.SetProvider, m.from_json(m.SetProvider)]
NamedProviderBody = Annotated[m.SetNamedProvider, m.from_json(m.SetNamedProvider)]
RoutesBody = Annotated[m.SetRoutes, m.from_json(m.SetRoutes)]
PricingBody = Annotated[m.SetPricing, m.from_json(m.SetPricing)]
TemplatesBody = Annotated[m.SetTemplates, m.from_json(m.SetTemplates)]
StripeBody = Annotated[m.SetStripe, m.from_json(m.SetStripe)]
UserAdjustmentBody = Annotated[m.UserAdjustment, m.from_json(m.UserAdjustment)]
WithdrawalBody = Annotated[m.WithdrawalRequest, m.from_json(m.WithdrawalRequest)]
MarkPaidBody = Annotated[m.MarkPaid, m.from_json(m.MarkPaid)]
PayoutBody = Annotated[m.SetPayout, m.from_json(m.SetPayout)]
PersonAdjustmentBody = Annotated[m.PersonAdjustment, m.from_json(m.PersonAdjustment)]
Environment = Annotated[str, Query(description="live or test", json_schema_extra={"enum": ["live", "test"]})]


@app.get("/admin/paywalls", dependencies=admin, **m.answers(m.PaywallPage, *AUTH, 400))
def list_paywalls(limit: int = 100, cursor: str | None = None) -> dict[str, Any]:
    return admin_reports.paywalls_page(limit=limit, cursor=cursor)


@app.post("/admin/paywalls", dependencies=admin, **m.answers(m.PaywallOut, *AUTH, 400, 413, status=201))
def create_paywall(body: CreatePaywallBody) -> dict[str, Any]:
    return paywalls.create(body.sent()).as_api()


def _admin_paywall(paywall_id: str) -> str:
    paywalls.get(paywall_id)  # 404 for an unknown paywall
    return paywall_id


# Outbound webhooks, the same shapes as the app's /v1/webhooks (http/webhook_routes.py).
webhook_routes.mount(
    app, "/admin/paywalls/{paywall_id}/webhooks", _admin_paywall, AUTH, names="admin_webhooks", dependencies=admin
)


@app.get("/admin/paywalls/{paywall_id}", dependencies=admin, **m.answers(m.PaywallOut, *AUTH, 404))
def get_paywall(paywall_id: str) -> dict[str, Any]:
    return paywalls.get(paywall_id).as_api()


@app.patch("/admin/paywalls/{paywall_id}", dependencies=admin, **m.answers(m.PaywallOut, *AUTH, 400, 404, 409, 413))
def patch_paywall(paywall_id: str, body: PatchPaywallBody) -> dict[str, Any]:
    return paywalls.patch(paywall_id, body.sent()).as_api()


@app.post(
    "/admin/paywalls/{paywall_id}/keys", dependencies=admin, **m.answers(m.KeyIssued, *AUTH, 400, 404, 413, status=201)
)
def issue_key(paywall_id: str, body: IssueKeyBody) -> dict[str, Any]:
    key, raw = paywalls.issue_key(paywall_id, body.environment)
    return {
        "id": key.id,
        "object": "api_key",
        "environment": key.environment,
        "key": raw,
        "created_at": key.created_at,
        "note": "store this key now: it is shown only once",
    }


@app.get("/admin/paywalls/{paywall_id}/keys", dependencies=admin, **m.answers(m.KeyList, *AUTH, 404))
def list_keys(paywall_id: str) -> dict[str, Any]:
    paywalls.get(paywall_id)
    return {"object": "list", "data": [_key_view(k) for k in paywalls.list_keys(paywall_id)]}


@app.delete("/admin/paywalls/{paywall_id}/keys/{key_id}", dependencies=admin, **m.answers(m.KeyView, *AUTH, 404, 409))
def revoke_key(paywall_id: str, key_id: str) -> dict[str, Any]:
    return _key_view(paywalls.revoke_key(paywall_id, key_id))


def _key_view(key: paywalls.ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "object": "api_key",
        "environment": key.environment,
        "revoked": key.revoked,
        "preview": key.preview,
        "created_at": key.created_at,
    }


@app.put("/admin/paywalls/{paywall_id}/provider", dependencies=admin, **m.answers(m.ProviderOut, *AUTH, 400, 404, 413))
def set_provider(paywall_id: str, body: ProviderBody) -> dict[str, Any]:
    paywalls.get(paywall_id)
    kind, base_url, api_key = paywalls.validated_provider(body.sent())
    secret_name = paywalls.provider_secret_name(settings().secret_prefix, paywall_id)
    secrets_store.put_secret(secret_name, api_key)
    updated = paywalls.set_provider(paywall_id, kind, base_url, secret_name)
    return updated.provider.as_api()  # type: ignore[union-attr]


@app.get("/admin/paywalls/{paywall_id}/providers", dependencies=admin, **m.answers(m.NamedProviderList, *AUTH, 404))
def list_providers(paywall_id: str) -> dict[str, Any]:
    """Every provider of the paywall by name (`default`: the one PUT .../provider sets)."""
    return routing.providers_as_api(paywalls.get(paywall_id))


@app.put(
    "/admin/paywalls/{paywall_id}/providers/{name}",
    dependencies=admin,
    **m.answers(m.NamedProviderOut, *AUTH, 400, 404, 413),
)
def set_named_provider(paywall_id: str, name: str, body: NamedProviderBody) -> dict[str, Any]:
    updated = routing.set_named_provider(
        paywall_id, name, body.sent(), secret_prefix=settings().secret_prefix, store_key=secrets_store.put_secret
    )
    return updated.named_providers()[name].as_named_api(name)


@app.delete(
    "/admin/paywalls/{paywall_id}/providers/{name}",
    dependencies=admin,
    **m.answers(m.NamedProviderList, *AUTH, 400, 404, 409),
)
def remove_named_provider(paywall_id: str, name: str) -> dict[str, Any]:
    return routing.providers_as_api(routing.remove_named_provider(paywall_id, name))


@app.put("/admin/paywalls/{paywall_id}/routes", dependencies=admin, **m.answers(m.RoutesOut, *AUTH, 400, 404, 413))
def set_routes(paywall_id: str, body: RoutesBody) -> dict[str, Any]:
    """Replaces the routing rules: model id or prefix -> providers in fallback order."""
    return {"object": "routes", "routes": routing.set_routes(paywall_id, body.sent()).routes}


@app.put("/admin/paywalls/{paywall_id}/pricing", dependencies=admin, **m.answers(m.PricingOut, *AUTH, 400, 404, 413))
def set_pricing(paywall_id: str, body: PricingBody) -> dict[str, Any]:
    updated = paywalls.set_pricing(paywall_id, body.sent())
    return {
        "object": "pricing",
        "markup_percent": updated.as_api()["markup_percent"],
        "models": {m: p.as_api() for m, p in updated.pricing.items()},
        "features": {f: p.as_api() for f, p in updated.features.items()},
    }


@app.put(
    "/admin/paywalls/{paywall_id}/templates", dependencies=admin, **m.answers(m.TemplatesOut, *AUTH, 400, 404, 413)
)
def set_templates(paywall_id: str, body: TemplatesBody) -> dict[str, Any]:
    return paywalls.set_templates(paywall_id, body.sent()).as_api()["templates"]


@app.put("/admin/paywalls/{paywall_id}/limits", dependencies=admin, **m.answers(m.LimitsOut, *AUTH, 400, 404, 413))
def set_limits(paywall_id: str, body: SetLimitsBody) -> dict[str, Any]:
    """The paywall's default per-user limits: {requests_per_minute?, tokens_per_day?, spend_per_day?,
    spend_per_month?} (spend as decimal amounts); absent or null: no limit. Replaces all four."""
    return limits.set_defaults(paywall_id, body.sent()).as_api()["limits"]


@app.get(
    "/admin/paywalls/{paywall_id}/users/{user}/limits",
    dependencies=admin,
    **m.answers(m.UserLimitsOut, *AUTH, 400, 404),
)
def get_user_limits(paywall_id: str, user: str, environment: str = "live") -> dict[str, Any]:
    return limits.describe(paywalls.get(paywall_id), _environment(environment), resolve_user(user))


@app.put(
    "/admin/paywalls/{paywall_id}/users/{user}/limits",
    dependencies=admin,
    **m.answers(m.UserLimitsOut, *AUTH, 400, 404, 413),
)
def set_user_limits(paywall_id: str, user: str, body: SetUserLimitsBody) -> dict[str, Any]:
    """One user's override: {environment?, <limit>: value | null}; a limit given replaces the
    paywall's (null: no limit for this user), one left out follows the paywall's."""
    sent = body.sent()
    paywall = paywalls.get(paywall_id)
    environment = _environment(sent.pop("environment", "live"))
    user = resolve_user(user)
    limits.set_override(paywall, environment, user, sent)
    return limits.describe(paywalls.get(paywall_id), environment, user)


@app.delete(
    "/admin/paywalls/{paywall_id}/users/{user}/limits",
    dependencies=admin,
    **m.answers(m.UserLimitsOut, *AUTH, 400, 404),
)
def delete_user_limits(paywall_id: str, user: str, environment: str = "live") -> dict[str, Any]:
    paywall = paywalls.get(paywall_id)
    environment = _environment(environment)
    user = resolve_user(user)
    if not limits.delete_override(paywall, environment, user):
        raise web.ApiError(404, "this user has no limits of their own", code="not_found")
    return limits.describe(paywall, environment, user)


def _environment(value: Any) -> str:
    if value not in paywalls.ENVIRONMENTS:
        raise paywalls.InvalidRequest("environment must be 'live' or 'test'", "environment")
    return value


@app.put(
    "/admin/paywalls/{paywall_id}/stripe",
    dependencies=admin,
    **m.answers(m.StripeConfig, *AUTH, 400, 404, 409, 413, 502),
)
def set_stripe(paywall_id: str, request: Request, body: StripeBody) -> dict[str, Any]:
    """Store the paywall's Stripe key (its prefix says test or live), create the webhook endpoint and
    keep its signing secret in Secrets Manager. Answers a status without any secret."""
    try:
        return stripe_config.configure(paywall_id, body.sent(), web.public_base_url(request))
    except stripe_gateway.StripeRejected as exc:
        raise web.ApiError(400, str(exc), code="stripe_rejected", param="secret_key") from None
    except stripe_gateway.StripeUnavailable as exc:
        raise web.ApiError(502, str(exc), code="stripe_unavailable") from None


@app.get("/admin/paywalls/{paywall_id}/users", dependencies=admin, **m.answers(m.UsersPage, *AUTH, 400, 404))
def list_users(
    paywall_id: str,
    environment: Environment = "live",
    # Text, checked by web.count_param (FastAPI's int would take " 1", "1_000", "1.0").
    limit: Annotated[
        str | None, Query(description="Page size, 1-1000 (default 100).", json_schema_extra={"pattern": "^[0-9]{1,9}$"})
    ] = None,
    cursor: Annotated[str | None, Query(description="`next_cursor` of the previous page.")] = None,
) -> dict[str, Any]:
    paywalls.get(paywall_id)
    size = web.count_param(limit, "limit", default=100, minimum=1, maximum=1000)
    return admin_reports.users_page(paywall_id, environment, limit=size, cursor=cursor)


_PERIOD = [
    {
        "name": name,
        "in": "query",
        "required": False,
        "description": f"ISO timestamp ({'inclusive' if name == 'from' else 'exclusive'}).",
        "schema": {"type": "string"},
    }
    for name in ("from", "to")
]


@app.get(
    "/admin/paywalls/{paywall_id}/usage", dependencies=admin, **m.answers(m.Usage, *AUTH, 400, 404, parameters=_PERIOD)
)
def usage(paywall_id: str, request: Request, environment: Environment = "live", compare: bool = True) -> dict[str, Any]:
    """Revenue, provider cost, profit, requests, tokens, fees, deposits, refunds for the whole UTC days
    of [from, to) (default: the last 30 days), by model, by day, top users, and the previous period of
    the same length (`compare`). Read from the roll-ups: O(days x models), whatever the traffic."""
    paywalls.get(paywall_id)
    # `from`/`to` are Python keywords, hence read from the query string directly.
    params = request.query_params
    return analytics_reports.usage(paywall_id, environment, params.get("from"), params.get("to"), compare=compare)


@app.get("/admin/paywalls/{paywall_id}/users/{user}", dependencies=admin, **m.answers(m.AppUser, *AUTH, 400, 404))
def get_user(paywall_id: str, user: str, environment: Environment = "live") -> dict[str, Any]:
    """One app user: balance (default mode) or authorization (shared mode), total spend, requests,
    last activity and spend per day over the last 30 days."""
    return analytics_reports.user_view(paywalls.get(paywall_id), _environment(environment), resolve_user(user))


@app.get("/admin/paywalls/{paywall_id}/users/{user}/link", dependencies=admin, **m.answers(m.UserLink, *AUTH, 400, 404))
def user_link(paywall_id: str, user: str, request: Request, environment: Environment = "live") -> dict[str, Any]:
    """The link to hand this user: the top-up page (default mode) or the authorization page (shared
    mode, valid for a limited time), as the user API gives it to the app."""
    paywall = paywalls.get(paywall_id)
    environment, user = _environment(environment), resolve_user(user)
    base = web.public_base_url(request)
    if paywall.mode == "shared":
        return {
            "object": "link",
            "kind": "authorize",
            "url": shared_mode.authorize_url(base, paywall.id, environment, user),
        }
    return {"object": "link", "kind": "topup", "url": links.topup_url(base, paywall.id, environment, user)}


_LEDGER_QUERY = [
    {"name": name, "in": "query", "required": False, "description": text, "schema": {"type": "string"}}
    for name, text in (
        ("from", "ISO date or timestamp (inclusive)."),
        ("to", "ISO date or timestamp (exclusive)."),
    )
]


LedgerUser = Annotated[str | None, Query(description="Only this user's entries.")]
LedgerType = Annotated[
    str | None, Query(description="Entry type.", json_schema_extra={"enum": list(ledger_pages.ENTRY_TYPES)})
]
LedgerModel = Annotated[str | None, Query(description="Only entries of this model.")]
PageSize = Annotated[
    str | None, Query(description="Page size, 1-1000 (default 100).", json_schema_extra={"pattern": "^[0-9]{1,9}$"})
]
Cursor = Annotated[str | None, Query(description="`next_cursor` of the previous page.")]


@dataclass(frozen=True)
class _LedgerPage:
    rows: list[tuple[str, Any]]
    next_cursor: str | None
    first: bool  # asked without a cursor: the CSV export starts with its header row


def _ledger_page(
    paywall_id: str,
    request: Request,
    environment: Environment = "live",
    user: LedgerUser = None,
    type: LedgerType = None,
    model: LedgerModel = None,
    limit: PageSize = None,
    cursor: Cursor = None,
) -> _LedgerPage:
    """The dependency both ledger routes (JSON and CSV) take: one set of query parameters, one reading."""
    paywall = paywalls.get(paywall_id)
    size = web.count_param(limit, "limit", default=100, minimum=1, maximum=1000)
    params = request.query_params
    filters = ledger_pages.Filters(user, type, model, params.get("from"), params.get("to"))
    try:
        rows, following = ledger_pages.page(paywall, _environment(environment), filters, limit=size, cursor=cursor)
    except ledger_pages.SharedMode:
        raise web.ApiError(
            409, "a shared-mode app user has no ledger of their own (see the user's view)", code="shared_mode"
        ) from None
    return _LedgerPage(rows, following, first=cursor is None)


LedgerPage = Annotated[_LedgerPage, Depends(_ledger_page)]


@app.get(
    "/admin/paywalls/{paywall_id}/ledger",
    dependencies=admin,
    **m.answers(m.AdminLedgerPage, *AUTH, 400, 404, 409, parameters=_LEDGER_QUERY),
)
def paywall_ledger(page: LedgerPage) -> dict[str, Any]:
    """The paywall's ledger (default mode), user by user, newest first, filtered; a page may be
    shorter than `limit` (each reads a bounded number of entries): follow `next_cursor` to the end."""
    return {
        "object": "list",
        "data": [ledger_pages.row_api(u, e) for u, e in page.rows],
        "has_more": page.next_cursor is not None,
        "next_cursor": page.next_cursor,
    }


@app.get(
    "/admin/paywalls/{paywall_id}/ledger.csv",
    dependencies=admin,
    **m.answers(
        None,
        *AUTH,
        400,
        404,
        409,
        parameters=_LEDGER_QUERY,
        media="text/csv",
        description="A CSV page (with a header row on the first page); `X-Next-Cursor` names the next one.",
    ),
)
def paywall_ledger_csv(page: LedgerPage) -> Response:
    """The same pages as CSV, for export: fetch pages until no `X-Next-Cursor` comes back."""
    headers = {"X-Next-Cursor": page.next_cursor} if page.next_cursor else {}
    text = ledger_pages.csv_text(page.rows, header=page.first)
    return Response(text, media_type="text/csv; charset=utf-8", headers=headers)


@app.post(
    "/admin/paywalls/{paywall_id}/users/{user}/adjustments",
    dependencies=admin,
    **m.answers(m.Adjusted, *AUTH, 400, 402, 404, 409, 413, status=201, parameters=[m.IDEMPOTENCY_KEY]),
)
def adjust_balance(paywall_id: str, user: str, request: Request, body: UserAdjustmentBody) -> dict[str, Any]:
    """Operator correction of a user's balance (`adjustment` entry): a signed decimal amount;
    a debit never takes the balance below zero. Idempotency-Key header required."""
    paywall = paywalls.get(paywall_id)
    posting = adjustments.adjust(
        paywall,
        body.environment,
        resolve_user(user),
        body.amount,
        idempotency_key=web.idempotency_key(request),
        reason=body.reason,
    )
    return {"entry": posting.entry.as_api(), "duplicate": posting.duplicate}


# ---- shared mode: earnings, withdrawals, payouts, the operator's Stripe, persons (SPEC §6) -----------


@app.get("/admin/paywalls/{paywall_id}/earnings", dependencies=admin, **m.answers(m.Earnings, *AUTH, 400, 404))
def paywall_earnings(paywall_id: str, environment: Environment = "live") -> dict[str, Any]:
    """Earnings of a shared-mode paywall: gross spend of its users, platform fees, net earned,
    withdrawn, reversed (taken back by losses), available (matured: withdrawable now) and pending
    (still in the settlement delay, with the day each part matures)."""
    paywalls.get(paywall_id)
    summary = earnings.summary(paywall_id, environment)
    return {**summary, "payout": withdrawals.payout_settings(paywall_id)}


@app.post(
    "/admin/paywalls/{paywall_id}/withdrawals",
    dependencies=admin,
    **m.answers(
        m.Withdrawal,
        *AUTH,
        400,
        404,
        409,
        413,
        status=201,
        also={200: m.Withdrawal},
        parameters=[m.IDEMPOTENCY_KEY],
        description="Withdrawn (201), or the first answer replayed (200, Idempotent-Replayed: true).",
    ),
)
def withdraw(paywall_id: str, request: Request, body: WithdrawalBody) -> JSONResponse:
    """Withdraw available earnings ({amount?, environment}; no amount: everything, in whole cents).
    Idempotency-Key required: a replay answers the first withdrawal (and retries its payout)."""
    key = web.idempotency_key(request)
    withdrawal, duplicate = withdrawals.withdraw(
        paywalls.get(paywall_id), body.environment, body.amount, idempotency_key=key or ""
    )
    headers = {"Idempotent-Replayed": "true"} if duplicate else {}
    return JSONResponse(withdrawal.as_api(), status_code=200 if duplicate else 201, headers=headers)


@app.get("/admin/paywalls/{paywall_id}/withdrawals", dependencies=admin, **m.answers(m.WithdrawalList, *AUTH, 400, 404))
def list_withdrawals(paywall_id: str, environment: Environment = "live") -> dict[str, Any]:
    paywalls.get(paywall_id)
    return {"object": "list", "data": [w.as_api() for w in withdrawals.list_withdrawals(paywall_id, environment)]}


@app.post(
    "/admin/paywalls/{paywall_id}/withdrawals/{withdrawal_id}/paid",
    dependencies=admin,
    **m.answers(m.Withdrawal, *AUTH, 400, 404, 409, 413),
)
def withdrawal_paid(paywall_id: str, withdrawal_id: str, body: MarkPaidBody) -> JSONResponse:
    """The operator paid a pending manual withdrawal by hand ({reference?}): pending -> paid. Marking
    it again (same or no reference) answers it unchanged; another reference, or a Stripe-transfer
    withdrawal (settled by retrying its request, never by hand), is 409."""
    withdrawal, duplicate = withdrawals.mark_paid(paywalls.get(paywall_id), withdrawal_id, body.sent())
    headers = {"Idempotent-Replayed": "true"} if duplicate else {}
    return JSONResponse(withdrawal.as_api(), headers=headers)


@app.get("/admin/losses", dependencies=admin, **m.answers(m.LossList, *AUTH, 400))
def list_losses(environment: Environment = "live", limit: int = 100) -> dict[str, Any]:
    """The operator's losses: refunded or disputed wallet top-ups that had been spent (the person's
    wallet went negative), which top-up, whose wallet, which apps earned from it and what of their
    pending earnings was taken back."""
    if not 1 <= limit <= 1000:
        raise paywalls.InvalidRequest("limit must be between 1 and 1000", "limit")
    return {"object": "list", "data": losses.list_losses(environment, limit=limit)}


@app.put(
    "/admin/paywalls/{paywall_id}/payout", dependencies=admin, **m.answers(m.PayoutSettings, *AUTH, 400, 404, 409, 413)
)
def set_payout(paywall_id: str, body: PayoutBody) -> dict[str, Any]:
    """Where withdrawals are paid: {stripe_account: "acct_..."} (Stripe Connect), null for manual."""
    return withdrawals.set_payout(paywalls.get(paywall_id), body.sent())


@app.put("/admin/operator/stripe", dependencies=admin, **m.answers(m.OperatorStripeConfigured, *AUTH, 400, 413, 502))
def set_operator_stripe(request: Request, body: StripeBody) -> dict[str, Any]:
    """The operator's Stripe key: wallet top-ups (webhook created now) and payout transfers."""
    try:
        return operator_stripe.configure(body.sent(), web.public_base_url(request))
    except stripe_gateway.StripeRejected as exc:
        raise web.ApiError(400, str(exc), code="stripe_rejected", param="secret_key") from None
    except stripe_gateway.StripeUnavailable as exc:
        raise web.ApiError(502, str(exc), code="stripe_unavailable") from None


@app.get("/admin/operator/stripe", dependencies=admin, **m.answers(m.OperatorStripe, *AUTH))
def get_operator_stripe() -> dict[str, Any]:
    return operator_stripe.public_status()


@app.get("/admin/persons", dependencies=admin, **m.answers(m.Person, *AUTH, 400, 404))
def find_person(email: str) -> dict[str, Any]:
    person = persons.find_by_email(email)
    if person is None:
        raise web.ApiError(404, "no wallet for this email", code="not_found")
    return shared_mode.person_summary(person)


@app.get("/admin/persons/{person_id}", dependencies=admin, **m.answers(m.Person, *AUTH, 404))
def get_person(person_id: str) -> dict[str, Any]:
    person = persons.get(person_id)
    if person is None:
        raise web.ApiError(404, f"person {person_id!r} not found", code="not_found")
    return shared_mode.person_summary(person)


@app.post(
    "/admin/persons/{person_id}/adjustments",
    dependencies=admin,
    **m.answers(m.Adjusted, *AUTH, 400, 402, 404, 409, 413, status=201, parameters=[m.IDEMPOTENCY_KEY]),
)
def adjust_person(person_id: str, request: Request, body: PersonAdjustmentBody) -> dict[str, Any]:
    """Operator correction of a person's wallet (`adjustment` entry), like the per-user one:
    {amount, environment, reason?}. The environment (`live` or `test` wallet) is required."""
    key = web.idempotency_key(request) or ""
    posting = persons.adjust(person_id, body.environment, body.amount, idempotency_key=key, reason=body.reason)
    return {"entry": posting.entry.as_api(), "duplicate": posting.duplicate}


handler = telemetry.lambda_handler(Mangum(app, lifespan="off"))
