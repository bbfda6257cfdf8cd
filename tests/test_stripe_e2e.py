"""Stripe top-ups end to end over real HTTP: a local stack whose functions reach the local Stripe stub
(STRIPE_API_BASE), configured through the admin API, the hosted page redirecting to Checkout, and
Stripe's webhook deliveries — including 20 identical deliveries at the same moment, and refunds
racing their payment — crediting and debiting exactly once."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from html import unescape
from typing import Any

import httpx
import pytest

from tests import stripe_stub as st
from tests.conftest import LocalStack, api, balance, entries, run_local_stack


@pytest.fixture(scope="module")
def stub() -> Iterator[st.StripeStub]:
    with st.StripeStub().running() as running:
        yield running


@pytest.fixture(scope="module")
def stripe_stack(stub: st.StripeStub) -> Iterator[LocalStack]:
    with run_local_stack({"STRIPE_API_BASE": stub.url}) as running:
        yield running


def make_paywall(stack: LocalStack) -> dict[str, str]:
    with stack.admin() as admin:
        pid = admin.post("/admin/paywalls", json={"name": "Shop", "mode": "default"}).raise_for_status().json()["id"]
        live = admin.post(f"/admin/paywalls/{pid}/keys", json={"environment": "live"}).raise_for_status().json()
        test = admin.post(f"/admin/paywalls/{pid}/keys", json={"environment": "test"}).raise_for_status().json()
    return {"id": pid, "key": live["key"], "test_key": test["key"]}


def configure(stack: LocalStack, stub: st.StripeStub, pid: str, key: str = "sk_test_e2e") -> str:
    """Returns the webhook signing secret Stripe (the stub) issued for the new endpoint."""
    with stack.admin() as admin:
        reply = admin.put(f"/admin/paywalls/{pid}/stripe", json={"secret_key": key})
    assert reply.status_code == 200, reply.text
    assert "whsec_" not in reply.text and key not in reply.text
    mode = "test" if "_test_" in key else "live"
    return stub.webhook_secret(reply.json()[mode]["webhook_endpoint_id"])


def deliver(stack: LocalStack, pid: str, ev: dict[str, Any], secret: str) -> httpx.Response:
    body = json.dumps(ev).encode()
    return httpx.post(
        f"{stack.url}/webhooks/stripe/{pid}",
        content=body,
        headers={"Stripe-Signature": st.sign(body, secret), "Content-Type": "application/json"},
        timeout=30,
    )


def test_configure_page_checkout_and_paid_webhook(stripe_stack: LocalStack, stub: st.StripeStub) -> None:
    paywall = make_paywall(stripe_stack)
    whsec = configure(stripe_stack, stub, paywall["id"])
    [created] = [c for c in stub.calls("POST", "/v1/webhook_endpoints") if c.api_key == "sk_test_e2e"][-1:]
    assert created.form["url"] == f"{stripe_stack.url}/webhooks/stripe/{paywall['id']}"

    with api(stripe_stack, paywall["test_key"]) as client, httpx.Client(timeout=30) as browser:
        url = client.get("/user/balance/topup", params={"user": "alice"}).json()["url"]
        page = browser.get(url)
        assert "Add $5.00" in page.text and "Simulate" not in page.text
        form = next(
            {k: unescape(v) for k, v in re.findall(r'name="([^"]+)" value="([^"]*)"', f)} | {"action": a}
            for a, f in re.findall(r'<form method="post" action="([^"]+)">(.*?)</form>', page.text, re.S)
        )
        before = len(stub.calls("POST", "/v1/checkout/sessions"))
        redirect = browser.post(unescape(form["action"]), data=form, follow_redirects=False)
        assert redirect.status_code == 303, redirect.text
        calls = stub.calls("POST", "/v1/checkout/sessions")
        assert len(calls) == before + 1
        session = next(s for s in stub.sessions.values() if s["url"] == redirect.headers["location"])
        assert session["metadata"]["user"] == "alice" and session["metadata"]["environment"] == "test"

        # Stripe completes the payment and delivers the event to the endpoint it was configured with.
        paid = {**session, "payment_status": "paid", "status": "complete", "payment_intent": "pi_e2e_alice"}
        reply = deliver(stripe_stack, paywall["id"], st.event("checkout.session.completed", paid), whsec)
        assert reply.status_code == 200 and reply.json()["result"] == "credited"
        assert balance(client, "alice") == 5_000_000
    with api(stripe_stack, paywall["key"]) as live:
        assert balance(live, "alice") == 0  # test-mode money never reaches the live wallet


def test_twenty_identical_deliveries_at_once_credit_once(stripe_stack: LocalStack, stub: st.StripeStub) -> None:
    paywall = make_paywall(stripe_stack)
    whsec = configure(stripe_stack, stub, paywall["id"])
    session = st.checkout_session(paywall_id=paywall["id"], environment="test", user="bob", cents=2_500)
    completed = st.event("checkout.session.completed", session)
    with ThreadPoolExecutor(20) as pool:
        replies = list(pool.map(lambda _: deliver(stripe_stack, paywall["id"], completed, whsec), range(20)))
    assert [r.status_code for r in replies] == [200] * 20, [r.text for r in replies]
    results = sorted(r.json()["result"] for r in replies)
    assert results == ["credited"] + ["duplicate"] * 19

    # Both success events of another session, interleaved, at once.
    other = st.checkout_session(paywall_id=paywall["id"], environment="test", user="bob", cents=1_000)
    events = [
        st.event("checkout.session.completed" if i % 2 else "checkout.session.async_payment_succeeded", other)
        for i in range(20)
    ]
    with ThreadPoolExecutor(20) as pool:
        replies = list(pool.map(lambda ev: deliver(stripe_stack, paywall["id"], ev, whsec), events))
    assert sorted(r.json()["result"] for r in replies) == ["credited"] + ["duplicate"] * 19

    with api(stripe_stack, paywall["test_key"]) as client:
        assert balance(client, "bob") == 35_000_000
        listed = entries(client, "bob")
        assert len(listed) == 2
        assert sum(int(e["amount"]) for e in listed) == 35_000_000


def test_refunds_racing_their_payment_net_out_exactly(stripe_stack: LocalStack, stub: st.StripeStub) -> None:
    """Each payment's refund, lost dispute and completion delivered once, all at the same moment: a
    refund parked while its credit lands must still be applied (by one side or the other)."""
    paywall = make_paywall(stripe_stack)
    whsec = configure(stripe_stack, stub, paywall["id"])
    deliveries = []
    users = [f"racer{i}" for i in range(12)]
    for user in users:
        session = st.checkout_session(paywall_id=paywall["id"], environment="test", user=user, cents=4_000)
        pi = session["payment_intent"]
        refunds = [st.refund(f"re_{user}", 1_000, payment_intent=pi, charge_id=f"ch_{user}")]
        charge = st.refunded_charge(payment_intent=pi, cents=4_000, refunds=refunds, charge_id=f"ch_{user}")
        deliveries += [
            st.event("charge.refunded", charge),
            st.event("charge.dispute.closed", st.dispute(payment_intent=pi, cents=500, status="lost")),
            st.event("checkout.session.completed", session),
        ]
    random.Random(7).shuffle(deliveries)
    with ThreadPoolExecutor(len(deliveries)) as pool:
        replies = list(pool.map(lambda ev: deliver(stripe_stack, paywall["id"], ev, whsec), deliveries))
    assert all(r.status_code == 200 for r in replies), [r.text for r in replies]
    with api(stripe_stack, paywall["test_key"]) as client:
        for user in users:
            assert balance(client, user) == (4_000 - 1_000 - 500) * 10_000, user
            listed = entries(client, user)
            assert sorted(e["type"] for e in listed) == ["deposit", "refund", "refund"]
            assert sum(int(e["amount"]) for e in listed) == balance(client, user)


def test_stale_and_forged_deliveries_are_refused_over_http(stripe_stack: LocalStack, stub: st.StripeStub) -> None:
    paywall = make_paywall(stripe_stack)
    whsec = configure(stripe_stack, stub, paywall["id"])
    session = st.checkout_session(paywall_id=paywall["id"], environment="test", user="dave", cents=1_000)
    body = json.dumps(st.event("checkout.session.completed", session)).encode()
    import time

    for header in (st.sign(body, whsec, int(time.time()) - 301), st.sign(body, "whsec_" + "1" * 32), ""):
        reply = httpx.post(
            f"{stripe_stack.url}/webhooks/stripe/{paywall['id']}", content=body, headers={"Stripe-Signature": header}
        )
        assert reply.status_code == 400
    with api(stripe_stack, paywall["test_key"]) as client:
        assert balance(client, "dave") == 0


def test_no_secret_or_traceback_reached_the_logs(stripe_stack: LocalStack, stub: st.StripeStub) -> None:
    """Runs last in this module: everything above went through this stack."""
    log = stripe_stack.log()
    assert "Traceback" not in log
    assert "sk_test_e2e" not in log
    for endpoint in stub.endpoints.values():
        assert endpoint["secret"] not in log
    assert "whsec_" not in log
