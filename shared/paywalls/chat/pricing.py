"""The price a chat request is held and charged at (SPEC §4), before markup (metering.Pricing adds
it): the requested model's price from the paywall's table, the highest of every model the provider
may serve instead (OpenRouter fallbacks, metering.covering_price), plus the surcharge of each paid
feature the request uses (paywall.FEATURES; chat_request finds them). A feature the paywall does not
price is refused (400 `unsupported_parameter`, naming the field that asks for it): it would be
served at the token price while the provider bills more.

OpenRouter model variants (`id:suffix`, openrouter kind only). An id priced as it is, suffix and all,
has that price: the operator priced the variant. Otherwise ROUTING_SUFFIXES are read off its end and
the rest must be priced:
- `:floor` (cheapest provider first), `:<effort>` and `:reasoning-exclude` cost nothing beyond the
  base model's tokens;
- `:online` is web search (feature web_search);
- `:nitro` (fastest provider first) and `:exacto` (most reliable first) may route to a dearer
  provider (feature provider_routing).
Catalog variants (`:free`, `:thinking`, `:extended`...) are other models with prices of their own,
and an unknown suffix may cost anything: those are served only when priced by their exact id."""

from __future__ import annotations

from paywalls.billing import metering
from paywalls.billing.paywall import InvalidRequest, ModelPrice, Paywall
from paywalls.chat.request import ChatRequest, unsupported

ROUTING_SUFFIXES: dict[str, str | None] = {
    "floor": None,
    "reasoning-exclude": None,
    **dict.fromkeys(("none", "minimal", "low", "medium", "high", "xhigh", "max"), None),
    "online": "web_search",
    "nitro": "provider_routing",
    "exacto": "provider_routing",
}

FEATURE_NAMES = {
    "web_search": "web search",
    "audio": "audio input or output",
    "priority_tier": "priority processing",
    "provider_routing": "provider routing that may pick a dearer provider",
    "file_search": "file search (a hosted tool)",
    "code_interpreter": "code interpreter (a hosted tool)",
}


def resolve(paywall: Paywall, model: str, provider_kind: str | None) -> tuple[ModelPrice, tuple[str, ...]] | None:
    """(price, features its variant suffixes ask for) of a model id, or None if it is not priced."""
    price = paywall.price_of(model)
    if price is not None:
        return price, ()
    if provider_kind != "openrouter":
        return None
    base, features = model, []
    while True:
        head, sep, suffix = base.rpartition(":")
        if not sep or not head or suffix not in ROUTING_SUFFIXES:
            return None
        base = head
        feature = ROUTING_SUFFIXES[suffix]
        if feature:
            features.append(feature)
        price = paywall.price_of(base)
        if price is not None:
            return price, tuple(features)


def request_price(
    paywall: Paywall, chat: ChatRequest, provider_kind: str | None, *, base: ModelPrice | None = None
) -> ModelPrice | None:
    """The price of this request before markup; None when the requested model is not priced.
    `base`: the requested model's price as the serving provider has it (chat/routing.py), instead of
    the paywall's price table."""
    resolved = resolve(paywall, chat.model, provider_kind) if base is None else (base, ())
    if resolved is None:
        return None
    price, model_features = resolved
    features = dict(chat.features)
    for feature in model_features:
        features.setdefault(feature, "model")
    if chat.fallback_models:
        # The provider picks which one serves: every one must be priced, at the highest of their prices.
        prices = [price]
        for model in chat.fallback_models:
            listed = resolve(paywall, model, provider_kind)
            if listed is None:
                raise InvalidRequest(
                    f"every model in models must be priced on this paywall; `{model}` is not", "models"
                )
            prices.append(listed[0])
            for feature in listed[1]:
                features.setdefault(feature, "models")
        price = metering.covering_price(prices)
    for feature, param in features.items():
        surcharge = paywall.features.get(feature)
        if surcharge is None:
            raise unsupported(
                param,
                f"{param} asks for {FEATURE_NAMES[feature]}, which the provider bills beyond the tokens and this "
                "paywall does not price. Send the request without it.",
            )
        price = price.plus(surcharge)
    return price
