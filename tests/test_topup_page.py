"""The hosted top-up page and Checkout hand-off (SPEC §5) in-process (moto), with the real `stripe`
library talking to the local Stripe stub: presets, escaping, CSRF, forged links, the Checkout Session
parameters, and nothing created when anything is off."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from devserver.router import load_function_app
from paywalls.billing import paywall as paywalls
from paywalls.billing import stripe_config
from paywalls.billing.stripe_config import StripeSecrets
from paywalls.http import csrf
from paywalls.infra import links
from paywalls.infra import secrets as secrets_store
from paywalls.infra.config import settings
from tests import stripe_stub as st
from tests.apigw import apigw_event
from tests.shared_support import forms

# https: our cookies are Secure everywhere but on a local http://127.0.0.1 / localhost stack
# (page_http.secure_cookies), and a client sends Secure cookies back over https only.
BASE = "https://testserver"


@dataclass
class Page:
    client: TestClient
    stub: st.StripeStub
    paywall_id: str

    def token(self, user: str = "alice", environment: str = "test", paywall_id: str | None = None) -> str:
        url = links.topup_url(BASE, paywall_id or self.paywall_id, environment, user)
        return url.rsplit("/", 1)[1]


@pytest.fixture
def page(aws_mock: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Page]:
    secrets_store.put_secret(f"{settings().secret_prefix}/app", json.dumps({"link_signing_key": "k" * 43}))
    paywall = paywalls.create({"name": "Shop", "mode": "default", "description": "Answers & more"})
    configure(paywall.id, "test", "sk_test_page", ["5", "12.5"])
    with st.StripeStub().running() as stub:
        monkeypatch.setenv("STRIPE_API_BASE", stub.url)
        with TestClient(load_function_app("functions/wallet", "WalletFunction"), base_url=BASE) as client:
            yield Page(client, stub, paywall.id)


def configure(paywall_id: str, mode: str, key: str, amounts: list[str] | None = None) -> None:
    stripe_config.save_secrets(paywall_id, mode, StripeSecrets(key, "whsec_x", "we_x"))
    status = dict(paywalls.get(paywall_id).stripe or {})
    status[mode] = {"configured": True}
    if amounts:
        status["topup_amounts"] = amounts
    paywalls.set_stripe(paywall_id, status)


def test_page_offers_the_presets_with_a_csrf_cookie_and_safe_headers(page: Page) -> None:
    token = page.token()
    reply = page.client.get(f"/pay/{token}")
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in reply.headers["content-security-policy"]
    assert reply.headers["referrer-policy"] == "no-referrer"
    assert reply.headers["cache-control"] == "no-store"
    cookie = reply.headers["set-cookie"]
    assert cookie.startswith(f"{csrf.COOKIE_NAME}=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Add $5.00" in reply.text and "Add $12.50" in reply.text
    assert "Answers &amp; more" in reply.text
    found = forms(reply.text)
    assert [f["amount"] for f in found] == ["5", "12.5"]
    assert {f["action"] for f in found} == {f"{BASE}/pay/{token}/checkout"}
    nonce = page.client.cookies[csrf.COOKIE_NAME]
    assert all(csrf.check(f["csrf"], nonce, token) for f in found)


def test_checkout_creates_the_session_and_redirects_to_stripe(page: Page) -> None:
    token = page.token("bob")
    form = forms(page.client.get(f"/pay/{token}").text)[1]
    reply = page.client.post(
        form["action"], data={"csrf": form["csrf"], "amount": form["amount"]}, follow_redirects=False
    )
    assert reply.status_code == 303, reply.text
    [call] = page.stub.calls("POST", "/v1/checkout/sessions")
    session = page.stub.sessions[next(iter(page.stub.sessions))]
    assert reply.headers["location"] == session["url"]
    assert call.api_key == "sk_test_page"
    assert call.form["mode"] == "payment"
    assert call.form["line_items[0][price_data][currency]"] == "usd"
    assert call.form["line_items[0][price_data][unit_amount]"] == "1250"
    assert call.form["line_items[0][quantity]"] == "1"
    assert call.form["client_reference_id"] == f"{page.paywall_id}:test:bob"
    meta = {"paywall_id": page.paywall_id, "environment": "test", "user": "bob", "amount_micros": "12500000"}
    assert call.form_dict("metadata") == meta
    assert {k: v for k, v in call.form.items() if k.startswith("payment_intent_data")} == {
        f"payment_intent_data[metadata][{k}]": v for k, v in meta.items()
    }
    assert call.form["success_url"] == f"{BASE}/pay/success"
    assert call.form["cancel_url"] == f"{BASE}/pay/cancel?link={token}"


def test_live_links_use_the_live_key_and_unconfigured_modes_offer_nothing(page: Page) -> None:
    live = page.client.get(f"/pay/{page.token(environment='live')}")
    assert live.status_code == 200
    assert "not set up" in live.text and "<form" not in live.text  # no live key, not local dev
    configure(page.paywall_id, "live", "rk_live_page")
    token = page.token(environment="live")
    form = forms(page.client.get(f"/pay/{token}").text)[0]
    assert page.client.post(form["action"], data=form, follow_redirects=False).status_code == 303
    [call] = page.stub.calls("POST", "/v1/checkout/sessions")
    assert call.api_key == "rk_live_page"
    assert call.form["metadata[environment]"] == "live"


def tamper(token: str) -> str:
    body, mac = token.split(".")
    payload = json.loads(links._unb64(body))
    payload["u"] = "mallory"
    forged_body = links._b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
    return f"{forged_body}.{mac}"


def test_forged_tampered_and_foreign_links_show_an_error_and_create_nothing(page: Page) -> None:
    token = page.token()
    good = forms(page.client.get(f"/pay/{token}").text)[0]
    wrong_purpose = links.sign(links.LinkClaims("authorize", page.paywall_id, "test", "alice"))
    unknown_paywall = page.token(paywall_id="pw_0000000000000000")
    for bad in (tamper(token), token[:-2] + "AA", "nodot", wrong_purpose, "a" * 3000 + ".b"):
        shown = page.client.get(f"/pay/{bad}")
        posted = page.client.post(f"/pay/{bad}/checkout", data={"csrf": good["csrf"], "amount": "5"})
        for reply in (shown, posted):
            assert reply.status_code in (400, 404), (bad, reply.status_code)
            assert reply.headers["content-type"].startswith("text/html")
            assert "Traceback" not in reply.text
    assert page.client.get(f"/pay/{unknown_paywall}").status_code == 404
    shared = paywalls.create({"name": "Shared", "mode": "shared"})
    assert page.client.get(f"/pay/{page.token(paywall_id=shared.id)}").status_code == 404
    assert page.stub.requests == []


def test_checkout_without_a_valid_csrf_token_is_refused(page: Page) -> None:
    token, other = page.token("carol"), page.token("dave")
    good = forms(page.client.get(f"/pay/{token}").text)[0]
    other_form = forms(page.client.get(f"/pay/{other}").text)[0]
    attempts = [
        {"amount": "5"},  # no token (a third-party site's form)
        {"amount": "5", "csrf": "x" * 32 + ".abc"},
        {"amount": "5", "csrf": other_form["csrf"]},  # issued for another link
    ]
    for data in attempts:
        reply = page.client.post(f"/pay/{token}/checkout", data=data, follow_redirects=False)
        assert reply.status_code == 403, data
    # The right token without the cookie (a cross-site POST carries no SameSite=Lax cookie).
    fresh = TestClient(page.client.app, base_url=BASE)
    reply = fresh.post(f"/pay/{token}/checkout", data={"amount": "5", "csrf": good["csrf"]}, follow_redirects=False)
    assert reply.status_code == 403
    assert page.stub.requests == []


@pytest.mark.parametrize("amount", ["7", "0", "-5", "", "5.001", "abc", "12.50000001"])
def test_only_the_presets_can_be_bought(page: Page, amount: str) -> None:
    token = page.token()
    form = forms(page.client.get(f"/pay/{token}").text)[0]
    reply = page.client.post(form["action"], data={"csrf": form["csrf"], "amount": amount}, follow_redirects=False)
    assert reply.status_code == 400
    assert page.stub.requests == []


def test_names_are_escaped(page: Page) -> None:
    paywalls.patch(page.paywall_id, {"name": '<script>alert("x")</script>', "description": "<b>&"})
    reply = page.client.get(f"/pay/{page.token()}")
    assert "<script>" not in reply.text and "<b>" not in reply.text
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in reply.text  # Jinja2 autoescape's quote


def test_stripe_refusal_and_outage_are_pages_not_tracebacks(page: Page, monkeypatch: pytest.MonkeyPatch) -> None:
    token = page.token()
    form = forms(page.client.get(f"/pay/{token}").text)[0]
    page.stub.rejected_keys.add("sk_test_page")
    refused = page.client.post(form["action"], data=form, follow_redirects=False)
    assert refused.status_code == 502 and "sk_test_page" not in refused.text
    from tests.conftest import free_port

    monkeypatch.setenv("STRIPE_API_BASE", f"http://127.0.0.1:{free_port()}")
    down = page.client.post(form["action"], data=form, follow_redirects=False)
    assert down.status_code == 503
    assert down.headers["content-type"].startswith("text/html")


def test_result_pages(page: Page) -> None:
    assert "Payment received" in page.client.get("/pay/success").text
    token = page.token()
    canceled = page.client.get(f"/pay/cancel?link={token}")
    assert "Nothing was charged" in canceled.text and f"/pay/{token}" in canceled.text
    forged = page.client.get(f"/pay/cancel?link={tamper(token)}")
    assert forged.status_code == 200 and "/pay/" not in forged.text.split("Nothing was charged")[1]
    assert page.client.get("/pay/a/b/c").status_code == 404


def test_page_through_the_lambda_handler_links_to_the_api_gateway_stage(page: Page) -> None:
    token = page.token()
    event = apigw_event("GET", f"/pay/{token}", resource="/pay/{proxy+}")
    reply = sys.modules["fn_WalletFunction"].handler(event, None)
    assert reply["statusCode"] == 200
    found = forms(reply["body"])
    assert found[0]["action"] == f"https://a1b2c3d4e5.execute-api.us-east-1.amazonaws.com/prod/pay/{token}/checkout"
    headers = {k.lower(): v for k, v in reply["headers"].items()}
    cookies = [v for k, vs in reply.get("multiValueHeaders", {}).items() if k.lower() == "set-cookie" for v in vs]
    cookie = headers.get("set-cookie") or cookies[0]
    assert cookie.startswith(f"{csrf.COOKIE_NAME}=") and "Secure" in cookie


def test_local_dev_without_a_key_offers_the_simulation(page: Page, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYWALLS_LOCAL_DEV", "1")
    settings.cache_clear()
    try:
        token = page.token(environment="live")
        reply = page.client.get(f"/pay/{token}")
        assert "Simulate payment of $5.00" in reply.text
        assert forms(reply.text)[0]["action"] == f"{BASE}/_dev/pay/{token}/simulate"
        # A configured mode still uses Stripe, even locally.
        assert "Simulate" not in page.client.get(f"/pay/{page.token()}").text
    finally:
        settings.cache_clear()
