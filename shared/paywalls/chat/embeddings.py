"""`POST /v1/embeddings`, metered like chat with no output tokens (docs/endpoints.md):

- `input`: a string, an array of strings, an array of token ids, or an array of token-id arrays.
- The hold is the exact input bound: a token array is its length (the client sent the tokens); a
  string at most one token per UTF-8 byte (byte-level BPE, metering module doc) plus PER_INPUT_TOKENS
  for the start/end markers some embedding models add. Priced per 1M input tokens (the model's
  `prompt` price; its `request` fee applies too), so the hold is never lowered: a balance that cannot
  pay it gets the paywall reply.
- `dimensions` and `encoding_format` pass through; nothing else does.
- Usage settles from `usage.prompt_tokens`; without it the bound is charged (the hold, no more).
- The paywall reply cannot be an embedding: it is HTTP 402 with the paywall's text (and link) as an
  OpenAI-style error, `X-Paywall-Action` as for chat."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from paywalls.billing import metering
from paywalls.billing.metering import Usage
from paywalls.billing.paywall import InvalidRequest
from paywalls.chat.request import model_of, optional_field, refuse_unknown_fields

PASS_THROUGH_FIELDS = frozenset({"model", "input", "dimensions", "encoding_format", "user"})
MAX_INPUTS = 2048  # OpenAI's own limit per request
PER_INPUT_TOKENS = 2
ENCODINGS = ("float", "base64")


@dataclass(frozen=True)
class EmbeddingsRequest:
    body: dict[str, Any]
    model: str
    body_user: str | None
    bound: int  # module doc
    stream: bool = False
    n: int = 1
    requested_limit: int | None = 0  # no output tokens: the hold is the input alone
    features: dict[str, str] = field(default_factory=dict)
    fallback_models: tuple[str, ...] = ()


def _is_tokens(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(t, int) and not isinstance(t, bool) and 0 <= t < 2**32 for t in value)
    )


def input_bound(items: Any) -> int:
    """Tokens the input is at most (module doc); raises InvalidRequest for a malformed input."""
    if isinstance(items, str) and items or _is_tokens(items):
        items = [items]
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_INPUTS:
        raise InvalidRequest(
            f"input must be a non-empty string, an array of 1 to {MAX_INPUTS} strings, token ids, or token-id arrays",
            "input",
        )
    total = 0
    for item in items:
        if isinstance(item, str) and item:
            total += len(item.encode("utf-8", "surrogatepass")) + PER_INPUT_TOKENS
        elif _is_tokens(item):
            total += len(item)
        else:
            raise InvalidRequest("each input must be a non-empty string or a non-empty array of token ids", "input")
    return total


def parse(body: dict[str, Any]) -> EmbeddingsRequest:
    model = model_of(body)
    refuse_unknown_fields(body, PASS_THROUGH_FIELDS, {"stream": "embeddings are one JSON answer"})
    dimensions = body.get("dimensions")
    if dimensions is not None and (
        not isinstance(dimensions, int) or isinstance(dimensions, bool) or not 1 <= dimensions <= 65536
    ):
        raise InvalidRequest("dimensions must be an integer from 1 to 65536", "dimensions")
    if body.get("encoding_format") not in (None, *ENCODINGS):
        raise InvalidRequest("encoding_format must be float or base64", "encoding_format")
    user = optional_field(body, "user", str, "a string")
    return EmbeddingsRequest(body=body, model=model, body_user=user or None, bound=input_bound(body.get("input")))


def upstream_body(request: EmbeddingsRequest, *, model: str) -> dict[str, Any]:
    return {**request.body, "model": model}


def is_embedding_list(payload: Any) -> bool:
    return isinstance(payload, dict) and isinstance(payload.get("data"), list)


def reported_usage(payload: Any) -> Usage | None:
    usage = payload.get("usage") if isinstance(payload, dict) else None
    tokens = metering._count(usage.get("prompt_tokens")) if isinstance(usage, dict) else None
    return None if tokens is None else Usage(tokens, 0)
