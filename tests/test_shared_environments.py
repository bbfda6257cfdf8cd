"""Shared mode, test vs live (SPEC §5 "test and live never see each other's balances", §6): a person
has a live and a test wallet; test keys only ever touch test money and test earnings, live keys only
live ones; wallet top-ups run in the Stripe mode of the wallet they fill (no fallback from live to
test); the operator webhook credits the wallet of the event's livemode; the pages say which wallet
they show. In-process (moto, the Stripe stub, real signatures), plus the local stack's simulated
top-up."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from fastapi.testclient import TestClient

from devserver.router import load_function_app
from paywalls.billing import earnings, ledger, operator_stripe
from paywalls.billing import paywall as paywalls
from paywalls.infra.config import settings
from paywalls.wallets import connections, persons, sessions, shared_mode
from paywalls.wallets import topup as wallet_topup
from tests import stripe_stub as st
from tests.conftest import LocalStack
from tests.shared_support import (
    ConnectStripeStub,
    WalletBrowser,
    app_secret,
    consistent,
    form_with,
    forms,
    funded_person,
    links_to,
    shared_paywall,
)

BASE = "https://pay.example.com"
TOKEN = "adm_env"


@dataclass
class Deployment:
    """The functions a person and an app meet, in-process, with the operator's Stripe on the stub."""

    admin: TestClient
    wallet: TestClient
    api: TestClient
    webhook: TestClient
    stub: ConnectStripeStub

    def operator_key(self, secret_key: str) -> str:
        """Configure the operator's key of one mode; returns that mode's webhook signing secret."""
        reply = self.admin.put("/admin/operator/stripe", json={"secret_key": secret_key})
        assert reply.status_code == 200, reply.text
        mode = reply.json()["mode"]
        return self.stub.webhook_secret(operator_stripe.status()[mode]["webhook_endpoint_id"])

    def deliver(self, event: dict[str, Any], secret: str) -> dict[str, Any]:
        raw = json.dumps(event).encode()
        reply = self.webhook.post(
            "/webhooks/stripe/operator", content=raw, headers={"Stripe-Signature": st.sign(raw, secret)}
        )
        assert reply.status_code == 200, reply.text
        return reply.json()

    def signed_in(self, person: persons.Person) -> TestClient:
        """A browser with the person's session cookie (how they got it is test_shared_wallet_pages')."""
        client = TestClient(self.wallet.app, base_url=BASE)
        client.cookies.set(sessions.COOKIE_NAME, sessions.issue(person.id))
        return client

    def user_api(self, key: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}", **kwargs.pop("headers", {})}
        return self.api.request(method, f"/v1/user/{path}", headers=headers, **kwargs)


@pytest.fixture
def deployment(aws_mock: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Deployment]:
    monkeypatch.setenv("ADMIN_AUTH", "token")
    monkeypatch.setenv("ADMIN_TOKEN", TOKEN)
    monkeypatch.setenv("PUBLIC_BASE_URL", BASE)
    monkeypatch.delenv("PAYWALLS_LOCAL_DEV", raising=False)  # a deployed stack: no simulated payments
    settings.cache_clear()
    app_secret()
    with ConnectStripeStub().running() as stub:
        monkeypatch.setenv("STRIPE_API_BASE", stub.url)
        admin = TestClient(
            load_function_app("functions/admin", "AdminFunction"),
            base_url=BASE,
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        wallet = TestClient(load_function_app("functions/wallet", "WalletFunction"), base_url=BASE)
        api = TestClient(load_function_app("functions/user_api", "UserApiFunction"), base_url=BASE)
        webhook = TestClient(load_function_app("functions/stripe_webhook", "StripeWebhookFunction"), base_url=BASE)
        yield Deployment(admin, wallet, api, webhook, stub)
    settings.cache_clear()


def topup_session(person: persons.Person, environment: str, cents: int) -> dict[str, Any]:
    """The Checkout Session our wallet top-up page creates for the person's wallet of `environment`."""
    session = st.fixture("checkout_session")
    session.update(
        id=f"cs_{environment}_{uuid.uuid4().hex}",
        amount_total=cents,
        currency="usd",
        client_reference_id=person.wallet_for(environment),
        metadata=wallet_topup.metadata(person, environment, cents * 10_000),
        payment_intent="pi_" + uuid.uuid4().hex[:24],
        payment_status="paid",
        livemode=environment == "live",
    )
    return session


def charge(d: Deployment, key: str, user: str, amount: str) -> tuple[dict[str, Any], str | None]:
    reply = d.user_api(
        key, "POST", "charge", json={"user": user, "amount": amount}, headers={"Idempotency-Key": uuid.uuid4().hex}
    )
    assert reply.status_code == 200, reply.text
    return reply.json(), reply.headers.get("x-paywall-action")


# ---- money: test top-ups are test money, live top-ups live money -----------------------------------


def test_a_test_topup_is_spendable_only_by_test_keys_and_a_live_topup_only_by_live_keys(d: Deployment) -> None:
    test_secret = d.operator_key("sk_test_operator")
    live_secret = d.operator_key("sk_live_operator")
    app = shared_paywall("Env app", fee="0")
    live_key, test_key = paywalls.issue_key(app.id, "live")[1], paywalls.issue_key(app.id, "test")[1]
    person = persons.get_or_create("two-wallets@example.com")
    connections.connect(app.id, "live", "u", person.id, cap=None)
    connections.connect(app.id, "test", "u", person.id, cap=None)

    # A paid test-mode top-up of 50: the test wallet only.
    test_topup = st.event("checkout.session.completed", topup_session(person, "test", 5_000), livemode=False)
    assert d.deliver(test_topup, test_secret)["result"] == "credited"
    assert (persons.balance(person.id, "test").balance, persons.balance(person.id, "live").balance) == (50_000_000, 0)
    # The live key cannot spend it (the wallet it pays from is empty), nor see it.
    body, action = charge(d, live_key, "u", "1")
    assert body["success"] is False and action == "topup"
    assert d.user_api(live_key, "GET", "balance", params={"user": "u"}).json()["canCharge"] is False
    # The test key can.
    body, action = charge(d, test_key, "u", "1")
    assert body["success"] is True and action is None

    # A live top-up of 20: the live wallet only; now the live key pays, from live money.
    live_topup = st.event("checkout.session.completed", topup_session(person, "live", 2_000), livemode=True)
    assert d.deliver(live_topup, live_secret)["result"] == "credited"
    body, _ = charge(d, live_key, "u", "3")
    assert body["success"] is True
    # A test key spends test money only: 60 more than the test wallet holds is refused, although the
    # live wallet could pay it.
    body, action = charge(d, test_key, "u", "60")
    assert body["success"] is False and action == "topup"
    assert consistent(person.wallet_for("test")) == 49_000_000
    assert consistent(person.wallet_for("live")) == 17_000_000


def test_the_operator_webhook_credits_only_the_wallet_of_the_events_livemode(d: Deployment) -> None:
    test_secret = d.operator_key("sk_test_operator")
    live_secret = d.operator_key("sk_live_operator")
    person = persons.get_or_create("livemode@example.com")
    # A test-mode payment whose metadata names the live wallet (e.g. a crafted session): never live money.
    forged = topup_session(person, "live", 1_000)
    forged["livemode"] = False
    assert d.deliver(st.event("checkout.session.completed", forged, livemode=False), test_secret)["result"] == (
        "ignored"
    )
    # A live event signed with the test endpoint's secret is not live either.
    live_session = topup_session(person, "live", 1_000)
    event = st.event("checkout.session.completed", live_session, livemode=True)
    assert d.deliver(event, test_secret)["result"] == "ignored"
    assert not ledger.get_wallet(person.wallet_for("live")).exists
    assert not ledger.get_wallet(person.wallet_for("test")).exists
    # The genuine live delivery credits the live wallet; its refund debits that wallet, not the test one.
    assert d.deliver(event, live_secret)["result"] == "credited"
    refund = st.refund("re_live_1", 400, payment_intent=live_session["payment_intent"], charge_id="ch_live_1")
    assert d.deliver(st.event("refund.updated", refund, livemode=True), live_secret)["result"] == "debited"
    assert d.deliver(st.event("refund.updated", refund, livemode=False), test_secret)["result"] == "ignored"
    assert consistent(person.wallet_for("live")) == 6_000_000
    assert not ledger.get_wallet(person.wallet_for("test")).exists


def test_test_charges_land_in_test_earnings_only_and_never_become_withdrawable_live(d: Deployment) -> None:
    app = shared_paywall("Earner", fee="10")
    test_key = paywalls.issue_key(app.id, "test")[1]
    person = funded_person(micros=9_000_000, environment="test")
    connections.connect(app.id, "test", "t", person.id, cap=None)
    connections.connect(app.id, "live", "t", person.id, cap=None)
    body, _ = charge(d, test_key, "t", "5")
    assert body["success"] is True
    test_summary, live_summary = earnings.summary(app.id, "test"), earnings.summary(app.id, "live")
    assert (test_summary["gross"], test_summary["earned"]) == ("5000000", "4500000")
    assert (live_summary["gross"], live_summary["earned"], live_summary["available"]) == ("0", "0", "0")
    # Live earnings: nothing to withdraw; the test money stays test earnings.
    live_withdrawal = d.admin.post(
        f"/admin/paywalls/{app.id}/withdrawals", json={"environment": "live"}, headers={"Idempotency-Key": "w"}
    )
    assert live_withdrawal.status_code == 409, live_withdrawal.text
    assert consistent(person.wallet_for("test")) == 4_000_000
    assert not ledger.get_wallet(person.wallet_for("live")).exists


# ---- top-ups: the key of the wallet's own mode, never the other -------------------------------------


def test_live_topups_with_only_a_test_operator_key_are_refused_with_a_clear_message(d: Deployment) -> None:
    d.operator_key("sk_test_operator")
    person = persons.get_or_create("live-topup@example.com")
    browser = d.signed_in(person)

    live_page = browser.get("/wallet/topup")
    assert live_page.status_code == 200
    assert "Card payments for live wallets are not set up yet" in live_page.text
    assert not [f for f in forms(live_page.text) if "amount" in f]  # no way to pay
    token = form_with(browser.get("/wallet/home").text, action=f"{BASE}/wallet/signout")["csrf"]
    refused = browser.post("/wallet/topup", data={"csrf": token, "amount": "10"}, follow_redirects=False)
    assert refused.status_code == 503 and "Card payments for live wallets are not set up yet" in refused.text
    assert d.stub.calls("POST", "/v1/checkout/sessions") == []  # the test key was not used instead
    with pytest.raises(Exception, match="live wallets are not set up"):
        wallet_topup.start_checkout(wallet_topup.open_for(person, "live"), "10", BASE)
    assert d.stub.calls("POST", "/v1/checkout/sessions") == []

    # The test wallet's page pays with the test key, for the test wallet.
    test_page = browser.get("/wallet/test/topup")
    assert test_page.status_code == 200 and "Test mode" in test_page.text
    form = form_with(test_page.text, amount="10")
    started = browser.post(form.pop("action"), data=form, follow_redirects=False)
    assert started.status_code == 303 and started.headers["location"].startswith("https://checkout.stripe.com/")
    (call,) = d.stub.calls("POST", "/v1/checkout/sessions")
    assert call.api_key == "sk_test_operator"
    assert call.form["client_reference_id"] == person.wallet_for("test")
    assert call.form["metadata[environment]"] == "test"
    assert call.form["success_url"] == f"{BASE}/wallet/test/topup/success"
    assert call.form["cancel_url"] == f"{BASE}/wallet/test/home"

    # From a consent page's "Add money": Stripe's result pages lead back to that pending approval.
    approval = shared_mode.authorize_url(BASE, shared_paywall("Asking").id, "test", "u1").removeprefix(BASE)
    page = browser.get("/wallet/test/topup", params={"next": approval})
    form = form_with(page.text, amount="10")
    assert form["next"] == approval
    assert browser.post(form.pop("action"), data=form, follow_redirects=False).status_code == 303
    call = d.stub.calls("POST", "/v1/checkout/sessions")[-1]
    back = "?" + urlencode({"next": approval})
    assert call.form["success_url"] == f"{BASE}/wallet/test/topup/success{back}"
    assert call.form["cancel_url"] == f"{BASE}/wallet/test/topup{back}"
    returned = browser.get(call.form["success_url"].removeprefix(BASE))
    assert "Continue to approve Asking" in returned.text and f'href="{BASE}{approval}"' in returned.text


def test_test_topups_with_only_a_live_operator_key_are_refused_too(d: Deployment) -> None:
    d.operator_key("sk_live_operator")
    person = persons.get_or_create("test-topup@example.com")
    assert wallet_topup.open_for(person, "test").method == "unavailable"
    assert wallet_topup.open_for(person, "live").method == "stripe"
    with pytest.raises(Exception, match="Test-mode card payments are not set up"):
        wallet_topup.start_checkout(wallet_topup.open_for(person, "test"), "10", BASE)
    assert d.stub.calls("POST", "/v1/checkout/sessions") == []


# ---- the pages say which wallet they show; links keep the app's environment -----------------------


def test_pages_show_the_environment_and_the_test_wallet_appears_with_test_activity(d: Deployment) -> None:
    app = shared_paywall("Mode app")
    person = funded_person(micros=4_250_000, environment="live")
    browser = d.signed_in(person)

    home = browser.get("/wallet/home")
    assert home.status_code == 200 and "$4.25" in home.text
    assert "Test mode" not in home.text and "/wallet/test/home" not in home.text  # no test activity yet

    ledger.credit(person.wallet_for("test"), 1_500_000, idempotency_key="test-fund")
    connections.connect(app.id, "test", "tu", person.id, cap=None)
    connections.connect(app.id, "live", "lu", person.id, cap=None)
    home = browser.get("/wallet/home").text
    assert "Balance: <strong>$4.25</strong>" in home and "Test balance $1.50" in home
    assert f'href="{BASE}/wallet/test/home"' in home
    revokes = links_to(home, "/revoke")  # each asks for confirmation first
    assert revokes == [f"{BASE}/wallet/connections/{connections.active(app.id, 'live', 'lu').id}/revoke"]  # type: ignore[union-attr]

    test_home = browser.get("/wallet/test/home")
    assert test_home.status_code == 200
    assert "Your test wallet" in test_home.text and '<span class="testmode">Test mode</span>' in test_home.text
    assert "Test balance: <strong>$1.50</strong>" in test_home.text and "$4.25" not in test_home.text
    assert f'href="{BASE}/wallet/test/topup"' in test_home.text
    test_revokes = links_to(test_home.text, "/revoke")
    assert len(test_revokes) == 1
    confirm = form_with(browser.get(test_revokes[0]).text, action=test_revokes[0])
    back = browser.post(confirm["action"], data=confirm, follow_redirects=False)
    assert back.status_code == 303 and back.headers["location"] == f"{BASE}/wallet/test/home"
    assert connections.active(app.id, "test", "tu") is None and connections.active(app.id, "live", "lu")

    # Signing in from a test-wallet link returns to the test wallet.
    anonymous = TestClient(d.wallet.app, base_url=BASE)
    redirect = anonymous.get("/wallet/test/topup", follow_redirects=False)
    assert redirect.status_code == 303 and "next=%2Fwallet%2Ftest%2Ftopup" in redirect.headers["location"]


def test_an_apps_links_carry_its_keys_environment(d: Deployment) -> None:
    app = shared_paywall("Linker")
    live_key, test_key = paywalls.issue_key(app.id, "live")[1], paywalls.issue_key(app.id, "test")[1]
    assert d.user_api(test_key, "GET", "balance/topup", params={"user": "x"}).json() == {
        "url": f"{BASE}/wallet/test/topup"
    }
    assert d.user_api(live_key, "GET", "balance/topup", params={"user": "x"}).json() == {"url": f"{BASE}/wallet/topup"}
    person = funded_person(micros=0)
    connections.connect(app.id, "test", "x", person.id, cap=1_000_000)
    body, action = charge(d, test_key, "x", "0.5")
    assert action == "topup" and f"{BASE}/wallet/test/topup" in body["message"]
    ledger.credit(person.wallet_for("test"), 5_000_000, idempotency_key="f")
    body, action = charge(d, test_key, "x", "2")
    assert action == "cap" and f"{BASE}/wallet/test/home" in body["message"]

    # The consent page of a test key's link: test mode, the test balance.
    browser = d.signed_in(person)
    ledger.credit(person.wallet_for("live"), 9_870_000, idempotency_key="live-f")
    url = shared_mode.authorize_url(BASE, app.id, "test", "new-user")
    page = browser.get(url.removeprefix(BASE))
    assert page.status_code == 200 and "Test mode" in page.text and "test balance" in page.text
    assert "$5.00" in page.text and "$9.87" not in page.text
    live_page = browser.get(shared_mode.authorize_url(BASE, app.id, "live", "new-user").removeprefix(BASE))
    assert "$9.87" in live_page.text and "Test mode" not in live_page.text


def test_the_cli_names_the_environment_of_a_person_adjustment(capsys: pytest.CaptureFixture[str]) -> None:
    from paywalls import cli

    class Recording:
        def __init__(self) -> None:
            self.calls: list[tuple[str, str, Any]] = []

        def request(self, method: str, path: str, body: Any = None, headers: Any = None) -> Any:
            self.calls.append((method, path, body))
            return {}

    parser = cli.build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["person-adjust", "ps_1", "5"])  # which wallet is never guessed
    assert "--environment" in capsys.readouterr().err
    client = Recording()
    cli.run(parser.parse_args(["person-adjust", "ps_1", "5", "--environment", "test"]), client)  # type: ignore[arg-type]
    assert client.calls == [("POST", "/persons/ps_1/adjustments", {"amount": "5", "environment": "test"})]


# ---- the local stack: a simulated top-up credits the wallet of the page it was made on -------------


def test_local_simulated_topups_credit_the_environment_of_their_page(stack: LocalStack) -> None:
    email = f"sim-{uuid.uuid4().hex[:8]}@example.com"

    def inbox(address: str) -> str:
        mail = httpx.get(f"{stack.url}/_dev/mail", params={"to": address}, timeout=10).json()["data"]
        assert mail, f"no mail for {address}"
        return mail[-1]["subject"]

    def wallets() -> dict[str, Any]:
        with stack.admin() as admin:
            return admin.get("/admin/persons", params={"email": email}).raise_for_status().json()["wallets"]

    with httpx.Client(timeout=30) as client:
        browser = WalletBrowser(client, stack.url, inbox)
        browser.sign_in(email)
        test_paid = browser.simulate_topup("5", environment="test")
        assert test_paid.status_code == 303, test_paid.text
        assert test_paid.headers["location"] == f"{stack.url}/wallet/test/topup/success"
        assert (wallets()["test"]["balance"], wallets()["live"]["balance"]) == ("5000000", "0")
        live_paid = browser.simulate_topup("10", environment="live")
        assert live_paid.status_code == 303 and live_paid.headers["location"] == f"{stack.url}/wallet/topup/success"
        assert (wallets()["test"]["balance"], wallets()["live"]["balance"]) == ("5000000", "10000000")


@pytest.fixture
def d(deployment: Deployment) -> Deployment:
    return deployment
