"""Unit tests of the chat metering rules (no I/O): prompt upper bound, hold sizing and the completion
limit sent upstream, usage parsing and the no-usage estimate, the request parser, the paywall
replies (validated with the OpenAI SDK's own types) and SSE framing."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from devserver.demo_provider import usage_of
from paywalls.billing import metering
from paywalls.billing.metering import HoldPlan, Pricing, StreamTally, Usage
from paywalls.billing.paywall import InvalidRequest, ModelPrice
from paywalls.chat import embeddings as embeddings_request
from paywalls.chat import replies as chat_replies
from paywalls.chat import request as chat_request
from paywalls.chat import responses as responses_request
from paywalls.chat import sse

ECHO = Pricing(ModelPrice(Decimal("1"), Decimal("2"), Decimal("0.0001")))

# ---- prompt upper bound ---------------------------------------------------------------------------

texts = st.text(min_size=0, max_size=200)
messages = st.lists(
    st.fixed_dictionaries({"role": st.sampled_from(["system", "user", "assistant"]), "content": texts}),
    min_size=1,
    max_size=8,
)


@given(messages)
def test_prompt_bound_exceeds_the_demo_word_count(msgs: list[dict[str, str]]) -> None:
    body = {"model": "demo/echo", "messages": msgs}
    assert metering.prompt_token_bound(body) >= usage_of(body)["prompt_tokens"]


@given(messages)
def test_prompt_bound_covers_every_byte_of_text(msgs: list[dict[str, str]]) -> None:
    # A byte-level BPE token is at least one byte: the text's UTF-8 length bounds its token count.
    body = {"model": "m", "messages": msgs}
    text_bytes = sum(len(m["content"].encode("utf-8", "surrogatepass")) for m in msgs)
    bound = metering.prompt_token_bound(body)
    assert bound >= text_bytes + metering.PER_MESSAGE_TOKENS * len(msgs) + metering.REQUEST_TOKENS


def test_prompt_bound_counts_images_by_allowance_not_by_their_bytes() -> None:
    image = "data:image/png;base64," + "A" * 200_000
    body = {
        "model": "m",
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this?"},
                    {"type": "image_url", "image_url": {"url": image}},
                    {"type": "image_url", "image_url": {"url": image, "detail": "low"}},
                ],
            }
        ],
    }
    bound = metering.prompt_token_bound(body)
    allowances = metering.IMAGE_TOKENS + metering.IMAGE_TOKENS_LOW
    assert allowances < bound < allowances + 1_000


def test_prompt_bound_counts_tools_and_schemas() -> None:
    base = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    schema = {
        "type": "json_schema",
        "json_schema": {"name": "x", "schema": {"type": "object", "description": "d" * 500}},
    }
    with_format = metering.prompt_token_bound({**base, "response_format": schema})
    assert with_format >= metering.prompt_token_bound(base) + 500
    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    assert metering.prompt_token_bound({**base, "tools": tools}) >= metering.prompt_token_bound(base) + 1024


def test_prompt_bound_survives_lone_surrogates() -> None:
    body = json.loads('{"model": "m", "messages": [{"role": "user", "content": "\\ud800 x"}]}')
    assert metering.prompt_token_bound(body) > 0


# ---- hold sizing ----------------------------------------------------------------------------------

prices = st.builds(
    ModelPrice,
    st.decimals(min_value=0, max_value=100, places=3),
    st.decimals(min_value=0, max_value=100, places=3),
    st.decimals(min_value=0, max_value=Decimal("0.01"), places=6),
)
pricings = st.builds(Pricing, prices, st.decimals(min_value=0, max_value=300, places=2))


@settings(max_examples=300)
@given(
    pricings,
    st.integers(1, 50_000),
    st.one_of(st.none(), st.integers(1, 100_000)),
    st.integers(1, 8),
    st.integers(-1_000, 10_000_000),
)
def test_a_plan_never_holds_more_than_available_and_covers_its_worst_case(
    pricing: Pricing, prompt: int, limit: int | None, n: int, available: int
) -> None:
    plan = metering.plan_hold(pricing, prompt_bound=prompt, requested_limit=limit, n=n, available=available)
    if plan is None:
        # Refused only when not even one completion token per choice is covered.
        assert pricing.cost(prompt, n) > max(available, 0)
        return
    assert 0 <= plan.amount <= max(available, 0)
    assert plan.amount == pricing.cost(prompt, plan.tokens_per_choice * n)
    wanted = limit if limit is not None else metering.NO_LIMIT_TOKENS
    # Held (and sent) per choice: below what was wanted only when the balance is short, and then the
    # largest the balance covers.
    assert 1 <= plan.tokens_per_choice <= wanted
    if plan.tokens_per_choice < wanted:
        assert pricing.cost(prompt, (plan.tokens_per_choice + 1) * n) > available


@settings(max_examples=300)
@given(pricings, st.integers(0, 100_000), st.integers(0, 5_000_000))
def test_max_completion_tokens_is_exact(pricing: Pricing, prompt: int, budget: int) -> None:
    tokens = pricing.max_completion_tokens(prompt, budget)
    if tokens == -1:
        assert pricing.cost(prompt, 0) > budget
    elif tokens is None:
        assert pricing.price.completion == 0
    else:
        assert pricing.cost(prompt, tokens) <= budget < pricing.cost(prompt, tokens + 1)


def test_plan_examples() -> None:
    # 100 prompt tokens at 1/M = 100, fee 100, 2 per completion token.
    full = metering.plan_hold(ECHO, prompt_bound=100, requested_limit=50, n=1, available=10_000)
    assert full == HoldPlan(amount=300, tokens_per_choice=50)
    lowered = metering.plan_hold(ECHO, prompt_bound=100, requested_limit=50, n=1, available=250)
    assert lowered == HoldPlan(amount=250, tokens_per_choice=25)
    two_choices = metering.plan_hold(ECHO, prompt_bound=100, requested_limit=50, n=2, available=250)
    assert two_choices == HoldPlan(amount=248, tokens_per_choice=12)
    assert metering.plan_hold(ECHO, prompt_bound=100, requested_limit=50, n=1, available=201) is None
    no_limit = metering.plan_hold(ECHO, prompt_bound=100, requested_limit=None, n=1, available=1_000_000)
    default = metering.NO_LIMIT_TOKENS
    assert no_limit == HoldPlan(amount=200 + 2 * default, tokens_per_choice=default)
    lowered_default = metering.plan_hold(ECHO, prompt_bound=100, requested_limit=None, n=1, available=2_000)
    assert lowered_default == HoldPlan(amount=2_000, tokens_per_choice=900)
    free = Pricing(ModelPrice(Decimal(0), Decimal(0)))
    assert metering.plan_hold(free, prompt_bound=100, requested_limit=None, n=1, available=0) == HoldPlan(0, default)


@pytest.mark.parametrize("n", [1, 3])
def test_a_request_without_limit_is_sent_the_limit_it_was_held_for(n: int) -> None:
    """SPEC §4.1: a balance that covers the default hold must not send the request upstream unlimited."""
    plan = metering.plan_hold(ECHO, prompt_bound=100, requested_limit=None, n=n, available=10**9, default_limit=700)
    assert plan == HoldPlan(amount=ECHO.cost(100, 700 * n), tokens_per_choice=700)
    chat = chat_request.parse({"model": "m", "messages": [{"role": "user", "content": "x"}], "n": n})
    sent = chat_request.upstream_body(chat, limit=plan.tokens_per_choice, provider_kind="openai")
    assert sent["max_completion_tokens"] == 700 and sent["n"] == n
    # The most the provider may produce (700 per choice, n choices) is exactly what was held.
    assert ECHO.cost(100, sent["max_completion_tokens"] * n) == plan.amount
    with pytest.raises(ValueError):
        chat_request.upstream_body(chat, limit=0, provider_kind="openai")


@pytest.mark.parametrize(("raw", "value"), [(None, 4096), ("16384", 16384), ("1", 1)])
def test_default_completion_limit_from_the_environment(monkeypatch, raw: str | None, value: int) -> None:
    if raw is None:
        monkeypatch.delenv("PAYWALLS_DEFAULT_MAX_COMPLETION_TOKENS", raising=False)
    else:
        monkeypatch.setenv("PAYWALLS_DEFAULT_MAX_COMPLETION_TOKENS", raw)
    assert metering._default_completion_limit() == value


@pytest.mark.parametrize("raw", ["0", "-5", "lots", "1.5", "2000000"])
def test_a_bad_default_completion_limit_fails_loudly(monkeypatch, raw: str) -> None:
    monkeypatch.setenv("PAYWALLS_DEFAULT_MAX_COMPLETION_TOKENS", raw)
    with pytest.raises(ValueError, match="PAYWALLS_DEFAULT_MAX_COMPLETION_TOKENS"):
        metering._default_completion_limit()


def test_covering_price_is_never_below_any_listed_price() -> None:
    cheap = ModelPrice(Decimal("1"), Decimal("9"), Decimal("0.001"))
    dear = ModelPrice(Decimal("5"), Decimal("2"))
    cover = metering.covering_price([cheap, dear])
    assert cover == ModelPrice(Decimal("5"), Decimal("9"), Decimal("0.001"))
    for prompt, completion in [(1000, 0), (0, 1000), (123, 4567)]:
        for price in (cheap, dear):
            assert Pricing(cover).cost(prompt, completion) >= Pricing(price).cost(prompt, completion)
    assert metering.costlier(dear, cheap) and metering.costlier(cheap, dear)
    assert not metering.costlier(cheap, cover) and not metering.costlier(cheap, cheap)


def test_markup_is_part_of_the_hold() -> None:
    marked = Pricing(ECHO.price, Decimal("50"))
    plan = metering.plan_hold(marked, prompt_bound=100, requested_limit=50, n=1, available=10_000)
    assert plan is not None and plan.amount == 450


# ---- usage ----------------------------------------------------------------------------------------


def test_reported_usage() -> None:
    assert metering.reported_usage({"usage": {"prompt_tokens": 3, "completion_tokens": 2}}) == Usage(3, 2)
    assert metering.reported_usage({"usage": {"prompt_tokens": 3, "completion_tokens": 2, "cost": 0.0012}}) == Usage(
        3, 2, provider_cost=1200
    )
    for bad in ({}, {"usage": None}, {"usage": {"prompt_tokens": -1, "completion_tokens": 2}}, {"usage": "x"}):
        assert metering.reported_usage(bad) is None
    assert metering.reported_usage({"usage": {"prompt_tokens": True, "completion_tokens": 2}}) is None


def test_generated_bytes_counts_text_reasoning_and_tool_calls() -> None:
    message = {
        "content": "héllo",  # 6 bytes
        "reasoning_content": "abc",
        "tool_calls": [{"function": {"name": "f", "arguments": '{"a":1}'}}],
    }
    assert metering.generated_bytes(message) == 6 + 3 + 1 + 7
    completion = {"choices": [{"message": {"content": "ab"}}, {"message": {"content": "cde"}}]}
    assert metering.completion_bytes(completion) == 5


def test_estimate_never_exceeds_the_hold() -> None:
    plan = HoldPlan(amount=ECHO.cost(500, 20), tokens_per_choice=10)
    usage = metering.estimated_usage(plan, prompt_bound=500, n=2, generated=10_000)
    assert usage == Usage(500, 20, estimated=True)
    assert ECHO.cost(usage.prompt_tokens, usage.completion_tokens) <= plan.amount


def test_stream_tally_strips_the_usage_chunk_only_when_not_asked_for() -> None:
    content = {"choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}]}
    finish = {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
    usage = {"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 1, "total_tokens": 5}}
    tally = StreamTally(client_wants_usage=False)
    assert [tally.observe(c) for c in (content, finish, usage)] == [True, True, False]
    assert tally.usage == Usage(4, 1) and tally.generated == 2 and tally.finished
    wants = StreamTally(client_wants_usage=True)
    assert wants.observe(usage) is True
    # Usage riding on a content chunk (some providers do that) stays: the chunk carries content.
    assert StreamTally(client_wants_usage=False).observe({**content, "usage": usage["usage"]}) is True


# ---- request parsing ------------------------------------------------------------------------------


def test_parse_reads_what_metering_needs() -> None:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
        "max_tokens": 50,
        "max_completion_tokens": 30,
        "n": 2,
        "stream": True,
        "stream_options": {"include_usage": True},
        "user": "alice",
    }
    chat = chat_request.parse(body)
    assert (chat.model, chat.stream, chat.n, chat.requested_limit) == ("m", True, 2, 30)
    assert chat.limit_fields == ("max_completion_tokens", "max_tokens")
    assert chat.client_wants_usage and chat.body_user == "alice"


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"model": ""}, "model"),
        ({"model": 3}, "model"),
        ({"messages": []}, "messages"),
        ({"messages": "hi"}, "messages"),
        ({"stream": "yes"}, "stream"),
        ({"n": 0}, "n"),
        ({"n": 129}, "n"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 1.5}, "max_tokens"),
        ({"max_completion_tokens": True}, "max_completion_tokens"),
        ({"stream_options": "x"}, "stream_options"),
        ({"user": 5}, "user"),
        ({"models": "demo/echo"}, "models"),
        ({"models": []}, "models"),
        ({"models": ["a", 3]}, "models"),
        ({"models": ["m"] * 9}, "models"),
        ({"route": "fallback"}, "route"),
    ],
)
def test_parse_refuses_bad_input(change: dict, param: str) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], **change}
    with pytest.raises(InvalidRequest) as raised:
        chat_request.parse(body)
    assert raised.value.param == param


@pytest.mark.parametrize(
    "part",
    [
        {"type": "file", "file": {"file_id": "file-abc"}},
        {"type": "file", "file": {"filename": "a.pdf", "file_data": "data:application/pdf;base64,JVBERi0="}},
    ],
)
def test_parse_refuses_file_parts(part: dict) -> None:
    """A file's prompt tokens cannot be bounded before the call (a PDF's pages are also images)."""
    body = {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "read"}, part]}]}
    with pytest.raises(InvalidRequest, match="file content parts are not supported") as raised:
        chat_request.parse(body)
    assert raised.value.param == "messages"


FILE_PART_REFUSED = (
    "{} are not supported: the size of a file's prompt cannot be known before the call, so it cannot be paid "
    "for in advance. Send the document's text as {} instead."
)


@pytest.mark.parametrize(
    ("parse", "body", "message", "param"),
    [
        (
            chat_request.parse,
            {"model": "m", "messages": [{"role": "user", "content": [{"type": "file", "file": {"file_id": "f"}}]}]},
            FILE_PART_REFUSED.format("file content parts", "a text part"),
            "messages",
        ),
        (
            responses_request.parse,
            {"model": "m", "input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
            FILE_PART_REFUSED.format("input_file parts", "input_text"),
            "input",
        ),
    ],
)
def test_each_endpoint_refuses_its_file_parts_in_its_own_words(
    parse: Any, body: dict[str, Any], message: str, param: str
) -> None:
    with pytest.raises(InvalidRequest) as raised:
        parse(body)
    assert (str(raised.value), raised.value.param) == (message, param)


CHAT = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
RESPONSES = {"model": "m", "input": "x"}
EMBEDDINGS = {"model": "m", "input": "x"}


@pytest.mark.parametrize(
    ("parse", "body", "field", "message"),
    [
        (chat_request.parse, CHAT, "stream", "stream must be a boolean"),
        (chat_request.parse, CHAT, "stream_options", "stream_options must be an object"),
        (chat_request.parse, CHAT, "user", "user must be a string"),
        (responses_request.parse, RESPONSES, "stream", "stream must be a boolean"),
        (responses_request.parse, RESPONSES, "user", "user must be a string"),
        (responses_request.parse, RESPONSES, "instructions", "instructions must be a string"),
        (embeddings_request.parse, EMBEDDINGS, "user", "user must be a string"),
    ],
)
def test_each_endpoint_refuses_a_field_of_the_wrong_type(
    parse: Any, body: dict[str, Any], field: str, message: str
) -> None:
    """A value of another type is a 400 naming the field (a string field gets a number, the others a
    string); null is the field left out."""
    wrong: Any = 1 if message.endswith("a string") else "1"
    with pytest.raises(InvalidRequest) as raised:
        parse({**body, field: wrong})
    assert (str(raised.value), raised.value.param) == (message, field)
    parse({**body, field: None})  # absent and null are the same: accepted


def test_parse_reads_fallback_models() -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], "models": ["a", "b"], "route": "fallback"}
    assert chat_request.parse(body).fallback_models == ("a", "b")
    assert chat_request.parse({**body, "models": None, "route": None}).fallback_models == ()


def test_upstream_body_changes_only_the_limits_and_stream_options() -> None:
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "response_format": {"type": "json_object"},
        "stream": True,
        "stream_options": {"include_usage": False, "other": 1},
        "max_tokens": 100,
        "user": "app-user",
    }
    chat = chat_request.parse(body)
    same = chat_request.upstream_body(chat, limit=100, provider_kind="openai-compatible")
    assert same == {**body, "stream_options": {"include_usage": True, "other": 1}}
    lowered = chat_request.upstream_body(chat, limit=7, provider_kind="openai-compatible")
    assert lowered["max_tokens"] == 7 and "max_completion_tokens" not in lowered
    assert body["max_tokens"] == 100, "the client's body is never modified"
    # OpenAI refuses both fields together and honours max_completion_tokens on every model.
    renamed = chat_request.upstream_body(chat, limit=7, provider_kind="openai")
    assert renamed["max_completion_tokens"] == 7 and "max_tokens" not in renamed
    plain = chat_request.parse({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert chat_request.upstream_body(plain, limit=9, provider_kind="openai") == {
        **plain.body,
        "max_completion_tokens": 9,
    }
    assert chat_request.upstream_body(plain, limit=9, provider_kind="openrouter")["max_tokens"] == 9
    assert "stream_options" not in chat_request.upstream_body(plain, limit=9, provider_kind="openai")


@pytest.mark.parametrize(
    ("kind", "client", "sent"),
    [
        ("openai", {"max_tokens": 50, "max_completion_tokens": 30}, {"max_completion_tokens"}),
        ("openai", {"max_tokens": 30}, {"max_completion_tokens"}),
        ("openrouter", {"max_completion_tokens": 30, "max_tokens": 50}, {"max_tokens"}),
        ("together", {"max_completion_tokens": 30}, {"max_tokens"}),
        ("anthropic", {"max_completion_tokens": 30, "max_tokens": 50}, {"max_tokens"}),
        ("openai-compatible", {"max_tokens": 50, "max_completion_tokens": 30}, {"max_tokens", "max_completion_tokens"}),
        ("openai-compatible", {"max_completion_tokens": 30}, {"max_tokens", "max_completion_tokens"}),
        ("openai-compatible", {"max_tokens": 30}, {"max_tokens"}),
        ("openai-compatible", {}, {"max_tokens"}),
    ],
)
def test_every_limit_field_sent_carries_the_held_limit(kind: str, client: dict, sent: set[str]) -> None:
    """SPEC §4.1: the client's larger field used to go upstream unchanged; a provider honouring it
    generated beyond the hold."""
    chat = chat_request.parse({"model": "m", "messages": [{"role": "user", "content": "x"}], **client})
    body = chat_request.upstream_body(chat, limit=30, provider_kind=kind)
    assert {f: body[f] for f in chat_request.LIMIT_FIELDS if f in body} == dict.fromkeys(sent, 30)


# A provider may read any one limit field it is sent, or the smaller or larger of those it reads.
HONOURS = {
    "max_tokens only": lambda body: [body.get("max_tokens")],
    "max_completion_tokens only": lambda body: [body.get("max_completion_tokens")],
    "the smaller": lambda body: [min((body[f] for f in chat_request.LIMIT_FIELDS if f in body), default=None)],
    "the larger": lambda body: [max((body[f] for f in chat_request.LIMIT_FIELDS if f in body), default=None)],
    "the first in the body": lambda body: [next((v for k, v in body.items() if k in chat_request.LIMIT_FIELDS), None)],
    "the last in the body": lambda body: [
        next((v for k, v in reversed(body.items()) if k in chat_request.LIMIT_FIELDS), None)
    ],
}
# What each kind's servers are known to honour (chat_request.KIND_LIMIT_FIELDS); an
# openai-compatible server reads max_tokens or the field its client was written for.
KIND_HONOURS = {
    "openai": [
        "max_completion_tokens only",
        "the smaller",
        "the larger",
        "the first in the body",
        "the last in the body",
    ],
    "openrouter": ["max_tokens only", "the smaller", "the larger", "the first in the body", "the last in the body"],
    "together": ["max_tokens only"],
    "anthropic": ["max_tokens only", "the smaller", "the larger"],
    "openai-compatible": list(HONOURS),
}
limit_values = st.one_of(st.none(), st.integers(1, 100_000))


@settings(max_examples=400)
@given(
    kind=st.sampled_from(sorted(KIND_HONOURS)),
    max_tokens=limit_values,
    max_completion_tokens=limit_values,
    reversed_order=st.booleans(),
    reasoning_budget=limit_values,
    n=st.integers(1, 4),
    available=st.integers(0, 2_000_000),
)
def test_no_provider_generates_beyond_the_hold(
    kind: str,
    max_tokens: int | None,
    max_completion_tokens: int | None,
    reversed_order: bool,
    reasoning_budget: int | None,
    n: int,
    available: int,
) -> None:
    """Whichever limit field a provider honours (among those sent to it), and in whatever order and
    with whatever values the client set them, it cannot be told to generate more than was held; so
    the charge for the reported usage is never capped at the hold."""
    limits = [("max_tokens", max_tokens), ("max_completion_tokens", max_completion_tokens)]
    body: dict = {"model": "m", "messages": [{"role": "user", "content": "hello there"}], "n": n}
    body.update((k, v) for k, v in (reversed(limits) if reversed_order else limits) if v is not None)
    if reasoning_budget is not None:
        body["reasoning"] = {"max_tokens": reasoning_budget}
    chat = chat_request.parse(body)
    prompt = metering.prompt_token_bound(body)
    plan = metering.plan_hold(ECHO, prompt_bound=prompt, requested_limit=chat.requested_limit, n=n, available=available)
    if plan is None:
        return
    sent = chat_request.upstream_body(chat, limit=plan.tokens_per_choice, provider_kind=kind)
    assert chat_request.default_limit_field(kind) in sent, "a provider left without a limit may answer beyond the hold"
    assert all(sent[f] == plan.tokens_per_choice for f in chat_request.LIMIT_FIELDS if f in sent)
    if reasoning_budget is not None:
        assert sent["reasoning"]["max_tokens"] == min(reasoning_budget, plan.tokens_per_choice)
    for honour in KIND_HONOURS[kind]:
        [honoured] = HONOURS[honour](sent)
        if honoured is None:
            # Only a server that ignores max_tokens, configured as openai-compatible for a client that
            # sent max_tokens alone, reads none of what it is sent (no such server is known; OpenAI's
            # models that refuse max_tokens answer 400, nothing generated).
            assert (kind, honour) == ("openai-compatible", "max_completion_tokens only")
            assert max_completion_tokens is None
            continue
        generated = honoured * n  # the most it may generate, all choices
        assert generated <= plan.tokens_per_choice * n
        # ... so the charge for it is the price formula, within the hold, never capped.
        assert ECHO.cost(prompt, generated) <= plan.amount


# ---- paywall replies and framing ------------------------------------------------------------------


def test_paywall_replies_are_valid_openai_objects() -> None:
    completion = chat_replies.paywall_completion(model="m", text="top up: http://x/pay/t", request_id="req_1", n=2)
    parsed = ChatCompletion.model_validate(completion)
    assert [c.message.content for c in parsed.choices] == ["top up: http://x/pay/t"] * 2
    assert all(c.finish_reason == "stop" for c in parsed.choices)
    assert parsed.usage is not None and parsed.usage.total_tokens == 0
    chunks = chat_replies.paywall_chunks(model="m", text="pay", request_id="req_1", include_usage=True)
    parsed_chunks = [ChatCompletionChunk.model_validate(c) for c in chunks]
    assert "".join(c.choices[0].delta.content or "" for c in parsed_chunks if c.choices) == "pay"
    assert parsed_chunks[-1].choices == [] and parsed_chunks[-1].usage is not None
    assert parsed_chunks[-2].choices[0].finish_reason == "stop"
    assert len(chat_replies.paywall_chunks(model="m", text="pay", request_id="r")) == 2


def test_sse_framing() -> None:
    assert sse.event('{"a":1}') == b'data: {"a":1}\n\n'
    assert sse.event("one\ntwo") == b"data: one\ndata: two\n\n"
    assert sse.json_event({"é": 1}) == 'data: {"é":1}\n\n'.encode()
    assert sse.DONE == b"data: [DONE]\n\n"
