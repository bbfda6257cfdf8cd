"""Framing of the Server-Sent Events we send (parsing what providers send is httpx-sse's job)."""

from __future__ import annotations

import json
from typing import Any

DONE = b"data: [DONE]\n\n"


def event(data: str, name: str | None = None) -> bytes:
    """One `data:` event (named when `name` is given, as Responses streams are); a multi-line payload
    keeps one `data:` line per line, as the format says."""
    head = f"event: {name}\n" if name else ""
    return (head + "".join(f"data: {line}\n" for line in data.split("\n"))).encode() + b"\n"


def json_event(payload: Any, name: str | None = None) -> bytes:
    return event(json.dumps(payload, separators=(",", ":"), ensure_ascii=False), name)
