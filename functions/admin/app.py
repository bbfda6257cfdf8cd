"""Admin API (SPEC §7): the operator's control plane. IAM-authenticated behind API Gateway in AWS,
bearer admin token locally.

Every handler is a plain `def`: FastAPI runs it in its threadpool, so its DynamoDB, Secrets Manager and
Stripe calls (all blocking) never hold the event loop, which locally also serves the chat streams. A
JSON body arrives through the `web.JsonBody` dependency, read asynchronously before the handler runs."""

from __future__ import annotations

import hmac
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from mangum import Mangum

from paywalls import (
    adjustments,
    admin_reports,
    earnings,
    limits,
    losses,
    operator_stripe,
    persons,
    secrets_store,
    shared_mode,
    stripe_config,
    stripe_gateway,
    telemetry,
    web,
    withdrawals,
)
from paywalls import paywall as paywalls
from paywalls.config import settings
from paywalls.identity import resolve_user

app = web.install(FastAPI(title="Paywalls admin API", docs_url=None, redoc_url=None, openapi_url="/admin/openapi.json"))


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


admin = [Depends(require_admin)]


@app.post("/admin/paywalls", dependencies=admin, status_code=201)
def create_paywall(body: web.JsonBody) -> dict[str, Any]:
    return paywalls.create(body).as_api()


@app.get("/admin/paywalls", dependencies=admin)
def list_paywalls(limit: int = 100, cursor: str | None = None) -> dict[str, Any]:
    return admin_reports.paywalls_page(limit=limit, cursor=cursor)


@app.get("/admin/paywalls/{paywall_id}", dependencies=admin)
def get_paywall(paywall_id: str) -> dict[str, Any]:
    return paywalls.get(paywall_id).as_api()


@app.patch("/admin/paywalls/{paywall_id}", dependencies=admin)
def patch_paywall(paywall_id: str, body: web.JsonBody) -> dict[str, Any]:
    return paywalls.patch(paywall_id, body).as_api()


@app.post("/admin/paywalls/{paywall_id}/keys", dependencies=admin, status_code=201)
def issue_key(paywall_id: str, body: web.JsonBody) -> dict[str, Any]:
    key, raw = paywalls.issue_key(paywall_id, body.get("environment", "live"))
    return {
        "id": key.id,
        "object": "api_key",
        "environment": key.environment,
        "key": raw,
        "created_at": key.created_at,
        "note": "store this key now: it is shown only once",
    }


@app.get("/admin/paywalls/{paywall_id}/keys", dependencies=admin)
def list_keys(paywall_id: str) -> dict[str, Any]:
    paywalls.get(paywall_id)
    return {"object": "list", "data": [_key_view(k) for k in paywalls.list_keys(paywall_id)]}


@app.delete("/admin/paywalls/{paywall_id}/keys/{key_id}", dependencies=admin)
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


@app.put("/admin/paywalls/{paywall_id}/provider", dependencies=admin)
def set_provider(paywall_id: str, body: web.JsonBody) -> dict[str, Any]:
    paywalls.get(paywall_id)
    kind, base_url, api_key = paywalls.validated_provider(body)
    secret_name = paywalls.provider_secret_name(settings().secret_prefix, paywall_id)
    secrets_store.put_secret(secret_name, api_key)
    updated = paywalls.set_provider(paywall_id, kind, base_url, secret_name)
    return updated.provider.as_api()  # type: ignore[union-attr]


@app.put("/admin/paywalls/{paywall_id}/pricing", dependencies=admin)
def set_pricing(paywall_id: str, body: web.JsonBody) -> dict[str, Any]:
    updated = paywalls.set_pricing(paywall_id, body)
    return {
        "object": "pricing",
        "markup_percent": updated.as_api()["markup_percent"],
        "models": {m: p.as_api() for m, p in updated.pricing.items()},
        "features": {f: p.as_api() for f, p in updated.features.items()},
    }


@app.put("/admin/paywalls/{paywall_id}/templates", dependencies=admin)
def set_templates(paywall_id: str, body: web.JsonBody) -> dict[str, Any]:
    return paywalls.set_templates(paywall_id, body).as_api()["templates"]


@app.put("/admin/paywalls/{paywall_id}/limits", dependencies=admin)
def set_limits(paywall_id: str, body: web.JsonBody) -> dict[str, Any]:
    """The paywall's default per-user limits: {requests_per_minute?, tokens_per_day?, spend_per_day?,
    spend_per_month?} (spend as decimal amounts); absent or null: no limit. Replaces all four."""
    return limits.set_defaults(paywall_id, body).as_api()["limits"]


@app.get("/admin/paywalls/{paywall_id}/users/{user}/limits", dependencies=admin)
def get_user_limits(paywall_id: str, user: str, environment: str = "live") -> dict[str, Any]:
    return limits.describe(paywalls.get(paywall_id), _environment(environment), resolve_user(user))


@app.put("/admin/paywalls/{paywall_id}/users/{user}/limits", dependencies=admin)
def set_user_limits(paywall_id: str, user: str, body: web.JsonBody) -> dict[str, Any]:
    """One user's override: {environment?, <limit>: value | null}; a limit given replaces the
    paywall's (null: no limit for this user), one left out follows the paywall's."""
    paywall = paywalls.get(paywall_id)
    environment = _environment(body.get("environment", "live"))
    user = resolve_user(user)
    limits.set_override(paywall, environment, user, {k: v for k, v in body.items() if k != "environment"})
    return limits.describe(paywalls.get(paywall_id), environment, user)


@app.delete("/admin/paywalls/{paywall_id}/users/{user}/limits", dependencies=admin)
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


@app.put("/admin/paywalls/{paywall_id}/stripe", dependencies=admin)
def set_stripe(paywall_id: str, request: Request, body: web.JsonBody) -> dict[str, Any]:
    """Store the paywall's Stripe key (its prefix says test or live), create the webhook endpoint and
    keep its signing secret in Secrets Manager. Answers a status without any secret."""
    try:
        return stripe_config.configure(paywall_id, body, web.public_base_url(request))
    except stripe_gateway.StripeRejected as exc:
        raise web.ApiError(400, str(exc), code="stripe_rejected", param="secret_key") from None
    except stripe_gateway.StripeUnavailable as exc:
        raise web.ApiError(502, str(exc), code="stripe_unavailable") from None


@app.get("/admin/paywalls/{paywall_id}/users", dependencies=admin)
def list_users(
    paywall_id: str, environment: str = "live", limit: str | None = None, cursor: str | None = None
) -> dict[str, Any]:
    paywalls.get(paywall_id)
    size = web.count_param(limit, "limit", default=100, minimum=1, maximum=1000)
    return admin_reports.users_page(paywall_id, environment, limit=size, cursor=cursor)


@app.get("/admin/paywalls/{paywall_id}/usage", dependencies=admin)
def usage(paywall_id: str, request: Request, environment: str = "live") -> dict[str, Any]:
    paywalls.get(paywall_id)
    # `from`/`to` are Python keywords, hence read from the query string directly.
    params = request.query_params
    return admin_reports.usage(paywall_id, environment, params.get("from"), params.get("to"))


@app.post("/admin/paywalls/{paywall_id}/users/{user}/adjustments", dependencies=admin, status_code=201)
def adjust_balance(paywall_id: str, user: str, request: Request, body: web.JsonBody) -> dict[str, Any]:
    """Operator correction of a user's balance (`adjustment` entry): a signed decimal amount;
    a debit never takes the balance below zero. Idempotency-Key header required."""
    paywall = paywalls.get(paywall_id)
    posting = adjustments.adjust(
        paywall,
        body.get("environment", "live"),
        resolve_user(user),
        body.get("amount"),
        idempotency_key=web.idempotency_key(request),
        reason=body.get("reason"),
    )
    return {"entry": posting.entry.as_api(), "duplicate": posting.duplicate}


# ---- shared mode: earnings, withdrawals, payouts, the operator's Stripe, persons (SPEC §6) -----------


@app.get("/admin/paywalls/{paywall_id}/earnings", dependencies=admin)
def paywall_earnings(paywall_id: str, environment: str = "live") -> dict[str, Any]:
    """Earnings of a shared-mode paywall: gross spend of its users, platform fees, net earned,
    withdrawn, reversed (taken back by losses), available (matured: withdrawable now) and pending
    (still in the settlement delay, with the day each part matures)."""
    paywalls.get(paywall_id)
    summary = earnings.summary(paywall_id, environment)
    return {**summary, "payout": withdrawals.payout_settings(paywall_id)}


@app.post("/admin/paywalls/{paywall_id}/withdrawals", dependencies=admin, status_code=201)
def withdraw(paywall_id: str, request: Request, body: web.JsonBody) -> JSONResponse:
    """Withdraw available earnings ({amount?, environment}; no amount: everything, in whole cents).
    Idempotency-Key required: a replay answers the first withdrawal (and retries its payout)."""
    unknown = sorted(set(body) - {"amount", "environment"})
    if unknown:
        raise paywalls.InvalidRequest(f"unknown field(s): {', '.join(unknown)}", unknown[0])
    key = web.idempotency_key(request)
    withdrawal, duplicate = withdrawals.withdraw(
        paywalls.get(paywall_id), body.get("environment", "live"), body.get("amount"), idempotency_key=key or ""
    )
    headers = {"Idempotent-Replayed": "true"} if duplicate else {}
    return JSONResponse(withdrawal.as_api(), status_code=200 if duplicate else 201, headers=headers)


@app.get("/admin/paywalls/{paywall_id}/withdrawals", dependencies=admin)
def list_withdrawals(paywall_id: str, environment: str = "live") -> dict[str, Any]:
    paywalls.get(paywall_id)
    return {"object": "list", "data": [w.as_api() for w in withdrawals.list_withdrawals(paywall_id, environment)]}


@app.post("/admin/paywalls/{paywall_id}/withdrawals/{withdrawal_id}/paid", dependencies=admin)
def withdrawal_paid(paywall_id: str, withdrawal_id: str, body: web.JsonBody) -> JSONResponse:
    """The operator paid a pending manual withdrawal by hand ({reference?}): pending -> paid. Marking
    it again (same or no reference) answers it unchanged; another reference, or a Stripe-transfer
    withdrawal (settled by retrying its request, never by hand), is 409."""
    withdrawal, duplicate = withdrawals.mark_paid(paywalls.get(paywall_id), withdrawal_id, body)
    headers = {"Idempotent-Replayed": "true"} if duplicate else {}
    return JSONResponse(withdrawal.as_api(), headers=headers)


@app.get("/admin/losses", dependencies=admin)
def list_losses(environment: str = "live", limit: int = 100) -> dict[str, Any]:
    """The operator's losses: refunded or disputed wallet top-ups that had been spent (the person's
    wallet went negative), which top-up, whose wallet, which apps earned from it and what of their
    pending earnings was taken back."""
    if not 1 <= limit <= 1000:
        raise paywalls.InvalidRequest("limit must be between 1 and 1000", "limit")
    return {"object": "list", "data": losses.list_losses(environment, limit=limit)}


@app.put("/admin/paywalls/{paywall_id}/payout", dependencies=admin)
def set_payout(paywall_id: str, body: web.JsonBody) -> dict[str, Any]:
    """Where withdrawals are paid: {stripe_account: "acct_..."} (Stripe Connect), null for manual."""
    return withdrawals.set_payout(paywalls.get(paywall_id), body)


@app.put("/admin/operator/stripe", dependencies=admin)
def set_operator_stripe(request: Request, body: web.JsonBody) -> dict[str, Any]:
    """The operator's Stripe key: wallet top-ups (webhook created now) and payout transfers."""
    try:
        return operator_stripe.configure(body, web.public_base_url(request))
    except stripe_gateway.StripeRejected as exc:
        raise web.ApiError(400, str(exc), code="stripe_rejected", param="secret_key") from None
    except stripe_gateway.StripeUnavailable as exc:
        raise web.ApiError(502, str(exc), code="stripe_unavailable") from None


@app.get("/admin/operator/stripe", dependencies=admin)
def get_operator_stripe() -> dict[str, Any]:
    return operator_stripe.public_status()


@app.get("/admin/persons", dependencies=admin)
def find_person(email: str) -> dict[str, Any]:
    person = persons.find_by_email(email)
    if person is None:
        raise web.ApiError(404, "no wallet for this email", code="not_found")
    return shared_mode.person_summary(person)


@app.get("/admin/persons/{person_id}", dependencies=admin)
def get_person(person_id: str) -> dict[str, Any]:
    person = persons.get(person_id)
    if person is None:
        raise web.ApiError(404, f"person {person_id!r} not found", code="not_found")
    return shared_mode.person_summary(person)


@app.post("/admin/persons/{person_id}/adjustments", dependencies=admin, status_code=201)
def adjust_person(person_id: str, request: Request, body: web.JsonBody) -> dict[str, Any]:
    """Operator correction of a person's wallet (`adjustment` entry), like the per-user one:
    {amount, environment, reason?}. The environment (`live` or `test` wallet) is required."""
    unknown = sorted(set(body) - {"amount", "environment", "reason"})
    if unknown:
        raise paywalls.InvalidRequest(f"unknown field(s): {', '.join(unknown)}", unknown[0])
    key = web.idempotency_key(request) or ""
    posting = persons.adjust(
        person_id, body.get("environment"), body.get("amount"), idempotency_key=key, reason=body.get("reason")
    )
    return {"entry": posting.entry.as_api(), "duplicate": posting.duplicate}


handler = telemetry.lambda_handler(Mangum(app, lifespan="off"))
