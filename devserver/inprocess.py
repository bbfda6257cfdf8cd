"""The whole stack in ONE process, over the local engine served from a thread of that process, for
counting and profiling the hot path.

Unlike `make run` (the engine in a process of its own), DynamoDB here is answered by moto in this
process, over loopback HTTP through the same transport as in Lambda (infra/aws.py, "http"), so what
a request costs is our own work plus moto's. Every DynamoDB call the functions make goes through this
process's client, where a hook (JsonClient.hooks) records it with a timestamp. The ASGI
sends are timestamped too (first body byte, each chunk, [DONE], the end of the exchange), so each
call can be placed before the first byte, between the last chunk and [DONE], or after the last byte,
exactly: both clocks are this process's monotonic clock.

Caches are those of a warm Lambda instance (TTLs patched on, whatever the environment says), since
the question is what a request costs on an instance that has served the paywall before.

Used by benchmarks/hot_path.py (prints the figures) and tests/test_hot_path_calls.py (fails when a
count regresses)."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

DEMO_PRICES = {
    "demo/echo": {"prompt": "1", "completion": "2", "request": "0.0001"},
    "demo/slow": {"prompt": "1", "completion": "2", "request": "0.0001"},
}
WARM_CACHE_TTL_S = 300.0


@dataclass
class Recorder:
    """DynamoDB calls and ASGI sends of the requests in flight, on one monotonic clock."""

    calls: list[tuple[float, str]] = field(default_factory=list)
    written: list[int] = field(default_factory=list)  # items of each TransactWriteItems
    sends: list[tuple[float, bytes]] = field(default_factory=list)
    provider: list[tuple[float, float]] = field(default_factory=list)  # (start, end) of provider calls
    finished: threading.Event = field(default_factory=threading.Event)

    def reset(self) -> None:
        self.calls.clear()
        self.written.clear()
        self.sends.clear()
        self.provider.clear()
        self.finished.clear()

    def on_call(self, service: str, operation: str, params: dict[str, Any]) -> None:
        self.calls.append((time.monotonic(), operation))
        if operation == "TransactWriteItems":
            self.written.append(len(params["TransactItems"]))

    def wrap(self, app: Any) -> Any:
        async def recorded(scope: dict[str, Any], receive: Any, send: Any) -> None:
            if scope["type"] != "http" or scope["path"].startswith(("/_demo", BARE_PREFIX)):
                await app(scope, receive, send)
                return

            async def timed_send(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.body" and message.get("body"):
                    self.sends.append((time.monotonic(), message["body"]))
                await send(message)

            try:
                await app(scope, receive, timed_send)
            finally:
                self.finished.set()

        return recorded

    def wrap_provider_call(self, call: Any) -> Any:
        """The proxy's own wait for a provider's (non-streamed) answer, from its side of the call."""

        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.monotonic()
            try:
                return await call(*args, **kwargs)
            finally:
                self.provider.append((started, time.monotonic()))

        return timed


BARE_PREFIX = "/_bench/bare"


def with_bare_proxy(app: Any, base: str) -> Any:
    """`app`, plus a proxy hop with no billing at BARE_PREFIX + /v1/...: Starlette and one pooled
    httpx client forwarding the body to the demo provider and relaying its answer as it streams. The
    floor of any Python proxy on this machine, measured beside ours (benchmarks/proxy_overhead.py)."""
    from starlette.applications import Starlette
    from starlette.background import BackgroundTask
    from starlette.requests import Request
    from starlette.responses import StreamingResponse
    from starlette.routing import Route

    from devserver.demo_provider import DEMO_KEY

    client = httpx.AsyncClient(base_url=base, timeout=30)

    async def forward(request: Request) -> StreamingResponse:
        upstream = client.build_request(
            "POST",
            f"/_demo/v1/{request.path_params['path']}",
            content=await request.body(),
            headers={"authorization": f"Bearer {DEMO_KEY}", "content-type": "application/json"},
        )
        answer = await client.send(upstream, stream=True)
        return StreamingResponse(
            answer.aiter_raw(),
            status_code=answer.status_code,
            media_type=answer.headers.get("content-type"),
            background=BackgroundTask(answer.aclose),
        )

    bare = Starlette(routes=[Route(BARE_PREFIX + "/v1/{path:path}", forward, methods=["POST"])])

    async def dispatch(scope: dict[str, Any], receive: Any, send: Any) -> None:
        target = bare if scope["type"] == "http" and scope["path"].startswith(BARE_PREFIX) else app
        await target(scope, receive, send)

    return dispatch


def _is_done(body: bytes) -> bool:
    return b"[DONE]" in body or b"event: response.completed" in body


@dataclass(frozen=True)
class Placement:
    """Where one request's DynamoDB calls fell relative to what the client received."""

    before_first_byte: list[str]
    before_done: list[str]  # between the last chunk and [DONE] (streams)
    after_last_byte: list[str]
    total: int
    while_provider: list[str]  # made while the provider was answering: overlapped, off the critical path
    transaction_items: list[int] = field(default_factory=list)  # items of each TransactWriteItems, in order

    @property
    def critical_before_first_byte(self) -> list[str]:
        """The calls the client waits for before its first byte (those not overlapped by the provider)."""
        remaining = list(self.before_first_byte)
        for op in self.while_provider:
            if op in remaining:
                remaining.remove(op)
        return remaining


@dataclass
class InProcessStack:
    url: str
    admin_token: str
    recorder: Recorder

    def admin(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.admin_token}"}, timeout=30)

    def measure(self, request: Callable[[], Any]) -> Placement:
        """Run `request` (one HTTP exchange, read to the end) and place its DynamoDB calls."""
        self.recorder.reset()
        request()
        if not self.recorder.finished.wait(10):
            raise RuntimeError("the request's ASGI call did not finish")
        calls, sends = list(self.recorder.calls), list(self.recorder.sends)
        written = list(self.recorder.written)
        provider = list(self.recorder.provider)
        if not sends:
            raise RuntimeError("the request sent no body")
        first = sends[0][0]
        # The event that tells the client the answer is complete: chat's [DONE], Responses' terminal event.
        done = next((t for t, body in sends if _is_done(body)), None)
        last_chunk = max((t for t, body in sends if not _is_done(body)), default=first)
        last_byte = sends[-1][0]
        return Placement(
            before_first_byte=[op for t, op in calls if t < first],
            before_done=[op for t, op in calls if done is not None and last_chunk < t < done],
            after_last_byte=[op for t, op in calls if t > last_byte],
            total=len(calls),
            while_provider=[op for t, op in calls if any(a < t < b for a, b in provider)],
            transaction_items=written,
        )

    # ---- setup helpers ----------------------------------------------------------------------------

    def paywall(self, *, mode: str = "default", **fields: Any) -> dict[str, str]:
        with self.admin() as admin:
            created = admin.post("/admin/paywalls", json={"name": "Hot path", "mode": mode, **fields})
            pid = created.raise_for_status().json()["id"]
            admin.put(
                f"/admin/paywalls/{pid}/provider",
                json={"kind": "openai-compatible", "base_url": f"{self.url}/_demo/v1", "api_key": "demo-provider-key"},
            ).raise_for_status()
            admin.put(f"/admin/paywalls/{pid}/pricing", json={"models": DEMO_PRICES}).raise_for_status()
            key = admin.post(f"/admin/paywalls/{pid}/keys", json={"environment": "live"}).raise_for_status().json()
        return {"id": pid, "key": key["key"]}

    def fund(self, paywall_id: str, user: str, amount: str) -> None:
        with self.admin() as admin:
            admin.post(
                f"/admin/paywalls/{paywall_id}/users/{user}/adjustments",
                json={"amount": amount, "environment": "live"},
                headers={"Idempotency-Key": uuid.uuid4().hex},
            ).raise_for_status()

    def subscribe(self, paywall_id: str, count: int, events: list[str]) -> None:
        """`count` active webhook subscriptions (nothing delivers them here: no event sources run).
        Through the admin API: the app's key is not used (and its paywall not cached) before they exist."""
        with self.admin() as admin:
            for n in range(count):
                admin.post(
                    f"/admin/paywalls/{paywall_id}/webhooks/subscriptions",
                    json={"url": f"https://hooks.example.com/{n}", "events": events},
                ).raise_for_status()

    def connect_person(self, paywall_id: str, user: str, micros: int, cap: int | None = None) -> None:
        """Shared mode: a person with `micros` in their live wallet approves `user` of the paywall."""
        from paywalls.billing import ledger
        from paywalls.wallets import connections, persons

        person = persons.get_or_create(f"p{secrets.token_hex(4)}@example.com")
        ledger.credit(person.wallet_for("live"), micros, idempotency_key=f"fund-{secrets.token_hex(4)}")
        connections.connect(paywall_id, "live", user, person.id, cap)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _warm_caches() -> Iterator[None]:
    """Cache TTLs of a deployed instance for the stack's life, then back as they were (tests run
    with caches off), with nothing cached left behind."""
    from paywalls.http import web
    from paywalls.wallets import connections

    saved = web._KEY_CACHE_TTL_S, connections.POINTER_TTL_S
    web._KEY_CACHE_TTL_S = connections.POINTER_TTL_S = WARM_CACHE_TTL_S
    try:
        yield
    finally:
        web._KEY_CACHE_TTL_S, connections.POINTER_TTL_S = saved
        web._key_cache.clear()
        connections._pointers.clear()


@contextlib.contextmanager
def inprocess_stack() -> Iterator[InProcessStack]:
    import uvicorn

    from devserver.engine import make_engine
    from devserver.stack import build_app, create_app_secret, create_tables
    from paywalls.chat import providers
    from paywalls.infra import aws
    from paywalls.infra import secrets as secrets_store

    port = _free_port()
    admin_token = "adm_" + secrets.token_urlsafe(16)
    saved = dict(os.environ)
    engine = make_engine()
    threading.Thread(target=engine.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{engine.server_port}"
    # moto's backends are this process's: start from none, whatever ran here before (a test process).
    httpx.post(f"{endpoint}/moto-api/reset", timeout=30).raise_for_status()
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "PAYWALLS_AWS_TRANSPORT": "http",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "TABLE_NAME": "PaywallsTable",
            "SECRET_PREFIX": "paywalls/inprocess",
            "ADMIN_AUTH": "token",
            "ADMIN_TOKEN": admin_token,
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "PAYWALLS_LOCAL_DEV": "1",
            # demo/slow streams like a model (a pause before each word), fast enough for a test.
            "DEMO_CHUNK_DELAY_S": "0.02",
        }
    )
    recorder = Recorder()
    try:
        with _warm_caches():
            aws.reset_clients()
            secrets_store.reset()
            create_tables()
            create_app_secret()
            aws.client("dynamodb").hooks.append(recorder.on_call)
            complete = providers.complete
            providers.complete = recorder.wrap_provider_call(complete)
            config = uvicorn.Config(
                recorder.wrap(with_bare_proxy(build_app(), f"http://127.0.0.1:{port}")),
                host="127.0.0.1",
                port=port,
                log_level="warning",
                lifespan="off",
            )
            server = uvicorn.Server(config)
            thread = threading.Thread(target=server.run, daemon=True)
            thread.start()
            deadline = time.monotonic() + 30
            while not server.started:
                if time.monotonic() > deadline or not thread.is_alive():
                    raise RuntimeError("the in-process stack did not start")
                time.sleep(0.05)
            try:
                yield InProcessStack(f"http://127.0.0.1:{port}", admin_token, recorder)
            finally:
                server.should_exit = True
                thread.join(10)
                providers.complete = complete
                aws.client("dynamodb").hooks.remove(recorder.on_call)
    finally:
        httpx.post(f"{endpoint}/moto-api/reset", timeout=30)  # and leave none behind
        engine.shutdown()
        engine.server_close()
        aws.reset_clients()
        secrets_store.reset()
        os.environ.clear()
        os.environ.update(saved)


# ---- the request kinds the hot-path budget covers ---------------------------------------------------

MESSAGES = [{"role": "user", "content": "how many round trips does this take"}]


def measure_kinds(stack: InProcessStack) -> dict[str, Placement]:
    """Each kind once to warm the instance's caches, then once measured."""
    default = stack.paywall()
    stack.fund(default["id"], "funded", "5")
    trial = stack.paywall(trial_credits="1")
    shared = stack.paywall(mode="shared", platform_fee_percent="10")
    stack.connect_person(shared["id"], "member", 5_000_000)
    # Webhooks (events/outbox.py): three active subscriptions that want every usage charge.
    hooked = stack.paywall()
    stack.fund(hooked["id"], "funded", "5")
    stack.subscribe(hooked["id"], 3, ["paywall.usage.charge.created", "paywall.balance.*"])

    def call(path: str, key: str, user: str, body: dict[str, Any]) -> Callable[[], None]:
        def run() -> None:
            headers = {"Authorization": f"Bearer {key}", "X-Paywall-User": user}
            with httpx.stream("POST", f"{stack.url}{path}", json=body, headers=headers, timeout=30) as r:
                r.raise_for_status()
                for _ in r.iter_bytes():
                    pass
            if r.headers.get("x-paywall-action"):
                raise RuntimeError(f"paywall reply instead of an answer: {r.headers['x-paywall-action']}")

        return run

    def chat(key: str, user: str, stream: bool) -> Callable[[], None]:
        # demo/slow answers like a model, taking a while (between chunks, or before a JSON answer):
        # that is when the proxy reads the wallet for its settlement (chat_billing, prefetch).
        body = {"model": "demo/slow", "messages": MESSAGES, "user": user, "stream": stream}
        return call("/v1/chat/completions", key, user, body)

    def responses(key: str, user: str, stream: bool) -> Callable[[], None]:
        body = {"model": "demo/slow", "input": MESSAGES[0]["content"], "stream": stream}
        return call("/v1/responses", key, user, body)

    def embeddings(key: str, user: str) -> Callable[[], None]:
        return call("/v1/embeddings", key, user, {"model": "demo/slow", "input": [MESSAGES[0]["content"]] * 3})

    def money(path: str, key: str, user: str) -> Callable[[], None]:
        def run() -> None:
            httpx.post(
                f"{stack.url}/v1/user/{path}",
                json={"amount": "0.001", "user": user},
                headers={"Authorization": f"Bearer {key}", "Idempotency-Key": uuid.uuid4().hex},
                timeout=30,
            ).raise_for_status()

        return run

    kinds = {
        "chat json": chat(default["key"], "funded", False),
        "chat stream": chat(default["key"], "funded", True),
        "chat json, trial paywall": chat(trial["key"], "trialist", False),
        "chat stream, trial paywall": chat(trial["key"], "trialist", True),
        "chat json, shared mode": chat(shared["key"], "member", False),
        "chat stream, shared mode": chat(shared["key"], "member", True),
        "chat json, 3 webhook subscriptions": chat(hooked["key"], "funded", False),
        "chat stream, 3 webhook subscriptions": chat(hooked["key"], "funded", True),
        "responses json": responses(default["key"], "funded", False),
        "responses stream": responses(default["key"], "funded", True),
        "embeddings": embeddings(default["key"], "funded"),
        "responses stream, shared mode": responses(shared["key"], "member", True),
        "embeddings, shared mode": embeddings(shared["key"], "member"),
        "user charge": money("charge", default["key"], "funded"),
        "deposit": money("balance/deposit", default["key"], "funded"),
    }
    results = {}
    for name, request in kinds.items():
        stack.measure(request)  # warm: key, paywall, secret and connection caches; trial granted
        results[name] = stack.measure(request)
    return results


class ReplayedDynamoDB:
    """Answers each DynamoDB call with the last answer recorded for the same operation, without the
    engine: what a request then costs is our own work (the app, the calls' serialising, signing and
    parsing, the loop's scheduling), the database's removed. Conditions always pass, so it is for
    timing a request that succeeds, never for checking money. Recording runs until `replay()`.
    Works on the http transport's network layer (httpx transports), so everything above it runs."""

    def __init__(self, client: Any):
        self.answers: dict[str, bytes] = {}
        self.replaying = False
        client.transport.use_transports(_Replaying(self, httpx.HTTPTransport()), _AsyncReplaying(self))

    def replay(self) -> None:
        self.replaying = True

    def answer(self, request: httpx.Request) -> httpx.Response | None:
        operation = request.headers["x-amz-target"].rsplit(".", 1)[-1]
        body = self.answers.get(operation) if self.replaying else None
        if body is None:
            return None  # never recorded: the engine answers it
        return httpx.Response(200, content=body, headers={"content-type": "application/x-amz-json-1.0"})

    def record(self, request: httpx.Request, response: httpx.Response) -> None:
        if not self.replaying and response.status_code == 200:
            self.answers[request.headers["x-amz-target"].rsplit(".", 1)[-1]] = response.content


class _Replaying(httpx.BaseTransport):
    def __init__(self, replayed: ReplayedDynamoDB, real: httpx.BaseTransport):
        self.replayed, self.real = replayed, real

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        answer = self.replayed.answer(request)
        if answer is not None:
            return answer
        response = self.real.handle_request(request)
        response.read()
        self.replayed.record(request, response)
        return response


class _AsyncReplaying(httpx.AsyncBaseTransport):
    def __init__(self, replayed: ReplayedDynamoDB):
        self.replayed, self.real = replayed, httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        answer = self.replayed.answer(request)
        if answer is not None:
            return answer
        response = await self.real.handle_async_request(request)
        await response.aread()
        self.replayed.record(request, response)
        return response


def main() -> None:
    """Serve the in-process stack (for benchmarks/proxy_overhead.py): prints one JSON line with
    its URL, a funded user's key and the admin token, then serves until SIGTERM/SIGINT. With
    `--replay`, DynamoDB is answered from answers recorded on a few warm-up requests
    (ReplayedDynamoDB): the figures are then the proxy's own cost."""
    import signal
    import sys

    from paywalls.infra import aws

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with inprocess_stack() as stack:
        paywall = stack.paywall()
        stack.fund(paywall["id"], "bench", "1000")
        if "--replay" in sys.argv:
            replayed = ReplayedDynamoDB(aws.client("dynamodb"))
            headers = {"Authorization": f"Bearer {paywall['key']}", "X-Paywall-User": "bench"}
            body = {"model": "demo/echo", "messages": MESSAGES}
            with httpx.Client(base_url=stack.url, timeout=30) as client:
                for stream in (False, True, False, True):
                    client.post("/v1/chat/completions", json={**body, "stream": stream}, headers=headers)
            replayed.replay()
        print(json.dumps({"url": stack.url, "key": paywall["key"], "user": "bench"}), flush=True)
        while not stop.wait(0.5):
            pass
    sys.exit(0)


if __name__ == "__main__":
    main()
