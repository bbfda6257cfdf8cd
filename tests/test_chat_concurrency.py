"""SPEC §4.4 through the proxy: many simultaneous requests on one small wallet never spend more
than it holds; afterwards the ledger sums to the balance, no hold is left, nothing went negative."""

from __future__ import annotations

import concurrent.futures

import httpx

from devserver.demo_provider import usage_of
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

REQUESTS = 40
FUNDS = 3_000  # micro-units: room for about ten holds at a time, far fewer than forty requests


def test_simultaneous_requests_never_overspend(stack: LocalStack) -> None:
    paywall = make_paywall(stack)
    user = new_user("burst")
    fund(stack, paywall["id"], user, f"0.{FUNDS:06d}")
    body = {
        "model": "demo/echo",
        "messages": [{"role": "user", "content": "alpha beta gamma delta"}],
        "max_tokens": 4,
        "user": user,
    }
    cost = expected_cost(ECHO_PRICE, usage_of(body))

    def call(i: int) -> tuple[int, str | None, bool]:
        stream = i % 2 == 1  # half streamed, half not: both paths hold and settle the same way
        with httpx.Client(timeout=60, headers={"Authorization": f"Bearer {paywall['key']}"}) as client:
            reply = client.post(f"{stack.url}/v1/chat/completions", json={**body, "stream": stream})
        return reply.status_code, reply.headers.get("x-paywall-action"), stream

    with concurrent.futures.ThreadPoolExecutor(REQUESTS) as pool:
        results = list(pool.map(call, range(REQUESTS)))

    assert all(status == 200 for status, _, _ in results), results
    paywalled = sum(1 for _, action, _ in results if action == "topup")
    served = REQUESTS - paywalled
    print(f"\n{REQUESTS} simultaneous requests on {FUNDS} micro-units: served {served}, paywall replies {paywalled}")
    found = charges(stack, paywall["key"], user)
    assert len(found) == served >= 1
    assert all(int(c["amount"]) == -cost for c in found), "each served request is charged its exact usage"
    spent = -sum(int(c["amount"]) for c in found)
    assert spent <= FUNDS
    final = assert_ledger_consistent(stack, paywall["key"], user)
    assert final == FUNDS - spent >= 0
    assert available(stack, paywall["id"], user) == final, "every hold was settled or released"
    # Forty answers cost more than the wallet holds, so some requests must have been refused; a
    # request refused while others' holds were in flight may leave money that a later one could use.
    assert paywalled >= REQUESTS - FUNDS // cost
