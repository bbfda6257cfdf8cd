"""Outbound webhooks in one process (issue 11): SSRF refusals of the delivery client, and the pipeline
over in-process moto with the template's own functions fed by devserver/event_sources.py: duplicate
stream records deliver once per (event, subscription), a crash after the money write (and of the
dispatcher) still delivers, the Stripe refund / dispute / webhook-secret events carry their fields."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devserver.event_sources import EventSources, LambdaContext
from paywalls.billing import deposits
from paywalls.billing import paywall as paywalls
from paywalls.billing import stripe_webhooks as webhooks
from paywalls.events import delivery, subscriptions
from paywalls.infra import store
from paywalls.infra.config import settings
from tests import stripe_stub as st
from tests.webhook_receiver import Receiver, receiver

ROOT = Path(__file__).resolve().parent.parent

# ---- SSRF ------------------------------------------------------------------------------------------------

REFUSED = [
    "127.0.0.1",
    "127.1.2.3",
    "10.0.0.1",
    "10.255.255.255",
    "172.16.5.4",
    "192.168.1.1",
    "169.254.169.254",
    "169.254.1.1",
    "0.0.0.0",
    "224.0.0.1",
    "100.64.0.1",
    "::1",
    "::",
    "fe80::1",
    "fc00::1",
    "fd00:ec2::254",
    "ff02::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
]


@pytest.mark.parametrize("address", REFUSED)
def test_private_loopback_link_local_and_metadata_addresses_are_refused(address: str) -> None:
    assert delivery.refusal(ipaddress.ip_address(address)) is not None


def test_public_addresses_are_allowed_and_loopback_only_when_asked() -> None:
    assert delivery.refusal(ipaddress.ip_address("93.184.216.34")) is None
    assert delivery.refusal(ipaddress.ip_address("2606:4700::1111")) is None
    assert delivery.refusal(ipaddress.ip_address("127.0.0.1"), allow_loopback=True) is None
    assert delivery.refusal(ipaddress.ip_address("169.254.169.254"), allow_loopback=True) is not None


def _resolving_to(monkeypatch: pytest.MonkeyPatch, *addresses: str) -> list[str]:
    asked: list[str] = []

    def fake(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        asked.append(host)
        return [
            (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in addresses
        ]

    monkeypatch.setattr(delivery.socket, "getaddrinfo", fake)
    return asked


@pytest.mark.parametrize(
    "addresses", [["127.0.0.1"], ["10.1.2.3"], ["169.254.169.254"], ["::1"], ["93.184.216.34", "10.0.0.1"]]
)
def test_a_name_resolving_to_a_refused_address_is_never_called(
    monkeypatch: pytest.MonkeyPatch, addresses: list[str]
) -> None:
    asked = _resolving_to(monkeypatch, *addresses)
    connected: list[Any] = []
    monkeypatch.setattr(delivery.socket, "create_connection", lambda *a, **k: connected.append(a))
    result = delivery.post("https://hooks.example.com/x", b"{}", {})
    assert result.status_code is None and result.error and result.error.startswith("refused:")
    assert asked == ["hooks.example.com"] and connected == []  # resolved once, nothing connected


def test_live_mode_refuses_plain_http_and_private_urls_at_subscription_time(aws_mock: None) -> None:
    refused = [
        "http://hooks.example.com/x",
        "http://127.0.0.1:9/x",
        "https://127.0.0.1/x",
        "https://[::1]/x",
        "https://169.254.169.254/latest",
        "https://10.0.0.8/x",
        "https://user:pw@hooks.example.com/x",
    ]
    for url in refused:
        with pytest.raises(paywalls.InvalidRequest):
            subscriptions.validate_url(url)
    assert subscriptions.validate_url("https://hooks.example.com/x") == "https://hooks.example.com/x"
    result = delivery.post("http://127.0.0.1:9/x", b"{}", {})  # live mode: never sent
    assert result.error == "refused: url must use https"


def test_the_connection_goes_to_the_vetted_address_without_redirects_and_a_capped_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Local receiver (loopback allowed, as under make run): one resolution, the checked address is
    the one connected to, a 302 is an answer (not followed), a huge answer is read only so far."""
    import http.server
    import threading

    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers["content-length"]))
            hits.append(self.path)
            if self.path == "/redirect":
                self.send_response(302)
                self.send_header("location", "http://127.0.0.1:9/elsewhere")
                self.send_header("content-length", "0")
                self.end_headers()
                return
            body = b"x" * (4 * delivery.MAX_RESPONSE_BYTES)
            self.send_response(200)
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        asked = _resolving_to(monkeypatch, "127.0.0.1")
        connected: list[tuple[str, int]] = []
        real = socket.create_connection

        def spy(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
            connected.append(address)
            return real(address, *args, **kwargs)

        monkeypatch.setattr(delivery.socket, "create_connection", spy)
        moved = delivery.post(f"http://receiver.test:{port}/redirect", b"{}", {}, allow_loopback=True)
        assert moved.status_code == 302 and not moved.ok and hits == ["/redirect"]  # not followed
        big = delivery.post(f"http://receiver.test:{port}/big", b"{}", {}, allow_loopback=True)
        assert big.ok and len(big.response or "") <= 500
        # the name resolved once per attempt; the socket opened to the checked address (whose own
        # lookup is numeric: no second DNS answer could differ)
        assert [h for h in asked if h != "127.0.0.1"] == ["receiver.test"] * 2
        assert connected == [("127.0.0.1", port)] * 2
    finally:
        server.shutdown()
        server.server_close()


def test_retry_policy() -> None:
    assert {400, 401, 403, 404, 410, 422} == delivery.TERMINAL_STATUSES and delivery.MAX_ATTEMPTS == 8
    for attempts in range(1, 8):
        base = 30 * 2 ** (attempts - 1)
        assert base <= delivery.retry_delay_s(attempts) <= base * 1.2
    assert delivery.Attempt(503, 1, None, None).terminal is False and delivery.Attempt(410, 1, None, None).terminal


def test_signature_is_hmac_sha256_of_the_raw_body() -> None:
    import hashlib
    import hmac

    body = b'{"a":1}'
    assert delivery.sign("whsec_x", body) == hmac.new(b"whsec_x", body, hashlib.sha256).hexdigest()


# ---- the pipeline over in-process moto -------------------------------------------------------------------


@pytest.fixture
def pipeline(aws_mock: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[EventSources, Receiver]]:
    for name, value in {
        "PAYWALLS_LOCAL_DEV": "1",
        "PAYWALLS_WEBHOOK_ALLOW_LOCAL": "1",
        "PAYWALLS_WEBHOOK_RETRY_BASE_S": "0",
    }.items():
        monkeypatch.setenv(name, value)
    settings.cache_clear()
    sources = EventSources(ROOT / "template.yaml", None)
    for name, value in sources.provision().items():
        monkeypatch.setenv(name, value)
    with receiver() as inbox:
        yield sources, inbox
    settings.cache_clear()


def _paywall_with_hook(inbox: Receiver, path: str, events: list[str]) -> paywalls.Paywall:
    created = paywalls.create({"name": "Hooked", "mode": "default"})
    sub, secret = subscriptions.create(created.id, {"url": inbox.url(path), "events": events})
    inbox.secrets[path] = secret
    return paywalls.get(created.id)  # with the subscriptions' filter, as a request would read it


def _outbox_records(sources: EventSources) -> list[dict[str, Any]]:
    from devserver.event_sources import _plain_record

    arn = sources.dynamodb.describe_table(TableName="PaywallsTable")["Table"]["LatestStreamArn"]
    shard = sources.streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = sources.streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    records = sources.streams.get_records(ShardIterator=iterator["ShardIterator"], Limit=1000)["Records"]
    return [_plain_record(r) for r in records if r["dynamodb"]["Keys"]["pk"]["S"].startswith("EVT#")]


def test_duplicate_stream_records_deliver_once_per_event_and_subscription(
    pipeline: tuple[EventSources, Receiver],
) -> None:
    sources, inbox = pipeline
    paywall = _paywall_with_hook(inbox, "/dup", ["paywall.balance.deposit.created"])
    deposits.deposit(paywall, "live", "u1", "1", idempotency_key="dep-1")
    [record] = _outbox_records(sources)
    dispatcher = sys.modules["fn_EventDispatcherFunction"]
    for _ in range(3):  # the same stream record handed over three times (at-least-once)
        assert dispatcher.handler({"Records": [record]}, LambdaContext("EventDispatcherFunction", 60, 512)) == {
            "batchItemFailures": []
        }
    sources.drain(timeout_s=60)  # ... and once more by the runner itself
    assert len(inbox.at("/dup")) == 1 and inbox.at("/dup")[0].verified
    # delivered: a later duplicate queues nothing at all
    dispatcher.handler({"Records": [record]}, LambdaContext("EventDispatcherFunction", 60, 512))
    sources.drain(timeout_s=60)
    assert len(inbox.at("/dup")) == 1


def test_a_crash_after_the_money_write_and_of_the_dispatcher_still_delivers(
    pipeline: tuple[EventSources, Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    sources, inbox = pipeline
    paywall = _paywall_with_hook(inbox, "/crash", ["paywall.balance.*"])
    real_transact = store.transact

    def commit_then_crash(items: list[dict[str, Any]], **kwargs: Any) -> None:
        real_transact(items, **kwargs)
        raise SystemExit("the function died right after the money moved")

    monkeypatch.setattr(store, "transact", commit_then_crash)
    with pytest.raises(SystemExit):
        deposits.deposit(paywall, "live", "u2", "3", idempotency_key="dep-2")
    monkeypatch.setattr(store, "transact", real_transact)
    dispatcher = sys.modules["fn_EventDispatcherFunction"]
    real_dispatch, calls = dispatcher.dispatch, []

    def crash_once(*args: Any) -> int:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("dispatcher crashed")
        return real_dispatch(*args)

    monkeypatch.setattr(dispatcher, "dispatch", crash_once)
    sources.drain(timeout_s=60)
    [delivered] = inbox.events("/crash")
    assert delivered["type"] == "paywall.balance.deposit.created" and delivered["data"]["amount"] == "3000000"
    assert len(calls) == 2  # retried from the failed record (ReportBatchItemFailures)


def test_no_subscription_writes_no_event_and_an_unwanted_type_neither(pipeline: tuple[EventSources, Receiver]) -> None:
    sources, inbox = pipeline
    bare = paywalls.create({"name": "Bare", "mode": "default"})
    deposits.deposit(bare, "live", "u3", "1", idempotency_key="dep-3")
    picky = _paywall_with_hook(inbox, "/picky", ["paywall.usage.charge.created"])
    deposits.deposit(picky, "live", "u3", "1", idempotency_key="dep-4")
    assert _outbox_records(sources) == []


def _stripe_event(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {"id": f"evt_{kind}_{obj['id']}", "type": kind, "livemode": True, "data": {"object": obj}}


def test_stripe_refund_dispute_and_webhook_secret_events(
    pipeline: tuple[EventSources, Receiver], monkeypatch: pytest.MonkeyPatch
) -> None:
    sources, inbox = pipeline
    paywall = _paywall_with_hook(inbox, "/stripe", ["paywall.stripe.*", "paywall.balance.*", "paywall.integration.*"])
    session = {
        "id": "cs_live_1",
        "object": "checkout.session",
        "payment_status": "paid",
        "currency": "usd",
        "amount_total": 1000,
        "payment_intent": "pi_1",
        "metadata": {"paywall_id": paywall.id, "environment": "live", "user": "payer", "amount_micros": "10000000"},
    }
    assert webhooks.handle(paywall, "live", _stripe_event("checkout.session.completed", session)).result == "credited"
    refund = {
        "id": "re_1",
        "object": "refund",
        "status": "succeeded",
        "payment_intent": "pi_1",
        "currency": "usd",
        "amount": 300,
    }
    assert webhooks.handle(paywall, "live", _stripe_event("refund.updated", refund)).result == "debited"
    dispute = {
        "id": "dp_1",
        "object": "dispute",
        "status": "lost",
        "payment_intent": "pi_1",
        "currency": "usd",
        "amount": 200,
    }
    assert webhooks.handle(paywall, "live", _stripe_event("charge.dispute.closed", dispute)).result == "debited"
    from paywalls.billing import stripe_config

    with st.StripeStub().running() as stub:
        monkeypatch.setenv("STRIPE_API_BASE", stub.url)
        stripe_config.configure(paywall.id, {"secret_key": "rk_test_abc123"}, "https://pay.example.com")
    sources.drain(timeout_s=60)
    events = {e["type"]: e for e in inbox.events("/stripe")}
    assert set(events) == {
        "paywall.stripe.checkout.session.completed",
        "paywall.balance.refund.created",
        "paywall.balance.dispute.lost",
        "paywall.integration.stripe.webhook.rotated",
    }
    checkout = events["paywall.stripe.checkout.session.completed"]["data"]
    assert (
        checkout["externalUserId"] == "payer"
        and checkout["paymentIntentId"] == "pi_1"
        and checkout["amount"] == "10000000"
    )
    refunded = events["paywall.balance.refund.created"]["data"]
    assert refunded["refundId"] == "re_1" and refunded["amount"] == "3000000" and refunded["balance"] == "7000000"
    lost = events["paywall.balance.dispute.lost"]["data"]
    assert lost["disputeId"] == "dp_1" and lost["balance"] == "5000000" and lost["externalUserId"] == "payer"
    assert events["paywall.integration.stripe.webhook.rotated"]["data"] == {"environment": "test"}
    assert "whsec" not in json.dumps(events)  # never the signing secret itself
    assert os.environ["EVENT_QUEUE_URL"].endswith("/EventDeliveryQueue")


def test_the_docs_list_every_event_with_its_data_fields() -> None:
    from paywalls.events.catalog import CATALOG

    page = (ROOT / "docs" / "webhooks.md").read_text()
    for kind in CATALOG.values():
        fields = ", ".join(f"`{f}`" for f in kind.data)
        assert f"| `{kind.name}` | {kind.fires} | {fields} |" in page, kind.name


def test_a_save_from_an_earlier_read_keeps_the_subscriptions_filter(aws_mock: None) -> None:
    from dataclasses import replace

    created = paywalls.create({"name": "Race", "mode": "default", "icon_url": "https://example.com/i.png"})
    stale = paywalls.get(created.id)  # an admin change read the paywall before the subscription existed
    subscriptions.create(created.id, {"url": "https://hooks.example.com/x", "events": ["paywall.updated"]})
    paywalls.save(replace(stale, name="Renamed", icon_url=None))
    fresh = paywalls.get(created.id)
    assert fresh.name == "Renamed" and fresh.icon_url is None  # the save applied (an absent field removed)
    assert fresh.webhook_events == ["paywall.updated"]  # ... and did not undo the subscription's filter
