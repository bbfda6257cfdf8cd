"""A client's chat completion request: checked against what can be paid for, the few fields metering
needs, and the body we send upstream.

Pass-through (docs/DESIGN.md "Pass-through fields"): a provider bills more than tokens for some
request fields (web search, audio, priority processing, routing to a dearer provider...), and a
field we do not know may be one of them. So only an allow-list reaches the provider:
- PASS_THROUGH_FIELDS go as the client sent them: each costs nothing beyond the tokens we meter;
- FEATURE_FIELDS go when their value costs nothing extra (`service_tier: "auto"`), or as a paid
  feature (`ChatRequest.features`) that the paywall must price (chat_pricing adds its surcharge);
- REFUSED_FIELDS and every unknown field are refused with a 400 naming the field (code
  `unsupported_parameter`). A field sent as null counts as absent and passes.

The upstream body is the client's body with only the completion limits and
`stream_options.include_usage` changed: every completion-limit field sent (`upstream_limit_fields`)
carries the held per-choice limit, so whichever of them a provider honours it cannot generate more
than was held (SPEC §4.1).

Also refused because they cannot be paid for safely (SPEC §4.1):
- `file` content parts (PDFs, inline or by file_id): their token count is not bounded by anything we
  can measure before the call (pages are also sent as images);
- server-side tools in `tools` (any type but `function` / `custom`, e.g. `openrouter:web_search`):
  the provider runs them 0..N times per request, each billed;
- `route` without `models`. `models` (OpenRouter's fallbacks) is accepted; the caller must then
  check that every listed model is priced and hold at the highest of their prices."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from paywalls.billing.paywall import InvalidRequest

LIMIT_FIELDS = ("max_completion_tokens", "max_tokens")
MAX_N = 128  # OpenAI's own ceiling for `n`
MAX_FALLBACK_MODELS = 8  # OpenRouter takes a few; more is a mistake, not a use
MAX_WEB_RESULTS = 5  # OpenRouter's web plugin default: what a web_search surcharge is set for
UNSUPPORTED = "unsupported_parameter"

# Top-level fields passed through as the client sent them. Each costs nothing beyond the tokens
# metered: its text is part of the prompt bound, or what it makes the model generate is completion
# tokens within the held limit. Why each one is safe: docs/DESIGN.md "Pass-through fields".
PASS_THROUGH_FIELDS = frozenset(
    {
        # metered by the proxy itself
        "model",
        "messages",
        "n",
        "max_tokens",
        "max_completion_tokens",
        "stream",
        "stream_options",
        # sampling and output shape (OpenAI)
        "temperature",
        "top_p",
        "stop",
        "seed",
        "presence_penalty",
        "frequency_penalty",
        "logit_bias",
        "logprobs",
        "top_logprobs",
        "response_format",
        "reasoning_effort",
        "verbosity",
        # client-side tools (checked: functions only, see _check_tools)
        "tools",
        "tool_choice",
        "parallel_tool_calls",
        "functions",
        "function_call",
        # identifiers and stored completions (no charge)
        "user",
        "safety_identifier",
        "prompt_cache_key",
        "store",
        "metadata",
        # common vendor sampling knobs (OpenRouter, Together, vLLM...)
        "top_k",
        "min_p",
        "top_a",
        "repetition_penalty",
        # OpenRouter / Anthropic-compatible
        "models",  # fallbacks: held and charged at the dearest listed price
        "route",
        "transforms",  # middle-out compression: only ever fewer prompt tokens
        "reasoning",  # reasoning tokens are completion tokens; its max_tokens is clamped to the held limit
        "include_reasoning",
        "thinking",  # Anthropic: the thinking budget is part of max_tokens
        "usage",  # OpenRouter usage accounting in the answer
    }
)

# Fields that pass when their value costs nothing extra, else only as a priced feature.
FEATURE_FIELDS = frozenset({"web_search_options", "plugins", "audio", "modalities", "service_tier", "provider"})

# Known fields refused whatever their value, and why.
REFUSED_FIELDS = {
    "prediction": (
        "Predicted Outputs bill the rejected prediction tokens as completion tokens on top of the "
        "completion limit, so their cost cannot be held before the call"
    ),
}

FREE_SERVICE_TIERS = (None, "auto", "default", "flex")  # flex costs less than default, never more
CLIENT_TOOL_TYPES = ("function", "custom")  # run by the client: only their definitions are billed
WEB_PLUGIN_FIELDS = frozenset({"id", "max_results", "search_prompt", "engine"})
WEB_PLUGIN_ENGINES = ("native", "exa")

# OpenRouter `provider` routing preferences that can never pick a dearer provider than the default
# (which routes by price): value -> still safe. Anything else there (order, only, ignore, sort by
# throughput or latency, quantizations, data_collection "deny", zdr...) narrows or reorders the
# providers and may pick a dearer one: the provider_routing feature.
SAFE_ROUTING = {
    "allow_fallbacks": lambda v: isinstance(v, bool),
    "max_price": lambda v: isinstance(v, dict),  # only ever excludes dearer providers
    "sort": lambda v: v == "price",
    "data_collection": lambda v: v == "allow",
    "require_parameters": lambda v: v is False,
}

# Each provider kind's completion-limit fields, all sent with the held limit. OpenAI refuses
# max_tokens and max_completion_tokens together (invalid_parameter_combination) and honours
# max_completion_tokens on every chat model (reasoning models refuse max_tokens), so it gets that one
# alone; OpenRouter, Together and Anthropic's OpenAI-compatible endpoint honour max_tokens.
KIND_LIMIT_FIELDS = {
    "openai": ("max_completion_tokens",),
    "openrouter": ("max_tokens",),
    "together": ("max_tokens",),
    "anthropic": ("max_tokens",),
}


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
    features: Mapping[str, str] = field(default_factory=dict)  # paid feature -> the field that asks for it


def unsupported(param: str, message: str) -> InvalidRequest:
    return InvalidRequest(message, param, code=UNSUPPORTED)


def _positive_int(
    body: Mapping[str, Any], name: str, maximum: int | None = None, *, within: str | None = None
) -> int | None:
    """`body[name]` as a positive int, or None; `within` names the top-level field it sits in."""
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1 or (maximum and value > maximum):
        limit = f" and at most {maximum}" if maximum else ""
        label = f"{within}.{name}" if within else name
        raise InvalidRequest(f"{label} must be an integer of at least 1{limit}", within or name)
    return value


def optional_field(body: Mapping[str, Any], name: str, kind: type, described: str) -> Any:
    """`body[name]`, None when absent; a value not of `kind` is a 400 naming the field ("NAME must be
    DESCRIBED"). Shared by every metered endpoint's parse (chat/responses.py, chat/embeddings.py)."""
    value = body.get(name)
    if value is not None and not isinstance(value, kind):
        raise InvalidRequest(f"{name} must be {described}", name)
    return value


def model_of(body: dict[str, Any]) -> str:
    """The requested model id (every metered endpoint's body has one)."""
    model = body.get("model")
    if not isinstance(model, str) or not model.strip() or len(model) > 256:
        raise InvalidRequest("model is required: a model id such as the ones GET /v1/models lists", "model")
    return model


def parse(body: dict[str, Any]) -> ChatRequest:
    model = model_of(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise InvalidRequest("messages must be a non-empty array of message objects", "messages")
    refuse_unknown_fields(body, PASS_THROUGH_FIELDS | FEATURE_FIELDS)
    stream = optional_field(body, "stream", bool, "a boolean")
    stream_options = optional_field(body, "stream_options", dict, "an object")
    user = optional_field(body, "user", str, "a string")
    refuse_file_parts(messages, "file", "file content parts", "a text part", "messages")
    _check_tools(body.get("tools"))
    _check_reasoning(body.get("reasoning"))
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
        features=_features(body, messages),
    )


def refuse_unknown_fields(
    body: dict[str, Any], allowed: frozenset[str], refused: Mapping[str, str] = REFUSED_FIELDS
) -> None:
    """Every field not `allowed` is refused (400 naming it); `refused` says why for known ones.
    Shared by every metered endpoint (chat/responses.py, chat/embeddings.py)."""
    for name, value in body.items():
        if value is None or name in allowed:
            continue
        shown = name[:64]
        if name in refused:
            raise unsupported(name, f"{name} is not supported: {refused[name]}.")
        raise unsupported(
            shown,
            f"{shown} is not supported here: only fields known to cost nothing beyond the metered tokens "
            "are passed to the provider, so that no request can cost more than it was charged.",
        )


def _features(body: dict[str, Any], messages: list[dict[str, Any]]) -> dict[str, str]:
    """The paid features the request asks for, each with the field that asks for it."""
    used: dict[str, str] = {}
    if body.get("web_search_options") is not None:
        if not isinstance(body["web_search_options"], dict):
            raise InvalidRequest("web_search_options must be an object", "web_search_options")
        used.setdefault("web_search", "web_search_options")
    if _check_plugins(body.get("plugins")):
        used.setdefault("web_search", "plugins")
    if body.get("audio") is not None:
        used.setdefault("audio", "audio")
    modalities = body.get("modalities")
    if modalities is not None:
        if not isinstance(modalities, list) or not all(isinstance(m, str) for m in modalities):
            raise InvalidRequest("modalities must be an array of strings", "modalities")
        if "audio" in modalities:
            used.setdefault("audio", "modalities")
    if _has_audio(messages):
        # Audio input tokens are billed at audio rates, several times the text price of the same model.
        used.setdefault("audio", "messages")
    service_tier_feature(body, used)
    provider = body.get("provider")
    if provider is not None:
        if not isinstance(provider, dict):
            raise InvalidRequest("provider must be an object of routing preferences", "provider")
        if any(name not in SAFE_ROUTING or not SAFE_ROUTING[name](value) for name, value in provider.items()):
            used.setdefault("provider_routing", "provider")
    return used


def service_tier_feature(body: dict[str, Any], used: dict[str, str]) -> None:
    """`service_tier: priority` is the priority_tier feature; the free tiers pass; others are refused."""
    tier = body.get("service_tier")
    if tier == "priority":
        used.setdefault("priority_tier", "service_tier")
    elif tier not in FREE_SERVICE_TIERS:
        raise unsupported(
            "service_tier", "service_tier must be auto, default, flex or priority (priority only where priced)"
        )


def _check_plugins(plugins: Any) -> bool:
    """OpenRouter plugins: only web search, with at most MAX_WEB_RESULTS results (each one billed).
    True if web search is asked for."""
    if plugins is None:
        return False
    if not isinstance(plugins, list) or not all(isinstance(p, dict) for p in plugins):
        raise InvalidRequest("plugins must be an array of plugin objects", "plugins")
    for plugin in plugins:
        if plugin.get("id") != "web" or not set(plugin) <= WEB_PLUGIN_FIELDS:
            raise unsupported(
                "plugins",
                "only the web plugin is supported ({id: web, max_results?, search_prompt?, engine?}): "
                "other plugins are billed beyond the metered tokens",
            )
        _positive_int(plugin, "max_results", MAX_WEB_RESULTS, within="plugins")
        if plugin.get("engine") not in (None, *WEB_PLUGIN_ENGINES):
            raise unsupported("plugins", f"the web plugin's engine must be one of {', '.join(WEB_PLUGIN_ENGINES)}")
    return bool(plugins)


def _has_audio(messages: list[dict[str, Any]]) -> bool:
    for message in messages:
        if message.get("audio") is not None:  # an earlier audio answer, sent back as audio input
            return True
        content = message.get("content")
        if isinstance(content, list) and any(isinstance(p, dict) and p.get("type") == "input_audio" for p in content):
            return True
    return False


def _check_tools(tools: Any) -> None:
    if tools is None:
        return
    if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
        raise InvalidRequest("tools must be an array of tool objects", "tools")
    for tool in tools:
        if tool.get("type") not in CLIENT_TOOL_TYPES:
            raise unsupported(
                "tools",
                f"tools of type {str(tool.get('type'))[:64]!r} are not supported: server-side tools are run and "
                "billed by the provider, any number of times per request. Declare function tools instead.",
            )


def _check_reasoning(reasoning: Any) -> None:
    if reasoning is None:
        return
    if not isinstance(reasoning, dict):
        raise InvalidRequest("reasoning must be an object", "reasoning")
    _positive_int(reasoning, "max_tokens", within="reasoning")


def refuse_file_parts(items: list[dict[str, Any]], part_type: str, parts: str, text_part: str, param: str) -> None:
    """A content part of `part_type` (a file) in any of `items` is refused: the size of its prompt
    cannot be known before the call, so it cannot be held for. Shared by chat/responses.py; `parts`
    and `text_part` name the endpoint's own part types in the message."""
    for item in items:
        content = item.get("content")
        if isinstance(content, list) and any(isinstance(p, dict) and p.get("type") == part_type for p in content):
            raise InvalidRequest(
                f"{parts} are not supported: the size of a file's prompt cannot be known before the "
                f"call, so it cannot be paid for in advance. Send the document's text as {text_part} instead.",
                param,
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
    """The provider kind's own completion-limit field (always sent, see upstream_limit_fields)."""
    return "max_completion_tokens" if provider_kind == "openai" else "max_tokens"


def upstream_limit_fields(provider_kind: str, client_fields: tuple[str, ...]) -> tuple[str, ...]:
    """The completion-limit fields sent upstream, every one with the held limit. Known kinds get
    their own field(s) (KIND_LIMIT_FIELDS; a client's other field is dropped). An openai-compatible
    server is unknown: the field its client chose stays (the server may read only that one), and
    max_tokens, which OpenAI-compatible servers read, is always added."""
    own = KIND_LIMIT_FIELDS.get(provider_kind)
    if own is not None:
        return own
    return tuple(name for name in LIMIT_FIELDS if name in client_fields or name == default_limit_field(provider_kind))


def upstream_body(request: ChatRequest, *, limit: int, provider_kind: str) -> dict[str, Any]:
    """The body sent to the provider: `limit` is the completion tokens per choice that were held."""
    if limit < 1:
        raise ValueError("a request is sent with the completion limit it was held for, at least 1")
    body = dict(request.body)
    sent = upstream_limit_fields(provider_kind, request.limit_fields)
    for name in LIMIT_FIELDS:
        if name in sent:
            body[name] = limit
        else:
            body.pop(name, None)
    reasoning = body.get("reasoning")
    if isinstance(reasoning, dict) and isinstance(reasoning.get("max_tokens"), int):
        # A reasoning budget is a completion limit too: never above what was held.
        body["reasoning"] = {**reasoning, "max_tokens": min(reasoning["max_tokens"], limit)}
    if request.stream:
        # Usage on streams comes only when asked for; we always need it to charge the real usage.
        body["stream_options"] = {**(request.body.get("stream_options") or {}), "include_usage": True}
    return body
