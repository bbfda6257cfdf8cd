"""The three metered endpoints as data for the one billing pipeline (functions/chat/app.py): what
each parses, bounds, sends upstream, reads back as usage, and how its paywall reply looks. The
pipeline itself (price, hold, provider with fallbacks, settle or release) is written once, there."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.responses import JSONResponse, Response

from paywalls.billing import metering
from paywalls.billing.metering import StreamTally, Usage
from paywalls.chat import providers, sse
from paywalls.chat import replies as chat_replies
from paywalls.chat import request as chat_request
from paywalls.chat.embeddings import EmbeddingsRequest
from paywalls.chat.embeddings import is_embedding_list as _is_embedding_list
from paywalls.chat.embeddings import parse as _parse_embeddings
from paywalls.chat.embeddings import reported_usage as _embedding_usage
from paywalls.chat.embeddings import upstream_body as _embeddings_body
from paywalls.chat.request import ChatRequest
from paywalls.chat.responses import (
    TERMINAL_EVENTS,
    ResponsesRequest,
    ResponsesTally,
    error_event,
    is_error_event,
    is_response,
    response_object,
    text_events,
    usage_object,
)
from paywalls.chat.responses import generated_bytes as _response_bytes
from paywalls.chat.responses import parse as _parse_responses
from paywalls.chat.responses import prompt_bound as _responses_bound
from paywalls.chat.responses import reported_usage as _response_usage
from paywalls.chat.responses import upstream_body as _responses_body
from paywalls.chat.routing import UPSTREAM_PATHS, Endpoint
from paywalls.http.chat_stream import CHAT_STREAM, STREAM_HEADERS, StreamFormat


@dataclass(frozen=True)
class Spec:
    name: Endpoint
    parse: Callable[[dict[str, Any]], Any]
    prompt_bound: Callable[[Any], int]
    upstream_body: Callable[[Any, int, str, str], dict[str, Any]]  # (request, held limit, kind, model)
    valid: Callable[[Any], bool]  # a non-streamed answer of this endpoint
    usage: Callable[[Any], Usage | None]
    generated: Callable[[Any], int]  # bytes generated in a non-streamed answer (the estimate)
    tally: Callable[[Any], Any]  # a new stream tally for a request
    stream_format: StreamFormat
    reply: Callable[[Any, str, str, dict[str, str]], Response]  # the paywall reply (text, request id)

    @property
    def path(self) -> str:
        return UPSTREAM_PATHS[self.name]


# ---- chat -------------------------------------------------------------------------------------------


def _chat_body(chat: ChatRequest, limit: int, kind: str, model: str) -> dict[str, Any]:
    body = chat_request.upstream_body(chat, limit=limit, provider_kind=kind)
    if model != chat.model:
        body["model"] = model  # a route's upstream model name (chat/routing.py)
    return body


def _chat_reply(chat: ChatRequest, text: str, request_id: str, headers: dict[str, str]) -> Response:
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


CHAT = Spec(
    name="chat",
    parse=chat_request.parse,
    prompt_bound=lambda chat: metering.prompt_token_bound(chat.body),
    upstream_body=_chat_body,
    valid=providers.is_chat_completion,
    usage=metering.reported_usage,
    generated=metering.completion_bytes,
    tally=lambda chat: StreamTally(client_wants_usage=chat.client_wants_usage),
    stream_format=CHAT_STREAM,
    reply=_chat_reply,
)


# ---- responses --------------------------------------------------------------------------------------


def _responses_reply(request: ResponsesRequest, text: str, request_id: str, headers: dict[str, str]) -> Response:
    response_id = f"resp_{request_id.replace('-', '')}"
    if not request.stream:
        body = response_object(response_id=response_id, model=request.model, text=text, usage=usage_object(0, 0))
        return JSONResponse(body, headers=headers)
    events = text_events(response_id=response_id, model=request.model, deltas=[text], usage=usage_object(0, 0))
    payload = b"".join(sse.json_event(e, e["type"]) for e in events)
    return Response(payload, media_type="text/event-stream", headers={**STREAM_HEADERS, **headers})


RESPONSES = Spec(
    name="responses",
    parse=_parse_responses,
    prompt_bound=_responses_bound,
    upstream_body=lambda request, limit, kind, model: _responses_body(request, limit=limit, model=model),
    valid=is_response,
    usage=_response_usage,
    generated=_response_bytes,
    tally=lambda request: ResponsesTally(),
    stream_format=StreamFormat(
        is_error=lambda chunk: is_error_event(chunk.payload),
        error_event=lambda message, code: sse.json_event(error_event(message, code), "error"),
        done=b"",
        is_terminal=lambda chunk: chunk.payload.get("type") in TERMINAL_EVENTS,
    ),
    reply=_responses_reply,
)


# ---- embeddings -------------------------------------------------------------------------------------


def _embeddings_reply(request: EmbeddingsRequest, text: str, request_id: str, headers: dict[str, str]) -> Response:
    # No embedding can carry a message: a 402 with the paywall's text as an OpenAI-style error (the SDKs
    # raise it with the message), not retried by them.
    error = {
        "message": text,
        "type": "insufficient_quota",
        "param": None,
        "code": "paywall_" + headers["X-Paywall-Action"],
    }
    return JSONResponse({"error": error}, status_code=402, headers={**headers, "x-should-retry": "false"})


def _no_stream_tally(request: EmbeddingsRequest) -> Any:
    raise AssertionError("embeddings are never streamed")


EMBEDDINGS = Spec(
    name="embeddings",
    parse=_parse_embeddings,
    prompt_bound=lambda request: request.bound,
    upstream_body=lambda request, limit, kind, model: _embeddings_body(request, model=model),
    valid=_is_embedding_list,
    usage=_embedding_usage,
    generated=lambda payload: 0,
    tally=_no_stream_tally,
    stream_format=CHAT_STREAM,
    reply=_embeddings_reply,
)
