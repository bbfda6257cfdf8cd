"""Replies the proxy writes itself, shaped as OpenAI chat completions so every client renders them:
the paywall-required message (SPEC §2: HTTP 200, an assistant message with the link, nothing
charged) in its non-streaming and streaming forms, and the error event that ends a broken stream."""

from __future__ import annotations

import time
from typing import Any

ZERO_USAGE = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}


def _completion_id(request_id: str) -> str:
    return f"chatcmpl-{request_id}"


def paywall_completion(*, model: str, text: str, request_id: str, n: int = 1) -> dict[str, Any]:
    """A `chat.completion` whose every choice is the paywall message (finish_reason "stop")."""
    return {
        "id": _completion_id(request_id),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": i,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
            for i in range(n)
        ],
        "usage": dict(ZERO_USAGE),
    }


def paywall_chunks(
    *, model: str, text: str, request_id: str, n: int = 1, include_usage: bool = False
) -> list[dict[str, Any]]:
    """The same message as `chat.completion.chunk`s: role + text, then finish_reason "stop", then
    (if the client asked for usage) the usage-only chunk. The caller ends the stream with [DONE]."""
    created = int(time.time())

    def chunk(choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
        return {
            "id": _completion_id(request_id),
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": choices,
            **extra,
        }

    chunks = [
        chunk([{"index": i, "delta": {"role": "assistant", "content": text}, "finish_reason": None}]) for i in range(n)
    ]
    chunks += [chunk([{"index": i, "delta": {}, "finish_reason": "stop"}]) for i in range(n)]
    if include_usage:
        chunks.append(chunk([], usage=dict(ZERO_USAGE)))
    return chunks


def stream_error(message: str, *, code: str = "provider_error") -> dict[str, Any]:
    """The event that ends a stream the provider broke; OpenAI's SDKs raise it as an APIError."""
    return {"error": {"message": message, "type": "api_error", "param": None, "code": code}}
