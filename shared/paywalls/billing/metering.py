"""Metering rules for proxied chat completions (SPEC §4): how much to hold before calling the
provider, which completion limit to send, and what to charge afterwards. Pure functions, no I/O.

Hold = cost(prompt upper bound, completion tokens the request may produce), at the paywall's price.

Prompt upper bound (`prompt_token_bound`): byte-level BPE (and SentencePiece with byte fallback)
tokens are at least one byte of the text they encode, so the UTF-8 length of the whole request
serialized as JSON (every message, tool, schema and option) bounds the text tokens from above.
On top come allowances for what the provider adds or what bytes do not measure:
- PER_MESSAGE_TOKENS per message (chat-template markers: role, start/end tokens);
- REQUEST_TOKENS once (reply priming, template preamble);
- TOOLS_TOKENS when tools/functions are declared (tool-use system prompts, e.g. Anthropic's ~350);
- per image part IMAGE_TOKENS (IMAGE_TOKENS_LOW for `detail: "low"`) instead of the bytes of its
  URL / base64 data, which are not tokenized as text. IMAGE_TOKENS covers the largest per-image
  count in OpenAI's published vision tables (gpt-4o-mini, high detail, 2048x768: 48,169 tokens).
  `file` parts (PDFs) never get here: no byte count bounds a PDF's tokens (its pages are also sent
  as images), so chat_request refuses them.

Completion tokens: the client's `max_completion_tokens` / `max_tokens` (the smaller if both) times
`n`. A request without a limit is held for NO_LIMIT_TOKENS per choice (env
PAYWALLS_DEFAULT_MAX_COMPLETION_TOKENS, default 4096). When the balance does not cover the limit, it
is lowered to the largest value the balance covers. If not even one completion token is covered, the
user gets the paywall reply instead. The limit held per choice (`HoldPlan.tokens_per_choice`) is what
every completion-limit field sent upstream carries (chat_request.upstream_body), whatever the client
set: a provider that honours a larger field than the smaller one held for, or that is left without
a limit, would answer beyond the hold (SPEC §4.1).

Charge: cost(reported prompt_tokens, reported completion_tokens). If the provider reports no usage,
the charge is the documented conservative estimate `estimated_usage`: the prompt upper bound plus
one token per UTF-8 byte of generated text (content, refusal, reasoning, tool-call names and
arguments), the completion part capped at the completion tokens held, so the estimate never
exceeds the hold.

Fallback models (OpenRouter's `models`): the provider may serve any listed model, so the request is
held and charged at `covering_price` of all of them (each component the highest of any listed).
Paid features (web search, audio...): their surcharges are part of that price (chat_pricing), so the
hold and the charge include them, markup too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from paywalls.billing.paywall import ModelPrice
from paywalls.core.money import MICROS_PER_UNIT, usage_cost_micros
from paywalls.infra.config import settings

PER_MESSAGE_TOKENS = 8
REQUEST_TOKENS = 64
TOOLS_TOKENS = 1024
IMAGE_TOKENS = 50_000
IMAGE_TOKENS_LOW = 3_000


def _default_completion_limit() -> int:
    # A wrong value sizes every hold: settings() refuses it (ValueError), so this module fails to load.
    return settings().default_max_completion_tokens


# The limit of a request that sets none; 4096 by default because older chat models reject larger
# max_tokens values with a 400, and a longer answer needs a client that asks for it (and pays its hold).
NO_LIMIT_TOKENS = _default_completion_limit()

_GENERATED_TEXT_FIELDS = ("content", "refusal", "reasoning", "reasoning_content")


# ---- prompt upper bound ---------------------------------------------------------------------------


def prompt_token_bound(body: Mapping[str, Any], items_key: str = "messages") -> int:
    """A provable over-estimate of the prompt tokens of a chat completion request (module doc), or of
    a Responses request (`items_key="input"`: a string, or input items with `input_image` parts)."""
    images = 0
    low_detail_images = 0

    def strip_media(value: Any) -> Any:
        nonlocal images, low_detail_images
        if isinstance(value, dict):
            kind = value.get("type")
            if kind in ("image_url", "input_image"):
                image = value.get("image_url")
                detail = image.get("detail") if isinstance(image, dict) else value.get("detail")
                if detail == "low":
                    low_detail_images += 1
                else:
                    images += 1
                return {"type": kind}
            return {k: strip_media(v) for k, v in value.items()}
        if isinstance(value, list):
            return [strip_media(v) for v in value]
        return value

    messages = body.get(items_key)
    stripped = {**body, items_key: strip_media(messages)}
    text_bytes = len(json.dumps(stripped, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass"))
    message_count = len(messages) if isinstance(messages, list) else 1 if isinstance(messages, str) else 0
    tools = bool(body.get("tools") or body.get("functions"))
    return (
        text_bytes
        + PER_MESSAGE_TOKENS * message_count
        + REQUEST_TOKENS
        + (TOOLS_TOKENS if tools else 0)
        + IMAGE_TOKENS * images
        + IMAGE_TOKENS_LOW * low_detail_images
    )


# ---- hold sizing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Pricing:
    """A model's price as the paywall charges it (markup included)."""

    price: ModelPrice
    markup_percent: Decimal = Decimal(0)

    def cost(self, prompt_tokens: int, completion_tokens: int) -> int:
        return usage_cost_micros(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            prompt_price=self.price.prompt,
            completion_price=self.price.completion,
            request_price=self.price.request,
            markup_percent=self.markup_percent,
        )

    def max_completion_tokens(self, prompt_tokens: int, budget: int) -> int | None:
        """The most completion tokens (all choices together) that `budget` micro-units pay for with
        this prompt; -1 if not even the prompt and request fee; None if completions are free."""
        if self.cost(prompt_tokens, 0) > budget:
            return -1
        if self.price.completion == 0:
            return None
        # ceil(x) <= budget  <=>  x <= budget for an integer budget, so solve x <= budget exactly.
        fixed = Decimal(prompt_tokens) * self.price.prompt + self.price.request * MICROS_PER_UNIT
        room = Decimal(budget) / (1 + self.markup_percent / 100) - fixed
        tokens = int((room / self.price.completion).to_integral_value(rounding=ROUND_FLOOR))
        # The division above is rounded to 28 digits; step to the exact answer with the real cost rule.
        tokens = max(tokens, 0)
        while tokens > 0 and self.cost(prompt_tokens, tokens) > budget:
            tokens -= 1
        while self.cost(prompt_tokens, tokens + 1) <= budget:
            tokens += 1
        return tokens


@dataclass(frozen=True)
class HoldPlan:
    amount: int  # micro-units to reserve (0: the request is free, nothing to hold)
    tokens_per_choice: int  # completion tokens held per choice: the limit every limit field is sent


def plan_hold(
    pricing: Pricing,
    *,
    prompt_bound: int,
    requested_limit: int | None,
    n: int,
    available: int,
    default_limit: int = NO_LIMIT_TOKENS,
) -> HoldPlan | None:
    """The hold for this request, or None when the balance cannot pay even one completion token.
    Limits are per choice and the hold covers all `n` choices."""
    wanted = requested_limit if requested_limit is not None else default_limit
    worst = pricing.cost(prompt_bound, wanted * n)
    if worst <= max(available, 0):
        return HoldPlan(worst, wanted)
    covered = pricing.max_completion_tokens(prompt_bound, max(available, 0))
    if covered is None:  # free completions but the prompt alone is not covered: cannot happen here
        return None
    per_choice = covered // n if covered > 0 else 0
    if per_choice < 1:
        return None
    return HoldPlan(pricing.cost(prompt_bound, per_choice * n), per_choice)


def covering_price(prices: Iterable[ModelPrice]) -> ModelPrice:
    """A price no lower than any of `prices` for every usage: each component the highest of any.
    For a request the provider may serve with any of several models (fallbacks)."""
    listed = list(prices)
    return ModelPrice(
        prompt=max(p.prompt for p in listed),
        completion=max(p.completion for p in listed),
        request=max(p.request for p in listed),
    )


def costlier(served: ModelPrice, charged: ModelPrice) -> bool:
    """True if some usage costs more at `served` than at `charged` (a component is higher)."""
    return served.prompt > charged.prompt or served.completion > charged.completion or served.request > charged.request


# ---- usage ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    estimated: bool = False
    provider_cost: int | None = None  # micro-units, when the provider reports its own price


def _count(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _provider_cost(value: Any) -> int | None:
    # OpenRouter reports `usage.cost` in currency units (credits = USD).
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        cost = Decimal(str(value))
    except ArithmeticError:
        return None
    if not cost.is_finite() or cost < 0:
        return None
    return int((cost * MICROS_PER_UNIT).to_integral_value(rounding=ROUND_CEILING))


def reported_usage(payload: Any) -> Usage | None:
    """The provider's usage from a completion or a chunk, or None if absent or malformed."""
    usage = payload.get("usage") if isinstance(payload, dict) else None
    if not isinstance(usage, dict):
        return None
    prompt = _count(usage.get("prompt_tokens"))
    completion = _count(usage.get("completion_tokens"))
    if prompt is None or completion is None:
        return None
    return Usage(prompt, completion, provider_cost=_provider_cost(usage.get("cost")))


def generated_bytes(message: Any) -> int:
    """UTF-8 bytes of the text a model generated in a message or a stream delta."""
    if not isinstance(message, dict):
        return 0
    total = 0
    for name in _GENERATED_TEXT_FIELDS:
        total += _text_bytes(message.get(name))
    calls = message.get("tool_calls")
    for call in calls if isinstance(calls, list) else []:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            total += _text_bytes(function.get("name")) + _text_bytes(function.get("arguments"))
    legacy = message.get("function_call")
    if isinstance(legacy, dict):
        total += _text_bytes(legacy.get("name")) + _text_bytes(legacy.get("arguments"))
    return total


def _text_bytes(value: Any) -> int:
    if value is None:
        return 0
    if not isinstance(value, str):
        value = json.dumps(value, ensure_ascii=False)
    return len(value.encode("utf-8", "surrogatepass"))


def completion_bytes(completion: Any) -> int:
    """Generated bytes over all choices of a (non-streamed) chat completion."""
    choices = completion.get("choices") if isinstance(completion, dict) else None
    if not isinstance(choices, list):
        return 0
    return sum(generated_bytes(c.get("message")) for c in choices if isinstance(c, dict))


def estimated_usage(plan: HoldPlan, *, prompt_bound: int, n: int, generated: int) -> Usage:
    """What to charge when the provider reports no usage (module doc): never more than the hold."""
    return Usage(prompt_bound, min(generated, plan.tokens_per_choice * n), estimated=True)


class StreamTally:
    """Follows a provider's stream chunk by chunk: which chunks reach the client, the usage the
    provider reported, and what was generated (for the estimate when no usage comes)."""

    def __init__(self, *, client_wants_usage: bool):
        self.client_wants_usage = client_wants_usage
        self.usage: Usage | None = None
        self.generated = 0
        self.finished = False  # a finish_reason or [DONE] was seen: the answer is complete

    def observe(self, chunk: dict[str, Any]) -> bool:
        """Account for one parsed chunk; True if it should be forwarded to the client."""
        usage = reported_usage(chunk)
        if usage is not None:
            self.usage = usage
        choices = chunk.get("choices")
        if isinstance(choices, list):
            for choice in choices:
                if isinstance(choice, dict):
                    self.generated += generated_bytes(choice.get("delta"))
                    if choice.get("finish_reason"):
                        self.finished = True
        # The usage-only chunk exists because we asked for it; a client that did not ask never sees it.
        usage_only = chunk.get("usage") is not None and choices == []
        return not (usage_only and not self.client_wants_usage)
