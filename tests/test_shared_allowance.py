"""What an app sees of a person in shared mode (SPEC §6): only its own allowance. /v1/user/balance,
/v1/user/connect and /v1/user/charge never reveal the person's wallet balance (their top-ups and
their spending in other apps), whether the connection is capped or not and whichever of cap and
wallet is lower; `balance` is the cap remaining (0 when uncapped) and `canCharge` one bit. The
consent page prefills a spending limit; "no limit" is an explicit choice."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from devserver.router import load_function_app
from paywalls.billing import ledger
from paywalls.billing import paywall as paywalls
from paywalls.core.money import format_micros
from paywalls.infra.config import settings
from paywalls.wallets import connections, persons, sessions, shared_mode
from tests.shared_support import app_secret, form_with, shared_paywall

BASE = "https://pay.example.com"


def _function_client(monkeypatch: pytest.MonkeyPatch, path: str, name: str) -> Iterator[TestClient]:
    """The function at `path` served at BASE (with the app secret its links are signed with)."""
    monkeypatch.setenv("PUBLIC_BASE_URL", BASE)
    settings.cache_clear()
    app_secret()
    yield TestClient(load_function_app(path, name), base_url=BASE)
    settings.cache_clear()


@pytest.fixture
def api(aws_mock: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    yield from _function_client(monkeypatch, "functions/user_api", "UserApiFunction")


@pytest.fixture
def wallet(aws_mock: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    yield from _function_client(monkeypatch, "functions/wallet", "WalletFunction")


def leaked(text: str, *micros: int) -> list[str]:
    """Every rendering of these wallet figures found in `text` (integer micros, formatted, cents)."""
    found = []
    for amount in micros:
        for form in (str(amount), format_micros(amount), format_micros(amount).rstrip("0")):
            if form in text:
                found.append(form)
    return found


class App:
    def __init__(self, api: TestClient, paywall: paywalls.Paywall):
        self.api = api
        self.key = paywalls.issue_key(paywall.id, "live")[1]

    def get(self, path: str, user: str) -> dict[str, Any]:
        reply = self.api.get(f"/v1/user/{path}", params={"user": user}, headers={"Authorization": f"Bearer {self.key}"})
        assert reply.status_code == 200, reply.text
        return reply.json()

    def charge(self, user: str, amount: str) -> tuple[dict[str, Any], str]:
        reply = self.api.post(
            "/v1/user/charge",
            json={"user": user, "amount": amount},
            headers={"Authorization": f"Bearer {self.key}", "Idempotency-Key": uuid.uuid4().hex},
        )
        assert reply.status_code == 200, reply.text
        return reply.json(), reply.text


def person_with(micros: int) -> persons.Person:
    person = persons.get_or_create(f"p{uuid.uuid4().hex[:8]}@example.com")
    ledger.credit(person.wallet_for("live"), micros, idempotency_key="fund")
    return person


def test_an_uncapped_connection_never_shows_the_wallet_balance(api: TestClient) -> None:
    app = App(api, shared_paywall("Uncapped", fee="0"))
    other = shared_paywall("Other app", fee="0")
    wallet = 7_654_321  # distinctive: found in no response by accident
    person = person_with(wallet)
    connections.connect(app_id(app), "live", "u", person.id, cap=None)
    connections.connect(other.id, "live", "o", person.id, cap=None)
    # Another app's spending changes the wallet, never what this app sees.
    assert shared_mode.charge(other, "live", "o", "0.333333", idempotency_key="elsewhere").posting

    balance = app.get("balance", "u")
    assert (balance["balance"], balance["balanceFormatted"], balance["currency"]) == ("0", "0.000000", "usd")
    assert balance["connected"] is True and balance["canCharge"] is True
    assert balance["spendingCap"] is None and balance["capRemaining"] is None
    status = app.get("connect", "u")
    assert status["connected"] is True and status["connectedUser"]["canCharge"] is True
    assert status["connectedUser"]["balance"] == "0"
    done, done_text = app.charge("u", "1.111111")
    assert done["success"] is True and done["balance"] == "0" and done["canCharge"] is True
    refused, refused_text = app.charge("u", "99")
    assert refused["success"] is False and refused["canCharge"] is True and refused["balance"] == "0"

    figures = (wallet, wallet - 333_333, wallet - 333_333 - 1_111_111)
    for text in (str(balance), str(status), done_text, refused_text):
        assert leaked(text, *figures) == [], text


def test_a_capped_connection_shows_its_cap_remaining_never_the_wallet_even_when_lower(api: TestClient) -> None:
    app = App(api, shared_paywall("Capped", fee="0"))
    wallet = 1_234_567  # lower than the cap: min(cap, wallet) would reveal it
    person = person_with(wallet)
    connections.connect(app_id(app), "live", "u", person.id, cap=5_000_000)

    balance = app.get("balance", "u")
    assert (balance["balance"], balance["capRemaining"], balance["spendingCap"]) == ("5000000", "5000000", "5000000")
    assert balance["canCharge"] is True
    done, done_text = app.charge("u", "0.2")
    assert done["success"] is True and (done["balance"], done["capRemainingFormatted"]) == ("4800000", "4.800000")
    # More than the wallet holds, less than the cap: refused as a top-up, still no wallet figure.
    refused, refused_text = app.charge("u", "2")
    assert refused["success"] is False and refused["balance"] == "4800000"
    status = app.get("connect", "u")
    assert status["connectedUser"]["balance"] == "4800000" and status["connectedUser"]["spent"] == "200000"

    figures = (wallet, wallet - 200_000)
    for text in (str(balance), done_text, refused_text, str(status)):
        assert leaked(text, *figures) == [], text

    # An empty wallet: one bit (canCharge false), not an amount.
    person_wallet = person.wallet_for("live")
    ledger.charge(person_wallet, ledger.get_wallet(person_wallet).available, idempotency_key="drain")
    empty = app.get("balance", "u")
    assert (empty["balance"], empty["canCharge"]) == ("4800000", False)


def test_not_connected_users_have_no_allowance(api: TestClient) -> None:
    app = App(api, shared_paywall("Nobody"))
    balance = app.get("balance", "stranger")
    assert (balance["balance"], balance["connected"], balance["canCharge"]) == ("0", False, False)


def app_id(app: App) -> str:
    found = paywalls.lookup_key(app.key)
    assert found
    return found.paywall_id


# ---- the consent form: a prefilled limit, "no limit" only when chosen ------------------------------


def consent(wallet: TestClient, paywall_id: str, user: str) -> tuple[TestClient, str, persons.Person]:
    person = persons.get_or_create(f"c{uuid.uuid4().hex[:8]}@example.com")
    browser = TestClient(wallet.app, base_url=BASE)
    browser.cookies.set(sessions.COOKIE_NAME, sessions.issue(person.id))
    url = shared_mode.authorize_url(BASE, paywall_id, "live", user).removeprefix(BASE)
    page = browser.get(url)
    assert page.status_code == 200, page.text
    return browser, page.text, person


def post(browser: TestClient, form: dict[str, str], **values: str) -> int:
    data = {k: v for k, v in form.items() if k != "action"} | values
    return browser.post(form["action"], data=data, follow_redirects=False).status_code


def test_the_consent_form_prefills_a_ten_dollar_limit_and_no_limit_is_an_explicit_choice(wallet: TestClient) -> None:
    paywall = shared_paywall("Consent")
    browser, page, _ = consent(wallet, paywall.id, "u1")
    approve = form_with(page, decision="approve")  # what a browser submits untouched
    assert (approve["limit"], approve["cap"]) == ("cap", "10")
    assert 'type="radio" name="limit" value="none">' in page  # offered, not preselected
    # An emptied amount is not "no limit"; neither is a missing or unknown choice.
    for values in ({"cap": ""}, {"limit": ""}, {"limit": "unlimited"}):
        assert post(browser, approve, **values) == 400
    bare = {k: v for k, v in approve.items() if k != "limit"}
    assert post(browser, bare) == 400
    assert connections.active(paywall.id, "live", "u1") is None

    assert post(browser, approve) == 200
    assert connections.active(paywall.id, "live", "u1").cap == 10_000_000  # type: ignore[union-attr]
    # Choosing "no limit" explicitly removes it; the page then shows that choice.
    assert post(browser, approve, limit="none") == 200
    assert connections.active(paywall.id, "live", "u1").cap is None  # type: ignore[union-attr]
    again = browser.get(shared_mode.authorize_url(BASE, paywall.id, "live", "u1").removeprefix(BASE)).text
    assert form_with(again, decision="approve")["limit"] == "none"


def test_the_prefilled_limit_is_a_deployment_setting(wallet: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    paywall = shared_paywall("Configured")
    monkeypatch.setenv("DEFAULT_SPENDING_CAP", "25.5")
    _, page, _ = consent(wallet, paywall.id, "u2")
    assert form_with(page, decision="approve")["cap"] == "25.5"
    monkeypatch.setenv("DEFAULT_SPENDING_CAP", "not money")  # a bad setting falls back, never to "no limit"
    _, page, _ = consent(wallet, paywall.id, "u3")
    assert form_with(page, decision="approve")["cap"] == "10"


def test_a_shared_hold_is_never_sized_on_the_wallet() -> None:
    """The completion limit a hold sends upstream goes to a provider the app's owner controls: sized
    on the person's wallet it would reveal the balance. It is lowered to the cap only; a wallet that
    cannot pay the request's worst case gets the top-up reply, not a shortened answer."""
    import httpx

    from devserver.inprocess import inprocess_stack

    with inprocess_stack() as stack:
        app = stack.paywall(mode="shared", platform_fee_percent="10")
        # demo/echo: 100 micros per request + 1 per prompt token + 2 per completion token. 400 micros
        # pay a short answer, not the worst case of the default 4096-token limit.
        stack.connect_person(app["id"], "poor", 400)
        stack.connect_person(app["id"], "capped", 5_000_000, cap=400)

        def ask(user: str) -> httpx.Response:
            return httpx.post(
                f"{stack.url}/v1/chat/completions",
                json={"model": "demo/echo", "messages": [{"role": "user", "content": "hi"}], "user": user},
                headers={"Authorization": f"Bearer {app['key']}"},
                timeout=30,
            )

        poor = ask("poor")
        assert poor.status_code == 200 and poor.headers.get("x-paywall-action") == "topup", poor.text
        capped = ask("capped")
        assert capped.status_code == 200 and "x-paywall-action" not in capped.headers, capped.text
        assert capped.json()["usage"]["completion_tokens"] >= 1, "served, within the cap"
