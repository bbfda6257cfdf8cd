"""The wallet pages and the shared-mode user API in-process (moto), security first: sign-in codes,
session cookies, CSRF on every form, forged/expired links, cross-person and cross-paywall access.
Every refusal is checked to have changed nothing."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from devserver.router import load_function_app
from paywalls import connections, csrf, earnings, ledger, links, mailer, paywall, persons, sessions, shared_mode
from paywalls.config import settings
from tests.shared_support import WalletBrowser, app_secret, form_with, forms, links_to, shared_paywall

BASE = "https://testserver"


@dataclass
class Site:
    wallet: TestClient
    api: TestClient

    def browser(self) -> WalletBrowser:
        client = TestClient(self.wallet.app, base_url=BASE)
        return WalletBrowser(client, BASE, lambda email: mailer.sent_mail(email)[-1].subject)


@pytest.fixture
def site(aws_mock: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    monkeypatch.setenv("PAYWALLS_LOCAL_DEV", "1")  # the mail sink instead of SES
    monkeypatch.setenv("PUBLIC_BASE_URL", BASE)
    settings.cache_clear()
    app_secret()
    wallet = TestClient(load_function_app("functions/wallet", "WalletFunction"), base_url=BASE)
    api = TestClient(load_function_app("functions/user_api", "UserApiFunction"), base_url=BASE)
    yield Site(wallet, api)
    settings.cache_clear()


def email() -> str:
    return f"p{uuid.uuid4().hex[:10]}@example.com"


def authorize_url(paywall_id: str, user: str, environment: str = "live", now: float | None = None) -> str:
    return shared_mode.authorize_url(BASE, paywall_id, environment, user, now=now)


def key_for(paywall_id: str, environment: str = "live") -> str:
    return paywall.issue_key(paywall_id, environment)[1]


# ---- sign-in ------------------------------------------------------------------------------------


def test_code_sign_in_sets_a_signed_httponly_secure_lax_cookie_and_goes_back(site: Site) -> None:
    browser = site.browser()
    done = browser.sign_in(email(), next_path="/wallet/topup")
    assert done.headers["location"] == f"{BASE}/wallet/topup"
    cookie = next(c for c in done.headers.get_list("set-cookie") if c.startswith(sessions.COOKIE_NAME))
    for flag in ("HttpOnly", "Secure", "SameSite=Lax", "Path=/wallet"):
        assert flag in cookie
    home = browser.get(f"{BASE}/wallet/home")
    assert home.status_code == 200 and "Your wallet" in home.text


def test_a_code_is_single_use_and_wrong_codes_are_counted(site: Site) -> None:
    browser = site.browser()
    address = email()
    page = browser.get(f"{BASE}/wallet/signin")
    code_page = browser.submit(form_with(page.text), email=address)
    verify = form_with(code_page.text)
    code = mailer.sent_mail(address)[-1].subject[-6:]
    wrong = browser.submit(verify, code=f"{(int(code) + 1) % 10**6:06d}")
    assert wrong.status_code == 400 and "4 attempts left" in wrong.text
    assert sessions.COOKIE_NAME not in wrong.headers.get("set-cookie", "")
    assert browser.submit(verify, code=code).status_code == 303
    replay = site.browser()  # another browser replaying the same code (e.g. an intercepted one)
    replay.client.cookies.set(csrf.COOKIE_NAME, browser.client.cookies[csrf.COOKIE_NAME])
    again = replay.submit(verify, code=code)
    assert again.status_code == 400 and "already used" in again.text
    assert sessions.COOKIE_NAME not in again.headers.get("set-cookie", "")


def test_sending_codes_is_rate_limited_per_email(site: Site) -> None:
    browser = site.browser()
    address = email()
    page = browser.get(f"{BASE}/wallet/signin")
    for _ in range(5):
        assert browser.submit(form_with(page.text), email=address).status_code == 200
    limited = browser.submit(form_with(page.text), email=address)
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) > 0
    assert len(mailer.sent_mail(address)) == 5


def test_bad_email_and_open_redirects(site: Site) -> None:
    browser = site.browser()
    page = browser.get(f"{BASE}/wallet/signin?next=https://evil.example/x")
    assert form_with(page.text)["next"] == "/wallet/home"
    bad = browser.submit(form_with(page.text), email="not an email <script>")
    assert bad.status_code == 400 and "<script>" not in bad.text and "&lt;script&gt;" in bad.text
    for evil in ("//evil.example", "/wallet/../admin", "/wallet//evil.example"):
        assert form_with(browser.get(f"{BASE}/wallet/signin?next={evil}").text)["next"] == "/wallet/home"


def test_sessions_cannot_be_forged(site: Site) -> None:
    person = persons.get_or_create(email())
    token = sessions.issue(person.id)
    forged = token[:-3] + ("AAA" if not token.endswith("AAA") else "BBB")
    client = TestClient(site.wallet.app, base_url=BASE)
    client.cookies.set(sessions.COOKIE_NAME, forged)
    reply = client.get("/wallet/home", follow_redirects=False)
    assert reply.status_code == 303 and "/wallet/signin" in reply.headers["location"]


# ---- CSRF ---------------------------------------------------------------------------------------


def test_every_form_refuses_posts_without_its_csrf_token_and_nothing_changes(site: Site) -> None:
    pw = shared_paywall()
    browser = site.browser()
    address = email()
    # Sign-in form: no code is sent.
    browser.get(f"{BASE}/wallet/signin")
    assert browser.client.post(f"{BASE}/wallet/signin", data={"email": address}).status_code == 403
    assert mailer.sent_mail(address) == []
    browser.sign_in(address)
    person = persons.find_by_email(address)
    assert person
    # Consent: no connection.
    url = authorize_url(pw.id, "alice")
    page = browser.get(url)
    approve = form_with(page.text, decision="approve")
    for data in ({"decision": "approve"}, {"decision": "approve", "csrf": "x.y"}):
        assert browser.client.post(url, data=data, follow_redirects=False).status_code == 403
    assert connections.active(pw.id, "live", "alice") is None
    # A token of another page (the sign-in form's) is not accepted here either.
    signin_token = form_with(browser.get(f"{BASE}/wallet/signin").text)["csrf"]
    refused = browser.client.post(url, data={"decision": "approve", "csrf": signin_token}, follow_redirects=False)
    assert refused.status_code == 403
    assert browser.submit(approve).status_code == 200
    connection = connections.active(pw.id, "live", "alice")
    assert connection
    # Revoke and top-up forms.
    assert browser.client.post(f"{BASE}/wallet/connections/{connection.id}/revoke").status_code == 403
    assert connections.active(pw.id, "live", "alice") is not None
    assert browser.client.post(f"{BASE}/wallet/topup", data={"amount": "10"}).status_code == 403
    # Without the csrf cookie (a cross-site POST), even the page's own token fails.
    stranger = TestClient(site.wallet.app, base_url=BASE)
    stranger.cookies.set(sessions.COOKIE_NAME, browser.client.cookies[sessions.COOKIE_NAME])
    assert stranger.post(url, data={k: v for k, v in approve.items() if k != "action"}).status_code == 403
    assert ledger.get_wallet(person.wallet_for("live")).balance == 0


# ---- authorization links ------------------------------------------------------------------------


def test_consent_needs_sign_in_and_a_valid_unexpired_link(site: Site) -> None:
    pw = shared_paywall(name="Caf\u00e9 <b>bot</b>", description="Answers & more", icon_url="https://x.example/i.png")
    url = authorize_url(pw.id, "bob")
    anonymous = TestClient(site.wallet.app, base_url=BASE)
    redirect = anonymous.get(url, follow_redirects=False)
    assert redirect.status_code == 303
    assert "/wallet/signin?next=%2Fwallet%2Fauthorize%2F" in redirect.headers["location"]

    browser = site.browser()
    done = browser.sign_in(email(), next_path=url.removeprefix(BASE))
    assert done.headers["location"] == url
    page = browser.get(url)
    assert page.status_code == 200
    assert "Caf\u00e9 &lt;b&gt;bot&lt;/b&gt;" in page.text and "<b>bot</b>" not in page.text
    assert "Answers &amp; more" in page.text and 'src="https://x.example/i.png"' in page.text
    approve = form_with(page.text, decision="approve")

    token = url.rsplit("/", 1)[1]
    body, _, mac = token.partition(".")
    other_user = authorize_url(pw.id, "mallory").rsplit("/", 1)[1]
    tampered = [f"{body}x.{mac}", f"{other_user.partition('.')[0]}.{mac}", f"{body}.{mac[:-2]}", "garbage"]
    for bad in tampered:
        assert browser.get(f"{BASE}/wallet/authorize/{bad}").status_code == 400
        reply = browser.client.post(f"{BASE}/wallet/authorize/{bad}", data=approve, follow_redirects=False)
        assert reply.status_code in (400, 403)
    expired = authorize_url(pw.id, "bob", now=time.time() - 2 * shared_mode.AUTHORIZE_LINK_TTL_S)
    assert "expired" in browser.get(expired).text
    assert browser.client.post(expired, data=approve, follow_redirects=False).status_code == 400
    # A top-up link is not an authorization link.
    topup_token = links.topup_url(BASE, pw.id, "live", "bob").rsplit("/", 1)[1]
    assert browser.get(f"{BASE}/wallet/authorize/{topup_token}").status_code == 400
    assert connections.active(pw.id, "live", "bob") is None and connections.active(pw.id, "live", "mallory") is None

    assert browser.submit(approve, cap="abc").status_code == 400
    assert connections.active(pw.id, "live", "bob") is None
    assert browser.submit(approve, cap="2.5").status_code == 200
    assert connections.active(pw.id, "live", "bob").cap == 2_500_000  # type: ignore[union-attr]


def test_a_person_cannot_revoke_someone_elses_connection(site: Site) -> None:
    pw = shared_paywall()
    alice, eve = site.browser(), site.browser()
    alice.sign_in(email())
    alice.approve(authorize_url(pw.id, "alice"))
    connection = connections.active(pw.id, "live", "alice")
    assert connection
    eve.sign_in(email())
    eve_home = eve.get(f"{BASE}/wallet/home")
    token = form_with(eve_home.text, action=f"{BASE}/wallet/signout")["csrf"]
    reply = eve.client.post(f"{BASE}/wallet/connections/{connection.id}/revoke", data={"csrf": token})
    assert reply.status_code == 404
    assert connections.active(pw.id, "live", "alice") is not None
    assert alice.revoke_all() == 1 and connections.active(pw.id, "live", "alice") is None


# ---- the app-facing API in shared mode -------------------------------------------------------------


def test_connect_disconnect_charge_and_isolation_over_the_user_api(site: Site) -> None:
    a, b = shared_paywall("A", fee="10"), shared_paywall("B", fee="0")
    key_a, key_b = key_for(a.id), key_for(b.id)

    def api(key: str, path: str, **params: str) -> dict:
        reply = site.api.get(f"/v1/user/{path}", params=params, headers={"Authorization": f"Bearer {key}"})
        assert reply.status_code == 200, reply.text
        return reply.json()

    def charge(key: str, user: str, amount: str, idem: str) -> tuple[dict, str | None]:
        reply = site.api.post(
            "/v1/user/charge",
            json={"user": user, "amount": amount},
            headers={"Authorization": f"Bearer {key}", "Idempotency-Key": idem},
        )
        assert reply.status_code == 200, reply.text
        return reply.json(), reply.headers.get("x-paywall-action")

    status = api(key_a, "connect", user="alice")
    assert status["connected"] is False and status["url"].startswith(f"{BASE}/wallet/authorize/")
    assert status["url"] in status["message"]
    browser = site.browser()
    browser.sign_in(email())
    assert browser.approve(status["url"], cap="5").status_code == 200
    person = persons.get(connections.active(a.id, "live", "alice").person_id)  # type: ignore[union-attr]
    assert person
    ledger.credit(person.wallet_for("live"), 3_000_000, idempotency_key="fund")

    connected = api(key_a, "connect", user="alice")
    assert connected["connected"] is True and connected["connectedUser"]["id"] == "alice"
    assert connected["connectedUser"]["spendingCap"] == "5000000" and person.email not in str(connected)
    assert api(key_a, "balance", user="alice")["balance"] == "5000000"  # the cap remaining, not the wallet

    body, action = charge(key_a, "alice", "1", "c1")
    assert body["success"] is True and action is None
    body, action = charge(key_a, "alice", "2.5", "c2")
    assert body["success"] is False and action == "topup" and "/wallet/topup" in body["message"]

    # B sees nothing of A's user, cannot charge or disconnect it.
    assert api(key_b, "connect", user="alice")["connected"] is False
    assert api(key_b, "balance", user="alice")["balance"] == "0"
    body, action = charge(key_b, "alice", "1", "c1")
    assert body["success"] is False and action == "authorize"
    assert api(key_b, "disconnect", user="alice")["success"] is False
    assert connections.active(a.id, "live", "alice") is not None
    # A's test key is another environment.
    assert api(key_for(a.id, "test"), "connect", user="alice")["connected"] is False
    # The ledger of a shared wallet is private.
    ledger_reply = site.api.get(
        "/v1/user/ledger", params={"user": "alice"}, headers={"Authorization": f"Bearer {key_a}"}
    )
    assert ledger_reply.status_code == 409

    assert api(key_a, "disconnect", user="alice")["success"] is True
    body, action = charge(key_a, "alice", "1", "c3")
    assert body["success"] is False and action == "authorize"
    assert ledger.get_wallet(person.wallet_for("live")).balance == 2_000_000
    assert earnings.summary(a.id, "live")["earned"] == "900000"
    assert earnings.summary(b.id, "live")["gross"] == "0"


def test_default_mode_paywalls_have_no_connect(site: Site) -> None:
    default = paywall.create({"name": "D", "mode": "default"})
    reply = site.api.get(
        "/v1/user/connect", params={"user": "x"}, headers={"Authorization": f"Bearer {key_for(default.id)}"}
    )
    assert reply.status_code == 409 and reply.json()["error"]["type"] == "conflict_error"


def test_wallet_page_lists_apps_with_their_spending(site: Site) -> None:
    pw = shared_paywall("Spender <i>")
    browser = site.browser()
    address = email()
    browser.sign_in(address)
    browser.approve(authorize_url(pw.id, "u1"), cap="1")
    person = persons.find_by_email(address)
    assert person
    ledger.credit(person.wallet_for("live"), 2_000_000, idempotency_key="fund")
    assert shared_mode.charge(pw, "live", "u1", "0.25", idempotency_key="k").posting
    home = browser.get(f"{BASE}/wallet/home").text
    assert "Spender &lt;i&gt;" in home and "spent $0.25" in home and "limit $1.00" in home
    assert "$1.75" in home and len(links_to(home, "/revoke")) == 1
