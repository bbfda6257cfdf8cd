"""The webhook API, mounted twice with the same shapes: under /v1/webhooks for an app (its paywall
from its key) and under /admin/paywalls/{paywall_id}/webhooks for the operator (admin auth). Each app
passes the dependency that yields the paywall id; the handlers are plain `def`s (FastAPI's
threadpool: their DynamoDB and Secrets Manager calls never hold the event loop)."""

# No `from __future__ import annotations`: FastAPI resolves string annotations in the module's
# globals, where the per-router PaywallId alias does not exist.
from collections.abc import Sequence
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query
from fastapi.responses import JSONResponse

from paywalls.events import logs, subscriptions
from paywalls.http import api_models as m

CreateBody = Annotated[m.CreateWebhookSubscription, m.from_json(m.CreateWebhookSubscription, limit=32_768)]
UpdateBody = Annotated[m.UpdateWebhookSubscription, m.from_json(m.UpdateWebhookSubscription, limit=32_768)]
RotateBody = Annotated[m.RotateWebhookSecret, m.from_json(m.RotateWebhookSecret, limit=4_096)]


def mount(
    app: FastAPI, prefix: str, paywall: Any, errors: Sequence[int], *, names: str, dependencies: Sequence[Any] = ()
) -> None:
    """Add the routes to `app` itself (not an included router: the OpenAPI document and its tests
    read `app.routes` as plain routes). `paywall`: a dependency callable returning the paywall id;
    `errors`: what every operation may answer besides its own (auth, a busy store); `names`: the
    operation ids' prefix (unique across the published document)."""
    PaywallId = Annotated[str, Depends(paywall)]  # noqa: N806
    deps = list(dependencies)

    def route(method: str, path: str, name: str, answer: Any, *codes: int, status: int = 200) -> Any:
        return getattr(app, method)(
            prefix + path,
            name=f"{names}_{name}",
            dependencies=deps,
            **m.answers(answer, *errors, *codes, status=status),
        )

    @route("post", "/subscriptions", "create_subscription", m.WebhookSubscriptionAnswer, 400, 404, 413, status=201)
    def create(paywall_id: PaywallId, body: CreateBody) -> JSONResponse:
        sub, secret = subscriptions.create(paywall_id, body.sent())
        return JSONResponse({"subscription": sub.as_api(secret)}, status_code=201)

    @route("get", "/subscriptions", "list_subscriptions", m.WebhookSubscriptionList, 400, 404)
    def list_all(
        paywall_id: PaywallId, status: Annotated[str | None, Query(pattern="^(active|inactive)$")] = None
    ) -> dict[str, Any]:
        return {"object": "list", "data": [s.as_api() for s in subscriptions.list_subscriptions(paywall_id, status)]}

    @route("get", "/subscriptions/{subscription_id}", "get_subscription", m.WebhookSubscriptionAnswer, 404)
    def get_one(paywall_id: PaywallId, subscription_id: str) -> dict[str, Any]:
        return {"subscription": subscriptions.get(paywall_id, subscription_id).as_api()}

    @route(
        "patch", "/subscriptions/{subscription_id}", "update_subscription", m.WebhookSubscriptionAnswer, 400, 404, 413
    )
    def update(paywall_id: PaywallId, subscription_id: str, body: UpdateBody) -> dict[str, Any]:
        return {"subscription": subscriptions.update(paywall_id, subscription_id, body.sent()).as_api()}

    @route("delete", "/subscriptions/{subscription_id}", "deactivate_subscription", m.WebhookSubscriptionAnswer, 404)
    def deactivate(paywall_id: PaywallId, subscription_id: str) -> dict[str, Any]:
        return {"subscription": subscriptions.deactivate(paywall_id, subscription_id).as_api()}

    @route(
        "post",
        "/subscriptions/{subscription_id}/rotate-secret",
        "rotate_secret",
        m.WebhookSubscriptionAnswer,
        400,
        404,
        413,
    )
    def rotate(paywall_id: PaywallId, subscription_id: str, body: RotateBody) -> dict[str, Any]:
        sub, secret = subscriptions.rotate_secret(paywall_id, subscription_id, body.sent())
        return {"subscription": sub.as_api(secret)}

    @route("get", "/logs", "delivery_logs", m.WebhookLogPage, 400, 404)
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
