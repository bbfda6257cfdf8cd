"""SPEC §4.4 across endpoints: 50 simultaneous chat, Responses and embeddings requests (JSON and
streamed) on one small wallet through the real local server never spend more than it holds; each
served request is charged its exact usage, the ledger sums to the balance and no hold is left."""

from __future__ import annotations

import concurrent.futures
from typing import Any

import httpx

from devserver.demo_provider import embeddings_usage_of, responses_usage_of, usage_of
from tests.chat_support import (
    ECHO_PRICE,
    assert_ledger_consistent,
    available,
    charges,
    expected_cost,
    fund,
    make_paywall,
    new_user,
)
from tests.conftest import LocalStack

REQUESTS = 50
FUNDS = 4_000  # micro-units: a handful of holds at a time, far fewer than fifty requests
TEXT = "alpha beta gamma delta"
KINDS: list[tuple[str, dict[str, Any]]] = [
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": TEXT}], "max_tokens": 4}),
    ("/v1/chat/completions", {"messages": [{"role": "user", "content": TEXT}], "max_tokens": 4, "stream": True}),
    ("/v1/responses", {"input": TEXT, "max_output_tokens": 4}),
    ("/v1/responses", {"input": TEXT, "max_output_tokens": 4, "stream": True}),
    ("/v1/embeddings", {"input": [TEXT, TEXT]}),
]


def _cost(path: str, body: dict[str, Any]) -> int:
    if path == "/v1/chat/completions":
        return expected_cost(ECHO_PRICE, usage_of(body))
    if path == "/v1/responses":
        usage = responses_usage_of(body)
        return expected_cost(
            ECHO_PRICE, {"prompt_tokens": usage["input_tokens"], "completion_tokens": usage["output_tokens"]}
        )
    return expected_cost(
        ECHO_PRICE, {"prompt_tokens": embeddings_usage_of(body)["prompt_tokens"], "completion_tokens": 0}
    )


def test_fifty_mixed_requests_on_a_small_balance_never_overspend(stack: LocalStack) -> None:
    paywall = make_paywall(stack)
    user = new_user("mixed")
    fund(stack, paywall["id"], user, f"0.{FUNDS:06d}")

    def call(i: int) -> tuple[str, int, str | None]:
        path, body = KINDS[i % len(KINDS)]
        headers = {"Authorization": f"Bearer {paywall['key']}", "X-Paywall-User": user}
        with httpx.Client(timeout=60, headers=headers) as client:
            reply = client.post(f"{stack.url}{path}", json={"model": "demo/echo", **body})
        return path, reply.status_code, reply.headers.get("x-paywall-action")

    with concurrent.futures.ThreadPoolExecutor(REQUESTS) as pool:
        results = list(pool.map(call, range(REQUESTS)))

    for path, status, action in results:
        # A refused embedding is a 402 (no embedding can carry the message); the others answer 200.
        assert status == (402 if path == "/v1/embeddings" and action else 200), (path, status, action)
    served = [path for path, _, action in results if not action]
    refused = REQUESTS - len(served)
    print(f"\n{REQUESTS} mixed requests on {FUNDS} micro-units: served {len(served)}, paywall replies {refused}")
    found = charges(stack, paywall["key"], user)
    assert len(found) == len(served) >= 1 and refused >= 1
    costs = {path: _cost(path, {"model": "demo/echo", **body}) for path, body in KINDS}
    assert sorted(-int(c["amount"]) for c in found) == sorted(costs[path] for path in served)
    spent = -sum(int(c["amount"]) for c in found)
    assert spent <= FUNDS
    final = assert_ledger_consistent(stack, paywall["key"], user)
    assert final == FUNDS - spent >= 0
    assert available(stack, paywall["id"], user) == final, "every hold was settled or released"
