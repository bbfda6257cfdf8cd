"""Several providers per paywall: named providers, routing rules with ordered fallbacks, provider
prices (the cost of goods), and which endpoints each provider kind serves.

- Providers: the default one (`PUT /admin/paywalls/{id}/provider`, named `default`) serves every model
  no rule matches; named ones (`PUT /admin/paywalls/{id}/providers/{name}`) are used by routes. Keys
  live in Secrets Manager (`{prefix}/paywall/{id}/provider` for the default, `.../providers/{name}`).
- Routes (`PUT /admin/paywalls/{id}/routes`): `{match, providers: [{name, model?, strip_prefix?}]}`.
  `match` is an exact model id, or a prefix ending in `*` (`anthropic/*`); an exact match wins over a
  prefix, a longer prefix over a shorter one. `providers` is the ordered fallback list: on a connect
  error, timeout or 5xx before the first byte the next one is tried within the same hold. `model`
  names the upstream model (exact routes), `strip_prefix` sends the id without the matched prefix
  (`anthropic/claude-x` -> `claude-x`).
- Prices: the user pays the paywall's explicit price (`pricing`) when the model has one, else the
  serving provider's price; markup applies to both (metering.Pricing). A provider with a price table
  must list every model it serves (a missing one is refused like an unpriced model); a provider without
  one (set before provider prices existed) serves with its cost untracked (as before, an OpenRouter
  `usage.cost` is recorded when reported).
- The hold covers the dearest candidate (metering.covering_price); the charge is at the price of the
  candidate that served, and the ledger entry records that provider and its cost."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, Literal

from paywalls.billing import metering
from paywalls.billing import paywall as paywalls
from paywalls.billing.paywall import DEFAULT_PROVIDER, Conflict, InvalidRequest, ModelPrice, NotFound, Paywall, Provider
from paywalls.chat import pricing as chat_pricing
from paywalls.chat.request import ChatRequest
from paywalls.core.errors import PaywallsError
from paywalls.core.money import usage_cost_micros

Endpoint = Literal["chat", "responses", "embeddings"]
ENDPOINTS: tuple[Endpoint, ...] = ("chat", "responses", "embeddings")
UPSTREAM_PATHS: dict[Endpoint, str] = {
    "chat": "/chat/completions",
    "responses": "/responses",
    "embeddings": "/embeddings",
}
# What each provider kind serves (OpenAI-compatible endpoints). Anthropic's OpenAI-compatible API has
# chat only; Together has no Responses API. An openai-compatible server is assumed to serve all three
# (the operator picks it; a 404 from it passes through as the provider's rejection).
KIND_ENDPOINTS: dict[str, tuple[Endpoint, ...]] = {
    "openai": ("chat", "responses", "embeddings"),
    "openrouter": ("chat", "responses", "embeddings"),
    "together": ("chat", "embeddings"),
    "anthropic": ("chat",),
    "openai-compatible": ("chat", "responses", "embeddings"),
}
ENDPOINT_NAMES = {"chat": "Chat Completions", "responses": "Responses", "embeddings": "Embeddings"}
NAME_RE = re.compile(r"\A[a-z0-9][a-z0-9_-]{0,31}\Z")
MAX_ROUTES = 100
MAX_FALLBACKS = 5
ROUTE_FIELDS = {"match", "providers"}
TARGET_FIELDS = {"name", "model", "strip_prefix"}


def provider_secret_name(prefix: str, paywall_id: str, name: str) -> str:
    """A named provider's key (the default one keeps paywall.provider_secret_name)."""
    return f"{prefix}/paywall/{paywall_id}/providers/{name}"


def valid_name(name: str) -> str:
    if not isinstance(name, str) or NAME_RE.fullmatch(name) is None:
        raise InvalidRequest(
            "a provider name is 1-32 characters: a-z, 0-9, - and _, starting with a letter or digit", "name"
        )
    return name


# ---- candidates for one request -------------------------------------------------------------------


@dataclass(frozen=True)
class Candidate:
    """One provider that may serve the request, in fallback order."""

    name: str
    provider: Provider
    upstream_model: str
    price: ModelPrice  # what the user pays before markup (explicit or the provider's), features added
    cost_price: ModelPrice | None  # what the provider charges us (None: not tracked)

    def cost_of(self, usage: metering.Usage) -> int | None:
        """The provider's cost of this usage in micro-units (COGS), rounded up; None if not tracked."""
        if self.cost_price is None:
            return usage.provider_cost
        return usage_cost_micros(
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            prompt_price=self.cost_price.prompt,
            completion_price=self.cost_price.completion,
            request_price=self.cost_price.request,
            markup_percent=Decimal(0),
        )


@dataclass(frozen=True)
class Routed:
    candidates: tuple[Candidate, ...]
    hold_price: ModelPrice  # covers every candidate (the dearest of each component)


class NotRoutable(PaywallsError):
    """No provider can serve this request: `status` 404 (not priced), 400 (endpoint), 503 (none set)."""

    def __init__(self, status: int, message: str, code: str, param: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param


def targets(paywall: Paywall, model: str) -> list[tuple[str, str]]:
    """(provider name, upstream model) in fallback order for a model id (module doc)."""
    exact = next((r for r in paywall.routes if r["match"] == model), None)
    if exact is not None:
        return [(t["name"], t.get("model") or model) for t in exact["providers"]]
    prefixes = [r for r in paywall.routes if r["match"].endswith("*") and model.startswith(r["match"][:-1])]
    if prefixes:
        route = max(prefixes, key=lambda r: len(r["match"]))
        cut = len(route["match"]) - 1
        return [(t["name"], model[cut:] if t.get("strip_prefix") else model) for t in route["providers"]]
    return [(DEFAULT_PROVIDER, model)]


def route(paywall: Paywall, request: ChatRequest | Any, endpoint: Endpoint) -> Routed:
    """The candidates for this request, each priced (features included), or NotRoutable.
    `request` has `model`, `features` and `fallback_models` (chat_pricing.request_price)."""
    named = paywall.named_providers()
    if not named:
        # Priced first: an unpriced model is a 404 whether or not a provider is set.
        if chat_pricing.request_price(paywall, request, None) is None:
            raise _not_priced(request.model)
        raise NotRoutable(503, "this paywall has no AI provider configured", "provider_not_configured")
    candidates: list[Candidate] = []
    unsupported: list[str] = []
    for name, upstream_model in targets(paywall, request.model):
        provider = named.get(name)
        if provider is None:
            continue  # a route naming a removed provider: the others still serve
        if endpoint not in KIND_ENDPOINTS.get(provider.kind, ()):
            unsupported.append(f"{name} ({provider.kind})")
            continue
        cost_price = None
        if provider.prices is not None:
            cost_price = provider.prices.get(request.model)
            if cost_price is None:
                continue  # module doc: refused like an unpriced model
        # The paywall's own price when it has one (variant suffixes and all), else the provider's.
        price = chat_pricing.request_price(paywall, request, provider.kind)
        if price is None and cost_price is not None:
            price = chat_pricing.request_price(paywall, request, provider.kind, base=cost_price)
        if price is None:
            continue
        candidates.append(Candidate(name, provider, upstream_model, price, cost_price))
    if not candidates:
        if unsupported:
            raise NotRoutable(
                400,
                f"`{request.model}` is served by {', '.join(unsupported)}, which has no {ENDPOINT_NAMES[endpoint]} "
                f"endpoint; use /v1/chat/completions for this model",
                "unsupported_endpoint",
                "model",
            )
        raise _not_priced(request.model)
    return Routed(tuple(candidates), metering.covering_price(c.price for c in candidates))


def _not_priced(model: str) -> NotRoutable:
    return NotRoutable(
        404, f"The model `{model}` does not exist or is not priced on this paywall", "model_not_found", "model"
    )


def listed_models(paywall: Paywall) -> dict[str, tuple[ModelPrice, tuple[Endpoint, ...]]]:
    """Every model a user can call: (the dearest price it may be charged before markup, endpoints)."""
    named = paywall.named_providers()
    ids = set(paywall.pricing)
    for provider in named.values():
        ids |= set(provider.prices or {})
    listed: dict[str, tuple[ModelPrice, tuple[Endpoint, ...]]] = {}
    for model in sorted(ids):
        prices: list[ModelPrice] = []
        endpoints: set[Endpoint] = set()
        for name, _ in targets(paywall, model):
            provider = named.get(name)
            if provider is None:
                continue
            cost = None if provider.prices is None else provider.prices.get(model)
            if provider.prices is not None and cost is None:
                continue
            price = paywall.price_of(model) or cost
            if price is None:
                continue
            prices.append(price)
            endpoints |= set(KIND_ENDPOINTS.get(provider.kind, ()))
        if not named and model in paywall.pricing:
            prices, endpoints = [paywall.pricing[model]], set(ENDPOINTS)
        if prices:
            listed[model] = (metering.covering_price(prices), tuple(e for e in ENDPOINTS if e in endpoints))
    return listed


# ---- operator input ---------------------------------------------------------------------------------


def validated_prices(prices: Any) -> dict[str, ModelPrice] | None:
    """A provider's price table: {model: {prompt, completion, request?}} (None: not tracked)."""
    if prices is None:
        return None
    if not isinstance(prices, dict):
        raise InvalidRequest("prices must be an object of model id -> {prompt, completion, request?}", "prices")
    parsed: dict[str, ModelPrice] = {}
    for model, price in prices.items():
        if not isinstance(model, str) or not 0 < len(model) <= 200:
            raise InvalidRequest("model ids must be 1-200 character strings", "prices")
        if not isinstance(price, dict) or "prompt" not in price or "completion" not in price:
            raise InvalidRequest(f"prices.{model} needs prompt and completion prices", "prices")
        parsed[model] = paywalls._price(price, f"prices.{model}", "prices")  # paywall.set_pricing's parser
    return parsed


def validated_routes(routes: Any, providers: Mapping[str, Provider]) -> list[dict[str, Any]]:
    """Routes as stored: every provider they name must exist."""
    if not isinstance(routes, list) or len(routes) > MAX_ROUTES:
        raise InvalidRequest(f"routes must be an array of at most {MAX_ROUTES} routes", "routes")
    stored: list[dict[str, Any]] = []
    seen: set[str] = set()
    for route_ in routes:
        if not isinstance(route_, dict) or not set(route_) <= ROUTE_FIELDS:
            raise InvalidRequest("a route is {match, providers: [{name, model?, strip_prefix?}]}", "routes")
        match = route_.get("match")
        if not isinstance(match, str) or not 0 < len(match) <= 200 or "*" in match[:-1] or match == "*":
            raise InvalidRequest("match is a model id, or a prefix ending in * (e.g. anthropic/*)", "routes")
        if match in seen:
            raise InvalidRequest(f"two routes match {match!r}", "routes")
        seen.add(match)
        listed = route_.get("providers")
        if not isinstance(listed, list) or not 1 <= len(listed) <= MAX_FALLBACKS:
            raise InvalidRequest(f"providers must list 1 to {MAX_FALLBACKS} providers, in fallback order", "routes")
        targets_: list[dict[str, Any]] = []
        for target in listed:
            if not isinstance(target, dict) or not set(target) <= TARGET_FIELDS or "name" not in target:
                raise InvalidRequest("a route's provider is {name, model?, strip_prefix?}", "routes")
            name = target["name"]
            if not isinstance(name, str) or name not in providers:
                raise InvalidRequest(f"unknown provider {str(name)[:40]!r}: add it first", "routes")
            entry: dict[str, Any] = {"name": name}
            model = target.get("model")
            if model is not None:
                if not isinstance(model, str) or not 0 < len(model) <= 200 or match.endswith("*"):
                    raise InvalidRequest("model (the upstream model id) is for exact routes only", "routes")
                entry["model"] = model
            strip = target.get("strip_prefix")
            if strip is not None:
                if not isinstance(strip, bool) or not match.endswith("*"):
                    raise InvalidRequest("strip_prefix (a boolean) is for prefix routes only", "routes")
                if strip:
                    entry["strip_prefix"] = True
            targets_.append(entry)
        stored.append({"match": match, "providers": targets_})
    return stored


# ---- admin changes (functions/admin/app.py) ---------------------------------------------------------


def set_named_provider(
    paywall_id: str,
    name: str,
    data: dict[str, Any],
    *,
    secret_prefix: str,
    store_key: Callable[[str, str], None],
) -> Paywall:
    """Add or replace the provider `name` (`default`: the one PUT .../provider sets); an update of the
    same kind keeps the key and base URL not sent. `store_key`
    (secret name, key) writes a sent key to Secrets Manager before the paywall names it."""
    valid_name(name)
    current = paywalls.get(paywall_id)
    existing = current.named_providers().get(name)
    fields = {k: v for k, v in data.items() if k != "prices"}
    if existing is not None and existing.kind == fields.get("kind"):
        fields.setdefault("base_url", existing.base_url)  # an update of prices or key keeps the URL
    kind, base_url, api_key = paywalls.validated_provider(fields, key_required=existing is None)
    prices = validated_prices(data["prices"]) if "prices" in data else (existing.prices if existing else None)
    if name == DEFAULT_PROVIDER:
        secret_name = paywalls.provider_secret_name(secret_prefix, paywall_id)
    else:
        secret_name = provider_secret_name(secret_prefix, paywall_id, name)
    if api_key:
        store_key(secret_name, api_key)
    provider = Provider(kind, base_url, secret_name, paywalls._now(), prices)
    if name == DEFAULT_PROVIDER:
        return paywalls.save(replace(current, provider=provider))
    return paywalls.save(replace(current, providers={**current.providers, name: provider}))


def remove_named_provider(paywall_id: str, name: str) -> Paywall:
    """Remove a named provider no route uses (its key stays in Secrets Manager until replaced)."""
    current = paywalls.get(paywall_id)
    if name == DEFAULT_PROVIDER:
        raise InvalidRequest("the default provider can be replaced (PUT .../provider), not removed", "name")
    if name not in current.providers:
        raise NotFound(f"provider {name[:40]!r} not found")
    used = [r["match"] for r in current.routes if any(t["name"] == name for t in r["providers"])]
    if used:
        raise Conflict(f"provider {name!r} is used by the routes {', '.join(used)}: change them first")
    return paywalls.save(replace(current, providers={n: p for n, p in current.providers.items() if n != name}))


def set_routes(paywall_id: str, data: dict[str, Any]) -> Paywall:
    current = paywalls.get(paywall_id)
    paywalls._reject_unknown(data, {"routes"})
    return paywalls.save(replace(current, routes=validated_routes(data.get("routes"), current.named_providers())))


def providers_as_api(paywall: Paywall) -> dict[str, Any]:
    return {"object": "list", "data": [p.as_named_api(n) for n, p in paywall.named_providers().items()]}
