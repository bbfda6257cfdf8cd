"""The webhook API, mounted twice with the same shapes: under /v1/webhooks for an app (its paywall
from its key) and under /admin/paywalls/{paywall_id}/webhooks for the operator (admin auth). Each app
passes the dependency that yields the paywall id; the handlers are plain `def`s (FastAPI's
threadpool: their DynamoDB and Secrets Manager calls never hold the event loop)."""

# No `from __future__ import annotations`: FastAPI resolves string annotations in the module's
# globals, where the per-router PaywallId alias does not exist.
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse

from paywalls import api_models as m
from paywalls.events import logs, subscriptions

CreateBody = Annotated[m.CreateWebhookSubscription, m.from_json(m.CreateWebhookSubscription, limit=32_768)]
UpdateBody = Annotated[m.UpdateWebhookSubscription, m.from_json(m.UpdateWebhookSubscription, limit=32_768)]
RotateBody = Annotated[m.RotateWebhookSecret, m.from_json(m.RotateWebhookSecret, limit=4_096)]


def router(prefix: str, paywall: Any, errors: Sequence[int], dependencies: Sequence[Any] = ()) -> APIRouter:
    """`paywall`: a dependency callable returning the paywall id; `errors`: what every operation of
    this API may answer besides its own (auth, a busy store)."""
    PaywallId = Annotated[str, Depends(paywall)]  # noqa: N806
    api = APIRouter(prefix=prefix, dependencies=list(dependencies))

    @api.post("/subscriptions", **m.answers(m.WebhookSubscriptionAnswer, *errors, 400, 404, 413, status=201))
    def create(paywall_id: PaywallId, body: CreateBody) -> JSONResponse:
        sub, secret = subscriptions.create(paywall_id, body.sent())
        return JSONResponse({"subscription": sub.as_api(secret)}, status_code=201)

    @api.get("/subscriptions", **m.answers(m.WebhookSubscriptionList, *errors, 400, 404))
    def list_all(
        paywall_id: PaywallId, status: Annotated[str | None, Query(pattern="^(active|inactive)$")] = None
    ) -> dict[str, Any]:
        return {"object": "list", "data": [s.as_api() for s in subscriptions.list_subscriptions(paywall_id, status)]}

    @api.get("/subscriptions/{subscription_id}", **m.answers(m.WebhookSubscriptionAnswer, *errors, 404))
    def get_one(paywall_id: PaywallId, subscription_id: str) -> dict[str, Any]:
        return {"subscription": subscriptions.get(paywall_id, subscription_id).as_api()}

    @api.patch("/subscriptions/{subscription_id}", **m.answers(m.WebhookSubscriptionAnswer, *errors, 400, 404, 413))
    def update(paywall_id: PaywallId, subscription_id: str, body: UpdateBody) -> dict[str, Any]:
        return {"subscription": subscriptions.update(paywall_id, subscription_id, body.sent()).as_api()}

    @api.delete("/subscriptions/{subscription_id}", **m.answers(m.WebhookSubscriptionAnswer, *errors, 404))
    def deactivate(paywall_id: PaywallId, subscription_id: str) -> dict[str, Any]:
        return {"subscription": subscriptions.deactivate(paywall_id, subscription_id).as_api()}

    @api.post(
        "/subscriptions/{subscription_id}/rotate-secret",
        **m.answers(m.WebhookSubscriptionAnswer, *errors, 400, 404, 413),
    )
    def rotate(paywall_id: PaywallId, subscription_id: str, body: RotateBody) -> dict[str, Any]:
        sub, secret = subscriptions.rotate_secret(paywall_id, subscription_id, body.sent())
        return {"subscription": sub.as_api(secret)}

    @api.get("/logs", **m.answers(m.WebhookLogPage, *errors, 400, 404))
    def delivery_logs(
        paywall_id: PaywallId,
        subscriptionId: str | None = None,  # noqa: N803 (Paywalls.ai's parameter names)
        status: Annotated[str | None, Query(pattern="^(pending|success|error)$")] = None,
        eventType: str | None = None,  # noqa: N803
        limit: Annotated[int, Query(ge=1, le=logs.MAX_LIMIT)] = logs.DEFAULT_LIMIT,
        cursor: str | None = None,
    ) -> dict[str, Any]:
        return logs.list_logs(
            paywall_id, subscription_id=subscriptionId, status=status, event_type=eventType, limit=limit, cursor=cursor
        )

    return api
