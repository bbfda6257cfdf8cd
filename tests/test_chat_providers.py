"""The provider adapter against scripted HTTP answers (httpx.MockTransport): key refetch after a
401, failures (5xx, timeouts, invalid JSON) vs rejections (4xx passed through), streaming chunks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from paywalls.billing.paywall import Provider
from paywalls.chat import providers
from paywalls.infra import secrets as secrets_store

UPSTREAM = providers.upstream_of(Provider("openai", "https://provider.invalid/v1/", "paywalls/test/p", "t"))
BODY = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
COMPLETION = {"id": "c", "object": "chat.completion", "choices": [], "usage": {"prompt_tokens": 1}}


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bool]]:
    """Secrets Manager stand-in: the cached key is stale, a forced refetch gets the rotated one."""
    calls: list[tuple[str, bool]] = []

    def get_secret(name: str, *, force_fetch: bool = False) -> str:
        calls.append((name, force_fetch))
        return "sk-new" if force_fetch else "sk-old"

    monkeypatch.setattr(secrets_store, "get_secret", get_secret)
    return calls


def run(handler: Callable[[httpx.Request], httpx.Response], call: Callable[[], Any], monkeypatch) -> Any:
    async def main() -> Any:
        mock = httpx.AsyncClient(transport=httpx.MockTransport(handler))
        monkeypatch.setattr(providers, "client", lambda: mock)
        try:
            return await call()
        finally:
            await mock.aclose()

    return asyncio.run(main())


def test_url_and_headers(keys, monkeypatch) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=COMPLETION)

    payload, raw = run(handler, lambda: providers.complete(UPSTREAM, BODY), monkeypatch)
    assert payload == COMPLETION and json.loads(raw) == COMPLETION
    assert str(seen[0].url) == "https://provider.invalid/v1/chat/completions"
    assert seen[0].headers["authorization"] == "Bearer sk-old"
    assert json.loads(seen[0].content) == BODY
    assert keys == [("paywalls/test/p", False)]


def test_401_refetches_the_key_once_and_retries(keys, monkeypatch) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.headers["authorization"] != "Bearer sk-new":
            return httpx.Response(401, json={"error": {"message": "bad key sk-old"}})
        return httpx.Response(200, json=COMPLETION)

    payload, _ = run(handler, lambda: providers.complete(UPSTREAM, BODY), monkeypatch)
    assert payload == COMPLETION
    assert keys == [("paywalls/test/p", False), ("paywalls/test/p", True)]


def test_401_twice_is_a_failure_not_the_clients_auth_error(keys, monkeypatch) -> None:
    with pytest.raises(providers.ProviderFailure) as failed:
        run(lambda r: httpx.Response(401, json={"error": {}}), lambda: providers.complete(UPSTREAM, BODY), monkeypatch)
    assert failed.value.status == 502 and failed.value.code == "provider_auth_failed"
    assert len(keys) == 2


@pytest.mark.parametrize(
    ("response", "status"),
    [
        (httpx.Response(500, json={"error": {"message": "boom"}}), 502),
        (httpx.Response(503, text="unavailable"), 502),
        (httpx.Response(408, text="timeout"), 504),
        (httpx.Response(200, text="not json"), 502),
        (httpx.Response(200, json=["a list"]), 502),
        (httpx.Response(200, json={"error": {"message": "200 but an error"}}), 502),
        (httpx.Response(302, headers={"location": "https://elsewhere.invalid"}), 502),
    ],
)
def test_failures(keys, monkeypatch, response: httpx.Response, status: int) -> None:
    with pytest.raises(providers.ProviderFailure) as failed:
        run(lambda r: response, lambda: providers.complete(UPSTREAM, BODY), monkeypatch)
    assert failed.value.status == status


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (httpx.ConnectError("refused"), 502),
        (httpx.ConnectTimeout("slow connect"), 502),
        (httpx.ReadTimeout("slow answer"), 504),
        (httpx.RemoteProtocolError("hung up"), 502),
    ],
)
def test_transport_errors(keys, monkeypatch, error: Exception, status: int) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    with pytest.raises(providers.ProviderFailure) as failed:
        run(handler, lambda: providers.complete(UPSTREAM, BODY), monkeypatch)
    assert failed.value.status == status


def test_4xx_passes_through_in_openai_shape_without_the_key(keys, monkeypatch) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        error = {"message": "context too long for sk-old", "type": "invalid_request_error", "param": "messages"}
        return httpx.Response(400, json={"error": error})

    with pytest.raises(providers.ProviderRejected) as rejected:
        run(handler, lambda: providers.complete(UPSTREAM, BODY), monkeypatch)
    assert rejected.value.status == 400
    assert rejected.value.error == {
        "message": "context too long for ***",
        "type": "invalid_request_error",
        "param": "messages",
        "code": None,
    }


def test_429_keeps_retry_after_and_plain_text_errors_get_a_shape(keys, monkeypatch) -> None:
    response = httpx.Response(429, text="slow down", headers={"Retry-After": "3"})
    with pytest.raises(providers.ProviderRejected) as rejected:
        run(lambda r: response, lambda: providers.complete(UPSTREAM, BODY), monkeypatch)
    assert rejected.value.retry_after == "3"
    assert rejected.value.error["message"] == "slow down"
    assert set(rejected.value.error) == {"message", "type", "param", "code"}


def _stream(events: list[str], content_type: str = "text/event-stream") -> httpx.Response:
    return httpx.Response(200, headers={"content-type": content_type}, content="".join(events).encode())


async def _collect(upstream: providers.Upstream) -> tuple[list[dict], bool]:
    stream = await providers.open_stream(upstream, BODY)
    try:
        return [c.payload async for c in stream.chunks()], stream.done
    finally:
        await stream.aclose()


def test_stream_chunks_until_done(keys, monkeypatch) -> None:
    events = ['data: {"a": 1}\n\n', ": keep-alive comment\n\n", 'data: {"b": 2}\n\n', "data: [DONE]\n\n"]
    chunks, done = run(lambda r: _stream(events), lambda: _collect(UPSTREAM), monkeypatch)
    assert chunks == [{"a": 1}, {"b": 2}] and done


def test_stream_without_done_is_reported(keys, monkeypatch) -> None:
    chunks, done = run(lambda r: _stream(['data: {"a": 1}\n\n']), lambda: _collect(UPSTREAM), monkeypatch)
    assert chunks == [{"a": 1}] and not done


@pytest.mark.parametrize(
    "response",
    [_stream(["data: {broken\n\n"]), _stream(['data: "a string"\n\n']), _stream(['{"a": 1}'], "application/json")],
)
def test_stream_failures(keys, monkeypatch, response: httpx.Response) -> None:
    with pytest.raises(providers.ProviderFailure) as failed:
        run(lambda r: response, lambda: _collect(UPSTREAM), monkeypatch)
    assert failed.value.status == 502


def test_stream_status_errors_are_sorted_before_any_chunk(keys, monkeypatch) -> None:
    with pytest.raises(providers.ProviderRejected):
        run(lambda r: httpx.Response(400, json={"error": {"message": "no"}}), lambda: _collect(UPSTREAM), monkeypatch)
    with pytest.raises(providers.ProviderFailure):
        run(lambda r: httpx.Response(502, text="bad gateway"), lambda: _collect(UPSTREAM), monkeypatch)


def test_missing_key_is_a_failure_that_names_no_secret(monkeypatch) -> None:
    def get_secret(name: str, *, force_fetch: bool = False) -> str:
        raise RuntimeError("secret value sk-live-123 leaked in an exception")

    monkeypatch.setattr(secrets_store, "get_secret", get_secret)
    with pytest.raises(providers.ProviderFailure) as failed:
        run(lambda r: httpx.Response(200, json=COMPLETION), lambda: providers.complete(UPSTREAM, BODY), monkeypatch)
    assert "sk-live" not in str(failed.value) and failed.value.__cause__ is None


def test_a_completion_larger_than_the_cap_is_a_failure(keys, monkeypatch) -> None:
    """The body is held in memory whole: beyond MAX_COMPLETION_BYTES it is a failure (502, hold released)."""
    monkeypatch.setattr(providers, "MAX_COMPLETION_BYTES", 1_000)
    big = {**COMPLETION, "choices": [{"message": {"content": "x" * 2_000}}]}
    with pytest.raises(providers.ProviderFailure) as failed:
        run(lambda r: httpx.Response(200, json=big), lambda: providers.complete(UPSTREAM, BODY), monkeypatch)
    assert failed.value.status == 502
    at_the_cap = {**COMPLETION, "choices": [{"message": {"content": ""}}]}
    padding = 1_000 - len(json.dumps(at_the_cap).encode())
    at_the_cap["choices"][0]["message"]["content"] = "x" * padding
    raw = json.dumps(at_the_cap).encode()
    assert len(raw) == 1_000
    payload, got = run(
        lambda r: httpx.Response(200, content=raw), lambda: providers.complete(UPSTREAM, BODY), monkeypatch
    )
    assert got == raw and payload == at_the_cap
