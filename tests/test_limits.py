"""Per-user limits (limits.py): requests per minute, tokens per day, spend per day and per month,
reserved as ledger quotas in the hold's own transaction. Windows and validation, the ledger's
accounting (reserve, settle to usage, release, late settlement), the chat path's DynamoDB round
trips, shared mode, the replies (429 / paywall reply), /v1/user/balance, the admin API and CLI, and
100 parallel requests against each limit on the local stack."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import anyio
import httpx
import openai
import pytest

from paywalls import cli
from paywalls.billing import ledger, limits, metering
from paywalls.billing import paywall as paywalls
from paywalls.billing.metering import Pricing, Usage
from paywalls.billing.paywall import InvalidRequest, ModelPrice
from paywalls.chat.billing import reserve
from paywalls.chat.request import parse as parse_chat
from paywalls.infra import aws, store
from paywalls.infra import secrets as secrets_store
from paywalls.wallets import connections
from tests.chat_support import charges, fund, make_paywall, new_user, sdk
from tests.conftest import LocalStack
from tests.shared_support import funded_person, shared_paywall

# ---- windows and validation -----------------------------------------------------------------------


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def test_windows_are_utc_calendar_windows() -> None:
    now = _epoch("2026-01-31T23:59:30")
    user = limits.UserLimits(
        "pw_1",
        "live",
        "alice",
        {"requests_per_minute": 5, "tokens_per_day": 100, "spend_per_day": 10, "spend_per_month": 20},
        now,
    )
    windows = {w.name: w for w in user.windows()}
    assert user.pk == "LIMIT#pw_1#live#alice"
    assert windows["requests_per_minute"].sk == "REQ#MIN#2026-01-31T23:59"
    assert windows["requests_per_minute"].resets_at == _epoch("2026-02-01T00:00:00")
    assert windows["tokens_per_day"].sk == "TOK#DAY#2026-01-31"
    assert windows["spend_per_day"].sk == "SPEND#DAY#2026-01-31"
    assert windows["spend_per_day"].resets_at == _epoch("2026-02-01T00:00:00")
    assert windows["spend_per_month"].sk == "SPEND#MONTH#2026-01"
    assert windows["spend_per_month"].resets_at == _epoch("2026-02-01T00:00:00")
    december = limits.UserLimits("pw_1", "live", "a", {"spend_per_month": 1}, _epoch("2026-12-15T08:00:00"))
    assert december.windows()[0].resets_at == _epoch("2027-01-01T00:00:00")
    quotas = {q.sk: q for q in user.quotas(amount=7, tokens=42)}
    assert [(q.reserve, q.measure) for q in quotas.values()] == [
        (1, "requests"),
        (42, "tokens"),
        (7, "money"),
        (7, "money"),
    ]
    # A window item outlives its window by a day: any hold it reserved for is settled by then.
    assert all(
        q.expires_at == w.resets_at + limits.WINDOW_TTL_S
        for q, w in zip(quotas.values(), windows.values(), strict=True)
    )


@pytest.mark.parametrize(
    "body, param",
    [
        ({"requests_per_minute": 0}, "requests_per_minute"),
        ({"requests_per_minute": "5"}, "requests_per_minute"),
        ({"tokens_per_day": True}, "tokens_per_day"),
        ({"tokens_per_day": 1.5}, "tokens_per_day"),
        ({"spend_per_day": "-1"}, "spend_per_day"),
        ({"spend_per_month": "abc"}, "spend_per_month"),
        ({"requests_per_hour": 1}, "requests_per_hour"),
    ],
)
def test_invalid_limits_are_refused(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        limits.parse(body)
    assert refused.value.param == param


def test_parse_keeps_null_only_for_overrides() -> None:
    body = {"requests_per_minute": 3, "spend_per_day": "1.5", "tokens_per_day": None}
    assert limits.parse(body) == {"requests_per_minute": 3, "spend_per_day": 1_500_000}
    override = limits.parse(body, allow_inherit=True)
    assert override == {"requests_per_minute": 3, "spend_per_day": 1_500_000, "tokens_per_day": None}
    assert limits.effective({"tokens_per_day": 10, "spend_per_month": 5}, override) == {
        "requests_per_minute": 3,
        "spend_per_day": 1_500_000,
        "spend_per_month": 5,
    }


# ---- the ledger's quota accounting ----------------------------------------------------------------

PK = "LIMIT#pw_q#live#u"


def _quota(sk: str, limit: int, reserve: int, measure: str) -> ledger.Quota:
    return ledger.Quota(PK, sk, limit, reserve, measure, int(time.time()) + 3600)  # type: ignore[arg-type]


def _used(sk: str) -> int:
    item = store.get(PK, sk)
    return 0 if item is None else item["used"]


def test_quotas_are_reserved_with_the_hold_and_settled_to_usage(aws_mock: None) -> None:
    ledger.credit("w", 10_000, idempotency_key="seed")
    spend, tokens, rpm = _quota("S", 1000, 600, "money"), _quota("T", 100, 80, "tokens"), _quota("R", 2, 1, "requests")
    ledger.hold("w", 600, hold_id="h1", quotas=(spend, tokens, rpm))
    assert (_used("S"), _used("T"), _used("R")) == (600, 80, 1)
    assert store.get(PK, "S")["expires_at_ttl"] == spend.expires_at
    ledger.settle("h1", 250, prompt_tokens=10, completion_tokens=15)
    # What the request used stays counted; the rest of each reservation is back; a request is a request.
    assert (_used("S"), _used("T"), _used("R")) == (250, 25, 1)
    assert ledger.get_wallet("w").available == 10_000 - 250


def test_a_refused_quota_reserves_nothing(aws_mock: None) -> None:
    ledger.credit("w", 10_000, idempotency_key="seed")
    ledger.hold("w", 600, hold_id="h1", quotas=(_quota("S", 1000, 600, "money"),))
    with pytest.raises(ledger.QuotaExceeded) as exceeded:
        ledger.hold("w", 600, hold_id="h2", quotas=(_quota("R", 5, 1, "requests"), _quota("S", 1000, 600, "money")))
    assert exceeded.value.quota.sk == "S"
    assert ledger.get_hold("h2") is None
    assert (_used("S"), _used("R")) == (600, 0)
    assert ledger.get_wallet("w").available == 10_000 - 600
    with pytest.raises(ledger.QuotaExceeded):  # more than the whole limit: refused before any write
        ledger.hold("w", 10, hold_id="h3", quotas=(_quota("X", 5, 6, "tokens"),))
    assert store.get(PK, "X") is None


def test_release_and_late_settlement_keep_quotas_exact(aws_mock: None) -> None:
    ledger.credit("w", 10_000, idempotency_key="seed")
    quotas = (_quota("S", 5000, 900, "money"), _quota("T", 500, 300, "tokens"), _quota("R", 9, 1, "requests"))
    ledger.hold("w", 900, hold_id="h1", quotas=quotas)
    assert ledger.release("h1")
    assert (_used("S"), _used("T"), _used("R")) == (0, 0, 1)  # never ran: money and tokens back
    assert not ledger.release("h1")  # once only
    assert (_used("S"), _used("T"), _used("R")) == (0, 0, 1)
    # A request that outlived its hold (the sweeper released it) is charged late: its usage counts again.
    ledger.hold("w", 900, hold_id="h2", quotas=quotas)
    assert ledger.release("h2")
    ledger.settle("h2", 400, prompt_tokens=50, completion_tokens=70)
    assert (_used("S"), _used("T"), _used("R")) == (400, 120, 2)
    assert ledger.get_wallet("w").balance == 10_000 - 400


# ---- the chat path in-process: DynamoDB round trips, shared mode --------------------------------

COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}


class _Provider(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers["content-length"]))
        data = json.dumps(COMPLETION).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def provider_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Provider)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/v1"
    server.shutdown()


def _in_process_paywall(provider_url: str) -> tuple[paywalls.Paywall, str]:
    from devserver.stack import create_app_secret

    create_app_secret()
    paywall = paywalls.create({"name": "Limits"})
    paywalls.set_pricing(paywall.id, {"models": {"m": {"prompt": "1", "completion": "1"}}})
    secret = paywalls.provider_secret_name("paywalls/test", paywall.id)
    secrets_store.put_secret(secret, "provider-key")
    paywalls.set_provider(paywall.id, "openai-compatible", provider_url, secret)
    _, key = paywalls.issue_key(paywall.id, "live")
    return paywall, key


def _calls_of_one_chat(key: str, user: str) -> Counter[str]:
    """DynamoDB operations (and the keys they touch) of one served chat request, in process."""
    from devserver.router import load_function_module

    chat = load_function_module("functions/chat", "ChatFunction")
    operations: Counter[str] = Counter()

    def count(service: str, operation: str, params: dict[str, Any]) -> None:
        operations[operation] += 1
        if "LIMIT#" in str(params):
            operations["touches LIMIT#"] += 1

    client = aws.client("dynamodb")
    client.hooks.append(count)

    async def call() -> None:
        transport = httpx.ASGITransport(app=chat.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://chat") as http:
            reply = await http.post(
                "/v1/chat/completions",
                headers={"authorization": f"Bearer {key}"},
                json={"model": "m", "user": user, "messages": [{"role": "user", "content": "hi"}]},
            )
            assert reply.status_code == 200 and "x-paywall-action" not in reply.headers, reply.text

    try:
        anyio.run(call)
    finally:
        client.hooks.remove(count)
    return operations


def test_round_trips_are_unchanged_without_limits(aws_mock: None, provider_url: str) -> None:
    """No limits: nothing about limits is read or written. A requests-per-minute limit costs no
    extra call (it is a condition inside the hold); spend or token limits one BatchGetItem (the
    current windows, to size the hold); per-user overrides one GetItem more."""
    paywall, key = _in_process_paywall(provider_url)
    for user in ("plain", "rpm", "spend", "override"):
        ledger.credit(f"{paywall.id}:live:{user}", 1_000_000, idempotency_key="seed")
    baseline = _calls_of_one_chat(key, "plain")
    assert baseline["touches LIMIT#"] == 0 and "BatchGetItem" not in baseline

    limits.set_defaults(paywall.id, {"requests_per_minute": 100})
    rpm = _calls_of_one_chat(key, "rpm")
    assert rpm - Counter({"touches LIMIT#": rpm["touches LIMIT#"]}) == baseline

    limits.set_defaults(paywall.id, {"requests_per_minute": 100, "spend_per_day": "1"})
    spend = _calls_of_one_chat(key, "spend")
    assert spend - Counter({"touches LIMIT#": spend["touches LIMIT#"]}) == baseline + Counter(BatchGetItem=1)

    limits.set_override(paywalls.get(paywall.id), "live", "someone-else", {"requests_per_minute": 5})
    override = _calls_of_one_chat(key, "override")
    plus = Counter(BatchGetItem=1, GetItem=1)
    assert override - Counter({"touches LIMIT#": override["touches LIMIT#"]}) == baseline + plus


def test_shared_mode_spend_limit_is_reserved_with_the_persons_hold(aws_mock: None) -> None:
    """Shared mode: the person's wallet pays within the connection's cap, and the app user's own
    limits are reserved in the same hold; the spend window counts the app user's charge."""
    from paywalls.wallets import shared_mode
    from tests.shared_support import app_secret

    app_secret()
    paywall = shared_paywall()
    person = funded_person()
    connections.connect(paywall.id, "live", "bob", person.id, None)
    limits.set_defaults(paywall.id, {"spend_per_day": "0.0005"})
    paywall = paywalls.get(paywall.id)
    chat = parse_chat({"model": "demo/echo", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10})
    pricing = Pricing(ModelPrice(paywall.pricing["demo/echo"].prompt, paywall.pricing["demo/echo"].completion))
    bound = metering.prompt_token_bound({"messages": [{"role": "user", "content": "hi"}]})

    async def one() -> int:
        user_limits = limits.for_user(paywall, "live", "bob")
        funding = shared_mode.funding(paywall, "live", "bob")
        reservation = await reserve(
            paywall, "live", "bob", pricing, chat, prompt_bound=bound, request_id=uuid.uuid4().hex,
            funding=funding, limits=user_limits,
        )  # fmt: skip
        assert reservation is not None and reservation.hold_id
        return await reservation.settle(Usage(2, 10))  # 22 micro-units, within the hold

    with pytest.raises(limits.LimitReached) as reached:
        for _ in range(100):
            anyio.run(one)
    assert reached.value.name == "spend_per_day" and not reached.value.is_rate_limit
    spent = -sum(e.amount for e in ledger.all_entries(person.wallet_for("live")) if e.type == "charge")
    # Served until the room left could not hold even a one-token answer, never beyond the limit.
    assert 500 - pricing.cost(bound, 1) < spent <= 500
    window = limits.for_user(paywall, "live", "bob").usage()["spend_per_day"]  # type: ignore[union-attr]
    assert window[1] == spent
    assert ledger.get_wallet(person.wallet_for("live")).balance == 10_000_000 - spent


# ---- end to end: replies, balance, admin API and CLI ----------------------------------------------


def _wait_for_fresh_window() -> None:
    """Requests of one test must fall in one minute (and one day): start early in a minute."""
    now = datetime.now(UTC)
    if now.second >= 40 or (now.hour == 23 and now.minute >= 58):
        time.sleep(61 - now.second if now.hour != 23 or now.minute < 58 else 150)


def _set_limits(stack: LocalStack, paywall_id: str, body: dict[str, Any]) -> dict[str, Any]:
    with stack.admin() as admin:
        return admin.put(f"/admin/paywalls/{paywall_id}/limits", json=body).raise_for_status().json()


def _balance(stack: LocalStack, key: str, user: str) -> dict[str, Any]:
    reply = httpx.get(
        f"{stack.url}/v1/user/balance", params={"user": user}, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )
    return reply.raise_for_status().json()


HI = [{"role": "user", "content": "hi"}]


def test_rate_limit_is_a_429_the_openai_sdk_understands(stack: LocalStack) -> None:
    paywall = make_paywall(stack)
    user = new_user("rpm")
    fund(stack, paywall["id"], user, "1")
    assert _set_limits(stack, paywall["id"], {"requests_per_minute": 2}) == {"requests_per_minute": 2}
    _wait_for_fresh_window()
    client = sdk(stack, paywall["key"])
    for _ in range(2):
        client.chat.completions.create(model="demo/echo", messages=HI, user=user)
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model="demo/echo", messages=HI, user=user, stream=True)
    error = limited.value
    assert error.status_code == 429 and error.code == "rate_limit_exceeded"
    assert error.body["type"] == "rate_limit_error" and "2 requests per minute" in error.body["message"]
    assert 1 <= int(error.response.headers["retry-after"]) <= 60
    assert "x-should-retry" not in error.response.headers
    assert len(charges(stack, paywall["key"], user)) == 2
    shown = _balance(stack, paywall["key"], user)["limits"]["requests_per_minute"]
    assert shown["limit"] == 2 and shown["remaining"] == 0 and shown["resets_at"].endswith(":00Z")


def test_tokens_per_day_limit_says_not_to_retry_now(stack: LocalStack) -> None:
    paywall = make_paywall(stack)
    user = new_user("tok")
    fund(stack, paywall["id"], user, "1")
    _set_limits(stack, paywall["id"], {"tokens_per_day": 5})  # less than any prompt's bound
    reply = httpx.post(
        f"{stack.url}/v1/chat/completions",
        json={"model": "demo/echo", "messages": HI, "user": user},
        headers={"Authorization": f"Bearer {paywall['key']}"},
        timeout=30,
    )
    assert reply.status_code == 429 and reply.json()["error"]["code"] == "rate_limit_exceeded"
    assert int(reply.headers["retry-after"]) > 60 and reply.headers["x-should-retry"] == "false"
    assert "tokens per day" in reply.json()["error"]["message"]


@pytest.mark.parametrize("stream", [False, True])
def test_spend_limit_answers_the_paywall_reply_with_its_reset(stack: LocalStack, stream: bool) -> None:
    paywall = make_paywall(stack)
    user = new_user("spend")
    fund(stack, paywall["id"], user, "1")
    _set_limits(stack, paywall["id"], {"spend_per_month": "0.00001"})  # 10 micro-units: not one request
    client = sdk(stack, paywall["key"])
    raw = client.chat.completions.with_raw_response.create(model="demo/echo", messages=HI, user=user, stream=stream)
    assert raw.headers["x-paywall-action"] == "limit"
    parsed = raw.parse()
    text = (
        "".join(c.choices[0].delta.content or "" for c in parsed if c.choices)
        if stream
        else parsed.choices[0].message.content
    )
    month = datetime.now(UTC).replace(day=1)
    next_month = datetime(month.year + (month.month == 12), month.month % 12 + 1, 1, tzinfo=UTC)
    assert text == (
        f"You have reached your monthly spending limit of 0.00001 USD for Chat test app. "
        f"It resets {next_month:%Y-%m-%d} 00:00 UTC."
    )
    assert charges(stack, paywall["key"], user) == []
    shown = _balance(stack, paywall["key"], user)
    assert shown["balance"] == "1000000"
    assert shown["limits"]["spend_per_month"]["remaining"] == "10"
    assert shown["limits"]["spend_per_month"]["remainingFormatted"] == "0.000010"  # like balanceFormatted


def test_user_overrides_through_the_cli(stack: LocalStack, capsys: pytest.CaptureFixture[str]) -> None:
    paywall = make_paywall(stack)
    vip, regular = new_user("vip"), new_user("reg")
    for user in (vip, regular):
        fund(stack, paywall["id"], user, "1")
    base = ["--url", f"{stack.url}/admin", "--token", stack.config["admin_token"], "--json"]

    def run(*args: str) -> dict[str, Any]:
        assert cli.main([*base, *args]) == 0, capsys.readouterr().err
        return json.loads(capsys.readouterr().out)

    assert run("limits", paywall["id"], "--requests-per-minute", "1", "--spend-per-day", "0.5") == {
        "requests_per_minute": 1,
        "spend_per_day": "0.500000",
    }
    shown = run("user-limits", paywall["id"], vip, "--requests-per-minute", "none", "--tokens-per-day", "100000")
    assert shown["override"] == {"requests_per_minute": None, "tokens_per_day": 100000}
    assert shown["effective"] == {"tokens_per_day": 100000, "spend_per_day": "0.500000"}
    _wait_for_fresh_window()
    client = sdk(stack, paywall["key"])
    for _ in range(3):  # no per-minute limit for this user
        client.chat.completions.create(model="demo/echo", messages=HI, user=vip)
    client.chat.completions.create(model="demo/echo", messages=HI, user=regular)
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="demo/echo", messages=HI, user=regular)
    usage = run("user-limits", paywall["id"], vip)["usage"]
    assert usage["tokens_per_day"]["remaining"] == 100000 - sum(
        c["prompt_tokens"] + c["completion_tokens"] for c in charges(stack, paywall["key"], vip)
    )
    assert run("user-limits", paywall["id"], vip, "--delete")["override"] is None
    # The operator's own wording of the spend-limit reply.
    templates = run("templates", paywall["id"], "--limit", "Spent {{limit}} {{period}}; back {{resets}}.")
    assert templates["limit"] == "Spent {{limit}} {{period}}; back {{resets}}."
    run("user-limits", paywall["id"], regular, "--spend-per-day", "0.000001")
    reply = client.chat.completions.with_raw_response.create(model="demo/echo", messages=HI, user=regular)
    assert reply.headers["x-paywall-action"] == "limit"
    assert reply.parse().choices[0].message.content.startswith("Spent 0.000001 USD daily; back ")
    assert cli.main([*base, "limits", paywall["id"], "--requests-per-minute", "many"]) == 1
    assert "takes a whole number or `none`" in capsys.readouterr().err
    assert cli.main([*base, "user-limits", paywall["id"], vip, "--delete"]) == 1  # nothing left to delete
    assert "HTTP 404" in capsys.readouterr().err


def test_admin_api_refuses_bad_limits(stack: LocalStack) -> None:
    paywall = make_paywall(stack)
    with stack.admin() as admin:
        for body in ({"requests_per_minute": -1}, {"spend_per_day": "x"}, {"rpm": 1}, ["no"]):
            reply = admin.put(f"/admin/paywalls/{paywall['id']}/limits", json=body)
            assert reply.status_code == 400, (body, reply.text)
            assert set(reply.json()["error"]) == {"message", "type", "param", "code"}
        bad_env = admin.put(f"/admin/paywalls/{paywall['id']}/users/u1/limits", json={"environment": "prod"})
        assert bad_env.status_code == 400 and bad_env.json()["error"]["param"] == "environment"
        bad_user = admin.get(f"/admin/paywalls/{paywall['id']}/users/{'x' * 200}/limits")
        assert bad_user.status_code == 400
        assert admin.put("/admin/paywalls/pw_missing/limits", json={}).status_code == 404
        assert admin.get(f"/admin/paywalls/{paywall['id']}").json()["limits"] == {}


# ---- 100 parallel requests against each limit -----------------------------------------------------

PARALLEL = 100
MAX_TOKENS = 1


def _parallel_chats(stack: LocalStack, key: str, user: str) -> list[httpx.Response]:
    body = {"model": "demo/echo", "messages": HI, "user": user, "max_tokens": MAX_TOKENS}
    with httpx.Client(
        base_url=stack.url,
        headers={"Authorization": f"Bearer {key}"},
        timeout=120,
        limits=httpx.Limits(max_connections=PARALLEL),
    ) as client:
        start = threading.Barrier(PARALLEL)

        def one(_: int) -> httpx.Response:
            start.wait()
            return client.post("/v1/chat/completions", json=body)

        with ThreadPoolExecutor(PARALLEL) as pool:
            return list(pool.map(one, range(PARALLEL)))


@pytest.mark.parametrize("name", ["requests_per_minute", "tokens_per_day", "spend_per_day", "spend_per_month"])
def test_parallel_requests_never_exceed_a_limit(stack: LocalStack, name: str) -> None:
    paywall = make_paywall(stack)
    user = new_user(name.replace("_", ""))
    fund(stack, paywall["id"], user, "1")
    body = {"model": "demo/echo", "messages": HI, "user": user, "max_tokens": MAX_TOKENS}
    reserve_tokens = metering.prompt_token_bound(body) + MAX_TOKENS
    value: Any = {
        "requests_per_minute": 10,
        "tokens_per_day": reserve_tokens + 20,  # one request's worst case plus a few real ones
        "spend_per_day": "0.001",  # about 9 requests of ~104 micro-units (holds of ~225 each)
        "spend_per_month": "0.001",
    }[name]
    _set_limits(stack, paywall["id"], {name: value})
    _wait_for_fresh_window()

    replies = _parallel_chats(stack, paywall["key"], user)

    served = [r for r in replies if r.status_code == 200 and "x-paywall-action" not in r.headers]
    refused = [r for r in replies if r not in served]
    made = charges(stack, paywall["key"], user)
    assert len(made) == len(served) >= 1 and refused
    if name in limits.RATE_LIMITS:
        assert {r.status_code for r in refused} == {429}
        assert {r.json()["error"]["code"] for r in refused} == {"rate_limit_exceeded"}
    else:
        assert {r.headers.get("x-paywall-action") for r in refused} == {"limit"}
    used = {
        "requests_per_minute": len(made),
        "tokens_per_day": sum(c["prompt_tokens"] + c["completion_tokens"] for c in made),
        "spend_per_day": -sum(int(c["amount"]) for c in made),
        "spend_per_month": -sum(int(c["amount"]) for c in made),
    }[name]
    limit = limits.parse({name: value})[name]
    assert used <= limit
    if name == "requests_per_minute":
        assert len(served) == 10  # one minute, funds for all: exactly the limit
    # Settling gave back every unused reservation: what the window counts is what was used.
    shown = _balance(stack, paywall["key"], user)
    assert int(shown["limits"][name]["remaining"]) == limit - used
    with stack.admin() as admin:
        users = admin.get(f"/admin/paywalls/{paywall['id']}/users", params={"limit": 1000}).json()["data"]
    row = next(u for u in users if u["user"] == user)
    assert int(row["available"]) == int(shown["balance"])  # no hold left behind
