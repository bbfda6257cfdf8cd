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

Debug: GET /_demo/requests?contains=TEXT lists the bodies received (newest first, last 500) whose
JSON contains TEXT, so tests can prove what reached the provider."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

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
)
_received: deque[dict[str, Any]] = deque(maxlen=500)


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
def received(contains: str = "") -> dict[str, Any]:
    data = [b for b in reversed(_received) if contains in json.dumps(b)]
    return {"object": "list", "data": data}


@app.post("/_demo/v1/chat/completions")
async def chat(request: Request) -> Any:
    if request.headers.get("authorization") != f"Bearer {DEMO_KEY}":
        return _error(401, "invalid demo provider key", kind="authentication_error")
    try:
        body = await request.json()
    except ValueError:
        return _error(400, "the body is not JSON")
    if not isinstance(body, dict):
        return _error(400, "the body must be a JSON object")
    _received.append(body)
    model = body.get("model", "demo/echo")
    if model == "demo/fail-500":
        return _error(500, "the demo provider failed on purpose", kind="server_error")
    if model == "demo/reject":
        return _error(400, "demo/reject refuses every request", param="messages")
    if model == "demo/rate-limit":
        response = _error(429, "slow down", kind="rate_limit_error")
        response.headers["Retry-After"] = "7"
        return response
    if model == "demo/hang":
        await asyncio.sleep(_hang_s())
    if model == "demo/garbage" and not body.get("stream"):
        return Response(b'{"id": "chatcmpl-garbage", "choices": [', media_type="application/json")
    usage = None if model == "demo/no-usage" else usage_of(body)
    model = "demo/tools" if model == "demo/swap" else model  # the model reported as the one that served
    if body.get("stream"):
        return StreamingResponse(_events(body, model, usage), media_type="text/event-stream")
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


async def _events(body: dict[str, Any], model: str, usage: dict[str, int] | None) -> AsyncIterator[bytes]:
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
