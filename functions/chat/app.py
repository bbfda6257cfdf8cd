"""OpenAI-compatible proxy (SPEC §2) for chat completions, the Responses API and embeddings
(docs/endpoints.md): authenticate the paywall key, resolve the user, hold the worst case over the
candidate providers (chat/routing.py), call them in fallback order, settle to the real usage of the
one that served, at its price. In shared mode (SPEC §6)
the hold is on the wallet of the person who authorized the app user, within their spending cap, and
the settlement credits the paywall's earnings (shared_mode.funding).

Runs under uvicorn (Lambda Web Adapter in AWS, response streaming), so streams are real streams.
The rules live in the domain package: chat_request (what the client asked, which fields may pass),
chat_pricing (the price: model, fallbacks, paid features), metering (hold sizing,
usage, estimates), chat_billing (hold/settle/release), providers (the upstream call), chat_stream
(the streamed reply) and chat_replies (the paywall message). This module only wires them to HTTP.

Time limit: a request may last PAYWALLS_STREAM_MAX_S (default 870 s) from its arrival, Lambda's
900 s timeout minus time to write the charge. A stream that reaches it is ended by the proxy with an
error event and charged what was generated (chat_stream); without this Lambda would kill the stream
and its hold would be swept uncharged. A request still waiting for its answer then gets a 504."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from paywalls.billing import limits, metering
from paywalls.billing.identity import resolve_user
from paywalls.billing.metering import Pricing
from paywalls.billing.paywall import Paywall
from paywalls.chat import providers, routing
from paywalls.chat.billing import RefusalAction, Refused, Reservation, blocking, reserve
from paywalls.events import outbox
from paywalls.http import chat_endpoints as endpoints
from paywalls.http import web
from paywalls.http.chat_endpoints import Spec
from paywalls.http.chat_stream import MeteredStream
from paywalls.infra import telemetry
from paywalls.infra.config import settings
from paywalls.wallets import payers

log = logging.getLogger("paywalls.chat")

MAX_BODY_BYTES = 6_000_000  # Lambda's request payload limit; vision requests carry base64 images
DRAIN_TIMEOUT_S = settings().stream_drain_timeout_s
MAX_DURATION_S = settings().stream_max_s  # module doc: Lambda's 900 s - 30 s
_in_flight: set[asyncio.Future[None]] = set()


@contextlib.asynccontextmanager
async def _lifespan(_app: Starlette) -> AsyncIterator[None]:
    # Lambda's init phase (uvicorn starts before the adapter's readiness check): the X-Ray SDK is
    # imported here when tracing is on, never at module import (cold start) nor in a request.
    telemetry.tracer()
    yield


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def chat_completions(request: Request) -> Response:
    return await _counted(request, _proxy(request, path_user=None))


async def user_chat_completions(request: Request) -> Response:
    return await _counted(request, _proxy(request, path_user=request.path_params["user"]))


async def responses(request: Request) -> Response:
    return await _counted(request, _proxy(request, path_user=None, endpoint=endpoints.RESPONSES))


async def user_responses(request: Request) -> Response:
    return await _counted(request, _proxy(request, path_user=request.path_params["user"], endpoint=endpoints.RESPONSES))


async def embeddings(request: Request) -> Response:
    return await _counted(request, _proxy(request, path_user=None, endpoint=endpoints.EMBEDDINGS))


async def user_embeddings(request: Request) -> Response:
    return await _counted(
        request, _proxy(request, path_user=request.path_params["user"], endpoint=endpoints.EMBEDDINGS)
    )


_PROVIDER_CODES = ("provider_error", "provider_timeout")


async def _counted(request: Request, call: Awaitable[Response]) -> Response:
    """Every request counted once by outcome, with low-cardinality dimensions only (README "Operate")."""
    telemetry.use_trace_header(request.headers)
    try:
        response = await call
    except Exception as exc:
        error = web.translate(exc)
        if error is None:
            outcome = "server_error"
        elif error.status == 429:
            outcome = "rate_limited"
        elif error.code in _PROVIDER_CODES:
            outcome = "provider_error"
        else:
            outcome = "client_error" if error.status < 500 else "server_error"
        telemetry.emit({"Requests": 1}, by={"outcome": outcome})
        raise
    action = response.headers.get("x-paywall-action")
    if action:
        telemetry.emit({"Requests": 1}, by={"outcome": "paywall_reply"})
        telemetry.emit({"PaywallReplies": 1}, by={"action": action})
    else:
        outcome = "provider_rejected" if response.status_code >= 400 else "served"
        telemetry.emit({"Requests": 1}, by={"outcome": outcome})
    return response


# Plain Starlette, not FastAPI: nothing here needs validation models or an OpenAPI document, and
# FastAPI + pydantic are ~200 ms of a cold start (DESIGN.md "Cold start").
app = web.install(
    Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/{user}/chat/completions", user_chat_completions, methods=["POST"]),
            Route("/v1/responses", responses, methods=["POST"]),
            Route("/v1/{user}/responses", user_responses, methods=["POST"]),
            Route("/v1/embeddings", embeddings, methods=["POST"]),
            Route("/v1/{user}/embeddings", user_embeddings, methods=["POST"]),
        ],
        lifespan=_lifespan,
    )
)


async def _proxy(request: Request, *, path_user: str | None, endpoint: Spec = endpoints.CHAT) -> Response:
    """The one billing pipeline of every metered endpoint (chat, responses, embeddings): price the
    request over its candidate providers, hold the dearest, call them in fallback order, settle to
    the serving provider's usage at its price, or release."""
    request_id = web.request_id_of(request)
    deadline = anyio.current_time() + MAX_DURATION_S
    caller = await web.authenticate_on_loop(request)
    body = await web.json_body(request, limit=MAX_BODY_BYTES)
    paywall = caller.paywall
    metered = endpoint.parse(body)
    user = resolve_user(metered.body_user, request.headers.get("x-paywall-user"), path_user)
    try:
        routed = routing.route(paywall, metered, endpoint.name)
    except routing.NotRoutable as refused:
        # Never served unpriced: a model missing from the price table would otherwise be free.
        headers = {"x-should-retry": "false"} if refused.status == 503 else None  # the SDKs would retry in vain
        raise web.ApiError(
            refused.status, refused.message, code=refused.code, param=refused.param, headers=headers
        ) from None
    payer = payers.payer_for(paywall, caller.environment, user)  # who pays, in either mode
    funding = await payer.chat_funding()
    if isinstance(funding, Refused):
        return await _refusal_reply(request, payer, endpoint, metered, request_id, funding.action)
    prompt_bound = endpoint.prompt_bound(metered)
    # Per-user limits: nothing read, nothing reserved when the paywall has none.
    user_limits = None
    if paywall.limits or paywall.user_limits:
        user_limits = await blocking(limits.for_user, paywall, caller.environment, user)
    try:
        reservation = await reserve(
            paywall,
            caller.environment,
            user,
            Pricing(routed.hold_price, paywall.markup_percent),  # covers every candidate (routing)
            metered,
            prompt_bound=prompt_bound,
            request_id=request_id,
            funding=funding,
            limits=user_limits,
        )
    except limits.LimitReached as reached:
        return _limit_reply(paywall, endpoint, metered, request_id, reached)
    if isinstance(reservation, Refused):
        return await _refusal_reply(request, payer, endpoint, metered, request_id, reservation.action)

    failure: providers.ProviderFailure | None = None
    try:
        for candidate in routed.candidates:
            # Within the same hold (it covers the dearest candidate); charged at this one's price.
            reservation.pricing = Pricing(candidate.price, paywall.markup_percent)
            reservation.served_by, reservation.cost_of = candidate.name, candidate.cost_of
            upstream = providers.upstream_of(candidate.provider, endpoint.path, candidate.name)
            upstream_body = endpoint.upstream_body(
                metered, reservation.plan.tokens_per_choice, upstream.kind, candidate.upstream_model
            )
            served = {"X-Paywall-Provider": candidate.name, "X-Paywall-Model": candidate.upstream_model}
            try:
                if metered.stream:
                    return await _streamed(
                        upstream, upstream_body, endpoint, metered, reservation, paywall, deadline, served
                    )
                return await _buffered(
                    upstream, upstream_body, endpoint, metered, reservation, paywall, deadline, served
                )
            except providers.ProviderFailure as failed:
                # Nothing reached the client yet: the next provider may serve (fallback).
                failure = failed
                # A refused key is the operator's to fix even when another provider serves: error level.
                level = logging.ERROR if failed.code == providers.AUTH_FAILED else logging.WARNING
                log.log(
                    level,
                    "provider %s of paywall %s failed: %s",
                    candidate.name,
                    paywall.id,
                    failed.reason,
                    extra={"request_id": request_id},
                )
                telemetry.emit({"ProviderFallbacks": 1}, by={"provider": upstream.kind})
    except providers.ProviderRejected as rejected:
        await reservation.release()
        headers = {"Retry-After": rejected.retry_after} if rejected.retry_after else None
        return JSONResponse({"error": rejected.error}, status_code=rejected.status, headers=headers)
    except BaseException:
        await reservation.release()
        raise
    await reservation.release()
    assert failure is not None  # routing.route never answers without a candidate
    if failure.code == providers.AUTH_FAILED:
        raise _provider_auth_failed(paywall, request_id)
    raise web.ApiError(failure.status, paywall.render("provider_error"), code=failure.code)


PROVIDER_AUTH_FAILED_MESSAGE = (
    "The AI provider refused this paywall's provider API key (HTTP 401). "
    "The paywall's operator must set a valid key (`paywalls provider <paywall id>`)."
)


def _provider_auth_failed(paywall: Paywall, request_id: str) -> web.ApiError:
    """The provider refused the paywall's key, also after refetching it: a configuration error only the
    operator can fix, so it says so to the client (not the generic provider-error text, which reads as
    an outage) and to the console/logs, at error level, naming the paywall."""
    log.error(
        "the provider refused the provider key of paywall %s (HTTP 401, also after refetching the key); "
        "set a valid key with `paywalls provider %s`",
        paywall.id,
        paywall.id,
        extra={"request_id": request_id, "paywall_id": paywall.id},
    )
    # Retrying cannot succeed until the key is fixed: tell the OpenAI SDKs not to retry in vain.
    return web.ApiError(
        502, PROVIDER_AUTH_FAILED_MESSAGE, code=providers.AUTH_FAILED, headers={"x-should-retry": "false"}
    )


def _limit_reply(
    paywall: Paywall, endpoint: Spec, metered: Any, request_id: str, reached: limits.LimitReached
) -> Response:
    """Rate limits (requests per minute, tokens per day): 429 in OpenAI's shape with Retry-After (the
    SDKs wait and retry by themselves, unless the wait is long). Spend limits: the paywall reply."""
    telemetry.emit({"LimitRefusals": 1}, by={"limit": reached.name})
    if reached.is_rate_limit:
        headers = {"Retry-After": str(reached.retry_after)}
        if reached.retry_after > 60:
            headers["x-should-retry"] = "false"  # hours away: an SDK retrying now would only fail again
        raise web.ApiError(429, limits.rate_limit_message(reached), code="rate_limit_exceeded", headers=headers)
    return _assistant_reply(endpoint, metered, request_id, limits.refusal_text(paywall, reached), "limit")


def _check_served_model(
    paywall: Paywall, chat: Any, reservation: Reservation, payload: Any, upstream_model: str
) -> None:
    """The charge stays at the requested model's price; a costlier model served instead is logged so
    the operator can see (and price) the provider's substitutions."""
    served = payload.get("model") if isinstance(payload, dict) else None
    if isinstance(payload, dict) and isinstance(payload.get("response"), dict):  # a Responses event
        served = payload["response"].get("model")
    if (
        not isinstance(served, str)
        or served in (chat.model, upstream_model)
        or served in chat.fallback_models
        or served.startswith(upstream_model)  # providers name a dated snapshot of the model asked for
    ):
        return
    served_price = paywall.price_of(served)
    if served_price is not None and metering.costlier(served_price, reservation.pricing.price):
        log.warning(
            "provider served %r, priced higher than %r which is charged",
            served,
            chat.model,
            extra={"request_id": reservation.request_id},
        )


@contextlib.contextmanager
def _answer_by(deadline: float) -> Iterator[None]:
    """Wait for the provider's answer no later than the request's deadline (module doc)."""
    try:
        with anyio.fail_after(max(deadline - anyio.current_time(), 0)):
            yield
    except TimeoutError:
        raise providers.ProviderFailure(504, "no answer before the request's time limit") from None


async def _buffered(
    upstream: providers.Upstream,
    body: dict[str, Any],
    endpoint: Spec,
    chat: Any,
    reservation: Reservation,
    paywall: Paywall,
    deadline: float,
    served: dict[str, str],
) -> Response:
    # The wallet read the settlement needs runs while the provider answers, so the charge below is a
    # single transaction (chat_billing module doc).
    prefetch = asyncio.ensure_future(reservation.prefetch())
    _in_flight.add(prefetch)  # asyncio keeps only weak references to tasks
    prefetch.add_done_callback(_in_flight.discard)
    started = time.monotonic()
    with telemetry.subsegment("## provider"), _answer_by(deadline):
        completion, raw = await providers.complete(upstream, body, valid=endpoint.valid)
    telemetry.emit({"ProviderLatency": telemetry.elapsed_ms(started, time.monotonic())}, by={"provider": upstream.kind})
    _check_served_model(paywall, chat, reservation, completion, body["model"])
    usage = endpoint.usage(completion)
    if usage is None:
        log.warning("completion without usage; charging the estimate", extra={"request_id": reservation.request_id})
        usage = reservation.estimate(endpoint.generated(completion))
    # Charged before the answer is sent: a client that reads its balance right after the answer
    # sees this request's charge (as after a stream's [DONE]).
    await reservation.settle(usage)
    # The provider's bytes as they came: nothing of the answer is re-encoded.
    return Response(raw, media_type="application/json", headers=served)


async def _streamed(
    upstream: providers.Upstream,
    body: dict[str, Any],
    endpoint: Spec,
    chat: Any,
    reservation: Reservation,
    paywall: Paywall,
    deadline: float,
    served: dict[str, str],
) -> Response:
    started = time.monotonic()
    with telemetry.subsegment("## provider"), _answer_by(deadline):
        stream = await providers.open_stream(upstream, body)
    chunks = stream.chunks()
    try:
        # The first chunk decides the status: until it came, a failure can still be a clean 502/504.
        with telemetry.subsegment("## provider first chunk"), _answer_by(deadline):
            first = await anext(chunks, None)
        telemetry.emit(
            {"ProviderTimeToFirstByte": telemetry.elapsed_ms(started, time.monotonic())},
            by={"provider": upstream.kind},
        )
        if first is None:
            raise providers.ProviderFailure(502, "provider stream ended before its first chunk")
        if endpoint.stream_format.is_error(first):
            raise providers.ProviderFailure(502, "provider streamed an error event first")
        _check_served_model(paywall, chat, reservation, first.payload, body["model"])
    except BaseException:
        await chunks.aclose()
        await stream.aclose()
        raise
    return MeteredStream(
        first=first,
        chunks=chunks,
        upstream=stream,
        reservation=reservation,
        tally=endpoint.tally(chat),
        failure_text=paywall.render("provider_error"),
        drain_timeout_s=DRAIN_TIMEOUT_S,
        deadline=deadline,
        time_limit_text=f"The answer was cut off: an answer may take at most {MAX_DURATION_S:.0f} seconds here.",
        started_at=started,
        provider_kind=upstream.kind,
        headers=served,
        stream_format=endpoint.stream_format,
    )


async def _refusal_reply(
    request: Request, payer: payers.Payer, endpoint: Spec, metered: Any, request_id: str, refusal: RefusalAction
) -> Response:
    """Nothing held, nothing charged: the paywall's message in the endpoint's shape (SPEC §2), with the
    link that resolves it: top up (default mode), or in shared mode authorize, top up the wallet, or
    raise the spending limit (cap)."""
    text = await blocking(payer.refusal_text, refusal, web.public_base_url(request))
    await _blocked_event(payer.paywall, payer.environment, payer.user, metered, refusal)
    return _assistant_reply(endpoint, metered, request_id, text, refusal)


async def _blocked_event(paywall: Paywall, environment: str, user: str, metered: Any, reason: str) -> None:
    """paywall.request.blocked for the app's webhooks (a PutItem only when a subscription wants it)."""
    if outbox.wants(paywall, "paywall.request.blocked"):
        data = {"externalUserId": user, "environment": environment, "reason": reason, "model": metered.model}
        await blocking(outbox.emit, paywall, "paywall.request.blocked", data)


def _assistant_reply(endpoint: Spec, metered: Any, request_id: str, text: str, action: str) -> Response:
    """The paywall's message in the endpoint's own shape (chat_replies, http.chat_endpoints)."""
    return endpoint.reply(metered, text, request_id, {"X-Paywall-Action": action})
