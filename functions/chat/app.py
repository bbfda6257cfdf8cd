"""OpenAI-compatible chat completions proxy (SPEC §2): authenticate the paywall key, resolve the user,
hold the worst case, call the paywall's provider, settle to the real usage. In shared mode (SPEC §6)
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
from collections.abc import Iterator
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from paywalls import chat_pricing, chat_replies, chat_request, links, metering, providers, shared_mode, sse, web
from paywalls.chat_billing import Refused, Reservation, blocking, reserve
from paywalls.chat_request import ChatRequest
from paywalls.chat_stream import STREAM_HEADERS, MeteredStream
from paywalls.config import settings
from paywalls.identity import resolve_user
from paywalls.metering import Pricing, StreamTally
from paywalls.paywall import Paywall

log = logging.getLogger("paywalls.chat")

MAX_BODY_BYTES = 6_000_000  # Lambda's request payload limit; vision requests carry base64 images
DRAIN_TIMEOUT_S = settings().stream_drain_timeout_s
MAX_DURATION_S = settings().stream_max_s  # module doc: Lambda's 900 s - 30 s
_in_flight: set[asyncio.Future[None]] = set()



async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def chat_completions(request: Request) -> Response:
    return await _proxy(request, path_user=None)


async def user_chat_completions(request: Request) -> Response:
    return await _proxy(request, path_user=request.path_params["user"])


# Plain Starlette, not FastAPI: nothing here needs validation models or an OpenAPI document, and
# FastAPI + pydantic are ~200 ms of a cold start (DESIGN.md "Cold start").
app = web.install(
    Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/v1/chat/completions", chat_completions, methods=["POST"]),
            Route("/v1/{user}/chat/completions", user_chat_completions, methods=["POST"]),
        ]
    )
)


async def _proxy(request: Request, *, path_user: str | None) -> Response:
    request_id = web.request_id_of(request)
    deadline = anyio.current_time() + MAX_DURATION_S
    caller = await blocking(web.authenticate, request)
    body = await web.json_body(request, limit=MAX_BODY_BYTES)
    paywall = caller.paywall
    chat = chat_request.parse(body)
    user = resolve_user(chat.body_user, request.headers.get("x-paywall-user"), path_user)
    kind = paywall.provider.kind if paywall.provider else None
    price = chat_pricing.request_price(paywall, chat, kind)
    if price is None:
        # Never served unpriced: a model missing from the price table would otherwise be free.
        raise web.ApiError(
            404,
            f"The model `{chat.model}` does not exist or is not priced on this paywall",
            code="model_not_found",
            param="model",
        )
    if paywall.provider is None:
        raise web.ApiError(
            503,
            "this paywall has no AI provider configured",
            code="provider_not_configured",
            headers={"x-should-retry": "false"},  # the OpenAI SDKs would otherwise retry in vain
        )
    funding = None
    if paywall.mode == "shared":
        # Shared mode: the person who authorized this app user pays, within their cap (SPEC §6).
        funding = await blocking(shared_mode.funding, paywall, caller.environment, user)
        if funding is None:
            return await _shared_reply(request, paywall, caller.environment, user, chat, request_id, "authorize")
    prompt_bound = metering.prompt_token_bound(body)
    reservation = await reserve(
        paywall,
        caller.environment,
        user,
        Pricing(price, paywall.markup_percent),
        chat,
        prompt_bound=prompt_bound,
        request_id=request_id,
        funding=funding,
    )
    if isinstance(reservation, Refused):
        if paywall.mode == "shared":
            return await _shared_reply(
                request, paywall, caller.environment, user, chat, request_id, reservation.action
            )
        return await _paywall_reply(request, paywall, caller.environment, user, chat, request_id)

    upstream = providers.upstream_of(paywall.provider)
    upstream_body = chat_request.upstream_body(
        chat, limit=reservation.plan.tokens_per_choice, provider_kind=upstream.kind
    )
    try:
        if chat.stream:
            return await _streamed(upstream, upstream_body, chat, reservation, paywall, deadline)
        return await _buffered(upstream, upstream_body, chat, reservation, paywall, deadline)
    except providers.ProviderFailure as failure:
        await reservation.release()
        log.warning("provider failure: %s", failure.reason, extra={"request_id": request_id})
        raise web.ApiError(
            failure.status,
            paywall.render("provider_error"),
            code="provider_timeout" if failure.status == 504 else "provider_error",
        ) from None
    except providers.ProviderRejected as rejected:
        await reservation.release()
        headers = {"Retry-After": rejected.retry_after} if rejected.retry_after else None
        return JSONResponse({"error": rejected.error}, status_code=rejected.status, headers=headers)
    except BaseException:
        await reservation.release()
        raise


def _check_served_model(paywall: Paywall, chat: ChatRequest, reservation: Reservation, payload: Any) -> None:
    """The charge stays at the requested model's price; a costlier model served instead is logged so
    the operator can see (and price) the provider's substitutions."""
    served = payload.get("model") if isinstance(payload, dict) else None
    if not isinstance(served, str) or served == chat.model or served in chat.fallback_models:
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
    chat: ChatRequest,
    reservation: Reservation,
    paywall: Paywall,
    deadline: float,
) -> Response:
    # The wallet read the settlement needs runs while the provider answers, so the charge below is a
    # single transaction (chat_billing module doc).
    prefetch = asyncio.ensure_future(reservation.prefetch())
    _in_flight.add(prefetch)  # asyncio keeps only weak references to tasks
    prefetch.add_done_callback(_in_flight.discard)
    with _answer_by(deadline):
        completion, raw = await providers.complete(upstream, body)
    _check_served_model(paywall, chat, reservation, completion)
    usage = metering.reported_usage(completion)
    if usage is None:
        log.warning("completion without usage; charging the estimate", extra={"request_id": reservation.request_id})
        usage = reservation.estimate(metering.completion_bytes(completion))
    # Charged before the answer is sent: a client that reads its balance right after the answer
    # sees this request's charge (as after a stream's [DONE]).
    await reservation.settle(usage)
    # The provider's bytes as they came: nothing of the answer is re-encoded.
    return Response(raw, media_type="application/json")


async def _streamed(
    upstream: providers.Upstream,
    body: dict[str, Any],
    chat: ChatRequest,
    reservation: Reservation,
    paywall: Paywall,
    deadline: float,
) -> Response:
    with _answer_by(deadline):
        stream = await providers.open_stream(upstream, body)
    chunks = stream.chunks()
    try:
        # The first chunk decides the status: until it came, a failure can still be a clean 502/504.
        with _answer_by(deadline):
            first = await anext(chunks, None)
        if first is None:
            raise providers.ProviderFailure(502, "provider stream ended before its first chunk")
        if first.is_error:
            raise providers.ProviderFailure(502, "provider streamed an error event first")
        _check_served_model(paywall, chat, reservation, first.payload)
    except BaseException:
        await chunks.aclose()
        await stream.aclose()
        raise
    return MeteredStream(
        first=first,
        chunks=chunks,
        upstream=stream,
        reservation=reservation,
        tally=StreamTally(client_wants_usage=chat.client_wants_usage),
        failure_text=paywall.render("provider_error"),
        drain_timeout_s=DRAIN_TIMEOUT_S,
        deadline=deadline,
        time_limit_text=f"The answer was cut off: an answer may take at most {MAX_DURATION_S:.0f} seconds here.",
    )


async def _shared_reply(
    request: Request,
    paywall: Paywall,
    environment: str,
    user: str,
    chat: ChatRequest,
    request_id: str,
    refusal: shared_mode.Refusal,
) -> Response:
    """Shared mode: authorize (not connected), topup (wallet too low) or cap (spending limit reached)."""
    text = await blocking(shared_mode.refusal_text, paywall, refusal, web.public_base_url(request), environment, user)
    return _assistant_reply(chat, request_id, text, refusal)


async def _paywall_reply(
    request: Request, paywall: Paywall, environment: str, user: str, chat: ChatRequest, request_id: str
) -> Response:
    """Balance too low: a normal assistant message with the top-up link (SPEC §2); nothing charged."""
    url = await blocking(links.topup_url, web.public_base_url(request), paywall.id, environment, user)
    return _assistant_reply(chat, request_id, paywall.render("topup", url), "topup")


def _assistant_reply(chat: ChatRequest, request_id: str, text: str, action: str) -> Response:
    headers = {"X-Paywall-Action": action}
    if not chat.stream:
        return JSONResponse(
            chat_replies.paywall_completion(model=chat.model, text=text, request_id=request_id, n=chat.n),
            headers=headers,
        )
    chunks = chat_replies.paywall_chunks(
        model=chat.model, text=text, request_id=request_id, n=chat.n, include_usage=chat.client_wants_usage
    )
    # Short and known in full: one body, still a valid event stream.
    events = b"".join(sse.json_event(c) for c in chunks) + sse.DONE
    return Response(events, media_type="text/event-stream", headers={**STREAM_HEADERS, **headers})
