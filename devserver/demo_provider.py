"""The built-in demo provider for `make run`: an OpenAI-compatible chat endpoint under /_demo/v1 that
streams back the last user message and reports real usage, so the whole product works offline.

Deterministic, so tests can predict every charge (`usage_of`): a "token" is a whitespace-separated
word; prompt tokens = words of every message's text + 1 per message; completion tokens = words
answered (per choice, summed over `n`), cut at max_completion_tokens / max_tokens (the smaller;
the two models below read only one of them).

Models (any other id behaves like demo/echo):
- demo/echo       echoes the last user message
- demo/slow       the same, pausing DEMO_CHUNK_DELAY_S (default 0.5 s) before each streamed word (a
                  non-streamed answer waits as long in all, as a model generating it would)
- demo/tools      calls the first declared tool with {"echo": <last user message>} (finish "tool_calls")
- demo/no-usage   like demo/echo but never reports usage
- demo/fail-500   answers 500 with an OpenAI-style error
- demo/garbage    answers 200 with a body that is not JSON (or a stream of non-JSON events)
- demo/hang       answers nothing for DEMO_HANG_S (default 20 s)
- demo/stall      streams the role chunk and the first word, then nothing for DEMO_HANG_S
- demo/reject     answers 400 invalid_request_error (param "messages")
- demo/rate-limit answers 429 with Retry-After: 7
- demo/swap       like demo/echo but reports `model: demo/tools`, as a provider serving another model
- demo/max-tokens-only             like demo/echo but honours only `max_tokens` (ignores the other)
- demo/max-completion-tokens-only  like demo/echo but honours only `max_completion_tokens`

- demo/embed      like demo/echo (a name for the embedding examples and tests)
- demo/cut        streams its first word (Responses: up to the first delta), then drops the connection;
                  a non-streamed answer is cut in the middle of its body

The same models are served by the Responses API (/_demo/v1/responses: JSON, or the Responses event
stream when `stream` is true) and embeddings (/_demo/v1/embeddings: a deterministic vector per input,
`dimensions` long, default 8; `encoding_format` float or base64; a string's tokens are its words, a
token array's its length).

Provider instances: /_demo/x/{instance}/v1/... serves the same endpoints with a fault chosen by the
instance name, `{mode}` or `{mode}.{label}` (the label tells instances apart): mode `ok` (no fault),
`fail-500`, `hang`, `cut` (as the models above), so fallback tests can point several providers of
one paywall at the demo. A provider that is down is a base URL on a closed port.

Debug: GET /_demo/requests?contains=TEXT lists the bodies received (newest first, last 500) whose
JSON contains TEXT, so tests can prove what reached the provider; `instance=` and `endpoint=` keep
those an instance (`default` for /_demo/v1) or an endpoint (chat, responses, embeddings) received."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import struct
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from paywalls.chat import responses as responses_api

app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

DEMO_KEY = "demo-provider-key"
# Every model the module doc lists: `make run` prices each on the demo paywall.
MODELS = (
    "demo/echo",
    "demo/slow",
    "demo/tools",
    "demo/no-usage",
    "demo/fail-500",
    "demo/garbage",
    "demo/hang",
    "demo/stall",
    "demo/reject",
    "demo/rate-limit",
    "demo/swap",
    "demo/max-tokens-only",
    "demo/max-completion-tokens-only",
    "demo/cut",
    "demo/embed",
)
INSTANCE_MODES = ("ok", "fail-500", "hang", "cut")
# (instance, endpoint, body) of each request received, newest last
_received: deque[tuple[str, str, dict[str, Any]]] = deque(maxlen=500)


def count_tokens(text: str) -> int:
    return len(text.split())


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _last_user_text(body: dict[str, Any]) -> str:
    messages = body.get("messages") or []
    return next(
        (_text_of(m.get("content")) for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "user"),
        "",
    )


# Models that read a single completion-limit field, as some providers do: the other is ignored.
ONE_LIMIT_FIELD = {
    "demo/max-tokens-only": "max_tokens",
    "demo/max-completion-tokens-only": "max_completion_tokens",
}


def _limit(body: dict[str, Any]) -> int | None:
    fields = (
        (ONE_LIMIT_FIELD[body["model"]],)
        if body.get("model") in ONE_LIMIT_FIELD
        else ("max_completion_tokens", "max_tokens")
    )
    limits = [v for v in (body.get(f) for f in fields) if isinstance(v, int)]
    return min(limits) if limits else None


def _tool_call(body: dict[str, Any]) -> dict[str, Any] | None:
    tools = body.get("tools") or []
    function = next(
        (t.get("function") for t in tools if isinstance(t, dict) and isinstance(t.get("function"), dict)), None
    )
    if body.get("model") != "demo/tools" or not function:
        return None
    arguments = json.dumps({"echo": _last_user_text(body)})
    return {"id": "call_demo0", "type": "function", "function": {"name": function.get("name"), "arguments": arguments}}


def _answer(body: dict[str, Any]) -> tuple[list[str], str]:
    """The words of one choice and its finish reason."""
    words = _last_user_text(body).split() or ["(empty)"]
    limit = _limit(body)
    if limit is not None and limit < len(words):
        return words[:limit], "length"
    return words, "stop"


def usage_of(body: dict[str, Any]) -> dict[str, int]:
    """The usage the demo provider reports for a request body (tests predict charges with it)."""
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    prompt = sum(count_tokens(_text_of(m.get("content"))) + 1 for m in messages)
    n = body.get("n") or 1
    call = _tool_call(body)
    per_choice = count_tokens(call["function"]["arguments"]) if call else len(_answer(body)[0])
    completion = per_choice * n
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _error(status: int, message: str, *, kind: str = "invalid_request_error", param: str | None = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": None}}, status_code=status)


def _hang_s() -> float:
    return float(os.environ.get("DEMO_HANG_S", "20"))


@app.get("/_demo/requests")
def received(contains: str = "", instance: str = "", endpoint: str = "") -> dict[str, Any]:
    data = [
        b
        for i, e, b in reversed(_received)
        if contains in json.dumps(b) and instance in ("", i) and endpoint in ("", e)
    ]
    return {"object": "list", "data": data}


class _Fault(Exception):
    """Raised inside a streamed body: uvicorn drops the connection mid-answer (mode/model `cut`)."""


async def _read(request: Request, instance: str, endpoint: str) -> dict[str, Any] | Response:
    """The body of a call (recorded), or the error/fault answer that replaces the endpoint's own."""
    if request.headers.get("authorization") != f"Bearer {DEMO_KEY}":
        return _error(401, "invalid demo provider key", kind="authentication_error")
    try:
        body = await request.json()
    except ValueError:
        return _error(400, "the body is not JSON")
    if not isinstance(body, dict):
        return _error(400, "the body must be a JSON object")
    _received.append((instance, endpoint, body))
    mode = instance.split(".", 1)[0]
    model = body.get("model", "demo/echo")
    if mode == "fail-500" or model == "demo/fail-500":
        return _error(500, "the demo provider failed on purpose", kind="server_error")
    if model == "demo/reject":
        return _error(400, "demo/reject refuses every request", param="messages")
    if model == "demo/rate-limit":
        response = _error(429, "slow down", kind="rate_limit_error")
        response.headers["Retry-After"] = "7"
        return response
    if mode == "hang" or model == "demo/hang":
        await asyncio.sleep(_hang_s())
    if mode == "cut" or model == "demo/cut":
        body["_cut"] = True  # read by the endpoint: cut the answer after its first part
    return body


def _instance(instance: str) -> str | Response:
    if instance.split(".", 1)[0] not in INSTANCE_MODES:
        return _error(404, f"unknown demo provider instance {instance[:40]!r}: modes {', '.join(INSTANCE_MODES)}")
    return instance


async def _cut_body(data: bytes) -> AsyncIterator[bytes]:
    yield data[: len(data) // 2]
    raise _Fault("the demo provider drops the connection (cut)")


_Handler = Callable[[dict[str, Any], bool], Awaitable[Any]]


def _endpoint(path: str, endpoint: str, *, garbage: bytes | None = None) -> Callable[[_Handler], _Handler]:
    """Serve `handler(body, cut)` at /_demo/v1/{path} and at /_demo/x/{instance}/v1/{path}.

    Both routes share what comes before and after the endpoint's own answer, so every endpoint fails
    the same way: `_read` (key check, recording, the instance's and the model's faults) first; a
    non-streamed demo/garbage call gets `garbage` (where given) instead of an answer; and a JSON answer
    (a dict) of a `cut` call is dropped in the middle of its body."""

    def register(handler: _Handler) -> _Handler:
        async def serve(request: Request, instance: str) -> Any:
            read = await _read(request, instance, endpoint)
            if isinstance(read, Response):
                return read
            cut = bool(read.pop("_cut", False))
            if garbage is not None and read.get("model") == "demo/garbage" and not read.get("stream"):
                return Response(garbage, media_type="application/json")
            answer = await handler(read, cut)
            if cut and isinstance(answer, dict):
                return StreamingResponse(_cut_body(json.dumps(answer).encode()), media_type="application/json")
            return answer

        async def default(request: Request) -> Any:
            return await serve(request, "default")

        async def on_instance(request: Request, instance: str) -> Any:
            checked = _instance(instance)
            return checked if isinstance(checked, Response) else await serve(request, checked)

        app.post(f"/_demo/v1/{path}", name=endpoint)(default)
        app.post(f"/_demo/x/{{instance}}/v1/{path}", name=f"instance_{endpoint}")(on_instance)
        return handler

    return register


@_endpoint("chat/completions", "chat", garbage=b'{"id": "chatcmpl-garbage", "choices": [')
async def _chat(body: dict[str, Any], cut: bool) -> Any:
    model = body.get("model", "demo/echo")
    usage = None if model == "demo/no-usage" else usage_of(body)
    model = "demo/tools" if model == "demo/swap" else model  # the model reported as the one that served
    if body.get("stream"):
        return StreamingResponse(_events(body, model, usage, cut), media_type="text/event-stream")
    if model == "demo/slow":
        await asyncio.sleep(float(os.environ.get("DEMO_CHUNK_DELAY_S", "0.5")) * len(_answer(body)[0]))
    n = body.get("n") or 1
    call = _tool_call(body)
    if call:
        message: dict[str, Any] = {"role": "assistant", "content": None, "tool_calls": [call]}
        finish = "tool_calls"
    else:
        words, finish = _answer(body)
        message = {"role": "assistant", "content": " ".join(words)}
    completion: dict[str, Any] = {
        "id": "chatcmpl-demo" + uuid.uuid4().hex[:16],
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": i, "message": message, "finish_reason": finish} for i in range(n)],
    }
    if usage is not None:
        completion["usage"] = usage
    return completion


async def _events(
    body: dict[str, Any], model: str, usage: dict[str, int] | None, cut: bool = False
) -> AsyncIterator[bytes]:
    completion_id = "chatcmpl-demo" + uuid.uuid4().hex[:16]
    created = int(time.time())
    n = body.get("n") or 1
    delay = float(os.environ.get("DEMO_CHUNK_DELAY_S", "0.5")) if model == "demo/slow" else 0.0

    def chunk(index: int, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        data = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [{"index": index, "delta": delta, "finish_reason": finish_reason}],
        }
        return f"data: {json.dumps(data)}\n\n".encode()

    if model == "demo/garbage":
        yield b"data: {this is not json\n\n"
        return
    call = _tool_call(body)
    for i in range(n):
        if call:
            head = {**call, "index": 0, "function": {"name": call["function"]["name"], "arguments": ""}}
            yield chunk(i, {"role": "assistant", "content": None, "tool_calls": [head]})
            arguments = call["function"]["arguments"]
            for start in range(0, len(arguments), 8):
                yield chunk(i, {"tool_calls": [{"index": 0, "function": {"arguments": arguments[start : start + 8]}}]})
            yield chunk(i, {}, "tool_calls")
            continue
        words, finish = _answer(body)
        yield chunk(i, {"role": "assistant", "content": ""})
        for w, word in enumerate(words):
            if delay:
                await asyncio.sleep(delay)
            yield chunk(i, {"content": word if w == 0 else " " + word})
            if model == "demo/stall":
                await asyncio.sleep(_hang_s())
            if cut:
                raise _Fault("the demo provider drops the connection (cut)")
        yield chunk(i, {}, finish)
    if usage is not None and (body.get("stream_options") or {}).get("include_usage"):
        data = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [],
            "usage": usage,
        }
        yield f"data: {json.dumps(data)}\n\n".encode()
    yield b"data: [DONE]\n\n"


# ---- Responses API --------------------------------------------------------------------------------


def _input_texts(body: dict[str, Any]) -> list[str]:
    """The text of each input item (a string input is one user item)."""
    items = body.get("input")
    if isinstance(items, str):
        return [items]
    texts = []
    for item in items if isinstance(items, list) else []:
        content = item.get("content") if isinstance(item, dict) else None
        if isinstance(content, list):
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        texts.append(content if isinstance(content, str) else "")
    return texts


def responses_usage_of(body: dict[str, Any]) -> dict[str, Any]:
    """The usage the demo provider reports for a Responses body: input tokens = words of the
    instructions + words of each input item + 1 per item; output = words answered (cut at
    max_output_tokens)."""
    texts = _input_texts(body)
    prompt = count_tokens(body.get("instructions") or "") + sum(count_tokens(t) + 1 for t in texts)
    return responses_api.usage_object(prompt, len(_responses_answer(body)[0]))


def _responses_answer(body: dict[str, Any]) -> tuple[list[str], str]:
    texts = _input_texts(body)
    words = (texts[-1] if texts else "").split() or ["(empty)"]
    limit = body.get("max_output_tokens")
    if isinstance(limit, int) and limit < len(words):
        return words[:limit], "incomplete"
    return words, "completed"


@_endpoint("responses", "responses", garbage=b'{"id": "resp_garbage", "output": [')
async def _responses(body: dict[str, Any], cut: bool) -> Any:
    model = body.get("model", "demo/echo")
    usage = None if model == "demo/no-usage" else responses_usage_of(body)
    words, status = _responses_answer(body)
    response_id = "resp_demo" + uuid.uuid4().hex[:16]
    limit = body.get("max_output_tokens")
    if body.get("stream"):
        deltas = [word if w == 0 else " " + word for w, word in enumerate(words)]
        events = responses_api.text_events(
            response_id=response_id, model=model, deltas=deltas, usage=usage, status=status, max_output_tokens=limit
        )
        return StreamingResponse(_response_events(model, events, cut), media_type="text/event-stream")
    return responses_api.response_object(
        response_id=response_id, model=model, text=" ".join(words), usage=usage, status=status, max_output_tokens=limit
    )


async def _response_events(model: str, events: list[dict[str, Any]], cut: bool) -> AsyncIterator[bytes]:
    delay = float(os.environ.get("DEMO_CHUNK_DELAY_S", "0.5")) if model == "demo/slow" else 0.0
    if model == "demo/garbage":
        yield b"event: response.created\ndata: {this is not json\n\n"
        return
    for event in events:
        if event["type"] == "response.output_text.delta":
            if delay:
                await asyncio.sleep(delay)
            if model == "demo/stall" and event["sequence_number"] > 4:
                await asyncio.sleep(_hang_s())
        yield f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()
        if cut and event["type"] == "response.output_text.delta":
            raise _Fault("the demo provider drops the connection (cut)")


# ---- embeddings -----------------------------------------------------------------------------------


def _embedding_inputs(body: dict[str, Any]) -> list[Any]:
    items = body.get("input")
    if isinstance(items, str) or (isinstance(items, list) and items and all(isinstance(t, int) for t in items)):
        return [items]
    return items if isinstance(items, list) else []


def embeddings_usage_of(body: dict[str, Any]) -> dict[str, int]:
    """prompt tokens = words of each string input + the length of each token array."""
    tokens = sum(count_tokens(i) if isinstance(i, str) else len(i) for i in _embedding_inputs(body))
    return {"prompt_tokens": tokens, "total_tokens": tokens}


def embedding_of(item: Any, dimensions: int) -> list[float]:
    """A deterministic unit-range vector for one input."""
    seed = hashlib.sha256(json.dumps(item).encode()).digest()
    return [round(seed[i % 32] / 127.5 - 1, 6) for i in range(dimensions)]


@_endpoint("embeddings", "embeddings")
async def _embeddings(body: dict[str, Any], cut: bool) -> Any:
    if body.get("model") == "demo/slow":  # a model that takes a while, as demo/slow does for chat
        await asyncio.sleep(float(os.environ.get("DEMO_CHUNK_DELAY_S", "0.5")) * len(_embedding_inputs(body)))
    dimensions = body.get("dimensions") or 8
    data = []
    for index, item in enumerate(_embedding_inputs(body)):
        vector = embedding_of(item, dimensions)
        value: Any = vector
        if body.get("encoding_format") == "base64":
            value = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
        data.append({"object": "embedding", "index": index, "embedding": value})
    answer: dict[str, Any] = {"object": "list", "data": data, "model": body.get("model", "demo/embed")}
    if body.get("model") != "demo/no-usage":
        answer["usage"] = embeddings_usage_of(body)
    return answer
