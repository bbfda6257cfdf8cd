"""Pure rules of chat/routing.py, chat/responses.py and chat/embeddings.py (no stack): which provider
a model goes to, the price each candidate is held and charged at, and the input bounds."""

from __future__ import annotations

from decimal import Decimal

import pytest

from paywalls.billing.metering import IMAGE_TOKENS, Usage
from paywalls.billing.paywall import InvalidRequest, ModelPrice, Paywall, Provider
from paywalls.chat import embeddings, responses, routing
from paywalls.chat.request import parse as parse_chat


def _provider(kind: str = "openai-compatible", prices: dict[str, ModelPrice] | None = None) -> Provider:
    return Provider(kind, "https://p.invalid/v1", "s", "t", prices)


def _paywall(**fields) -> Paywall:
    return Paywall(id="pw_1", name="t", mode="default", created_at="t", **fields)


CHEAP = ModelPrice(Decimal(1), Decimal(2))
DEAR = ModelPrice(Decimal(3), Decimal(1), Decimal("0.01"))


def test_an_exact_route_wins_then_the_longest_prefix_then_the_default() -> None:
    paywall = _paywall(
        provider=_provider(),
        providers={"a": _provider(), "b": _provider()},
        routes=[
            {"match": "x/*", "providers": [{"name": "a", "strip_prefix": True}]},
            {"match": "x/y/*", "providers": [{"name": "b"}]},
            {"match": "x/y/z", "providers": [{"name": "a", "model": "zed"}, {"name": "b"}]},
        ],
    )
    assert routing.targets(paywall, "x/y/z") == [("a", "zed"), ("b", "x/y/z")]
    assert routing.targets(paywall, "x/y/w") == [("b", "x/y/w")]
    assert routing.targets(paywall, "x/q") == [("a", "q")]
    assert routing.targets(paywall, "other") == [("default", "other")]


def test_the_hold_covers_the_dearest_candidate_and_each_is_charged_its_own_price() -> None:
    paywall = _paywall(
        provider=_provider(),
        providers={"a": _provider(prices={"m/x": CHEAP}), "b": _provider(prices={"m/x": DEAR})},
        routes=[{"match": "m/*", "providers": [{"name": "a"}, {"name": "b"}]}],
    )
    chat = parse_chat({"model": "m/x", "messages": [{"role": "user", "content": "hi"}]})
    routed = routing.route(paywall, chat, "chat")
    assert [c.price for c in routed.candidates] == [CHEAP, DEAR]
    assert routed.hold_price == ModelPrice(Decimal(3), Decimal(2), Decimal("0.01"))
    usage = Usage(1000, 1000)
    assert [c.cost_of(usage) for c in routed.candidates] == [3000, 14000]


def test_an_explicit_price_is_what_the_user_pays_whatever_the_provider() -> None:
    paywall = _paywall(
        pricing={"m/x": ModelPrice(Decimal(10), Decimal(10))},
        provider=_provider(prices={"m/x": CHEAP}),
    )
    chat = parse_chat({"model": "m/x", "messages": [{"role": "user", "content": "hi"}]})
    [candidate] = routing.route(paywall, chat, "chat").candidates
    assert candidate.price == ModelPrice(Decimal(10), Decimal(10)) and candidate.cost_price == CHEAP


def test_kinds_without_the_endpoint_are_skipped_and_alone_they_are_refused() -> None:
    paywall = _paywall(
        pricing={"m": CHEAP},
        provider=_provider("anthropic"),
        providers={"t": _provider("together"), "o": _provider("openai")},
        routes=[{"match": "m", "providers": [{"name": "default"}, {"name": "t"}, {"name": "o"}]}],
    )
    request = responses.parse({"model": "m", "input": "hi"})
    assert [c.name for c in routing.route(paywall, request, "responses").candidates] == ["o"]
    only = _paywall(pricing={"m": CHEAP}, provider=_provider("anthropic"))
    with pytest.raises(routing.NotRoutable) as refused:
        routing.route(only, request, "responses")
    assert refused.value.status == 400 and refused.value.code == "unsupported_endpoint"
    embed = embeddings.parse({"model": "m", "input": "hi"})
    assert [c.name for c in routing.route(paywall, embed, "embeddings").candidates] == ["t", "o"]


def test_a_missing_provider_price_is_unpriced_and_no_provider_is_a_503() -> None:
    chat = parse_chat({"model": "m", "messages": [{"role": "user", "content": "hi"}]})
    missing = _paywall(pricing={"m": CHEAP}, provider=_provider(prices={}))
    with pytest.raises(routing.NotRoutable) as refused:
        routing.route(missing, chat, "chat")
    assert refused.value.status == 404
    with pytest.raises(routing.NotRoutable) as unset:
        routing.route(_paywall(pricing={"m": CHEAP}), chat, "chat")
    assert unset.value.status == 503
    with pytest.raises(routing.NotRoutable) as unpriced:
        routing.route(_paywall(), chat, "chat")
    assert unpriced.value.status == 404


def test_embedding_bounds_are_exact_for_token_arrays_and_bytes_plus_markers_for_text() -> None:
    assert embeddings.input_bound([[1, 2, 3], [4]]) == 4
    assert embeddings.input_bound([1, 2, 3]) == 3
    assert embeddings.input_bound("héllo") == len("héllo".encode()) + embeddings.PER_INPUT_TOKENS
    assert embeddings.input_bound(["a", "bc"]) == 3 + 2 * embeddings.PER_INPUT_TOKENS
    for bad in ("", [], [""], [True], [[1, -1]], [["a"]], {"a": 1}, ["x"] * (embeddings.MAX_INPUTS + 1)):
        with pytest.raises(InvalidRequest):
            embeddings.input_bound(bad)


def test_a_responses_bound_counts_images_and_the_stored_context() -> None:
    text = responses.parse({"model": "m", "input": "hello"})
    image = responses.parse(
        {
            "model": "m",
            "input": [{"role": "user", "content": [{"type": "input_image", "image_url": "data:" + "A" * 100_000}]}],
        }
    )
    assert IMAGE_TOKENS <= responses.prompt_bound(image) < IMAGE_TOKENS + 1000, "the image's bytes are not counted"
    referenced = responses.parse({"model": "m", "input": [{"type": "item_reference", "id": "msg_1"}]})
    assert referenced.stored_context and responses.prompt_bound(referenced) > responses.CONTEXT_TOKENS
    assert not responses.parse({"model": "m", "input": [{"role": "user", "content": "hi"}]}).stored_context
    chained = responses.parse({"model": "m", "input": "hello", "previous_response_id": "resp_1"})
    assert responses.prompt_bound(chained) == responses.prompt_bound(text) + responses.CONTEXT_TOKENS + len(
        ',"previous_response_id":"resp_1"'
    )


def test_the_responses_tally_reads_usage_from_the_terminal_event_and_counts_deltas() -> None:
    tally = responses.ResponsesTally()
    events = responses.text_events(
        response_id="resp_1", model="m", deltas=["ab", "cd"], usage=responses.usage_object(7, 2)
    )
    for event in events:
        tally.observe(event)
    assert tally.generated == 4 and tally.finished
    assert tally.usage == Usage(7, 2)
