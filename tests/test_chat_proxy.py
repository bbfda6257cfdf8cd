"""End to end: the official OpenAI Python SDK against the local stack over real HTTP. Every reply is
validated with the SDK's own types and every charge is the price table's arithmetic to the
micro-unit (from the usage the demo provider reports)."""

from __future__ import annotations

import json
from decimal import Decimal

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from devserver.demo_provider import usage_of
from paywalls.billing import metering
from paywalls.billing.metering import Pricing
from paywalls.billing.paywall import ModelPrice
from tests.chat_support import (
    DEMO_PRICES,
    ECHO_PRICE,
    assert_ledger_consistent,
    available,
    balance,
    charges,
    chunks_of,
    demo_requests,
    expected_cost,
    fund,
    make_paywall,
    new_user,
    sdk,
    sse_events,
)
from tests.conftest import LocalStack

USER_FUNDS = "1.5"  # read by the `user` fixture (tests/conftest.py)


def test_non_streaming_completion_is_charged_exactly(stack: LocalStack, paywall: dict, user: str) -> None:
    client = sdk(stack, paywall["key"])
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "say hello to the world"},
    ]
    raw = client.chat.completions.with_raw_response.create(model="demo/echo", messages=messages, user=user)
    completion = ChatCompletion.model_validate(raw.http_response.json())
    assert completion.choices[0].message.content == "say hello to the world"
    assert completion.choices[0].finish_reason == "stop"
    usage = usage_of({"messages": messages})
    assert completion.usage is not None and completion.usage.model_dump(exclude_none=True) == usage
    [charge] = charges(stack, paywall["key"], user)
    assert int(charge["amount"]) == -expected_cost(ECHO_PRICE, usage)
    # The ledger entry names the request by the id the response carried.
    assert charge["request_id"] == raw.headers["x-request-id"]
    assert (charge["model"], charge["prompt_tokens"], charge["completion_tokens"]) == ("demo/echo", 10, 5)
    assert assert_ledger_consistent(stack, paywall["key"], user) == 1_500_000 - expected_cost(ECHO_PRICE, usage)
    assert available(stack, paywall["id"], user) == balance(stack, paywall["key"], user), "the hold was settled"


def test_streaming_strips_the_usage_chunk_unless_asked(stack: LocalStack, paywall: dict, user: str) -> None:
    client = sdk(stack, paywall["key"])
    messages = [{"role": "user", "content": "stream these five words"}]
    chunks = list(client.chat.completions.create(model="demo/echo", messages=messages, user=user, stream=True))
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "stream these five words"
    assert all(c.choices and c.usage is None for c in chunks), "the usage-only chunk reached a client that did not ask"
    with_usage = list(
        client.chat.completions.create(
            model="demo/echo", messages=messages, user=user, stream=True, stream_options={"include_usage": True}
        )
    )
    assert with_usage[-1].choices == [] and with_usage[-1].usage is not None
    usage = usage_of({"messages": messages})
    assert with_usage[-1].usage.prompt_tokens == usage["prompt_tokens"]
    found = charges(stack, paywall["key"], user)
    assert [int(c["amount"]) for c in found] == [-expected_cost(ECHO_PRICE, usage)] * 2
    assert_ledger_consistent(stack, paywall["key"], user)


def test_raw_stream_is_valid_sse_with_done(stack: LocalStack, paywall: dict, user: str) -> None:
    body = {"model": "demo/echo", "messages": [{"role": "user", "content": "raw sse"}], "stream": True, "user": user}
    with httpx.stream(
        "POST",
        f"{stack.url}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {paywall['key']}"},
        timeout=30,
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-request-id"].startswith("req_")
        events = sse_events(response)
    chunks = [ChatCompletionChunk.model_validate(c) for c in chunks_of(events)]
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_tools_response_format_and_options_reach_the_provider_unchanged(
    stack: LocalStack, paywall: dict, user: str
) -> None:
    marker = new_user("marker")
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            },
        }
    ]
    response_format = {
        "type": "json_schema",
        "json_schema": {"name": "answer", "schema": {"type": "object", "properties": {"a": {"type": "string"}}}},
    }
    client = sdk(stack, paywall["key"])
    completion = client.chat.completions.create(
        model="demo/tools",
        messages=[{"role": "user", "content": f"weather in Paris {marker}"}],
        tools=tools,
        tool_choice="auto",
        response_format=response_format,
        temperature=0.2,
        top_p=0.9,
        stop=["\n\n"],
        seed=7,
        n=2,
        max_tokens=200,
        user=user,
        # Allow-listed vendor fields pass (an unknown one is refused: tests/test_chat_fields.py).
        extra_body={"top_k": 40, "transforms": ["middle-out"]},
    )
    assert len(completion.choices) == 2
    call = completion.choices[0].message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"echo": f"weather in Paris {marker}"}
    assert completion.choices[0].finish_reason == "tool_calls"
    [sent] = demo_requests(stack, marker)
    assert sent["tools"] == tools and sent["tool_choice"] == "auto"
    assert sent["response_format"] == response_format
    assert (sent["temperature"], sent["top_p"], sent["stop"], sent["seed"], sent["n"]) == (0.2, 0.9, ["\n\n"], 7, 2)
    assert sent["max_tokens"] == 200 and (sent["top_k"], sent["transforms"]) == (40, ["middle-out"])
    assert sent["user"] == user, "the app's user id is forwarded as the app sent it"
    [charge] = charges(stack, paywall["key"], user)
    assert int(charge["amount"]) == -expected_cost(DEMO_PRICES["demo/tools"], usage_of(sent))


def test_streamed_tool_calls(stack: LocalStack, paywall: dict, user: str) -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    stream = sdk(stack, paywall["key"]).chat.completions.create(
        model="demo/tools", messages=[{"role": "user", "content": "find it"}], tools=tools, user=user, stream=True
    )
    arguments = ""
    for chunk in stream:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                arguments += call.function.arguments or ""
    assert json.loads(arguments) == {"echo": "find it"}


def test_vision_parts_pass_through(stack: LocalStack, paywall: dict, user: str) -> None:
    marker = new_user("img")
    content = [
        {"type": "text", "text": f"describe {marker}"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo=", "detail": "high"}},
    ]
    completion = sdk(stack, paywall["key"]).chat.completions.create(
        model="demo/echo", messages=[{"role": "user", "content": content}], user=user
    )
    assert completion.choices[0].message.content == f"describe {marker}"
    [sent] = demo_requests(stack, marker)
    assert sent["messages"][0]["content"] == content


@pytest.mark.parametrize("where", ["body", "header", "path"])
def test_user_from_body_header_or_path(stack: LocalStack, paywall: dict, where: str) -> None:
    user = new_user(where)
    fund(stack, paywall["id"], user, "1")
    marker = new_user("m")
    messages = [{"role": "user", "content": f"who am I {marker}"}]
    if where == "body":
        sdk(stack, paywall["key"]).chat.completions.create(model="demo/echo", messages=messages, user=user)
    elif where == "header":
        client = sdk(stack, paywall["key"], default_headers={"X-Paywall-User": user})
        client.chat.completions.create(model="demo/echo", messages=messages)
    else:
        client = openai.OpenAI(base_url=f"{stack.url}/v1/{user}", api_key=paywall["key"], max_retries=0)
        client.chat.completions.create(model="demo/echo", messages=messages)
    assert len(charges(stack, paywall["key"], user)) == 1
    [sent] = demo_requests(stack, marker)
    if where == "body":
        assert sent["user"] == user
    else:
        assert "user" not in sent, "the proxy must not invent a user field (nor send the paywall key)"
    assert paywall["key"] not in json.dumps(sent)


def test_body_user_wins_over_header(stack: LocalStack, paywall: dict, user: str) -> None:
    other = new_user("other")
    client = sdk(stack, paywall["key"], default_headers={"X-Paywall-User": other})
    client.chat.completions.create(model="demo/echo", messages=[{"role": "user", "content": "hi"}], user=user)
    assert len(charges(stack, paywall["key"], user)) == 1
    assert charges(stack, paywall["key"], other) == []


def test_low_balance_gets_the_topup_message_and_nothing_is_charged(stack: LocalStack, paywall: dict) -> None:
    user = new_user("broke")
    client = sdk(stack, paywall["key"])
    raw = client.chat.completions.with_raw_response.create(
        model="demo/echo", messages=[{"role": "user", "content": "hello"}], user=user, n=2
    )
    assert raw.status_code == 200
    assert raw.headers["x-paywall-action"] == "topup"
    assert raw.headers["x-request-id"].startswith("req_")
    completion = ChatCompletion.model_validate(raw.http_response.json())
    assert len(completion.choices) == 2
    text = completion.choices[0].message.content or ""
    assert text.startswith("Your balance is too low") and f"{stack.url}/pay/" in text
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.total_tokens == 0

    stream_raw = client.chat.completions.with_raw_response.create(
        model="demo/echo",
        messages=[{"role": "user", "content": "hello"}],
        user=user,
        stream=True,
        stream_options={"include_usage": True},
    )
    assert stream_raw.headers["x-paywall-action"] == "topup"
    chunks = list(stream_raw.parse())
    assert all(isinstance(c, ChatCompletionChunk) for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == text
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 0
    assert balance(stack, paywall["key"], user) == 0
    assert charges(stack, paywall["key"], user) == []
    assert demo_requests(stack, user) == []


def test_custom_topup_template(stack: LocalStack) -> None:
    custom = make_paywall(stack, name="Acme")
    with stack.admin() as admin:
        admin.put(
            f"/admin/paywalls/{custom['id']}/templates", json={"topup": "{{name}} needs credits: {{url}}"}
        ).raise_for_status()
    completion = sdk(stack, custom["key"]).chat.completions.create(
        model="demo/echo", messages=[{"role": "user", "content": "hi"}], user=new_user()
    )
    assert (completion.choices[0].message.content or "").startswith(f"Acme needs credits: {stack.url}/pay/")


def test_balance_below_the_limit_lowers_max_tokens_sent_upstream(stack: LocalStack) -> None:
    price = {"prompt": "1", "completion": "2"}
    lean = make_paywall(stack, models={"demo/echo": price})
    user = new_user("lean")
    marker = new_user("lim")
    words = " ".join(f"w{i}" for i in range(60))
    body = {"model": "demo/echo", "messages": [{"role": "user", "content": f"{marker} {words}"}], "user": user}
    bound = metering.prompt_token_bound(body)
    funds = bound + 2 * 20  # the prompt bound plus exactly 20 completion tokens
    fund(stack, lean["id"], user, f"0.{funds:06d}")
    reply = httpx.post(
        f"{stack.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {lean['key']}"}, timeout=30
    )
    completion = ChatCompletion.model_validate(reply.raise_for_status().json())
    [sent] = demo_requests(stack, marker)
    assert sent["max_tokens"] == 20, "no limit was set, so the proxy set the one the balance covers"
    assert completion.choices[0].finish_reason == "length"
    assert len((completion.choices[0].message.content or "").split()) == 20
    [charge] = charges(stack, lean["key"], user)
    assert int(charge["amount"]) == -expected_cost(price, usage_of(sent))
    assert assert_ledger_consistent(stack, lean["key"], user) >= 0
    # What is left cannot pay for another prompt: the next request gets the paywall reply.
    again = httpx.post(
        f"{stack.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {lean['key']}"}, timeout=30
    )
    assert again.headers["x-paywall-action"] == "topup"


def test_client_limit_above_the_balance_is_lowered_in_every_limit_field_sent(stack: LocalStack) -> None:
    price = {"prompt": "1", "completion": "2"}
    lean = make_paywall(stack, models={"demo/echo": price})
    user = new_user()
    marker = new_user("mct")
    body = {
        "model": "demo/echo",
        "messages": [{"role": "user", "content": f"{marker} a b c d e f g h"}],
        "max_completion_tokens": 1000,
        "user": user,
    }
    plan = metering.plan_hold(
        Pricing(ModelPrice(Decimal(price["prompt"]), Decimal(price["completion"]))),
        prompt_bound=metering.prompt_token_bound(body),
        requested_limit=1000,
        n=1,
        available=metering.prompt_token_bound(body) + 2 * 5,
    )
    assert plan is not None and plan.tokens_per_choice == 5
    fund(stack, lean["id"], user, f"0.{plan.amount:06d}")
    httpx.post(
        f"{stack.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {lean['key']}"}, timeout=30
    ).raise_for_status()
    [sent] = demo_requests(stack, marker)
    # The field the client used, and max_tokens, which an openai-compatible server may read instead.
    assert sent["max_completion_tokens"] == 5 and sent["max_tokens"] == 5


def test_markup_is_charged(stack: LocalStack) -> None:
    marked = make_paywall(stack, markup_percent="25")
    user = new_user()
    fund(stack, marked["id"], user, "1")
    messages = [{"role": "user", "content": "mark me up"}]
    sdk(stack, marked["key"]).chat.completions.create(model="demo/echo", messages=messages, user=user)
    [charge] = charges(stack, marked["key"], user)
    assert int(charge["amount"]) == -expected_cost(ECHO_PRICE, usage_of({"messages": messages}), "25")


def test_test_and_live_keys_never_share_balances(stack: LocalStack, paywall: dict, user: str) -> None:
    raw = sdk(stack, paywall["test_key"]).chat.completions.with_raw_response.create(
        model="demo/echo", messages=[{"role": "user", "content": "hi"}], user=user
    )
    assert raw.headers["x-paywall-action"] == "topup", "the live balance must not serve a test key"


def test_bad_key_is_an_authentication_error(stack: LocalStack) -> None:
    with pytest.raises(openai.AuthenticationError):
        sdk(stack, "sk-paywalls-not-a-real-key").chat.completions.create(
            model="demo/echo", messages=[{"role": "user", "content": "hi"}], user="alice"
        )
    reply = httpx.post(f"{stack.url}/v1/chat/completions", json={}, timeout=30)
    assert reply.status_code == 401 and reply.headers["x-request-id"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"messages": []},
        {"messages": [{"role": "user", "content": "hi"}], "user": "not a valid id!"},
        {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 0},
        {"messages": [{"role": "user", "content": "hi"}], "n": 0},
    ],
)
def test_bad_input_is_a_bad_request(stack: LocalStack, paywall: dict, kwargs: dict) -> None:
    kwargs.setdefault("user", "alice")
    with pytest.raises(openai.BadRequestError) as raised:
        sdk(stack, paywall["key"]).chat.completions.create(model="demo/echo", **kwargs)
    assert raised.value.body is not None and raised.value.response.headers["x-request-id"]


def test_missing_user_and_broken_json_are_bad_requests(stack: LocalStack, paywall: dict) -> None:
    with pytest.raises(openai.BadRequestError) as raised:
        sdk(stack, paywall["key"]).chat.completions.create(
            model="demo/echo", messages=[{"role": "user", "content": "hi"}]
        )
    assert raised.value.code == "invalid_user"
    headers = {"Authorization": f"Bearer {paywall['key']}", "Content-Type": "application/json"}
    broken = httpx.post(f"{stack.url}/v1/chat/completions", content=b"{not json", headers=headers, timeout=30)
    assert broken.status_code == 400 and broken.json()["error"]["code"] == "invalid_json"


def test_unknown_model_is_not_found_and_never_served(stack: LocalStack, paywall: dict, user: str) -> None:
    marker = new_user("unpriced")
    with pytest.raises(openai.NotFoundError) as raised:
        sdk(stack, paywall["key"]).chat.completions.create(
            model="demo/unpriced", messages=[{"role": "user", "content": marker}], user=user
        )
    assert raised.value.code == "model_not_found"
    assert demo_requests(stack, marker) == []
    assert charges(stack, paywall["key"], user) == []


def test_shared_mode_asks_an_unconnected_user_to_authorize(stack: LocalStack) -> None:
    """Shared mode (SPEC §6; the whole flow is in test_shared_e2e.py): not connected -> the paywall's
    authorize message with the link, nothing charged."""
    shared = make_paywall(stack, mode="shared")
    reply = sdk(stack, shared["key"]).chat.completions.with_raw_response.create(
        model="demo/echo", messages=[{"role": "user", "content": "hi"}], user="alice"
    )
    assert reply.headers["x-paywall-action"] == "authorize"
    assert "/wallet/authorize/" in (reply.parse().choices[0].message.content or "")


def test_paywall_without_provider(stack: LocalStack) -> None:
    bare = make_paywall(stack, provider=False)
    user = new_user()
    fund(stack, bare["id"], user, "1")
    with pytest.raises(openai.InternalServerError) as raised:
        sdk(stack, bare["key"]).chat.completions.create(
            model="demo/echo", messages=[{"role": "user", "content": "hi"}], user=user
        )
    assert raised.value.status_code == 503 and raised.value.code == "provider_not_configured"
    assert balance(stack, bare["key"], user) == available(stack, bare["id"], user) == 1_000_000
