"""OpenAI's Responses API (`POST /v1/responses`), metered like chat (docs/endpoints.md):

- Input bound: metering.prompt_token_bound over the whole body with `input` as its items (a string
  counts as one item; `input_image` parts get the image allowance, `input_file` parts are refused as
  chat's `file` parts are). With `previous_response_id`, `conversation` or an `item_reference` input
  item the provider adds stored items we cannot see: CONTEXT_TOKENS (env PAYWALLS_RESPONSES_CONTEXT_TOKENS, default
  128000) are added to the bound, and the charge settles to the reported usage, never above the hold.
- Output bound: `max_output_tokens` (reasoning tokens included), or metering.NO_LIMIT_TOKENS; the held
  limit is always sent upstream as `max_output_tokens`.
- Fields: only PASS_THROUGH_FIELDS reach the provider; hosted tools that bill extra (`web_search*`,
  `file_search`, `code_interpreter`) are paid features the paywall must price (chat_pricing); other
  hosted tools, `background` and `prompt` (a stored prompt of unknown length) are refused.
- Usage: `response.usage` {input_tokens, output_tokens}; a stream reports it on its terminal event
  (`response.completed`, `response.incomplete`, `response.failed`), which the proxy forwards only after
  charging (read-your-writes, as [DONE] for chat).

The builders at the end shape our own replies (the paywall message) as Responses-API objects and
events; the demo provider uses them too."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from paywalls.billing import metering
from paywalls.billing.metering import Usage
from paywalls.billing.paywall import InvalidRequest
from paywalls.chat import request as chat_request
from paywalls.chat.request import REFUSED_FIELDS, unsupported
from paywalls.infra.config import settings

# Read once, when the module loads (a Lambda environment never changes).
CONTEXT_TOKENS = settings().responses_context_tokens
PASS_THROUGH_FIELDS = frozenset(
    {
        "model",
        "input",
        "instructions",
        "max_output_tokens",
        "stream",
        "stream_options",
        "temperature",
        "top_p",
        "top_logprobs",
        "text",  # output format (schemas are in the input bound)
        "reasoning",  # reasoning tokens are output tokens, within max_output_tokens
        "tools",  # function/custom tools, hosted ones as priced features (_features)
        "tool_choice",
        "parallel_tool_calls",
        "max_tool_calls",
        "truncation",
        "include",
        "metadata",
        "user",
        "safety_identifier",
        "prompt_cache_key",
        "store",
        "previous_response_id",  # module doc: CONTEXT_TOKENS more held
        "conversation",
        "service_tier",
    }
)
HOSTED_TOOL_FEATURES = {
    "web_search": "web_search",
    "web_search_preview": "web_search",
    "web_search_2025_08_26": "web_search",
    "web_search_preview_2025_03_11": "web_search",
    "file_search": "file_search",
    "code_interpreter": "code_interpreter",
}
RESPONSES_REFUSED = {
    "background": "background responses are polled later, after this request's hold has been settled",
    "prompt": "a stored prompt's length is unknown before the call, so it cannot be held for",
    **REFUSED_FIELDS,
}
TERMINAL_EVENTS = ("response.completed", "response.incomplete", "response.failed")
DELTA_EVENTS = (
    "response.output_text.delta",
    "response.refusal.delta",
    "response.function_call_arguments.delta",
    "response.reasoning_summary_text.delta",
    "response.reasoning_text.delta",
    "response.custom_tool_call_input.delta",
)


@dataclass(frozen=True)
class ResponsesRequest:
    body: dict[str, Any]
    model: str
    stream: bool
    requested_limit: int | None
    body_user: str | None
    features: Mapping[str, str] = field(default_factory=dict)
    n: int = 1
    fallback_models: tuple[str, ...] = ()
    client_wants_usage: bool = True  # the usage is part of every terminal event

    @property
    def stored_context(self) -> bool:
        """The provider adds stored items we cannot see: a previous response, a conversation, or an
        input item that references a stored one by id."""
        if self.body.get("previous_response_id") or self.body.get("conversation"):
            return True
        items = self.body.get("input")
        return isinstance(items, list) and any(i.get("type") == "item_reference" for i in items)


def parse(body: dict[str, Any]) -> ResponsesRequest:
    model = chat_request.model_of(body)
    items = body.get("input")
    if not (isinstance(items, str) and items) and not (
        isinstance(items, list) and items and all(isinstance(i, dict) for i in items)
    ):
        raise InvalidRequest("input must be a non-empty string or a non-empty array of input items", "input")
    chat_request.refuse_unknown_fields(body, PASS_THROUGH_FIELDS, RESPONSES_REFUSED)
    stream = chat_request.optional_field(body, "stream", bool, "a boolean")
    user = chat_request.optional_field(body, "user", str, "a string")
    chat_request.optional_field(body, "instructions", str, "a string")
    if isinstance(items, list):
        chat_request.refuse_file_parts(items, "input_file", "input_file parts", "input_text", "input")
    return ResponsesRequest(
        body=body,
        model=model,
        stream=bool(stream),
        requested_limit=chat_request._positive_int(body, "max_output_tokens"),
        body_user=user or None,
        features=_features(body),
    )


def _features(body: dict[str, Any]) -> dict[str, str]:
    used: dict[str, str] = {}
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
            raise InvalidRequest("tools must be an array of tool objects", "tools")
        for tool in tools:
            kind = tool.get("type")
            if kind in chat_request.CLIENT_TOOL_TYPES:
                continue
            if kind in HOSTED_TOOL_FEATURES:
                used.setdefault(HOSTED_TOOL_FEATURES[kind], "tools")
                continue
            raise unsupported(
                "tools",
                f"tools of type {str(kind)[:64]!r} are not supported: hosted tools are run and billed by the "
                "provider beyond the tokens. Declare function tools, or a priced web_search / file_search / "
                "code_interpreter tool.",
            )
    chat_request.service_tier_feature(body, used)
    return used


def prompt_bound(request: ResponsesRequest) -> int:
    bound = metering.prompt_token_bound(request.body, items_key="input")
    return bound + (CONTEXT_TOKENS if request.stored_context else 0)


def upstream_body(request: ResponsesRequest, *, limit: int, model: str) -> dict[str, Any]:
    if limit < 1:
        raise ValueError("a request is sent with the output limit it was held for, at least 1")
    return {**request.body, "model": model, "max_output_tokens": limit}


def is_response(payload: Any) -> bool:
    return isinstance(payload, dict) and payload.get("object") == "response" and isinstance(payload.get("output"), list)


def reported_usage(response: Any) -> Usage | None:
    usage = response.get("usage") if isinstance(response, dict) else None
    if not isinstance(usage, dict):
        return None
    prompt, completion = metering._count(usage.get("input_tokens")), metering._count(usage.get("output_tokens"))
    if prompt is None or completion is None:
        return None
    return Usage(prompt, completion, provider_cost=metering._provider_cost(usage.get("cost")))


def generated_bytes(response: Any) -> int:
    """UTF-8 bytes of what the model generated in a response's output items."""
    output = response.get("output") if isinstance(response, dict) else None
    total = 0
    for item in output if isinstance(output, list) else []:
        if not isinstance(item, dict):
            continue
        for name in ("arguments", "name", "input"):
            total += metering._text_bytes(item.get(name))
        for part in (item.get("content") or []) + (item.get("summary") or []):
            if isinstance(part, dict):
                total += metering._text_bytes(part.get("text")) + metering._text_bytes(part.get("refusal"))
    return total


class ResponsesTally:
    """metering.StreamTally for Responses events: usage from the terminal event, generated bytes from
    the deltas (for the estimate when no usage comes)."""

    def __init__(self) -> None:
        self.usage: Usage | None = None
        self.generated = 0
        self.finished = False

    def observe(self, event: dict[str, Any]) -> bool:
        kind = event.get("type")
        if kind in DELTA_EVENTS:
            self.generated += metering._text_bytes(event.get("delta"))
        elif kind in TERMINAL_EVENTS:
            self.finished = True
            self.usage = reported_usage(event.get("response")) or self.usage
        return True


def is_error_event(payload: dict[str, Any]) -> bool:
    return payload.get("type") == "error" or ("error" in payload and "type" not in payload)


def error_event(message: str, code: str) -> dict[str, Any]:
    """The event that ends a stream the provider broke (the Responses stream's own error event)."""
    return {"type": "error", "code": code, "message": message, "param": None, "sequence_number": 0}


# ---- Responses-API objects (our replies, and the demo provider's) ----------------------------------


def response_object(
    *,
    response_id: str,
    model: str,
    text: str,
    usage: dict[str, int] | None,
    status: str = "completed",
    max_output_tokens: int | None = None,
    created_at: int | None = None,
) -> dict[str, Any]:
    """A `response` whose output is one assistant message with `text`."""
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at or int(time.time()),
        "status": status,
        "error": None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": None,
        "max_output_tokens": max_output_tokens,
        "model": model,
        "output": [message_item(response_id, text)] if status != "in_progress" else [],
        "parallel_tool_calls": True,
        "temperature": None,
        "tool_choice": "auto",
        "tools": [],
        "top_p": None,
        "usage": usage,
    }


def message_item(response_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {
        "id": f"msg_{response_id.removeprefix('resp_')}",
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def usage_object(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": input_tokens + output_tokens,
    }


def text_events(
    *,
    response_id: str,
    model: str,
    deltas: list[str],
    usage: dict[str, int] | None,
    status: str = "completed",
    max_output_tokens: int | None = None,
) -> list[dict[str, Any]]:
    """The Responses event stream of one assistant message written as `deltas` (each event carries
    its `type`; sequence numbers from 0)."""
    created = int(time.time())
    text = "".join(deltas)
    item = message_item(response_id, text)
    started = response_object(
        response_id=response_id,
        model=model,
        text="",
        usage=None,
        status="in_progress",
        created_at=created,
        max_output_tokens=max_output_tokens,
    )
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": started},
        {"type": "response.in_progress", "response": started},
        {
            "type": "response.output_item.added",
            "output_index": 0,
            "item": {**item, "status": "in_progress", "content": []},
        },
        {
            "type": "response.content_part.added",
            "item_id": item["id"],
            "output_index": 0,
            "content_index": 0,
            "part": {"type": "output_text", "text": "", "annotations": []},
        },
    ]
    events += [
        {
            "type": "response.output_text.delta",
            "item_id": item["id"],
            "output_index": 0,
            "content_index": 0,
            "delta": delta,
            "logprobs": [],
        }
        for delta in deltas
    ]
    events += [
        {
            "type": "response.output_text.done",
            "item_id": item["id"],
            "output_index": 0,
            "content_index": 0,
            "text": text,
            "logprobs": [],
        },
        {
            "type": "response.content_part.done",
            "item_id": item["id"],
            "output_index": 0,
            "content_index": 0,
            "part": item["content"][0],
        },
        {"type": "response.output_item.done", "output_index": 0, "item": item},
        {
            "type": f"response.{status}",
            "response": response_object(
                response_id=response_id,
                model=model,
                text=text,
                usage=usage,
                status=status,
                created_at=created,
                max_output_tokens=max_output_tokens,
            ),
        },
    ]
    for number, event in enumerate(events):
        event["sequence_number"] = number
    return events
