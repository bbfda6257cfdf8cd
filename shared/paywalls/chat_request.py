"""A client's chat completion request: the few fields metering needs, checked, and the body we send
upstream. Everything else (tools, response_format, vision parts, stop, temperature...) passes
through untouched: the upstream body is the client's body with only the completion limit (when
lowered, or set when the client set none) and `stream_options.include_usage` changed.

Refused because they cannot be paid for safely (SPEC §4.1):
- `file` content parts (PDFs, inline or by file_id): their token count is not bounded by anything we
  can measure before the call (pages are also sent as images);
- `route` without `models`. `models` (OpenRouter's fallbacks) is accepted; the caller must then
  check that every listed model is priced and hold at the highest of their prices."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from paywalls.paywall import InvalidRequest

LIMIT_FIELDS = ("max_completion_tokens", "max_tokens")
MAX_N = 128  # OpenAI's own ceiling for `n`
MAX_FALLBACK_MODELS = 8  # OpenRouter takes a few; more is a mistake, not a use


@dataclass(frozen=True)
class ChatRequest:
    body: dict[str, Any]  # the client's JSON body, never modified
    model: str
    stream: bool
    n: int
    requested_limit: int | None  # completion tokens per choice the client allows (None: no limit)
    limit_fields: tuple[str, ...]  # which limit fields the client set
    client_wants_usage: bool  # stream_options.include_usage as the client sent it
    body_user: str | None
    fallback_models: tuple[str, ...] = ()  # OpenRouter's `models`: the provider may serve any of them


def _positive_int(body: dict[str, Any], name: str, maximum: int | None = None) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1 or (maximum and value > maximum):
        limit = f" and at most {maximum}" if maximum else ""
        raise InvalidRequest(f"{name} must be an integer of at least 1{limit}", name)
    return value


def parse(body: dict[str, Any]) -> ChatRequest:
    model = body.get("model")
    if not isinstance(model, str) or not model.strip() or len(model) > 256:
        raise InvalidRequest("model is required: a model id such as the ones GET /v1/models lists", "model")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise InvalidRequest("messages must be a non-empty array of message objects", "messages")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequest("stream must be a boolean", "stream")
    stream_options = body.get("stream_options")
    if stream_options is not None and not isinstance(stream_options, dict):
        raise InvalidRequest("stream_options must be an object", "stream_options")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise InvalidRequest("user must be a string", "user")
    _refuse_file_parts(messages)
    fallback_models = _fallback_models(body)
    n = _positive_int(body, "n", MAX_N) or 1
    limits = {name: _positive_int(body, name) for name in LIMIT_FIELDS}
    set_limits = tuple(name for name, value in limits.items() if value is not None)
    return ChatRequest(
        body=body,
        model=model,
        stream=bool(stream),
        n=n,
        requested_limit=min((limits[f] for f in set_limits), default=None),  # type: ignore[type-var]
        limit_fields=set_limits,
        client_wants_usage=bool((stream_options or {}).get("include_usage")),
        body_user=user or None,
        fallback_models=fallback_models,
    )


def _refuse_file_parts(messages: list[dict[str, Any]]) -> None:
    for message in messages:
        content = message.get("content")
        if isinstance(content, list) and any(isinstance(p, dict) and p.get("type") == "file" for p in content):
            raise InvalidRequest(
                "file content parts are not supported: the size of a file's prompt cannot be known before the "
                "call, so it cannot be paid for in advance. Send the document's text as a text part instead.",
                "messages",
            )


def _fallback_models(body: dict[str, Any]) -> tuple[str, ...]:
    models = body.get("models")
    if models is None:
        if body.get("route") is not None:
            raise InvalidRequest("route is only accepted together with models", "route")
        return ()
    if (
        not isinstance(models, list)
        or not 1 <= len(models) <= MAX_FALLBACK_MODELS
        or not all(isinstance(m, str) and m.strip() and len(m) <= 256 for m in models)
    ):
        raise InvalidRequest(f"models must be an array of 1 to {MAX_FALLBACK_MODELS} model ids", "models")
    return tuple(models)


def default_limit_field(provider_kind: str) -> str:
    """The field for a limit the client did not set. OpenAI's reasoning models refuse `max_tokens`
    but every OpenAI chat model takes `max_completion_tokens`; other providers know `max_tokens`."""
    return "max_completion_tokens" if provider_kind == "openai" else "max_tokens"


def upstream_body(request: ChatRequest, *, send_limit: int | None, provider_kind: str) -> dict[str, Any]:
    if send_limit is None and not request.limit_fields:
        # A provider left without a limit may answer beyond the hold (SPEC §4.1): never send that.
        raise ValueError("a request without a completion limit must be sent with the limit it was held for")
    body = dict(request.body)
    if send_limit is not None:
        for name in request.limit_fields or (default_limit_field(provider_kind),):
            body[name] = send_limit
    if request.stream:
        # Usage on streams comes only when asked for; we always need it to charge the real usage.
        body["stream_options"] = {**(request.body.get("stream_options") or {}), "include_usage": True}
    return body
