"""Request fields that raise the provider's bill beyond the metered tokens (docs/DESIGN.md
"Pass-through fields"): only allow-listed fields reach the provider; paid features (web search,
audio, priority processing, dearer provider routing, OpenRouter's `:online` / `:nitro` variants) are
refused with a 400 naming the field unless the paywall prices them, and then their surcharge is part
of the hold and the charge, markup included. Unit tests of the rules, then end to end."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from devserver.demo_provider import usage_of
from paywalls.billing import metering
from paywalls.billing.metering import Pricing
from paywalls.billing.paywall import InvalidRequest, ModelPrice, Paywall
from paywalls.chat import pricing as chat_pricing
from paywalls.chat import request as chat_request
from tests.chat_support import (
    ECHO_PRICE,
    assert_ledger_consistent,
    available,
    balance,
    charges,
    demo_requests,
    expected_cost,
    fund,
    make_paywall,
    new_user,
    sdk,
)
from tests.conftest import LocalStack

MESSAGES = [{"role": "user", "content": "hi"}]


def parse(**fields: Any) -> chat_request.ChatRequest:
    return chat_request.parse({"model": "m", "messages": MESSAGES, **fields})


def refused(**fields: Any) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as raised:
        parse(**fields)
    return raised.value


# ---- the allow-list -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["vendor_option", "safety_model", "prompt_cache_retention", "search_parameters", "prediction"]
)
def test_unknown_and_refused_fields_are_a_400_naming_the_field(name: str) -> None:
    """An unknown field may raise the bill (Together's safety_model runs a second model, xAI's
    search_parameters searches...): it used to pass through unmetered."""
    error = refused(**{name: {"type": "content", "content": "x"}})
    assert (error.param, error.code) == (name, "unsupported_parameter")
    assert name in str(error)


def test_prediction_says_why() -> None:
    assert "rejected prediction tokens" in str(refused(prediction={"type": "content", "content": "x"}))


def test_a_field_sent_as_null_counts_as_absent() -> None:
    chat = parse(vendor_option=None, prediction=None, web_search_options=None, audio=None, service_tier=None)
    assert chat.features == {}


def test_every_pass_through_field_is_accepted_as_free() -> None:
    values: dict[str, Any] = {
        "n": 2,
        "max_tokens": 10,
        "max_completion_tokens": 10,
        "stream": True,
        "stream_options": {"include_usage": True},
        "stop": ["\n"],
        "logit_bias": {"50256": -100},
        "logprobs": True,
        "top_logprobs": 2,
        "response_format": {"type": "json_object"},
        "tools": [{"type": "function", "function": {"name": "f"}}, {"type": "custom", "custom": {"name": "g"}}],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "functions": [{"name": "f"}],
        "function_call": "auto",
        "user": "u",
        "store": False,
        "metadata": {"k": "v"},
        "models": ["m2"],
        "route": "fallback",
        "transforms": ["middle-out"],
        "reasoning": {"effort": "high", "max_tokens": 100, "exclude": True},
        "thinking": {"type": "enabled", "budget_tokens": 5},
        "usage": {"include": True},
    }
    body = {name: values.get(name, 0.5) for name in chat_request.PASS_THROUGH_FIELDS - {"model", "messages"}}
    chat = parse(**body)
    assert chat.features == {} and chat.n == 2


# ---- paid features --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "feature", "param"),
    [
        ({"web_search_options": {}}, "web_search", "web_search_options"),
        ({"web_search_options": {"search_context_size": "high"}}, "web_search", "web_search_options"),
        ({"plugins": [{"id": "web"}]}, "web_search", "plugins"),
        (
            {"plugins": [{"id": "web", "max_results": 5, "engine": "exa", "search_prompt": "p"}]},
            "web_search",
            "plugins",
        ),
        ({"audio": {"voice": "alloy", "format": "wav"}, "modalities": ["text", "audio"]}, "audio", "audio"),
        ({"modalities": ["text", "audio"]}, "audio", "modalities"),
        (
            {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {"data": "UklG"}}]}]},
            "audio",
            "messages",
        ),
        ({"messages": [{"role": "assistant", "audio": {"id": "audio_1"}}, *MESSAGES]}, "audio", "messages"),
        ({"service_tier": "priority"}, "priority_tier", "service_tier"),
        ({"provider": {"order": ["anthropic"]}}, "provider_routing", "provider"),
        ({"provider": {"only": ["x"], "allow_fallbacks": False}}, "provider_routing", "provider"),
        ({"provider": {"sort": "throughput"}}, "provider_routing", "provider"),
        ({"provider": {"data_collection": "deny"}}, "provider_routing", "provider"),
        ({"provider": {"require_parameters": True}}, "provider_routing", "provider"),
    ],
)
def test_fields_that_raise_the_bill_ask_for_a_feature(fields: dict, feature: str, param: str) -> None:
    assert parse(**fields).features == {feature: param}


@pytest.mark.parametrize(
    "fields",
    [
        {"service_tier": "auto"},
        {"service_tier": "default"},
        {"service_tier": "flex"},  # billed below the default tier
        {"modalities": ["text"]},
        {"plugins": []},
        {
            "provider": {
                "sort": "price",
                "allow_fallbacks": True,
                "data_collection": "allow",
                "require_parameters": False,
            }
        },
        {"provider": {"max_price": {"prompt": 1, "completion": 2}}},
    ],
)
def test_values_that_cannot_cost_more_pass_free(fields: dict) -> None:
    assert parse(**fields).features == {}


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"service_tier": "scale"}, "service_tier"),
        ({"plugins": [{"id": "file-parser"}]}, "plugins"),
        ({"plugins": [{"id": "web", "max_results": 10}]}, "plugins"),
        ({"plugins": [{"id": "web", "engine": "parallel"}]}, "plugins"),
        ({"plugins": [{"id": "web", "surprise": 1}]}, "plugins"),
        ({"tools": [{"type": "openrouter:web_search"}]}, "tools"),
        ({"tools": [{"type": "web_search_preview"}]}, "tools"),
        ({"tools": [{"type": "browser_search"}]}, "tools"),
    ],
)
def test_refused_values(fields: dict, param: str) -> None:
    """Server-side tools run 0..N times per request; more web results, other plugins and other tiers
    cost more than any surcharge set for one search could cover."""
    error = refused(**fields)
    assert error.param == param
    assert error.code in ("unsupported_parameter", "invalid_request")


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"web_search_options": "yes"}, "web_search_options"),
        ({"plugins": {"id": "web"}}, "plugins"),
        ({"modalities": "audio"}, "modalities"),
        ({"provider": ["openai"]}, "provider"),
        ({"tools": {"type": "function"}}, "tools"),
        ({"reasoning": "high"}, "reasoning"),
        ({"reasoning": {"max_tokens": 0}}, "reasoning"),
    ],
)
def test_malformed_fields_are_a_400(fields: dict, param: str) -> None:
    assert refused(**fields).param == param


# ---- pricing: surcharges and OpenRouter variants --------------------------------------------------

BASE = ModelPrice(Decimal("1"), Decimal("2"), Decimal("0.0001"))
WEB = ModelPrice(Decimal(0), Decimal(0), Decimal("0.02"))
ROUTING = ModelPrice(Decimal("0.5"), Decimal("1"))


def priced_paywall(features: dict[str, ModelPrice] | None = None, **pricing: ModelPrice) -> Paywall:
    return Paywall(
        "pw_x",
        "App",
        "default",
        "t",
        pricing={"m": BASE, **pricing},
        features=features or {},
        markup_percent=Decimal(20),
    )


def price(pw: Paywall, model: str = "m", kind: str | None = "openrouter", **fields: Any) -> ModelPrice | None:
    return chat_pricing.request_price(pw, chat_request.parse({"model": model, "messages": MESSAGES, **fields}), kind)


def test_an_unpriced_feature_is_refused_naming_the_field() -> None:
    with pytest.raises(InvalidRequest) as raised:
        price(priced_paywall(), web_search_options={})
    assert (raised.value.param, raised.value.code) == ("web_search_options", "unsupported_parameter")
    assert "web search" in str(raised.value)


def test_a_priced_feature_adds_its_surcharge_to_hold_and_charge_with_markup() -> None:
    pw = priced_paywall({"web_search": WEB})
    with_search = price(pw, web_search_options={})
    assert with_search == ModelPrice(Decimal("1"), Decimal("2"), Decimal("0.0201"))
    pricing = Pricing(with_search, pw.markup_percent)
    # ceil((10 x 1 + 5 x 2 + 0.0201 x 10^6) x 1.2) = 24_144
    assert pricing.cost(10, 5) == 24_144
    plan = metering.plan_hold(pricing, prompt_bound=10, requested_limit=5, n=1, available=10**6)
    assert plan is not None and plan.amount == pricing.cost(10, 5)
    assert price(pw) == BASE, "a request that does not ask for it pays no surcharge"


@pytest.mark.parametrize(
    ("model", "features", "expected"),
    [
        ("m:floor", {}, BASE),  # cheapest provider first: never dearer
        ("m:high", {}, BASE),  # reasoning effort: completion tokens, within the limit
        ("m:reasoning-exclude", {}, BASE),
        ("m:online", {"web_search": WEB}, BASE.plus(WEB)),
        ("m:nitro", {"provider_routing": ROUTING}, BASE.plus(ROUTING)),
        ("m:exacto:online", {"web_search": WEB, "provider_routing": ROUTING}, BASE.plus(WEB).plus(ROUTING)),
        ("m:free", {}, None),  # a catalog variant: another model, priced only by its exact id
        ("m:thinking", {}, None),
        ("m:extended", {}, None),
        ("m:whatever", {}, None),
    ],
)
def test_openrouter_variants(model: str, features: dict, expected: ModelPrice | None) -> None:
    assert price(priced_paywall(features), model) == expected


@pytest.mark.parametrize(("model", "param"), [("m:online", "model"), ("m:nitro", "model"), ("m:floor:online", "model")])
def test_openrouter_variants_that_cost_more_are_refused_unless_priced(model: str, param: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        price(priced_paywall(), model)
    assert (raised.value.param, raised.value.code) == (param, "unsupported_parameter")


def test_an_exactly_priced_variant_is_its_own_price() -> None:
    online = ModelPrice(Decimal("3"), Decimal("4"), Decimal("0.03"))
    free = ModelPrice(Decimal(0), Decimal(0))
    pw = priced_paywall(**{"m:online": online, "m:free": free})
    assert price(pw, "m:online") == online, "the operator priced this id, search and all"
    assert price(pw, "m:free") == free
    with pytest.raises(InvalidRequest):
        price(pw, "m:free:online")  # web search on a free model is still billed
    assert price(priced_paywall({"web_search": WEB}, **{"m:free": free}), "m:free:online") == free.plus(WEB)


def test_variants_are_only_read_for_openrouter() -> None:
    assert price(priced_paywall({"web_search": WEB}), "m:online", kind="openai-compatible") is None
    assert price(priced_paywall(), "m:floor", kind=None) is None


def test_fallback_variants_are_priced_too() -> None:
    with pytest.raises(InvalidRequest) as raised:
        price(priced_paywall(), models=["m:online"])
    assert raised.value.param == "models"
    assert price(priced_paywall({"web_search": WEB}), models=["m:online"]) == BASE.plus(WEB)


# ---- end to end -----------------------------------------------------------------------------------


def post(stack: LocalStack, key: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{stack.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=60
    )


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"vendor_option": {"keep": True}}, "vendor_option"),
        ({"web_search_options": {}}, "web_search_options"),
        ({"plugins": [{"id": "web"}]}, "plugins"),
        ({"service_tier": "priority"}, "service_tier"),
        ({"modalities": ["text", "audio"], "audio": {"voice": "alloy", "format": "wav"}}, "audio"),
        ({"provider": {"order": ["somewhere"]}}, "provider"),
        ({"prediction": {"type": "content", "content": "x"}}, "prediction"),
        ({"tools": [{"type": "openrouter:web_search"}]}, "tools"),
    ],
)
def test_fields_that_raise_the_bill_are_refused_before_the_provider(
    stack: LocalStack, paywall: dict, user: str, extra: dict, param: str
) -> None:
    marker = new_user("paid")
    with pytest.raises(openai.BadRequestError) as raised:
        sdk(stack, paywall["key"]).chat.completions.create(
            model="demo/echo", messages=[{"role": "user", "content": marker}], user=user, extra_body=extra
        )
    assert (raised.value.status_code, raised.value.param, raised.value.code) == (400, param, "unsupported_parameter")
    assert demo_requests(stack, marker) == [], "nothing reached the provider"
    assert charges(stack, paywall["key"], user) == []
    assert balance(stack, paywall["key"], user) == available(stack, paywall["id"], user) == 1_000_000


def _priced_features(stack: LocalStack, kind: str = "openai-compatible") -> dict:
    made = make_paywall(stack, markup_percent="20")
    with stack.admin() as admin:
        if kind != "openai-compatible":
            admin.put(
                f"/admin/paywalls/{made['id']}/provider",
                json={"kind": kind, "base_url": f"{stack.url}/_demo/v1", "api_key": "demo-provider-key"},
            ).raise_for_status()
        admin.put(
            f"/admin/paywalls/{made['id']}/pricing",
            json={"models": {"demo/echo": ECHO_PRICE}, "features": {"web_search": {"request": "0.02"}}},
        ).raise_for_status()
    return made


@pytest.mark.parametrize(
    ("kind", "model", "extra"),
    [
        ("openai-compatible", "demo/echo", {"web_search_options": {"search_context_size": "low"}}),
        ("openrouter", "demo/echo", {"plugins": [{"id": "web", "max_results": 3}]}),
        ("openrouter", "demo/echo:online", {}),
    ],
)
def test_a_priced_feature_is_served_and_charged_its_surcharge_with_markup(
    stack: LocalStack, kind: str, model: str, extra: dict
) -> None:
    priced = _priced_features(stack, kind)
    user = new_user()
    fund(stack, priced["id"], user, "1")
    marker = uuid.uuid4().hex
    body = {"model": model, "messages": [{"role": "user", "content": f"search {marker}"}], "user": user, **extra}
    post(stack, priced["key"], body).raise_for_status()
    [sent] = demo_requests(stack, marker)
    assert sent["model"] == model and all(sent[k] == v for k, v in extra.items()), "passed on as the client sent it"
    surcharged = {**ECHO_PRICE, "request": str(Decimal(ECHO_PRICE["request"]) + Decimal("0.02"))}
    [charge] = charges(stack, priced["key"], user)
    assert int(charge["amount"]) == -expected_cost(surcharged, usage_of(sent), "20")
    assert_ledger_consistent(stack, priced["key"], user)
    # Without the feature the same paywall charges the plain price.
    plain = {"model": "demo/echo", "messages": [{"role": "user", "content": "plain"}], "user": user}
    post(stack, priced["key"], plain).raise_for_status()
    assert int(charges(stack, priced["key"], user)[0]["amount"]) == -expected_cost(ECHO_PRICE, usage_of(plain), "20")


def test_an_openrouter_variant_that_costs_more_is_refused_unless_priced(stack: LocalStack) -> None:
    made = make_paywall(stack)
    with stack.admin() as admin:
        admin.put(
            f"/admin/paywalls/{made['id']}/provider",
            json={"kind": "openrouter", "base_url": f"{stack.url}/_demo/v1", "api_key": "demo-provider-key"},
        ).raise_for_status()
    user = new_user()
    fund(stack, made["id"], user, "1")
    marker = uuid.uuid4().hex
    for model in ("demo/echo:online", "demo/echo:nitro"):
        reply = post(
            stack, made["key"], {"model": model, "messages": [{"role": "user", "content": marker}], "user": user}
        )
        assert reply.status_code == 400
        assert (reply.json()["error"]["param"], reply.json()["error"]["code"]) == ("model", "unsupported_parameter")
    assert demo_requests(stack, marker) == []
    floor = {"model": "demo/echo:floor", "messages": [{"role": "user", "content": marker}], "user": user}
    post(stack, made["key"], floor).raise_for_status()  # the cheapest provider: the base model's price
    [charge] = charges(stack, made["key"], user)
    assert int(charge["amount"]) == -expected_cost(ECHO_PRICE, usage_of(floor))
