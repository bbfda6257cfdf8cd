"""What a request may cost is bounded before the provider is called, on a stack of its own with a
small default completion limit (PAYWALLS_DEFAULT_MAX_COMPLETION_TOKENS=5) and a short time limit
(PAYWALLS_STREAM_MAX_S=3): a request without a limit is sent the held one, fallback models are held
at the highest of their prices, file parts are refused, and a stream that reaches the time limit is
ended and charged."""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from devserver.demo_provider import usage_of
from paywalls.billing import metering
from paywalls.billing.metering import Pricing
from paywalls.billing.paywall import ModelPrice
from tests.chat_support import (
    DEMO_PRICES,
    PLAIN_PRICE,
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
    wait_for_charges,
)
from tests.conftest import LocalStack, run_local_stack

DEFAULT_LIMIT = 5
TIME_LIMIT_S = 3
TEN_WORDS = "one two three four five six seven eight nine ten"


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    env = {
        "PAYWALLS_DEFAULT_MAX_COMPLETION_TOKENS": str(DEFAULT_LIMIT),
        "PAYWALLS_STREAM_MAX_S": str(TIME_LIMIT_S),
        "DEMO_HANG_S": "10",
    }
    with run_local_stack(env) as running:
        yield running


def post(stack: LocalStack, paywall: dict, body: dict[str, Any]) -> httpx.Response:
    headers = {"Authorization": f"Bearer {paywall['key']}"}
    return httpx.post(f"{stack.url}/v1/chat/completions", json=body, headers=headers, timeout=60)


def assert_settled(stack: LocalStack, paywall: dict, user: str) -> None:
    assert available(stack, paywall["id"], user) == assert_ledger_consistent(stack, paywall["key"], user)


# ---- no limit: the held limit is sent ------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2])
def test_a_request_without_limit_is_sent_the_default_and_never_served_beyond_it(
    stack: LocalStack, paywall: dict, user: str, n: int
) -> None:
    marker = new_user("nolimit")
    body = {"model": "demo/echo", "messages": [{"role": "user", "content": f"{marker} {TEN_WORDS}"}], "n": n}
    completion = post(stack, paywall, {**body, "user": user}).raise_for_status().json()
    [sent] = demo_requests(stack, marker)
    assert sent["max_tokens"] == DEFAULT_LIMIT, "the funds cover the hold, yet the held limit must be sent"
    assert [len(c["message"]["content"].split()) for c in completion["choices"]] == [DEFAULT_LIMIT] * n
    assert completion["usage"]["completion_tokens"] == DEFAULT_LIMIT * n
    [charge] = charges(stack, paywall["key"], user)
    assert int(charge["amount"]) == -expected_cost(DEMO_PRICES["demo/echo"], usage_of(sent))
    assert charge["metadata"] == {}, "the provider's usage, within the hold: not capped, not estimated"
    assert_settled(stack, paywall, user)


def test_the_default_limit_goes_in_the_field_openai_takes(stack: LocalStack) -> None:
    openai_kind = make_paywall(stack)
    with stack.admin() as admin:
        admin.put(
            f"/admin/paywalls/{openai_kind['id']}/provider",
            json={"kind": "openai", "base_url": f"{stack.url}/_demo/v1", "api_key": "demo-provider-key"},
        ).raise_for_status()
    user = new_user()
    fund(stack, openai_kind["id"], user, "1")
    marker = new_user("mct")
    sdk(stack, openai_kind["key"]).chat.completions.create(
        model="demo/echo", messages=[{"role": "user", "content": f"{marker} {TEN_WORDS}"}], user=user, stream=True
    ).close()
    [sent] = demo_requests(stack, marker)
    assert sent["max_completion_tokens"] == DEFAULT_LIMIT and "max_tokens" not in sent


def test_a_client_limit_is_sent_as_it_is(stack: LocalStack, paywall: dict, user: str) -> None:
    marker = new_user("own")
    body = {"model": "demo/echo", "messages": [{"role": "user", "content": f"{marker} {TEN_WORDS}"}], "max_tokens": 8}
    completion = post(stack, paywall, {**body, "user": user}).raise_for_status().json()
    [sent] = demo_requests(stack, marker)
    assert sent["max_tokens"] == 8 and "max_completion_tokens" not in sent
    assert completion["usage"]["completion_tokens"] == 8


def _with_provider_kind(stack: LocalStack, kind: str) -> dict:
    """A paywall whose provider (the demo one) is configured as `kind`."""
    models = {**DEMO_PRICES, "demo/max-tokens-only": PLAIN_PRICE, "demo/max-completion-tokens-only": PLAIN_PRICE}
    made = make_paywall(stack, models=models)
    with stack.admin() as admin:
        admin.put(
            f"/admin/paywalls/{made['id']}/provider",
            json={"kind": kind, "base_url": f"{stack.url}/_demo/v1", "api_key": "demo-provider-key"},
        ).raise_for_status()
    return made


@pytest.mark.parametrize(
    ("kind", "model"),
    [
        ("openai-compatible", "demo/max-tokens-only"),
        ("openai-compatible", "demo/max-completion-tokens-only"),
        ("openai", "demo/max-completion-tokens-only"),  # OpenAI honours max_completion_tokens
        ("openrouter", "demo/max-tokens-only"),  # OpenRouter, Together, Anthropic: max_tokens
        ("anthropic", "demo/max-tokens-only"),
    ],
)
@pytest.mark.parametrize("larger_first", [True, False])
@pytest.mark.parametrize("stream", [False, True])
def test_a_provider_honouring_one_limit_field_never_generates_beyond_the_hold(
    stack: LocalStack, kind: str, model: str, larger_first: bool, stream: bool
) -> None:
    """SPEC §4.1. The hold is sized on the smaller of the client's two limits; the larger used to go
    upstream unchanged, so a provider reading only that field generated more than was held and the
    charge was capped at the hold (served for free beyond it)."""
    paywall = _with_provider_kind(stack, kind)
    user = new_user()
    fund(stack, paywall["id"], user, "1")
    marker = new_user("onefield")
    # The field this provider honours gets the larger value: the request is held for 3 per choice.
    honoured = "max_tokens" if model == "demo/max-tokens-only" else "max_completion_tokens"
    other = "max_completion_tokens" if honoured == "max_tokens" else "max_tokens"
    limits = [(honoured, 8), (other, 3)] if larger_first else [(other, 3), (honoured, 8)]
    body = {"model": model, "messages": [{"role": "user", "content": f"{marker} {TEN_WORDS}"}], **dict(limits)}
    reply = post(stack, paywall, {**body, "user": user, "stream": stream, "stream_options": {"include_usage": True}})
    reply.raise_for_status()
    [sent] = demo_requests(stack, marker)
    assert sent[honoured] == 3, "every limit field that reaches the provider carries the held limit"
    assert all(sent[f] == 3 for f in ("max_tokens", "max_completion_tokens") if f in sent)
    usage = usage_of(sent)
    assert usage["completion_tokens"] == 3, "what was generated never exceeds the held limit"
    [charge] = charges(stack, paywall["key"], user)
    assert int(charge["amount"]) == -expected_cost(PLAIN_PRICE, usage), "the price formula on what was generated"
    assert charge["completion_tokens"] == 3 and charge["metadata"] == {}
    assert_settled(stack, paywall, user)


# ---- fallback models -----------------------------------------------------------------------------


def test_fallback_models_must_all_be_priced(stack: LocalStack, paywall: dict, user: str) -> None:
    marker = new_user("fallback")
    messages = [{"role": "user", "content": marker}]
    client = sdk(stack, paywall["key"])
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(
            model="demo/echo", messages=messages, user=user, extra_body={"models": ["demo/echo", "demo/unpriced"]}
        )
    assert raised.value.param == "models" and "demo/unpriced" in raised.value.message
    with pytest.raises(openai.BadRequestError) as route:
        client.chat.completions.create(
            model="demo/echo", messages=messages, user=user, extra_body={"route": "fallback"}
        )
    assert route.value.param == "route"
    assert demo_requests(stack, marker) == []
    assert charges(stack, paywall["key"], user) == []
    assert_settled(stack, paywall, user)


def test_fallback_models_are_charged_at_the_highest_listed_price(stack: LocalStack, paywall: dict, user: str) -> None:
    marker = new_user("dear")
    body = {
        "model": "demo/echo",
        "messages": [{"role": "user", "content": f"{marker} a b c"}],
        "models": ["demo/tools"],
        "route": "fallback",
    }
    post(stack, paywall, {**body, "user": user}).raise_for_status()
    [sent] = demo_requests(stack, marker)
    assert sent["models"] == ["demo/tools"], "accepted, so passed on"
    echo, tools = DEMO_PRICES["demo/echo"], DEMO_PRICES["demo/tools"]
    highest = {
        k: str(max(Decimal(echo.get(k, "0")), Decimal(tools.get(k, "0")))) for k in ("prompt", "completion", "request")
    }
    [charge] = charges(stack, paywall["key"], user)
    assert int(charge["amount"]) == -expected_cost(highest, usage_of(sent))
    assert int(charge["amount"]) < -expected_cost(echo, usage_of(sent)), "more than the cheap model's price"
    assert_settled(stack, paywall, user)


def test_a_costlier_model_served_instead_is_logged(stack: LocalStack, paywall: dict, user: str) -> None:
    models = {**DEMO_PRICES, "demo/swap": PLAIN_PRICE}
    swapping = make_paywall(stack, models=models)
    fund(stack, swapping["id"], user, "1")
    sdk(stack, swapping["key"]).chat.completions.create(
        model="demo/swap", messages=[{"role": "user", "content": "hi"}], user=user
    )
    assert "provider served 'demo/tools', priced higher than 'demo/swap'" in stack.log()


# ---- file parts ----------------------------------------------------------------------------------


def test_file_parts_are_refused(stack: LocalStack, paywall: dict, user: str) -> None:
    marker = new_user("pdf")
    content = [{"type": "text", "text": marker}, {"type": "file", "file": {"file_id": "file-abc"}}]
    reply = post(
        stack, paywall, {"model": "demo/echo", "messages": [{"role": "user", "content": content}], "user": user}
    )
    assert reply.status_code == 400
    error = reply.json()["error"]
    assert error["param"] == "messages" and "file content parts are not supported" in error["message"]
    assert demo_requests(stack, marker) == []
    assert_settled(stack, paywall, user)


# ---- time limit ----------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["demo/slow", "demo/stall"])
def test_a_stream_at_the_time_limit_is_ended_and_charged(
    stack: LocalStack, paywall: dict, user: str, model: str
) -> None:
    """Lambda would kill the stream at its timeout and the hold would be swept: served for free."""
    body = {
        "model": model,
        "messages": [{"role": "user", "content": f"{TEN_WORDS} {TEN_WORDS}"}],  # demo/slow: 20 pauses of 0.5 s
        "max_tokens": 100,
        "stream": True,
    }
    received = ""
    started = time.monotonic()
    with pytest.raises(openai.APIError) as raised:
        for chunk in sdk(stack, paywall["key"]).chat.completions.create(**body, user=user):
            received += chunk.choices[0].delta.content or "" if chunk.choices else ""
    elapsed = time.monotonic() - started
    assert TIME_LIMIT_S - 0.5 < elapsed < TIME_LIMIT_S + 3, elapsed
    assert raised.value.code == "stream_time_limit"
    assert received and len(received.split()) < 20
    [charge] = wait_for_charges(stack, paywall["key"], user)
    price = Pricing(ModelPrice(Decimal(PLAIN_PRICE["prompt"]), Decimal(PLAIN_PRICE["completion"])))
    generated = min(len(received.encode()), body["max_tokens"])  # capped at the completion tokens held
    estimate = price.cost(metering.prompt_token_bound({**body, "user": user}), generated)
    assert int(charge["amount"]) == -estimate, "what was sent is charged as the documented estimate"
    assert charge["metadata"] == {"usage": "estimated"}
    assert_settled(stack, paywall, user)


def test_a_request_still_waiting_at_the_time_limit_is_a_504(stack: LocalStack, paywall: dict, user: str) -> None:
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as raised:
        sdk(stack, paywall["key"]).chat.completions.create(
            model="demo/hang", messages=[{"role": "user", "content": "hi"}], user=user
        )
    assert raised.value.status_code == 504 and raised.value.code == "provider_timeout"
    assert time.monotonic() - started < TIME_LIMIT_S + 3
    assert charges(stack, paywall["key"], user) == []
    assert balance(stack, paywall["key"], user) == available(stack, paywall["id"], user) == 1_000_000
