"""Several providers per paywall (chat/routing.py) on a local stack with short provider timeouts:
a route's providers are tried in order when one is down, answers 5xx or times out before the first
byte; the one that serves is named in the answer's headers and on the single ledger entry, with its
cost (COGS), and the user is charged at its price (markup included). All down: a 502 and nothing
charged. A failure after the first byte is not retried and is charged for what was delivered."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from devserver.demo_provider import embeddings_usage_of, responses_usage_of, usage_of
from paywalls.billing.metering import prompt_token_bound
from tests.chat_support import available, charges, expected_cost, fund, make_paywall, new_user
from tests.conftest import LocalStack, free_port, run_local_stack

PRIMARY_PRICE = {"prompt": "1", "completion": "2"}
BACKUP_PRICE = {"prompt": "4", "completion": "8", "request": "0.001"}
MARKUP = "10"
FUNDS = 1_000_000


@pytest.fixture(scope="module")
def fstack() -> Iterator[LocalStack]:
    # A provider silent for 2 s is timed out; the demo's `hang` mode waits 6 s.
    with run_local_stack({"PAYWALLS_PROVIDER_READ_TIMEOUT_S": "2", "DEMO_HANG_S": "6"}) as running:
        yield running


def _instance_url(stack: LocalStack, instance: str) -> str:
    if instance.startswith("down."):
        return f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there: connection refused
    return f"{stack.url}/_demo/x/{instance}/v1"


def routed_paywall(stack: LocalStack, primary: str, backup: str = "ok") -> dict[str, Any]:
    """`acme/*` routed to `primary` then `backup` (demo instances or `down`), each with its own price;
    the paywall prices no `acme/` model itself, so the user pays the serving provider's price + markup."""
    paywall = make_paywall(stack, markup_percent=MARKUP)
    tag = uuid.uuid4().hex[:8]
    paywall["instances"] = {"primary": f"{primary}.p{tag}", "backup": f"{backup}.b{tag}"}
    with stack.admin() as admin:
        for name, price in (("primary", PRIMARY_PRICE), ("backup", BACKUP_PRICE)):
            admin.put(
                f"/admin/paywalls/{paywall['id']}/providers/{name}",
                json={
                    "kind": "openai-compatible",
                    "base_url": _instance_url(stack, paywall["instances"][name]),
                    "api_key": "demo-provider-key",
                    "prices": {"acme/echo": price},
                },
            ).raise_for_status()
        admin.put(
            f"/admin/paywalls/{paywall['id']}/routes",
            json={
                "routes": [
                    {
                        "match": "acme/*",
                        "providers": [
                            {"name": "primary", "strip_prefix": True},
                            {"name": "backup", "strip_prefix": True},
                        ],
                    }
                ]
            },
        ).raise_for_status()
    return paywall


ENDPOINTS = {
    "chat": ("/v1/chat/completions", lambda m: {"messages": [{"role": "user", "content": f"fall back {m}"}]}),
    "responses": ("/v1/responses", lambda m: {"input": f"fall back {m}"}),
    "embeddings": ("/v1/embeddings", lambda m: {"input": [f"fall back {m}", "twice"]}),
}


def _usage(endpoint: str, sent: dict[str, Any]) -> dict[str, int]:
    if endpoint == "chat":
        return usage_of(sent)
    if endpoint == "responses":
        usage = responses_usage_of(sent)
        return {"prompt_tokens": usage["input_tokens"], "completion_tokens": usage["output_tokens"]}
    return {"prompt_tokens": embeddings_usage_of(sent)["prompt_tokens"], "completion_tokens": 0}


def _call(
    stack: LocalStack, paywall: dict[str, Any], user: str, endpoint: str, stream: bool
) -> tuple[httpx.Response, str]:
    marker = uuid.uuid4().hex[:10]
    path, body = ENDPOINTS[endpoint]
    payload = {"model": "acme/echo", **body(marker), **({"stream": True} if stream else {})}
    headers = {"Authorization": f"Bearer {paywall['key']}", "X-Paywall-User": user}
    with httpx.Client(timeout=60) as client:
        reply = client.post(f"{stack.url}{path}", json=payload, headers=headers)
    return reply, marker


CASES = [
    (endpoint, stream)
    for endpoint, stream in (
        ("chat", False),
        ("chat", True),
        ("responses", False),
        ("responses", True),
        ("embeddings", False),
    )
]


# Timeouts wait the read timeout each: one streamed and one buffered endpoint are enough for them.
FAILURES = [(f, e, s) for f in ("down", "fail-500") for e, s in CASES] + [
    ("hang", "chat", True),
    ("hang", "responses", False),
]


@pytest.mark.parametrize(("failure", "endpoint", "stream"), FAILURES)
def test_the_next_provider_serves_when_the_first_fails_before_the_first_byte(
    fstack: LocalStack, failure: str, endpoint: str, stream: bool
) -> None:
    paywall = routed_paywall(fstack, failure)
    user = new_user("fb")
    fund(fstack, paywall["id"], user, "1")
    reply, marker = _call(fstack, paywall, user, endpoint, stream)
    assert reply.status_code == 200, reply.text
    assert reply.headers["x-paywall-provider"] == "backup" and reply.headers["x-paywall-model"] == "echo"
    if stream:
        assert marker in reply.text and ("[DONE]" in reply.text or "response.completed" in reply.text)
    tried = demo_requests_of(fstack, marker, paywall["instances"]["primary"])
    assert len(tried) == (0 if failure == "down" else 1)
    [served] = demo_requests_of(fstack, marker, paywall["instances"]["backup"])
    assert served["model"] == "echo", "the route strips the matched prefix"
    usage = _usage(endpoint, served)
    [charge] = charges(fstack, paywall["key"], user)
    assert int(charge["amount"]) == -expected_cost(BACKUP_PRICE, usage, MARKUP), "the serving provider's price"
    assert charge["provider"] == "backup"
    assert int(charge["provider_cost"]) == expected_cost(BACKUP_PRICE, usage)
    assert available(fstack, paywall["id"], user) == FUNDS + int(charge["amount"])


def demo_requests_of(stack: LocalStack, marker: str, instance: str) -> list[dict[str, Any]]:
    reply = httpx.get(f"{stack.url}/_demo/requests", params={"contains": marker, "instance": instance}, timeout=30)
    return reply.raise_for_status().json()["data"]


@pytest.mark.parametrize(("endpoint", "stream"), CASES)
def test_all_providers_down_is_a_502_and_nothing_is_charged(fstack: LocalStack, endpoint: str, stream: bool) -> None:
    paywall = routed_paywall(fstack, "down", backup="fail-500")
    user = new_user("alldown")
    fund(fstack, paywall["id"], user, "1")
    reply, marker = _call(fstack, paywall, user, endpoint, stream)
    assert reply.status_code == 502
    assert reply.json()["error"]["code"] == "provider_error"
    assert len(demo_requests_of(fstack, marker, paywall["instances"]["backup"])) == 1
    assert charges(fstack, paywall["key"], user) == []
    assert available(fstack, paywall["id"], user) == FUNDS


def test_a_buffered_answer_cut_before_it_reached_the_client_falls_back(fstack: LocalStack) -> None:
    paywall = routed_paywall(fstack, "cut")
    user = new_user("cutjson")
    fund(fstack, paywall["id"], user, "1")
    reply, marker = _call(fstack, paywall, user, "chat", False)
    assert reply.status_code == 200 and reply.headers["x-paywall-provider"] == "backup"
    assert len(demo_requests_of(fstack, marker, paywall["instances"]["primary"])) == 1
    [charge] = charges(fstack, paywall["key"], user)
    assert charge["provider"] == "backup"


@pytest.mark.parametrize("endpoint", ["chat", "responses"])
def test_a_failure_after_the_first_byte_is_not_retried_and_is_charged_for_what_was_delivered(
    fstack: LocalStack, endpoint: str
) -> None:
    paywall = routed_paywall(fstack, "cut")
    user = new_user("cutstream")
    fund(fstack, paywall["id"], user, "1")
    reply, marker = _call(fstack, paywall, user, endpoint, True)
    assert reply.status_code == 200 and reply.headers["x-paywall-provider"] == "primary"
    events = [json.loads(line[6:]) for line in reply.text.splitlines() if line.startswith("data: {")]
    assert "fall" in json.dumps(events) and "[DONE]" not in reply.text and "response.completed" not in reply.text
    last = events[-1]
    assert last.get("code") == "provider_error" or last.get("error", {}).get("code") == "provider_error"
    assert demo_requests_of(fstack, marker, paywall["instances"]["backup"]) == [], "no retry after the first byte"
    [sent] = demo_requests_of(fstack, marker, paywall["instances"]["primary"])
    # No usage came: the documented estimate, the prompt bound plus one token per generated byte ("fall").
    path, body = ENDPOINTS[endpoint]
    client_body = {"model": "acme/echo", **body(marker), "stream": True}
    bound = prompt_token_bound(client_body, "messages" if endpoint == "chat" else "input")
    [charge] = charges(fstack, paywall["key"], user)
    usage = {"prompt_tokens": bound, "completion_tokens": len("fall")}
    assert charge["provider"] == "primary" and charge["metadata"] == {"usage": "estimated"}
    assert int(charge["amount"]) == -expected_cost(PRIMARY_PRICE, usage, MARKUP)
    assert int(charge["provider_cost"]) == expected_cost(PRIMARY_PRICE, usage)
    assert sent["model"] == "echo"


def test_the_hold_covers_the_dearest_candidate(fstack: LocalStack) -> None:
    """A balance that covers the cheap primary's worst case but not the backup's is held lowered for
    the backup's price: even served by the backup, the charge stays within the hold."""
    paywall = routed_paywall(fstack, "fail-500")
    user = new_user("dear")
    fund(fstack, paywall["id"], user, "0.01")
    reply, marker = _call(fstack, paywall, user, "chat", False)
    assert reply.status_code == 200 and reply.headers["x-paywall-provider"] == "backup"
    [sent] = demo_requests_of(fstack, marker, paywall["instances"]["backup"])
    # 0.01 at the backup's completion price (8 x 1.1 per 1M) pays ~1,000 tokens, far below 4,096.
    assert sent["max_tokens"] < 1_200
    [charge] = charges(fstack, paywall["key"], user)
    assert -int(charge["amount"]) <= 10_000


def test_routes_and_named_providers_are_checked(fstack: LocalStack) -> None:
    paywall = make_paywall(fstack)
    base = f"/admin/paywalls/{paywall['id']}"
    with fstack.admin() as admin:
        assert admin.put(f"{base}/providers/Bad Name", json={"kind": "openai", "api_key": "k"}).status_code == 400
        assert admin.put(f"{base}/providers/nokey", json={"kind": "openai"}).status_code == 400
        ok = admin.put(f"{base}/providers/b1", json={"kind": "openai", "api_key": "sk-secret-value"})
        assert ok.status_code == 200 and "sk-secret-value" not in ok.text
        kept = admin.put(
            f"{base}/providers/b1", json={"kind": "openai", "prices": {"m": {"prompt": "1", "completion": "2"}}}
        )
        assert kept.status_code == 200 and kept.json()["prices"]["m"]["completion"] == "2"
        for routes in (
            [{"match": "x/*", "providers": [{"name": "nobody"}]}],
            [{"match": "x/*", "providers": [{"name": "b1", "model": "y"}]}],
            [{"match": "x", "providers": [{"name": "b1", "strip_prefix": True}]}],
            [{"match": "*", "providers": [{"name": "b1"}]}],
            [{"match": "x", "providers": []}],
        ):
            assert admin.put(f"{base}/routes", json={"routes": routes}).status_code == 400, routes
        assert (
            admin.put(f"{base}/routes", json={"routes": [{"match": "x", "providers": [{"name": "b1"}]}]}).status_code
            == 200
        )
        assert admin.delete(f"{base}/providers/b1").status_code == 409, "a route still uses it"
        assert admin.delete(f"{base}/providers/default").status_code == 400
        listed = admin.get(f"{base}/providers").raise_for_status().json()["data"]
        assert [p["name"] for p in listed] == ["default", "b1"]
        got = admin.get(base).raise_for_status().json()
        assert got["routes"] == [{"match": "x", "providers": [{"name": "b1"}]}]


def test_a_priced_model_whose_provider_price_is_missing_is_refused_like_an_unpriced_one(fstack: LocalStack) -> None:
    paywall = make_paywall(fstack)  # demo/echo priced for the user
    with fstack.admin() as admin:
        admin.put(
            f"/admin/paywalls/{paywall['id']}/providers/default",
            json={"kind": "openai-compatible", "prices": {"demo/tools": {"prompt": "1", "completion": "1"}}},
        ).raise_for_status()
    user = new_user("nocogs")
    fund(fstack, paywall["id"], user, "1")
    reply, _ = _call_model(fstack, paywall, user, "demo/echo")
    assert reply.status_code == 404 and reply.json()["error"]["code"] == "model_not_found"
    served, _ = _call_model(fstack, paywall, user, "demo/tools")
    assert served.status_code == 200
    [charge] = charges(fstack, paywall["key"], user)
    assert int(charge["provider_cost"]) >= 0 and charge["provider"] == "default"


def _call_model(stack: LocalStack, paywall: dict[str, Any], user: str, model: str) -> tuple[httpx.Response, str]:
    marker = uuid.uuid4().hex[:10]
    body = {"model": model, "messages": [{"role": "user", "content": marker}]}
    headers = {"Authorization": f"Bearer {paywall['key']}", "X-Paywall-User": user}
    return httpx.post(f"{stack.url}/v1/chat/completions", json=body, headers=headers, timeout=60), marker


def test_usage_reports_profit_per_provider(fstack: LocalStack) -> None:
    paywall = routed_paywall(fstack, "ok")
    user = new_user("profit")
    fund(fstack, paywall["id"], user, "1")
    _call(fstack, paywall, user, "chat", False)
    # Reports read the roll-ups, folded from the table stream: deliver it now (make run polls it).
    httpx.post(f"{fstack.url}/_dev/events/drain", timeout=60).raise_for_status()
    with fstack.admin() as admin:
        report = admin.get(f"/admin/paywalls/{paywall['id']}/usage", params={"environment": "live"}).raise_for_status()
    by_provider = report.json()["by_provider"]
    [charge] = charges(fstack, paywall["key"], user)
    assert by_provider["primary"]["requests"] == 1
    assert by_provider["primary"]["provider_cost"] == f"{int(charge['provider_cost']) / 1_000_000:.6f}"
