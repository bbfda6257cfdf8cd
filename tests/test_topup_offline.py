"""The offline top-up loop end to end over real HTTP on the local stack (SPEC §5 "Offline development"):
no Stripe key -> the hosted page offers "Simulate payment" -> a dev route signs a Stripe-shaped
`checkout.session.completed` with the paywall's local webhook secret and POSTs it to the local
webhook endpoint, which verifies it like any Stripe delivery -> the balance is credited. Then the
same loop from the chat proxy's paywall reply to a served, charged completion."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests import stripe_stub as st
from tests.conftest import LocalStack, api, balance, entries
from tests.shared_support import forms

ROOT = Path(__file__).resolve().parent.parent


def simulate(browser: httpx.Client, topup_url: str, amount: str) -> httpx.Response:
    page = browser.get(topup_url)
    assert page.status_code == 200, page.text
    assert "Simulate payment" in page.text
    [form] = [f for f in forms(page.text) if f["amount"] == amount]
    assert "/_dev/pay/" in form["action"]
    return browser.post(form["action"], data={"csrf": form["csrf"], "amount": form["amount"]}, follow_redirects=False)


def test_simulated_payment_credits_through_the_real_webhook(stack: LocalStack, new_paywall: Any) -> None:
    paywall = new_paywall()
    with api(stack, paywall["key"]) as client, httpx.Client(timeout=30) as browser:
        url = client.get("/user/balance/topup", params={"user": "alice"}).json()["url"]
        reply = simulate(browser, url, "10")
        assert reply.status_code == 303, reply.text
        assert reply.headers["location"] == f"{stack.url}/pay/success"
        assert "Payment received" in browser.get(reply.headers["location"]).text
        assert balance(client, "alice") == 10_000_000
        [entry] = entries(client, "alice")
        assert entry["type"] == "deposit"
        assert entry["metadata"]["source"] == "stripe"
        assert entry["metadata"]["checkout_session"].startswith("cs_live_")  # a live-key link, live mode
        # The page now shows the new balance.
        assert "$10.00" in browser.get(url).text
    with api(stack, paywall["test_key"]) as test_client:
        assert balance(test_client, "alice") == 0


def test_test_environment_simulates_into_the_test_wallet(stack: LocalStack, new_paywall: Any) -> None:
    paywall = new_paywall()
    with api(stack, paywall["test_key"]) as client, httpx.Client(timeout=30) as browser:
        url = client.get("/user/balance/topup", params={"user": "bob"}).json()["url"]
        assert simulate(browser, url, "5").status_code == 303
        assert balance(client, "bob") == 5_000_000
        assert entries(client, "bob")[0]["metadata"]["checkout_session"].startswith("cs_test_")
    with api(stack, paywall["key"]) as live:
        assert balance(live, "bob") == 0


def test_simulation_needs_the_page_cookie_and_a_real_link(stack: LocalStack, new_paywall: Any) -> None:
    paywall = new_paywall()
    with api(stack, paywall["key"]) as client, httpx.Client(timeout=30) as browser:
        url = client.get("/user/balance/topup", params={"user": "carol"}).json()["url"]
        form = forms(browser.get(url).text)[0]
        with httpx.Client(timeout=30) as attacker:  # no cookie: a third-party page's auto-submit
            forged = attacker.post(form["action"], data={"csrf": form["csrf"], "amount": form["amount"]})
            assert forged.status_code == 403
        token = url.rsplit("/", 1)[1]
        tampered = form["action"].replace(token, token[:-3] + "AAA")
        assert browser.post(tampered, data={"csrf": form["csrf"], "amount": form["amount"]}).status_code == 400
        not_a_preset = browser.post(form["action"], data={"csrf": form["csrf"], "amount": "1000"})
        assert not_a_preset.status_code == 400
        assert balance(client, "carol") == 0


def test_the_webhook_still_verifies_signatures_for_simulated_paywalls(stack: LocalStack, new_paywall: Any) -> None:
    """No bypass: the dev secret exists now, yet an event signed with anything else is refused."""
    paywall = new_paywall()
    with api(stack, paywall["key"]) as client, httpx.Client(timeout=30) as browser:
        url = client.get("/user/balance/topup", params={"user": "dan"}).json()["url"]
        assert simulate(browser, url, "5").status_code == 303
        session = st.checkout_session(paywall_id=paywall["id"], environment="live", user="dan", cents=99_900)
        body = json.dumps(st.event("checkout.session.completed", session, livemode=True)).encode()
        for headers in ({}, {"Stripe-Signature": st.sign(body, "whsec_guessed")}):
            reply = httpx.post(f"{stack.url}/webhooks/stripe/{paywall['id']}", content=body, headers=headers)
            assert reply.status_code == 400
        assert balance(client, "dan") == 5_000_000


def test_dev_routes_are_not_in_the_template() -> None:
    template = (ROOT / "template.yaml").read_text()
    assert "/_dev" not in template and "simulate" not in template.lower()


def test_chat_paywall_reply_to_simulated_topup_to_a_served_and_charged_completion(
    stack: LocalStack, new_paywall: Any
) -> None:
    paywall = new_paywall()
    chat = openai.OpenAI(base_url=f"{stack.url}/v1", api_key=paywall["key"], max_retries=0)
    ask = {"model": "demo/echo", "messages": [{"role": "user", "content": "hello there"}], "user": "erin"}

    refused = chat.chat.completions.with_raw_response.create(**ask)
    assert refused.headers["x-paywall-action"] == "topup"
    message = refused.parse().choices[0].message.content or ""
    links = re.findall(r"https?://\S+/pay/\S+", message)
    assert len(links) == 1, message
    with api(stack, paywall["key"]) as client:
        assert balance(client, "erin") == 0
        assert entries(client, "erin") == []

        with httpx.Client(timeout=30) as browser:
            assert simulate(browser, links[0], "5").status_code == 303
        assert balance(client, "erin") == 5_000_000

        served = chat.chat.completions.with_raw_response.create(**ask)
        assert "x-paywall-action" not in served.headers
        completion = served.parse()
        assert "hello there" in (completion.choices[0].message.content or "")
        after = balance(client, "erin")
        assert 0 < 5_000_000 - after < 5_000_000  # charged, by what the usage cost
        kinds = [e["type"] for e in entries(client, "erin")]
        assert kinds == ["charge", "deposit"]
        charge_entry = entries(client, "erin")[0]
        assert charge_entry["request_id"] == served.headers["x-request-id"]
        assert sum(int(e["amount"]) for e in entries(client, "erin")) == after


@pytest.mark.parametrize("path", ["/_dev/pay/x.y/simulate"])
def test_dev_route_rejects_garbage(stack: LocalStack, path: str) -> None:
    reply = httpx.post(f"{stack.url}{path}", data={"amount": "5"})
    assert reply.status_code in (400, 403)
    assert "Traceback" not in reply.text
