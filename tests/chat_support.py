"""Helpers for the chat proxy tests (tests/test_chat_*.py): paywalls priced for the demo models,
funding users, reading balances and ledgers, and the charge the price table predicts."""

from __future__ import annotations

import json
import time
import uuid
from decimal import Decimal
from typing import Any

import httpx
import openai

from paywalls.core.money import usage_cost_micros
from tests.conftest import LocalStack

ECHO_PRICE = {"prompt": "1", "completion": "2", "request": "0.0001"}
PLAIN_PRICE = {"prompt": "1", "completion": "2"}
DEMO_PRICES: dict[str, dict[str, str]] = {
    "demo/echo": ECHO_PRICE,
    "demo/slow": PLAIN_PRICE,
    "demo/tools": {"prompt": "3", "completion": "5", "request": "0.00002"},
    "demo/no-usage": PLAIN_PRICE,
    "demo/fail-500": PLAIN_PRICE,
    "demo/garbage": PLAIN_PRICE,
    "demo/hang": PLAIN_PRICE,
    "demo/stall": PLAIN_PRICE,
    "demo/reject": PLAIN_PRICE,
    "demo/rate-limit": PLAIN_PRICE,
}


def new_user(prefix: str = "u") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def make_paywall(
    stack: LocalStack,
    *,
    models: dict[str, dict[str, str]] | None = None,
    provider: bool = True,
    markup_percent: str | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """A fresh paywall on `stack`, priced for the demo models, with a live and a test key."""
    with stack.admin() as admin:
        paywall = admin.post("/admin/paywalls", json={"name": "Chat test app", "mode": "default", **fields})
        pid = paywall.raise_for_status().json()["id"]
        if provider:
            admin.put(
                f"/admin/paywalls/{pid}/provider",
                json={"kind": "openai-compatible", "base_url": f"{stack.url}/_demo/v1", "api_key": "demo-provider-key"},
            ).raise_for_status()
        pricing: dict[str, Any] = {"models": models or DEMO_PRICES}
        if markup_percent is not None:
            pricing["markup_percent"] = markup_percent
        admin.put(f"/admin/paywalls/{pid}/pricing", json=pricing).raise_for_status()
        live = admin.post(f"/admin/paywalls/{pid}/keys", json={"environment": "live"}).raise_for_status().json()
        test = admin.post(f"/admin/paywalls/{pid}/keys", json={"environment": "test"}).raise_for_status().json()
    return {"id": pid, "key": live["key"], "test_key": test["key"]}


def fund(stack: LocalStack, paywall_id: str, user: str, amount: str, environment: str = "live") -> None:
    with stack.admin() as admin:
        admin.post(
            f"/admin/paywalls/{paywall_id}/users/{user}/adjustments",
            json={"amount": amount, "environment": environment},
            headers={"Idempotency-Key": uuid.uuid4().hex},
        ).raise_for_status()


def funded_user(stack: LocalStack, prefix: str, amount: str = "1", **paywall: Any) -> tuple[dict[str, Any], str]:
    """A fresh paywall (make_paywall's `paywall` options) and a new user of it holding `amount`."""
    created = make_paywall(stack, **paywall)
    user = new_user(prefix)
    fund(stack, created["id"], user, amount)
    return created, user


def balance(stack: LocalStack, key: str, user: str) -> int:
    reply = httpx.get(
        f"{stack.url}/v1/user/balance", params={"user": user}, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    return int(reply.raise_for_status().json()["balance"])


def available(stack: LocalStack, paywall_id: str, user: str, environment: str = "live") -> int:
    """Balance minus active holds (admin view): equal to the balance once no request is in flight."""
    with stack.admin() as admin:
        users = admin.get(
            f"/admin/paywalls/{paywall_id}/users", params={"environment": environment, "limit": 1000}
        ).raise_for_status()
    row = next(u for u in users.json()["data"] if u["user"] == user)
    return int(row["available"])


def ledger(stack: LocalStack, key: str, user: str) -> list[dict[str, Any]]:
    """Every entry of the user's wallet, newest first."""
    entries: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"user": user, "limit": 100}
        if cursor:
            params["cursor"] = cursor
        page = httpx.get(
            f"{stack.url}/v1/user/ledger", params=params, headers={"Authorization": f"Bearer {key}"}, timeout=30
        ).raise_for_status()
        data = page.json()
        entries += data["data"]
        cursor = data["next_cursor"]
        if not cursor:
            return entries


def charges(stack: LocalStack, key: str, user: str) -> list[dict[str, Any]]:
    return [e for e in ledger(stack, key, user) if e["type"] == "charge"]


def wait_for_charges(stack: LocalStack, key: str, user: str, count: int = 1, timeout_s: float = 90) -> list[dict]:
    """Polls the ledger until `count` charges exist (a disconnected stream settles after the fact)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = charges(stack, key, user)
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def assert_ledger_consistent(stack: LocalStack, key: str, user: str) -> int:
    """SPEC §4.5: the entries sum to the balance and the balance is never negative."""
    entries = ledger(stack, key, user)
    total = sum(int(e["amount"]) for e in entries)
    current = balance(stack, key, user)
    assert total == current, (total, current)
    assert current >= 0
    if entries:
        assert int(entries[0]["balance_after"]) == current
    return current


def expected_cost(price: dict[str, str], usage: dict[str, int], markup_percent: str = "0") -> int:
    return usage_cost_micros(
        prompt_tokens=usage["prompt_tokens"],
        completion_tokens=usage["completion_tokens"],
        prompt_price=Decimal(price["prompt"]),
        completion_price=Decimal(price["completion"]),
        request_price=Decimal(price.get("request", "0")),
        markup_percent=Decimal(markup_percent),
    )


def sdk(stack: LocalStack, key: str, **kwargs: Any) -> openai.OpenAI:
    # No SDK retries: each test request must reach the proxy exactly once.
    return openai.OpenAI(base_url=f"{stack.url}/v1", api_key=key, max_retries=0, timeout=60, **kwargs)


def demo_requests(stack: LocalStack, marker: str) -> list[dict[str, Any]]:
    """Bodies the demo provider received that contain `marker`, newest first."""
    reply = httpx.get(f"{stack.url}/_demo/requests", params={"contains": marker}, timeout=30)
    return reply.raise_for_status().json()["data"]


def sse_events(response: httpx.Response) -> list[str]:
    """The `data:` payloads of an event-stream reply, in order."""
    return [line[len("data: ") :] for line in response.iter_lines() if line.startswith("data: ")]


def chunks_of(events: list[str]) -> list[dict[str, Any]]:
    assert events and events[-1] == "[DONE]", events[-3:]
    return [json.loads(e) for e in events[:-1]]
