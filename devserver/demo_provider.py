"""The built-in demo provider (`demo/echo`) for `make run`: an OpenAI-compatible chat endpoint that
streams back the last user message and reports real usage, so the whole product works offline.

Token counts are words (whitespace-separated pieces): deterministic, so tests can predict charges.
`demo/slow` pauses between chunks (DEMO_CHUNK_DELAY_S, default 0.5 s) to prove streaming is real."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

DEMO_KEY = "demo-provider-key"


def count_tokens(text: str) -> int:
    return len(text.split())


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(p.get("text", "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


def _reply(body: dict[str, Any]) -> tuple[str, int]:
    messages = body.get("messages") or []
    prompt_tokens = sum(count_tokens(_text_of(m.get("content"))) + 1 for m in messages if isinstance(m, dict))
    last_user = next(
        (_text_of(m.get("content")) for m in reversed(messages) if isinstance(m, dict) and m.get("role") == "user"),
        "",
    )
    words = last_user.split() or ["(empty)"]
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if isinstance(limit, int) and limit >= 0:
        words = words[:limit]
    return " ".join(words), prompt_tokens


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse(
        {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}},
        status_code=status,
    )


@app.post("/_demo/v1/chat/completions")
async def chat(request: Request) -> Any:
    if request.headers.get("authorization") != f"Bearer {DEMO_KEY}":
        return _error(401, "invalid demo provider key")
    body = await request.json()
    model = body.get("model", "demo/echo")
    text, prompt_tokens = _reply(body)
    words = text.split(" ")
    completion_tokens = len(words) if text else 0
    usage = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    finish = "length" if text != _reply({**body, "max_tokens": None, "max_completion_tokens": None})[0] else "stop"
    completion_id = "chatcmpl-demo" + uuid.uuid4().hex[:16]
    created = int(time.time())
    if not body.get("stream"):
        return {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
            "usage": usage,
        }
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    delay = float(os.environ.get("DEMO_CHUNK_DELAY_S", "0.5")) if model == "demo/slow" else 0.0

    async def events() -> AsyncIterator[bytes]:
        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            data = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
            }
            return f"data: {json.dumps(data)}\n\n".encode()

        yield chunk({"role": "assistant", "content": ""})
        for i, word in enumerate(words):
            if delay:
                await asyncio.sleep(delay)
            yield chunk({"content": word if i == 0 else " " + word})
        yield chunk({}, finish)
        if include_usage:
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

    return StreamingResponse(events(), media_type="text/event-stream")
