"""The upstream LLM provider (BYOK, SPEC §2): one pooled httpx client, the paywall's key from
Secrets Manager, and provider answers sorted into what the proxy does with them:

- `ProviderFailure` (connect error, timeout, 5xx, 401 after a key refetch, invalid JSON, a
  completion larger than MAX_COMPLETION_BYTES): the hold is released and the client gets a 502 (504
  for timeouts) with the failure's `code`: `provider_auth_failed` when the provider refused the
  paywall's key (the operator must fix it; retrying cannot help), else `provider_error` /
  `provider_timeout`;
- `ProviderRejected` (other 4xx, e.g. 400 invalid request, 429): the provider's status and error
  pass through in OpenAI's shape.

The provider key is never logged and never part of an error; a provider error text that echoes it
is redacted before it reaches the client."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import anyio
import httpx
from httpx_sse import EventSource, SSEError

from paywalls.billing.paywall import Provider
from paywalls.core.errors import UpstreamFailed
from paywalls.infra import secrets as secrets_store
from paywalls.infra.config import settings

log = logging.getLogger(__name__)

KINDS = ("openai", "openrouter", "together", "anthropic", "openai-compatible")
_ERROR_BODY_LIMIT = 64_000
# A non-streamed completion is held in memory whole: bound it. Lambda's streamed responses are capped
# at 20 MB too, and no real chat completion comes near it (a 128k-token answer is well under 1 MB).
MAX_COMPLETION_BYTES = 20_000_000
END_OF_BODY_WAIT_S = 0.05  # after [DONE]: how long a stream's end may take before its connection is dropped


AUTH_FAILED = "provider_auth_failed"


class ProviderFailure(UpstreamFailed):
    """Nothing usable came back; `reason` is for logs (never holds a secret), `code` for the client."""

    def __init__(self, status: int, reason: str, *, code: str | None = None):
        super().__init__(reason)
        self.status = status  # 502, or 504 for timeouts
        self.reason = reason
        self.code = code or ("provider_timeout" if status == 504 else "provider_error")


class ProviderRejected(UpstreamFailed):
    """The provider refused the request itself (4xx): the client should see that answer."""

    def __init__(self, status: int, error: dict[str, Any], retry_after: str | None = None):
        super().__init__(error.get("message", ""))
        self.status = status
        self.error = error
        self.retry_after = retry_after


@dataclass(frozen=True)
class Upstream:
    kind: str
    url: str  # {base_url}/chat/completions (or /responses, /embeddings)
    secret_name: str
    name: str = "default"  # the paywall's name for this provider (chat/routing.py)


def upstream_of(provider: Provider, path: str = "/chat/completions", name: str = "default") -> Upstream:
    return Upstream(provider.kind, f"{provider.base_url.rstrip('/')}{path}", provider.secret_name, name)


def is_chat_completion(payload: Any) -> bool:
    return isinstance(payload, dict) and isinstance(payload.get("choices"), list)


# ---- the shared client ----------------------------------------------------------------------------


def _timeout() -> httpx.Timeout:
    return httpx.Timeout(
        connect=settings().provider_connect_timeout_s,
        # Between two reads: a stream may last minutes, but a provider silent this long is gone.
        read=settings().provider_read_timeout_s,
        write=30.0,
        pool=10.0,
    )


_client: tuple[asyncio.AbstractEventLoop, httpx.AsyncClient] | None = None


def client() -> httpx.AsyncClient:
    """One pooled client per event loop (uvicorn has one; tests may start several)."""
    global _client
    loop = asyncio.get_running_loop()
    if _client is None or _client[0] is not loop:
        _client = (
            loop,
            httpx.AsyncClient(
                timeout=_timeout(),
                limits=httpx.Limits(max_connections=200, max_keepalive_connections=50, keepalive_expiry=30),
                follow_redirects=False,
            ),
        )
    return _client[1]


# ---- calls ----------------------------------------------------------------------------------------


async def _api_key(upstream: Upstream, *, force_fetch: bool) -> str:
    if not force_fetch and (value := secrets_store.cached(upstream.secret_name)) is not None:
        return value  # a warm instance: no worker thread for a dict lookup
    fetch = functools.partial(secrets_store.get_secret, upstream.secret_name, force_fetch=force_fetch)
    try:
        return await anyio.to_thread.run_sync(fetch)
    except Exception as exc:  # the secret's value must not reach a log, only the kind of failure
        log.error("provider key unavailable", extra={"secret_name": upstream.secret_name, "error": type(exc).__name__})
        raise ProviderFailure(502, "provider key unavailable") from None


async def _send(upstream: Upstream, body: dict[str, Any], *, stream: bool) -> tuple[httpx.Response, str]:
    """POST the body; on a 401 refetch the key once (it may have been rotated) and retry once."""
    for attempt in range(2):
        key = await _api_key(upstream, force_fetch=attempt > 0)
        request = client().build_request(
            "POST",
            upstream.url,
            json=body,
            headers={
                "Authorization": f"Bearer {key}",
                "Accept": "text/event-stream" if stream else "application/json",
                "User-Agent": "paywalls-proxy",
            },
        )
        try:
            response = await client().send(request, stream=True)
        except httpx.ConnectTimeout:
            raise ProviderFailure(502, "provider connect timeout") from None
        except httpx.TimeoutException:
            raise ProviderFailure(504, "provider timeout") from None
        except httpx.HTTPError as exc:
            raise ProviderFailure(502, f"provider unreachable: {type(exc).__name__}") from None
        if response.status_code == 401 and attempt == 0:
            await response.aclose()
            log.warning("provider answered 401; refetching its key once", extra={"kind": upstream.kind})
            continue
        return response, key
    raise AssertionError("unreachable")


async def _read(response: httpx.Response, limit: int) -> bytes:
    """At most `limit` bytes of the body; what lies beyond is never read into memory."""
    try:
        data = bytearray()
        async for part in response.aiter_bytes():
            data += part
            if len(data) >= limit:
                break
        return bytes(data[:limit])
    except httpx.TimeoutException:
        raise ProviderFailure(504, "provider timeout while reading") from None
    except httpx.HTTPError as exc:
        raise ProviderFailure(502, f"provider read failed: {type(exc).__name__}") from None


async def _raise_for_status(response: httpx.Response, key: str) -> None:
    status = response.status_code
    if 200 <= status < 300:
        return
    raw = await _read(response, _ERROR_BODY_LIMIT)
    await response.aclose()
    if status == 401:
        # Still 401 after refetching the key: the stored key is wrong or revoked, which only the
        # operator can fix. Its own code, so neither the client nor the operator mistakes it for an
        # outage (the provider's text is not passed on: it may quote the key).
        raise ProviderFailure(502, "provider refused the paywall's provider key (401)", code=AUTH_FAILED)
    if status == 408:
        raise ProviderFailure(504, "provider timeout (408)")
    if status >= 500 or status < 400:
        raise ProviderFailure(502, f"provider answered HTTP {status}")
    raise ProviderRejected(status, _openai_error(status, raw, key), response.headers.get("retry-after"))


def _openai_error(status: int, raw: bytes, key: str) -> dict[str, Any]:
    text = raw.decode("utf-8", "replace")
    error: dict[str, Any] = {"message": text.strip()[:2000] or f"the provider answered HTTP {status}"}
    try:
        payload = json.loads(text)
    except ValueError:
        payload = None
    detail = payload.get("error") if isinstance(payload, dict) else None
    if isinstance(detail, dict):
        error = {k: detail.get(k) for k in ("message", "type", "param", "code")}
        error["message"] = str(error["message"] or f"the provider answered HTTP {status}")
    elif isinstance(detail, str):
        error = {"message": detail}
    error.setdefault("type", "invalid_request_error")
    error.setdefault("param", None)
    error.setdefault("code", None)
    if key:
        error["message"] = error["message"].replace(key, "***")
    return error


async def complete(
    upstream: Upstream, body: dict[str, Any], *, valid: Callable[[Any], bool] = is_chat_completion
) -> tuple[dict[str, Any], bytes]:
    """A non-streaming answer: (parsed, raw bytes as the provider sent them). `valid` tells an answer
    of the endpoint called (a chat completion by default) from anything else."""
    response, key = await _send(upstream, body, stream=False)
    try:
        await _raise_for_status(response, key)
        # One byte more than allowed tells a body at the limit from a larger one.
        raw = await _read(response, MAX_COMPLETION_BYTES + 1)
    finally:
        await response.aclose()
    if len(raw) > MAX_COMPLETION_BYTES:
        raise ProviderFailure(502, f"provider answer larger than {MAX_COMPLETION_BYTES} bytes")
    try:
        payload = json.loads(raw)
    except ValueError:
        raise ProviderFailure(502, "provider answered invalid JSON") from None
    if not isinstance(payload, dict) or not valid(payload):
        raise ProviderFailure(502, "provider answer is not of the endpoint's shape")
    return payload, raw


@dataclass(frozen=True)
class Chunk:
    data: str  # the event's data exactly as the provider sent it (forwarded as is)
    payload: dict[str, Any]  # the same, parsed
    event: str | None = None  # the event's name when the provider gave one (Responses streams do)

    @property
    def is_error(self) -> bool:
        return "error" in self.payload and not self.payload.get("choices")


class ChunkStream:
    """An open streamed completion: parsed chunks until [DONE]; close it when done."""

    def __init__(self, response: httpx.Response):
        self._response = response
        self.done = False  # the provider ended the stream with [DONE]

    async def chunks(self) -> AsyncIterator[Chunk]:
        try:
            events = EventSource(self._response).aiter_sse()
            async for event in events:
                if event.data == "[DONE]":
                    self.done = True
                    # Read the body's end (normally in the same packet as [DONE]): a response closed
                    # before its end closes its connection too, and the next stream would pay a new
                    # connection (a TLS handshake to the provider) before its first chunk.
                    with anyio.move_on_after(END_OF_BODY_WAIT_S):
                        async for _ in events:
                            pass
                    return
                if not event.data:
                    continue
                try:
                    chunk = json.loads(event.data)
                except ValueError:
                    raise ProviderFailure(502, "provider streamed invalid JSON") from None
                if not isinstance(chunk, dict):
                    raise ProviderFailure(502, "provider streamed a non-object chunk")
                yield Chunk(event.data, chunk, event.event if event.event != "message" else None)
        except SSEError:
            raise ProviderFailure(502, "provider answer is not an event stream") from None
        except httpx.TimeoutException:
            raise ProviderFailure(504, "provider timeout while streaming") from None
        except httpx.HTTPError as exc:
            raise ProviderFailure(502, f"provider stream broke: {type(exc).__name__}") from None

    async def aclose(self) -> None:
        await self._response.aclose()


async def open_stream(upstream: Upstream, body: dict[str, Any]) -> ChunkStream:
    response, key = await _send(upstream, body, stream=True)
    try:
        await _raise_for_status(response, key)
    except BaseException:
        await response.aclose()
        raise
    return ChunkStream(response)
