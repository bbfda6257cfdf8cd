"""HTTP glue under hostile or heavy input, in-process against moto: bodies are capped while they are
read (not after), error replies always encode, and no handler of the buffered functions makes a
blocking AWS or Stripe call on the event loop (locally one uvicorn loop serves every function, so a
blocking admin call would stall every chat stream)."""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.requests import Request

from devserver.router import load_function_app
from paywalls.billing import paywall as paywalls
from paywalls.billing import stripe_config
from paywalls.billing.stripe_config import StripeSecrets
from paywalls.http import web
from paywalls.infra import aws, links, stripe_gateway
from paywalls.infra import secrets as secrets_store
from paywalls.infra.config import settings
from paywalls.wallets import persons, sessions
from tests import stripe_stub as st
from tests.shared_support import app_secret

ADMIN_TOKEN = "adm_hardening"
CHUNK = 64 * 1024


# ---- a raw ASGI call: what a client streaming a body really does ---------------------------------


def asgi_call(app: Any, method: str, path: str, headers: dict[str, str], chunks: int) -> tuple[int, int]:
    """Sends up to `chunks` body chunks of 64 KiB (only when asked: as a socket would) and answers
    (status, how many chunks the app pulled). A Content-Length header, if any, is what `headers` says."""
    pulled = 0

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        if pulled >= chunks:
            return {"type": "http.disconnect"}
        pulled += 1
        return {"type": "http.request", "body": b"x" * CHUNK, "more_body": pulled < chunks}

    status = 0

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    asyncio.run(app(scope, receive, send))
    return status, pulled


@pytest.fixture
def admin_app(aws_mock: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    monkeypatch.setenv("ADMIN_AUTH", "token")
    monkeypatch.setenv("ADMIN_TOKEN", ADMIN_TOKEN)
    settings.cache_clear()
    yield load_function_app("functions/admin", "AdminFunction")
    settings.cache_clear()


def _routes(admin_app: Any) -> list[tuple[Any, str, str, dict[str, str], int]]:
    """(app, method, path, headers, the body limit) of every reader of a request body."""
    webhook = load_function_app("functions/stripe_webhook", "StripeWebhookFunction")
    wallet = load_function_app("functions/wallet", "WalletFunction")
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    return [
        (admin_app, "POST", "/admin/paywalls", {"Authorization": f"Bearer {ADMIN_TOKEN}"}, 1_000_000),
        (webhook, "POST", "/webhooks/stripe/pw_x", {"Stripe-Signature": "t=1,v1=x"}, 512 * 1024),
        (wallet, "POST", "/wallet/signin", form, 4096),
    ]


def test_a_declared_oversized_body_is_refused_before_reading_any_of_it(admin_app: Any) -> None:
    for app, method, path, headers, limit in _routes(admin_app):
        status, pulled = asgi_call(app, method, path, {**headers, "Content-Length": str(limit + 1)}, chunks=10_000)
        assert pulled == 0, f"{path}: read {pulled} chunks of a body it had to refuse"
        # The wallet's forms answer an oversized form as an empty one: its CSRF check fails (403 page).
        assert status == (403 if path.startswith("/wallet") else 413), path


def test_a_streamed_body_is_cut_off_at_the_limit(admin_app: Any) -> None:
    """No Content-Length (chunked): reading stops at the first chunk past the limit instead of
    buffering all 64 MiB first."""
    for app, method, path, headers, limit in _routes(admin_app):
        status, pulled = asgi_call(app, method, path, headers, chunks=1024)
        assert pulled <= limit // CHUNK + 1, f"{path}: pulled {pulled} chunks for a {limit}-byte limit"
        assert status == (403 if path.startswith("/wallet") else 413), path


def test_read_body_returns_the_body_and_keeps_it_readable() -> None:
    parts = [b'{"a": ', b"1}"]

    async def run() -> tuple[bytes, bytes]:
        messages = iter([{"type": "http.request", "body": p, "more_body": i == 0} for i, p in enumerate(parts)])

        async def receive() -> dict[str, Any]:
            return next(messages)

        request = Request({"type": "http", "method": "POST", "headers": []}, receive)
        return await web.read_body(request, limit=8), await request.body()  # exactly the limit: fine

    assert asyncio.run(run()) == (b'{"a": 1}', b'{"a": 1}')


def test_read_body_refuses_an_invalid_content_length() -> None:
    async def receive() -> dict[str, Any]:
        raise AssertionError("nothing may be read")

    request = Request({"type": "http", "method": "POST", "headers": [(b"content-length", b"-5")]}, receive)
    with pytest.raises(web.ApiError) as refused:
        asyncio.run(web.read_body(request, limit=10))
    assert refused.value.status == 400


# ---- error replies always encode -------------------------------------------------------------------


def test_error_replies_that_echo_client_input_always_encode() -> None:
    """A message quoting a model name or a field name is rendered even if it holds a lone surrogate:
    json_body refuses those, but an error reply must never be what fails (a 500 without a body)."""
    error = web.ApiError(404, "model '\ud800gpt' does not exist", param="models.\udfff")
    response = web.error_response(error, "req_1")
    body = json.loads(response.body)
    assert response.status_code == 404
    assert body["error"]["message"] == "model '?gpt' does not exist" and body["error"]["param"] == "models.?"
    assert web.encodable("fine ✓") == "fine ✓"


# ---- no blocking call on the event loop --------------------------------------------------------------


@pytest.fixture
def loop_guard(aws_mock: None, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every entry to boto3, Secrets Manager and Stripe records whether it ran on the event loop's
    thread (a running loop there) instead of a worker thread."""
    offences: list[str] = []

    def guarded(name: str, call: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                pass  # a worker thread: where blocking calls belong
            else:
                offences.append(name)
            return call(*args, **kwargs)

        wrapper.cache_clear = getattr(call, "cache_clear", None)  # type: ignore[attr-defined]
        return wrapper

    monkeypatch.setattr(aws, "client", guarded("boto3 client", aws.client))
    monkeypatch.setattr(secrets_store, "get_secret", guarded("Secrets Manager read", secrets_store.get_secret))
    monkeypatch.setattr(secrets_store, "put_secret", guarded("Secrets Manager write", secrets_store.put_secret))
    monkeypatch.setattr(stripe_gateway, "_client", guarded("Stripe", stripe_gateway._client))
    return offences


def _ok(response: Any) -> Any:
    assert response.status_code < 500, response.text
    return response


def test_admin_handlers_never_block_the_event_loop(
    loop_guard: list[str], monkeypatch: pytest.MonkeyPatch, admin_app: Any
) -> None:
    admin = TestClient(admin_app, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    with st.StripeStub().running() as stub:
        monkeypatch.setenv("STRIPE_API_BASE", stub.url)
        pid = _ok(admin.post("/admin/paywalls", json={"name": "App"})).json()["id"]
        shared = _ok(admin.post("/admin/paywalls", json={"name": "Shared", "mode": "shared"})).json()["id"]
        person = persons.get_or_create("loop@example.com").id
        key = _ok(admin.post(f"/admin/paywalls/{pid}/keys", json={"environment": "live"})).json()["id"]
        once = {"Idempotency-Key": "k1"}
        for method, path, body, headers in [
            ("GET", f"/admin/paywalls/{pid}", None, {}),
            ("PATCH", f"/admin/paywalls/{pid}", {"description": "d"}, {}),
            ("GET", f"/admin/paywalls/{pid}/keys", None, {}),
            ("DELETE", f"/admin/paywalls/{pid}/keys/{key}", None, {}),
            ("PUT", f"/admin/paywalls/{pid}/provider", {"kind": "openai", "api_key": "k"}, {}),
            ("PUT", f"/admin/paywalls/{pid}/pricing", {"models": {"m": {"prompt": "1", "completion": "1"}}}, {}),
            ("PUT", f"/admin/paywalls/{pid}/templates", {"provider_error": "x"}, {}),
            ("PUT", f"/admin/paywalls/{pid}/stripe", {"secret_key": "sk_test_loop"}, {}),
            ("GET", f"/admin/paywalls/{pid}/users", None, {}),
            ("GET", f"/admin/paywalls/{pid}/usage", None, {}),
            ("POST", f"/admin/paywalls/{pid}/users/u1/adjustments", {"amount": "1"}, once),
            ("GET", f"/admin/paywalls/{shared}/earnings", None, {}),
            ("PUT", f"/admin/paywalls/{shared}/payout", {"stripe_account": None}, {}),
            ("POST", f"/admin/paywalls/{shared}/withdrawals", {}, once),  # nothing earned: a 409
            ("GET", f"/admin/paywalls/{shared}/withdrawals", None, {}),
            ("GET", "/admin/losses?environment=test", None, {}),
            ("PUT", "/admin/operator/stripe", {"secret_key": "sk_test_operator"}, {}),
            ("GET", "/admin/operator/stripe", None, {}),
            ("GET", "/admin/persons?email=loop@example.com", None, {}),
            ("GET", f"/admin/persons/{person}", None, {}),
            ("POST", f"/admin/persons/{person}/adjustments", {"amount": "1", "environment": "test"}, once),
        ]:
            _ok(admin.request(method, path, json=body, headers=headers))
    assert not loop_guard, f"blocking calls on the event loop: {sorted(set(loop_guard))}"


def test_user_api_handlers_never_block_the_event_loop(loop_guard: list[str]) -> None:
    app_secret()
    api = TestClient(load_function_app("functions/user_api", "UserApiFunction"))
    for mode in ("default", "shared"):
        paywall = paywalls.create({"name": "App", "mode": mode})
        auth = {"Authorization": f"Bearer {paywalls.issue_key(paywall.id, 'live')[1]}", "X-Paywall-User": "u1"}
        _ok(api.get("/v1/models", headers=auth))
        _ok(api.get("/v1/user/balance", headers=auth))
        _ok(api.get("/v1/user/balance/topup", headers=auth))
        _ok(api.get("/v1/user/ledger", headers=auth))
        _ok(api.get("/v1/user/connect", headers=auth))
        money = {**auth, "Idempotency-Key": secrets.token_hex(8)}
        _ok(api.post("/v1/user/balance/deposit", json={"amount": "1"}, headers=money))
        _ok(api.post("/v1/user/charge", json={"amount": "5"}, headers={**money, "Idempotency-Key": "c1"}))
    assert not loop_guard, f"blocking calls on the event loop: {sorted(set(loop_guard))}"


def test_hosted_pages_never_block_the_event_loop(loop_guard: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYWALLS_LOCAL_DEV", "1")  # the mail sink instead of SES
    settings.cache_clear()
    app_secret()
    pages = TestClient(load_function_app("functions/wallet", "WalletFunction"))
    paywall = paywalls.create({"name": "App"})
    token = links.topup_url("http://testserver", paywall.id, "live", "u1").rsplit("/", 1)[-1]
    _ok(pages.get(f"/pay/{token}"))
    _ok(pages.post(f"/pay/{token}/checkout", data={"amount": "5"}))
    _ok(pages.get("/wallet/signin"))
    _ok(pages.post("/wallet/signin", data={"email": "a@example.com"}))
    pages.cookies.set(sessions.COOKIE_NAME, sessions.issue(persons.get_or_create("a@example.com").id))
    for path in ("/wallet/home", "/wallet/topup", "/wallet/test/home", "/wallet/test/topup"):
        _ok(pages.get(path))
    for path in ("/wallet/topup", "/wallet/test/topup", "/wallet/signout", "/wallet/connections/cn_x/revoke"):
        _ok(pages.post(path, data={"csrf": "x"}))
    settings.cache_clear()
    assert not loop_guard, f"blocking calls on the event loop: {sorted(set(loop_guard))}"


def test_stripe_webhook_never_blocks_the_event_loop(loop_guard: list[str]) -> None:
    paywall = paywalls.create({"name": "Shop"})
    whsec = "whsec_" + secrets.token_hex(16)
    stripe_config.save_secrets(paywall.id, "test", StripeSecrets("sk_test_hook", whsec, "we_test"))
    hook = TestClient(load_function_app("functions/stripe_webhook", "StripeWebhookFunction"))
    session = st.checkout_session(paywall_id=paywall.id, user="u1", cents=500, environment="test")
    body = json.dumps(st.event("checkout.session.completed", session)).encode()
    reply = hook.post(
        f"/webhooks/stripe/{paywall.id}", content=body, headers={"Stripe-Signature": st.sign(body, whsec)}
    )
    assert reply.json()["result"] == "credited", reply.text
    assert not loop_guard, f"blocking calls on the event loop: {sorted(set(loop_guard))}"
