"""The Responses API and embeddings through the proxy with the official `openai` SDK, against the local
stack's demo provider: exact charges to the micro-unit, the held limit always sent, paywall replies in
each endpoint's shape, refusals before any provider call (docs/endpoints.md)."""

from __future__ import annotations

import base64
import struct
import uuid

import httpx
import openai
import pytest

from devserver.demo_provider import embedding_of, embeddings_usage_of, responses_usage_of
from paywalls.billing.metering import NO_LIMIT_TOKENS
from paywalls.chat import responses as responses_api
from tests.chat_support import (
    ECHO_PRICE,
    assert_ledger_consistent,
    available,
    balance,
    charges,
    demo_requests,
    expected_cost,
    fund,
    funded_user,
    make_paywall,
    new_user,
    sdk,
)
from tests.conftest import LocalStack

EMBED_PRICE = {"prompt": "0.13", "completion": "0"}


def _cost(usage: dict[str, int], price: dict[str, str] = ECHO_PRICE) -> int:
    return expected_cost(price, {"prompt_tokens": usage["input_tokens"], "completion_tokens": usage["output_tokens"]})


def _user_header(user: str) -> dict[str, str]:
    return {"X-Paywall-User": user}


# ---- responses ----------------------------------------------------------------------------------


def test_responses_create_is_charged_its_exact_usage_and_names_the_provider(stack: LocalStack) -> None:
    paywall, user = funded_user(stack, "resp")
    marker = uuid.uuid4().hex[:10]
    text = f"respond {marker} with these words"
    raw = sdk(stack, paywall["key"]).responses.with_raw_response.create(
        model="demo/echo", input=text, instructions="be brief", max_output_tokens=50, extra_headers=_user_header(user)
    )
    response = raw.parse()
    assert response.output_text == text
    assert raw.headers["x-paywall-provider"] == "default" and raw.headers["x-paywall-model"] == "demo/echo"
    sent = demo_requests(stack, marker)
    assert len(sent) == 1 and sent[0]["max_output_tokens"] == 50
    usage = responses_usage_of(sent[0])
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (
        usage["input_tokens"],
        usage["output_tokens"],
    )
    [charge] = charges(stack, paywall["key"], user)
    assert int(charge["amount"]) == -_cost(usage)
    assert charge["provider"] == "default" and charge["request_id"] == raw.headers["x-request-id"]
    assert balance(stack, paywall["key"], user) == 1_000_000 - _cost(usage)
    assert available(stack, paywall["id"], user) == 1_000_000 - _cost(usage)


def test_responses_stream_with_the_sdk_is_charged_before_the_completed_event(stack: LocalStack) -> None:
    paywall, user = funded_user(stack, "rstream")
    marker = uuid.uuid4().hex[:10]
    text = f"stream {marker} back to me please"
    client = sdk(stack, paywall["key"])
    deltas = []
    balance_when_completed = None
    with client.responses.stream(model="demo/echo", input=text, extra_headers=_user_header(user)) as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
            if event.type == "response.completed":
                # Read-your-writes: the charge is written before the terminal event is sent.
                balance_when_completed = balance(stack, paywall["key"], user)
        final = stream.get_final_response()
    assert "".join(deltas) == text == final.output_text
    assert len(deltas) == len(text.split())
    sent = demo_requests(stack, marker)
    assert sent[0]["stream"] is True and sent[0]["max_output_tokens"] == NO_LIMIT_TOKENS
    usage = responses_usage_of(sent[0])
    assert final.usage is not None and final.usage.output_tokens == usage["output_tokens"]
    assert balance_when_completed == 1_000_000 - _cost(usage)
    assert [int(c["amount"]) for c in charges(stack, paywall["key"], user)] == [-_cost(usage)]
    assert_ledger_consistent(stack, paywall["key"], user)


def test_the_output_limit_sent_is_lowered_to_what_the_balance_covers(stack: LocalStack) -> None:
    paywall, user = funded_user(stack, "rlow", "0.002")  # 2,000 micro-units: far fewer than 4,096 output tokens
    marker = uuid.uuid4().hex[:10]
    response = sdk(stack, paywall["key"]).responses.create(
        model="demo/echo", input=f"short {marker}", extra_headers=_user_header(user)
    )
    assert response.output_text == f"short {marker}"
    [sent] = demo_requests(stack, marker)
    assert 1 <= sent["max_output_tokens"] < NO_LIMIT_TOKENS
    [charge] = charges(stack, paywall["key"], user)
    assert int(charge["amount"]) == -_cost(responses_usage_of(sent))


def test_the_responses_paywall_reply_is_an_output_message_with_the_link(stack: LocalStack) -> None:
    paywall = make_paywall(stack)
    user = new_user("rbroke")
    client = sdk(stack, paywall["key"])
    raw = client.responses.with_raw_response.create(model="demo/echo", input="hello", extra_headers=_user_header(user))
    assert raw.headers["x-paywall-action"] == "topup"
    response = raw.parse()
    assert "/pay/" in response.output_text and response.usage is not None and response.usage.output_tokens == 0
    with client.responses.stream(model="demo/echo", input="hello", extra_headers=_user_header(user)) as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
        final = stream.get_final_response()
    assert "/pay/" in text and final.output_text == text
    assert charges(stack, paywall["key"], user) == []


def test_previous_response_id_holds_the_stored_context_allowance(stack: LocalStack) -> None:
    """The provider prepends a stored conversation we cannot see: CONTEXT_TOKENS more are held."""
    paywall = make_paywall(stack)
    user = new_user("rprev")
    # $1 per 1M prompt tokens: the context allowance alone costs more than this balance.
    assert responses_api.CONTEXT_TOKENS * 1 > 50_000
    fund(stack, paywall["id"], user, "0.05")
    client = sdk(stack, paywall["key"])
    first = client.responses.create(model="demo/echo", input="first turn", extra_headers=_user_header(user))
    assert first.output_text == "first turn"
    raw = client.responses.with_raw_response.create(
        model="demo/echo", input="second turn", previous_response_id=first.id, extra_headers=_user_header(user)
    )
    assert raw.headers["x-paywall-action"] == "topup"
    assert len(charges(stack, paywall["key"], user)) == 1


@pytest.mark.parametrize(
    ("tool", "feature"),
    [
        ({"type": "web_search"}, "web_search"),
        ({"type": "file_search", "vector_store_ids": ["vs_1"]}, "file_search"),
        ({"type": "code_interpreter", "container": {"type": "auto"}}, "code_interpreter"),
    ],
)
def test_hosted_tools_are_refused_unless_priced_and_then_charged_their_surcharge(
    stack: LocalStack, tool: dict, feature: str
) -> None:
    paywall, user = funded_user(stack, "rtool")
    marker = uuid.uuid4().hex[:10]
    client = sdk(stack, paywall["key"])
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="demo/echo", input=marker, tools=[tool], extra_headers=_user_header(user))
    assert refused.value.code == "unsupported_parameter" and refused.value.param == "tools"
    assert demo_requests(stack, marker) == []
    with stack.admin() as admin:
        admin.put(
            f"/admin/paywalls/{paywall['id']}/pricing",
            json={"models": {"demo/echo": ECHO_PRICE}, "features": {feature: {"request": "0.01"}}},
        ).raise_for_status()
    client.responses.create(model="demo/echo", input=marker, tools=[tool], extra_headers=_user_header(user))
    [sent] = demo_requests(stack, marker)
    surcharged = {**ECHO_PRICE, "request": "0.0101"}
    assert int(charges(stack, paywall["key"], user)[0]["amount"]) == -_cost(responses_usage_of(sent), surcharged)


def test_responses_refusals_reach_no_provider(stack: LocalStack) -> None:
    paywall, user = funded_user(stack, "rbad")
    headers = {"Authorization": f"Bearer {paywall['key']}", "X-Paywall-User": user}
    cases = [
        ({"model": "demo/echo", "input": "x", "background": True}, "background"),
        ({"model": "demo/echo", "input": "x", "prompt": {"id": "pmpt_1"}}, "prompt"),
        ({"model": "demo/echo", "input": "x", "tools": [{"type": "image_generation"}]}, "tools"),
        ({"model": "demo/echo", "input": "x", "surprise": 1}, "surprise"),
        ({"model": "demo/echo", "input": []}, "input"),
        (
            {"model": "demo/echo", "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
            "input",
        ),
        ({"model": "demo/echo", "input": "x", "max_output_tokens": 0}, "max_output_tokens"),
        ({"model": "not/priced", "input": "x"}, "model"),
    ]
    for body, param in cases:
        reply = httpx.post(f"{stack.url}/v1/responses", json=body, headers=headers, timeout=30)
        assert 400 <= reply.status_code < 500, (body, reply.text)
        assert reply.json()["error"]["param"] == param, reply.text
    assert charges(stack, paywall["key"], user) == []


def test_a_provider_without_a_responses_endpoint_is_refused_and_chat_still_works(stack: LocalStack) -> None:
    paywall = make_paywall(stack, provider=False)
    with stack.admin() as admin:
        admin.put(  # Together has no Responses API: its kind decides, whatever the URL
            f"/admin/paywalls/{paywall['id']}/provider",
            json={"kind": "together", "base_url": f"{stack.url}/_demo/v1", "api_key": "demo-provider-key"},
        ).raise_for_status()
    user = new_user("rnone")
    fund(stack, paywall["id"], user, "1")
    client = sdk(stack, paywall["key"])
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="demo/echo", input="hello", extra_headers=_user_header(user))
    assert refused.value.code == "unsupported_endpoint"
    assert "no Responses endpoint" in refused.value.message
    chat = client.chat.completions.create(
        model="demo/echo", messages=[{"role": "user", "content": "hello"}], extra_headers=_user_header(user)
    )
    assert chat.choices[0].message.content == "hello"
    assert len(charges(stack, paywall["key"], user)) == 1


# ---- embeddings -----------------------------------------------------------------------------------


def test_embeddings_with_the_sdk_are_charged_the_exact_input_tokens(stack: LocalStack) -> None:
    paywall, user = funded_user(stack, "emb", models={"demo/embed": EMBED_PRICE})
    marker = uuid.uuid4().hex[:10]
    client = sdk(stack, paywall["key"])
    inputs = [f"embed {marker} this", "and this one too"]
    result = client.embeddings.create(model="demo/embed", input=inputs, dimensions=5, extra_headers=_user_header(user))
    [sent] = demo_requests(stack, marker)
    # The SDK asks for base64 and decodes it: both pass through, as do the dimensions.
    assert sent["encoding_format"] == "base64" and sent["dimensions"] == 5
    assert [len(e.embedding) for e in result.data] == [5, 5]
    expected = [struct.unpack("<5f", struct.pack("<5f", *embedding_of(i, 5))) for i in inputs]
    assert [pytest.approx(list(v)) for v in expected] == [e.embedding for e in result.data]
    usage = embeddings_usage_of(sent)
    assert result.usage.prompt_tokens == usage["prompt_tokens"]
    tokens = client.embeddings.create(
        model="demo/embed", input=[[1, 2, 3, 4], [5, 6]], encoding_format="float", extra_headers=_user_header(user)
    )
    assert tokens.usage.prompt_tokens == 6
    amounts = [int(c["amount"]) for c in charges(stack, paywall["key"], user)]
    cost = expected_cost(EMBED_PRICE, {"prompt_tokens": usage["prompt_tokens"], "completion_tokens": 0})
    assert amounts == [-expected_cost(EMBED_PRICE, {"prompt_tokens": 6, "completion_tokens": 0}), -cost]
    assert available(stack, paywall["id"], user) == assert_ledger_consistent(stack, paywall["key"], user)


def test_an_embedding_hold_is_the_input_bound_and_a_short_balance_gets_a_402_with_the_link(stack: LocalStack) -> None:
    # 0.03: 30,000 micro-units, 30 tokens at $1000/M
    paywall, user = funded_user(stack, "embbroke", "0.03", models={"demo/embed": {"prompt": "1000", "completion": "0"}})
    client = sdk(stack, paywall["key"])
    fits = "x" * 28  # 28 bytes + 2 markers = 30 tokens held: exactly covered
    client.embeddings.create(model="demo/embed", input=fits, extra_headers=_user_header(user))
    with pytest.raises(openai.APIStatusError) as refused:
        client.embeddings.create(model="demo/embed", input="x" * 29, extra_headers=_user_header(user))
    assert refused.value.status_code == 402
    assert refused.value.response.headers["x-paywall-action"] == "topup"
    assert "/pay/" in refused.value.message
    [charge] = charges(stack, paywall["key"], user)
    assert int(charge["amount"]) == -1000  # the demo counts one word: charged the usage, not the hold


def test_embedding_inputs_are_checked_before_the_provider(stack: LocalStack) -> None:
    paywall, user = funded_user(stack, "embbad", models={"demo/embed": EMBED_PRICE})
    headers = {"Authorization": f"Bearer {paywall['key']}", "X-Paywall-User": user}
    for body, param in [
        ({"model": "demo/embed", "input": ""}, "input"),
        ({"model": "demo/embed", "input": []}, "input"),
        ({"model": "demo/embed", "input": [1, -2]}, "input"),
        ({"model": "demo/embed", "input": ["ok", 3]}, "input"),
        ({"model": "demo/embed", "input": "x", "dimensions": 0}, "dimensions"),
        ({"model": "demo/embed", "input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"model": "demo/embed", "input": "x", "stream": True}, "stream"),
    ]:
        reply = httpx.post(f"{stack.url}/v1/embeddings", json=body, headers=headers, timeout=30)
        assert reply.status_code == 400, (body, reply.text)
        assert reply.json()["error"]["param"] == param
    assert charges(stack, paywall["key"], user) == []


def test_models_lists_every_priced_model_with_its_endpoints(stack: LocalStack) -> None:
    paywall = make_paywall(stack, models={"demo/echo": ECHO_PRICE})
    with stack.admin() as admin:
        admin.put(
            f"/admin/paywalls/{paywall['id']}/providers/claude",
            json={
                "kind": "anthropic",
                "base_url": f"{stack.url}/_demo/v1",
                "api_key": "demo-provider-key",
                "prices": {"anthropic/claude-x": {"prompt": "3", "completion": "15"}},
            },
        ).raise_for_status()
        admin.put(
            f"/admin/paywalls/{paywall['id']}/routes",
            json={"routes": [{"match": "anthropic/*", "providers": [{"name": "claude", "strip_prefix": True}]}]},
        ).raise_for_status()
    listing = httpx.get(
        f"{stack.url}/v1/models", headers={"Authorization": f"Bearer {paywall['key']}"}, timeout=30
    ).raise_for_status()
    models = {m["id"]: m for m in listing.json()["data"]}
    assert models["demo/echo"]["endpoints"] == ["chat", "responses", "embeddings"]
    assert models["anthropic/claude-x"]["endpoints"] == ["chat"]
    assert models["anthropic/claude-x"]["pricing"] == {"prompt": "3", "completion": "15", "request": "0"}


def test_base64_from_the_demo_decodes_to_its_vector() -> None:
    vector = embedding_of("abc", 3)
    packed = base64.b64encode(struct.pack("<3f", *vector)).decode()
    assert struct.unpack("<3f", base64.b64decode(packed)) == pytest.approx(vector)


def test_malformed_bodies_are_a_4xx_never_a_5xx(stack: LocalStack) -> None:
    paywall, user = funded_user(stack, "fuzz", models={"demo/echo": ECHO_PRICE, "demo/embed": EMBED_PRICE})
    headers = {"Authorization": f"Bearer {paywall['key']}", "X-Paywall-User": user}
    odd: list[object] = [5, -1, True, "", [], [1], [{}], {"a": [1, {"b": None}]}]
    cases: list[tuple[str, object]] = [("/v1/responses", b) for b in ([], "text", 5)]
    for field in ("model", "input", "instructions", "max_output_tokens", "stream", "tools", "service_tier"):
        cases += [("/v1/responses", {"model": "demo/echo", "input": "hi", field: value}) for value in odd]
    for field in ("model", "input", "dimensions", "encoding_format", "user"):
        cases += [("/v1/embeddings", {"model": "demo/embed", "input": ["hi"], field: value}) for value in odd]
    cases += [
        ("/v1/responses", {"model": "demo/echo", "input": [{"role": "user", "content": [{"type": "input_image"}, 5]}]}),
        ("/v1/responses", {"model": "demo/echo", "input": [{"type": "item_reference"}], "tools": [{"type": None}]}),
    ]
    statuses = set()
    for path, body in cases:
        reply = httpx.post(f"{stack.url}{path}", json=body, headers=headers, timeout=30)
        assert reply.status_code < 500, (path, body, reply.text)
        if reply.status_code >= 400:
            assert set(reply.json()["error"]) == {"message", "type", "param", "code"}
        statuses.add(reply.status_code)
    assert {200, 400} <= statuses
    assert_ledger_consistent(stack, paywall["key"], user)


def test_a_spend_limit_answers_in_each_endpoints_shape(stack: LocalStack) -> None:
    paywall, user = funded_user(stack, "rlimit", models={"demo/echo": ECHO_PRICE, "demo/embed": EMBED_PRICE})
    with stack.admin() as admin:
        admin.put(f"/admin/paywalls/{paywall['id']}/limits", json={"spend_per_month": "0.00001"}).raise_for_status()
    client = sdk(stack, paywall["key"])
    raw = client.responses.with_raw_response.create(model="demo/echo", input="hi", extra_headers=_user_header(user))
    assert raw.headers["x-paywall-action"] == "limit"
    assert "monthly spending limit" in raw.parse().output_text
    with pytest.raises(openai.APIStatusError) as refused:
        client.embeddings.create(model="demo/embed", input="x" * 100, extra_headers=_user_header(user))
    assert refused.value.status_code == 402 and refused.value.code == "paywall_limit"
    assert charges(stack, paywall["key"], user) == []


def test_shared_mode_asks_an_unconnected_user_to_authorize_in_each_endpoints_shape(stack: LocalStack) -> None:
    paywall = make_paywall(stack, models={"demo/echo": ECHO_PRICE, "demo/embed": EMBED_PRICE}, mode="shared")
    user = new_user("rshared")
    client = sdk(stack, paywall["key"])
    with client.responses.stream(model="demo/echo", input="hi", extra_headers=_user_header(user)) as stream:
        text = "".join(e.delta for e in stream if e.type == "response.output_text.delta")
    assert "authorize it here: http://127.0.0.1:" in text
    with pytest.raises(openai.APIStatusError) as refused:
        client.embeddings.create(model="demo/embed", input="hi", extra_headers=_user_header(user))
    assert refused.value.status_code == 402 and refused.value.code == "paywall_authorize"
    assert refused.value.response.headers["x-paywall-action"] == "authorize"
