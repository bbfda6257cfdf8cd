"""Provider failures through the proxy, on a stack of its own with short provider timeouts:
failures release the hold (nothing charged, OpenAI-style 502/504), 4xx pass through, and what a
broken or usage-less stream generated is charged as the documented estimate (metering docstring)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from paywalls.billing import metering
from paywalls.billing.metering import Pricing
from paywalls.billing.paywall import DEFAULT_TEMPLATES, ModelPrice
from tests.chat_support import (
    PLAIN_PRICE,
    assert_ledger_consistent,
    available,
    balance,
    charges,
    chunks_of,
    demo_requests,
    fund,
    make_paywall,
    new_user,
    sdk,
    sse_events,
    wait_for_charges,
)
from tests.conftest import LocalStack, run_local_stack

PLAIN = Pricing(ModelPrice(Decimal(PLAIN_PRICE["prompt"]), Decimal(PLAIN_PRICE["completion"])))
FUNDS = 1_000_000


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    env = {
        "PAYWALLS_PROVIDER_READ_TIMEOUT_S": "2",
        "PAYWALLS_STREAM_DRAIN_TIMEOUT_S": "1",
        "DEMO_HANG_S": "8",
    }
    with run_local_stack(env) as running:
        yield running


def assert_untouched(stack: LocalStack, paywall: dict, user: str) -> None:
    assert charges(stack, paywall["key"], user) == []
    assert balance(stack, paywall["key"], user) == FUNDS
    assert available(stack, paywall["id"], user) == FUNDS, "the hold was released"


def post(stack: LocalStack, paywall: dict, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{stack.url}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {paywall['key']}"},
        timeout=60,
    )


@pytest.mark.parametrize("model", ["demo/fail-500", "demo/garbage"])
@pytest.mark.parametrize("stream", [False, True])
def test_provider_failure_is_a_502_and_costs_nothing(
    stack: LocalStack, paywall: dict, user: str, model: str, stream: bool
) -> None:
    client = sdk(stack, paywall["key"])
    with pytest.raises(openai.InternalServerError) as raised:
        reply = client.chat.completions.create(
            model=model, messages=[{"role": "user", "content": "hi"}], user=user, stream=stream
        )
        list(reply) if stream else None
    assert raised.value.status_code == 502
    assert raised.value.code == "provider_error"
    assert raised.value.body["message"] == DEFAULT_TEMPLATES["provider_error"]
    assert raised.value.response.headers["x-request-id"].startswith("req_")
    assert_untouched(stack, paywall, user)


@pytest.mark.parametrize("stream", [False, True])
def test_provider_timeout_is_a_504_and_costs_nothing(stack: LocalStack, paywall: dict, user: str, stream: bool) -> None:
    with pytest.raises(openai.APIStatusError) as raised:
        reply = sdk(stack, paywall["key"]).chat.completions.create(
            model="demo/hang", messages=[{"role": "user", "content": "hi"}], user=user, stream=stream
        )
        list(reply) if stream else None
    assert raised.value.status_code == 504 and raised.value.code == "provider_timeout"
    assert_untouched(stack, paywall, user)


@pytest.mark.parametrize("stream", [False, True])
def test_provider_4xx_passes_through(stack: LocalStack, paywall: dict, user: str, stream: bool) -> None:
    client = sdk(stack, paywall["key"])
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(
            model="demo/reject", messages=[{"role": "user", "content": "hi"}], user=user, stream=stream
        )
    assert raised.value.body["message"] == "demo/reject refuses every request"
    assert raised.value.param == "messages"
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(
            model="demo/rate-limit", messages=[{"role": "user", "content": "hi"}], user=user, stream=stream
        )
    assert limited.value.response.headers["retry-after"] == "7"
    assert_untouched(stack, paywall, user)


def test_provider_key_refused_is_a_502_never_an_auth_error_for_the_app(stack: LocalStack) -> None:
    broken = make_paywall(stack)
    with stack.admin() as admin:
        admin.put(
            f"/admin/paywalls/{broken['id']}/provider",
            json={"kind": "openai-compatible", "base_url": f"{stack.url}/_demo/v1", "api_key": "wrong-key"},
        ).raise_for_status()
    user = new_user()
    fund(stack, broken["id"], user, "1")
    for stream in (False, True):
        with pytest.raises(openai.InternalServerError) as raised:
            sdk(stack, broken["key"]).chat.completions.create(
                model="demo/echo", messages=[{"role": "user", "content": "hi"}], user=user, stream=stream
            )
        # Not the generic "provider is not answering": the operator's key was refused, and says so.
        assert raised.value.status_code == 502 and raised.value.code == "provider_auth_failed"
        assert "refused this paywall's provider API key" in raised.value.body["message"]
        assert raised.value.response.headers["x-should-retry"] == "false", "retrying cannot fix a key"
        assert "wrong-key" not in raised.value.response.text
    assert f"refused the provider key of paywall {broken['id']}" in stack.log(), "the console names the cause"
    assert "wrong-key" not in stack.log(), "the provider key must never be logged"
    assert_untouched(stack, broken, user)


def estimate(body: dict[str, Any], generated: bytes, limit: int | None = None) -> int:
    """The documented charge without usage: prompt bound + one token per generated byte (capped)."""
    held = limit if limit is not None else metering.NO_LIMIT_TOKENS
    return PLAIN.cost(metering.prompt_token_bound(body), min(len(generated), held))


def test_stream_that_stalls_mid_answer_ends_with_an_error_event_and_charges_what_was_sent(
    stack: LocalStack, paywall: dict, user: str
) -> None:
    body = {"model": "demo/stall", "messages": [{"role": "user", "content": "one two three"}], "stream": True}
    client = sdk(stack, paywall["key"])
    received = ""
    with pytest.raises(openai.APIError) as raised:
        for chunk in client.chat.completions.create(**body, user=user):
            received += chunk.choices[0].delta.content or "" if chunk.choices else ""
    assert received == "one"
    assert raised.value.message == DEFAULT_TEMPLATES["provider_error"]
    [charge] = charges(stack, paywall["key"], user)
    assert int(charge["amount"]) == -estimate({**body, "user": user}, b"one")
    assert charge["metadata"] == {"usage": "estimated"}
    assert_ledger_consistent(stack, paywall["key"], user)
    assert available(stack, paywall["id"], user) == balance(stack, paywall["key"], user)


def test_disconnect_while_the_provider_stalls_is_bounded_and_charged(
    stack: LocalStack, paywall: dict, user: str
) -> None:
    body = {"model": "demo/stall", "messages": [{"role": "user", "content": "four five six"}], "stream": True}
    with (
        httpx.Client(timeout=30) as client,
        client.stream(
            "POST",
            f"{stack.url}/v1/{user}/chat/completions",
            json=body,
            headers={"Authorization": f"Bearer {paywall['key']}"},
        ) as response,
    ):
        for line in response.iter_lines():
            if '"four"' in line:
                break
    # The proxy gives up reading after PAYWALLS_STREAM_DRAIN_TIMEOUT_S and charges the estimate.
    [charge] = wait_for_charges(stack, paywall["key"], user, timeout_s=30)
    assert int(charge["amount"]) == -estimate(body, b"four")
    assert charge["metadata"] == {"usage": "estimated"}
    assert available(stack, paywall["id"], user) == assert_ledger_consistent(stack, paywall["key"], user)


def test_no_usage_is_charged_the_estimate(stack: LocalStack, paywall: dict, user: str) -> None:
    body = {"model": "demo/no-usage", "messages": [{"role": "user", "content": "héllo wörld"}], "user": user}
    completion = post(stack, paywall, {**body, "max_tokens": 5}).raise_for_status().json()
    assert "usage" not in completion
    generated = "héllo wörld".encode()[:5]  # 13 bytes, capped at the 5 completion tokens held
    [first] = charges(stack, paywall["key"], user)
    assert int(first["amount"]) == -estimate({**body, "max_tokens": 5}, generated, limit=5)
    assert first["metadata"] == {"usage": "estimated"}

    with httpx.stream(
        "POST",
        f"{stack.url}/v1/chat/completions",
        json={**body, "stream": True},
        headers={"Authorization": f"Bearer {paywall['key']}"},
        timeout=30,
    ) as response:
        chunks = chunks_of(sse_events(response))
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == "héllo wörld"
    [second, _] = charges(stack, paywall["key"], user)
    assert int(second["amount"]) == -estimate({**body, "stream": True}, "héllo wörld".encode())
    assert_ledger_consistent(stack, paywall["key"], user)


def test_first_chunk_invalid_is_a_clean_502(stack: LocalStack, paywall: dict, user: str) -> None:
    reply = post(
        stack,
        paywall,
        {"model": "demo/garbage", "messages": [{"role": "user", "content": "x"}], "stream": True, "user": user},
    )
    assert reply.status_code == 502
    assert reply.headers["content-type"].startswith("application/json")
    assert json.loads(reply.text)["error"]["type"] == "api_error"
    assert len(demo_requests(stack, user)) == 1, "called once: a failure is not retried by the proxy"
    assert_untouched(stack, paywall, user)
