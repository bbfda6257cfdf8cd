"""Streaming is real streaming, and a stream the client abandons is still charged its full usage.

demo/slow pauses DEMO_CHUNK_DELAY_S (0.5 s in the local stack) before each word it streams."""

from __future__ import annotations

import concurrent.futures
import time

import httpx
from openai.types.chat import ChatCompletionChunk

from devserver.demo_provider import usage_of
from tests.chat_support import (
    PLAIN_PRICE,
    assert_ledger_consistent,
    available,
    balance,
    charges,
    expected_cost,
    fund,
    new_user,
    sdk,
    wait_for_charges,
)
from tests.conftest import LocalStack

SLOW_WORDS = "one two three four five six"  # six pauses of 0.5 s: about 3 s in all


def test_first_chunk_arrives_before_the_pauses_end(stack: LocalStack, paywall: dict) -> None:
    user = new_user()
    fund(stack, paywall["id"], user, "1")
    started = time.monotonic()
    arrivals: list[tuple[float, str]] = []
    stream = sdk(stack, paywall["key"]).chat.completions.create(
        model="demo/slow", messages=[{"role": "user", "content": SLOW_WORDS}], user=user, stream=True
    )
    for chunk in stream:
        assert isinstance(chunk, ChatCompletionChunk)
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append((time.monotonic() - started, chunk.choices[0].delta.content))
    assert "".join(text for _, text in arrivals) == SLOW_WORDS
    first, last = arrivals[0][0], arrivals[-1][0]
    # Five pauses separate the first word from the last: 2.5 s if chunks are relayed as they come,
    # about zero if the proxy buffered the answer. Slowness of the machine only widens the gap.
    assert last - first >= 1.5, arrivals
    [charge] = wait_for_charges(stack, paywall["key"], user)
    assert int(charge["amount"]) == -expected_cost(
        PLAIN_PRICE, usage_of({"messages": [{"role": "user", "content": SLOW_WORDS}]})
    )


def test_client_disconnect_is_still_charged_the_full_usage(stack: LocalStack, paywall: dict) -> None:
    user = new_user("gone")
    fund(stack, paywall["id"], user, "1")
    body = {
        "model": "demo/slow",
        "messages": [{"role": "user", "content": SLOW_WORDS}],
        "stream": True,
        "user": user,
    }
    with (
        httpx.Client(timeout=30) as client,
        client.stream(
            "POST", f"{stack.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {paywall['key']}"}
        ) as response,
    ):
        assert response.status_code == 200
        request_id = response.headers["x-request-id"]
        for line in response.iter_lines():
            if line.startswith("data: "):
                break  # one chunk, then the client goes away mid-answer
    # Nothing is charged at the moment of the disconnect: the proxy is still reading the provider.
    assert charges(stack, paywall["key"], user) == []
    [charge] = wait_for_charges(stack, paywall["key"], user, timeout_s=60)
    assert charge["request_id"] == request_id
    assert int(charge["amount"]) == -expected_cost(PLAIN_PRICE, usage_of(body)), "the full usage, not an estimate"
    assert charge["completion_tokens"] == len(SLOW_WORDS.split())
    assert charge["metadata"] == {}
    assert assert_ledger_consistent(stack, paywall["key"], user) == balance(stack, paywall["key"], user)
    assert available(stack, paywall["id"], user) == balance(stack, paywall["key"], user)


def test_slow_streams_are_served_side_by_side(stack: LocalStack, paywall: dict) -> None:
    """One instance serves streams concurrently: a stream never blocks the event loop for another."""
    user = new_user()
    fund(stack, paywall["id"], user, "1")
    client = sdk(stack, paywall["key"])

    def run(_: int) -> tuple[float, float]:
        text = ""
        stream = client.chat.completions.create(
            model="demo/slow", messages=[{"role": "user", "content": SLOW_WORDS}], user=user, stream=True
        )
        first = None
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                first = first or time.monotonic()
                text += chunk.choices[0].delta.content
        assert text == SLOW_WORDS
        return first or 0.0, time.monotonic()

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        spans = list(pool.map(run, range(4)))
    # Every stream had its first word before any stream ended: they ran side by side.
    assert max(first for first, _ in spans) < min(end for _, end in spans)
    assert len(charges(stack, paywall["key"], user)) == 4
