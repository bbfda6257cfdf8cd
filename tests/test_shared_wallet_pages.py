"""The wallet pages and the shared-mode user API in-process (moto), security first: sign-in codes,
session cookies, CSRF on every form, forged/expired links, cross-person and cross-paywall access.
Every refusal is checked to have changed nothing."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from devserver.router import load_function_app
from paywalls.billing import earnings, ledger, paywall
from paywalls.http import csrf
from paywalls.infra import links, mailer
from paywalls.wallets import connections, persons, sessions, shared_mode
from tests.shared_support import WalletBrowser, form_with, forms, hosted_pages, links_to, shared_paywall

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
    with hosted_pages(monkeypatch, BASE):
        wallet = TestClient(load_function_app("functions/wallet", "WalletFunction"), base_url=BASE)
        api = TestClient(load_function_app("functions/user_api", "UserApiFunction"), base_url=BASE)
        yield Site(wallet, api)


def email() -> str:
    return f"p{uuid.uuid4().hex[:10]}@example.com"


def authorize_url(paywall_id: str, user: str, environment: str = "live", now: float | None = None) -> str:
    return shared_mode.authorize_url(BASE, paywall_id, environment, user, now=now)


def _approved_with_funds(site: Site, app_name: str, user: str, micros: int) -> tuple[paywall.Paywall, WalletBrowser]:
    """A shared paywall named `app_name` and the browser of a new person, signed in, who approved it for
    `user` with a limit of 1.00 and holds `micros` in their live wallet."""
    pw = shared_paywall(app_name)
    address = email()
    browser = site.browser()
    browser.sign_in(address)
    browser.approve(authorize_url(pw.id, user), cap="1")
    person = persons.find_by_email(address)
    assert person
    ledger.credit(person.wallet_for("live"), micros, idempotency_key="fund")
    return pw, browser


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
    pw, browser = _approved_with_funds(site, "Spender <i>", "u1", 2_000_000)
    assert shared_mode.charge(pw, "live", "u1", "0.25", idempotency_key="k").posting
    home = browser.get(f"{BASE}/wallet/home").text
    assert "Spender &lt;i&gt;" in home and "spent $0.25" in home and "limit $1.00" in home
    assert "$1.75" in home and len(links_to(home, "/revoke")) == 1


# ---- what a new user hit (issue 9): each page leads on -------------------------------------------


def test_the_sign_in_page_of_an_authorization_link_names_the_app_asking(site: Site) -> None:
    pw = shared_paywall("Echo <Pro>", icon_url="https://x.example/echo.png")
    url = authorize_url(pw.id, "alice")
    browser = site.browser()
    to_sign_in = browser.get(url)
    assert to_sign_in.status_code == 303
    page = browser.get(to_sign_in.headers["location"])
    assert page.status_code == 200
    assert "Echo &lt;Pro&gt;" in page.text and "wants to use your wallet" in page.text
    assert 'src="https://x.example/echo.png"' in page.text
    code_page = browser.submit(form_with(page.text), email=email())
    assert "Connect Echo &lt;Pro&gt;" in code_page.text  # still named while the code is entered
    # The plain sign-in page names no app; nor does one whose `next` is not a valid link.
    for plain in (f"{BASE}/wallet/signin", f"{BASE}/wallet/signin?next=/wallet/authorize/abc.def"):
        text = browser.get(plain).text
        assert "Sign in to your wallet" in text and "Echo" not in text and "wants to use" not in text


def test_the_wrong_code_page_keeps_the_email_and_offers_a_new_code(site: Site) -> None:
    browser = site.browser()
    address = email()
    pw = shared_paywall()
    next_path = authorize_url(pw.id, "bob").removeprefix(BASE)
    page = browser.get(f"{BASE}/wallet/signin?next={next_path}")
    code_page = browser.submit(form_with(page.text), email=address)
    first_code = mailer.sent_mail(address)[-1].subject[-6:]
    wrong = browser.submit(form_with(code_page.text), code=f"{(int(first_code) + 1) % 10**6:06d}")
    assert wrong.status_code == 400 and "Wrong code" in wrong.text
    assert f"<strong>{address}</strong>" in wrong.text  # not "your inbox"
    resend = form_with(wrong.text, email=address, action=f"{BASE}/wallet/signin")
    assert resend["next"] == next_path
    again = browser.submit(resend)
    assert again.status_code == 200 and len(mailer.sent_mail(address)) == 2
    new_code = mailer.sent_mail(address)[-1].subject[-6:]
    done = browser.submit(form_with(again.text), code=new_code)
    assert done.status_code == 303 and done.headers["location"] == f"{BASE}{next_path}"
    # An address altered in the form is only ever shown back if it is one; never markup.
    verify = form_with(again.text)
    odd = browser.submit(verify, email="<b>x</b>", code="000000")
    assert odd.status_code == 400 and "<b>x</b>" not in odd.text and "your inbox" in odd.text


def test_the_consent_page_adds_money_and_the_top_up_returns_to_the_approval(site: Site) -> None:
    pw = shared_paywall("Returner")
    url = authorize_url(pw.id, "carol")
    here = url.removeprefix(BASE)
    browser = site.browser()
    browser.sign_in(email(), next_path=here)
    consent = browser.get(url)
    assert "$0.00" in consent.text and "Your wallet is empty" in consent.text
    [add_money] = links_to(consent.text, "/wallet/topup?next=" + here.replace("/", "%2F"))
    topup = browser.get(add_money)
    assert topup.status_code == 200 and "After paying you go back to approving <strong>Returner</strong>" in topup.text
    payment_forms = [f for f in forms(topup.text) if "amount" in f]
    assert payment_forms and all(f["next"] == here for f in payment_forms)
    assert links_to(topup.text, here) == [url]  # "Back to approving Returner"
    # The result page after paying leads back to the approval, naming the app.
    done = browser.get(f"{BASE}/wallet/topup/success?next={here}")
    assert "Payment received" in done.text and "Continue to approve Returner" in done.text
    assert links_to(done.text, here) == [url]
    # Only a pending approval is a way back: anything else leads to the wallet as before.
    for other in ("/wallet/home", "https://evil.example/", "/wallet/authorize/../../x"):
        page = browser.get(f"{BASE}/wallet/topup/success?next={other}").text
        assert "evil" not in page and links_to(page, "/wallet/home") == [f"{BASE}/wallet/home"]
        assert all("next" not in f for f in forms(browser.get(f"{BASE}/wallet/topup?next={other}").text))


def test_a_bad_limit_on_the_consent_page_shows_the_form_again_with_the_error(site: Site) -> None:
    pw = shared_paywall()
    url = authorize_url(pw.id, "dan")
    browser = site.browser()
    browser.sign_in(email())
    approve = form_with(browser.get(url).text, decision="approve")
    refused = browser.submit(approve, cap="12,50")
    assert refused.status_code == 400 and 'role="alert"' in refused.text
    again = form_with(refused.text, decision="approve")
    assert again["cap"] == "12,50" and again["limit"] == "cap"  # what was typed, to correct it
    assert 'aria-invalid="true"' in refused.text
    assert connections.active(pw.id, "live", "dan") is None
    assert browser.submit(again, cap="12.50").status_code == 200
    assert connections.active(pw.id, "live", "dan").cap == 12_500_000  # type: ignore[union-attr]


def test_the_wallet_raises_lowers_and_removes_an_apps_limit(site: Site) -> None:
    pw, browser = _approved_with_funds(site, "Capped", "erin", 5_000_000)
    assert shared_mode.charge(pw, "live", "erin", "1", idempotency_key="k1").posting
    refused = shared_mode.charge(pw, "live", "erin", "0.5", idempotency_key="k2")
    assert refused.refusal == "cap"  # the "limit reached" reply links to the wallet page
    home = browser.get(f"{BASE}/wallet/home").text
    assert "limit reached" in home and "Raise or remove the limit" in home
    connection = connections.active(pw.id, "live", "erin")
    assert connection
    manage_url = f"{BASE}/wallet/connections/{connection.id}"
    assert links_to(home, f"/wallet/connections/{connection.id}") == [manage_url]
    page = browser.get(manage_url)
    assert page.status_code == 200 and "has reached the limit you set" in page.text
    form = form_with(page.text, action=manage_url)
    assert (form["limit"], form["cap"]) == ("cap", "1")

    raised = browser.submit(form, cap="3")
    assert raised.status_code == 303 and raised.headers["location"] == f"{manage_url}?saved=1"
    assert "Spending limit saved." in browser.get(raised.headers["location"]).text
    assert connections.active(pw.id, "live", "erin").cap == 3_000_000  # type: ignore[union-attr]
    assert shared_mode.charge(pw, "live", "erin", "0.5", idempotency_key="k3").posting  # charging again

    assert browser.submit(form, cap="1.25").status_code == 303  # lowered below what was spent
    assert connections.active(pw.id, "live", "erin").cap == 1_250_000  # type: ignore[union-attr]
    assert shared_mode.charge(pw, "live", "erin", "0.01", idempotency_key="k4").refusal == "cap"

    assert browser.submit(form, limit="none").status_code == 303  # removed
    assert connections.active(pw.id, "live", "erin").cap is None  # type: ignore[union-attr]
    assert form_with(browser.get(manage_url).text, action=manage_url)["limit"] == "none"

    # A bad entry shows the form again with the error and what was typed; nothing changes.
    for values in ({"cap": "abc"}, {"cap": ""}, {"limit": "unlimited"}):
        bad = browser.submit(form, **values)
        assert bad.status_code == 400 and 'role="alert"' in bad.text, values
        assert form_with(bad.text, action=manage_url)["cap"] == values.get("cap", form["cap"])
    assert connections.active(pw.id, "live", "erin").cap is None  # type: ignore[union-attr]

    # Without the form's token, or as someone else: refused, unchanged.
    assert browser.client.post(manage_url, data={"limit": "cap", "cap": "2"}).status_code == 403
    eve = site.browser()
    eve.sign_in(email())
    eve_token = form_with(eve.get(f"{BASE}/wallet/home").text, action=f"{BASE}/wallet/signout")["csrf"]
    assert eve.get(manage_url).status_code == 404
    stolen = eve.client.post(manage_url, data={"csrf": eve_token, "limit": "cap", "cap": "2"})
    assert stolen.status_code == 404
    assert connections.active(pw.id, "live", "erin").cap is None  # type: ignore[union-attr]


def test_revoking_asks_for_confirmation(site: Site) -> None:
    pw = shared_paywall("Revocable")
    browser = site.browser()
    browser.sign_in(email())
    browser.approve(authorize_url(pw.id, "fay"), cap="1")
    connection = connections.active(pw.id, "live", "fay")
    assert connection
    home = browser.get(f"{BASE}/wallet/home").text
    assert not [f for f in forms(home) if f["action"].endswith("/revoke")]  # no one-click revoke
    [revoke_url] = links_to(home, "/revoke")
    confirm = browser.get(revoke_url)
    assert confirm.status_code == 200 and "Revoke Revocable?" in confirm.text
    assert connections.active(pw.id, "live", "fay") is not None  # looking changed nothing
    assert links_to(confirm.text, "/wallet/home") == [f"{BASE}/wallet/home"]  # "Keep it connected"
    eve = site.browser()
    eve.sign_in(email())
    assert eve.get(revoke_url).status_code == 404
    done = browser.submit(form_with(confirm.text, action=revoke_url))
    assert done.status_code == 303 and connections.active(pw.id, "live", "fay") is None
    # Once revoked there is nothing to confirm: back to the wallet, where it shows as revoked.
    assert browser.get(revoke_url).headers["location"] == f"{BASE}/wallet/home"
    assert "revoked" in browser.get(f"{BASE}/wallet/home").text


def test_money_and_times_are_shown_for_people(site: Site) -> None:
    pw, browser = _approved_with_funds(site, "Tiny", "gil", 6_000_000)
    assert shared_mode.charge(pw, "live", "gil", "0.000599", idempotency_key="k").posting
    home = browser.get(f"{BASE}/wallet/home").text
    assert "$5.999401" not in home and "5.999401" not in home
    assert "Balance: <strong>$6.00</strong>" in home
    assert "spent $0.000599" in home  # below a cent: its own digits, not "$0.00"
    assert re.search(r"<time datetime=\"[^\"]+Z\">\d{1,2} \w{3} \d{4}, \d{2}:\d{2} UTC</time>", home)


def test_the_front_page_and_the_wallet_root_are_pages(site: Site) -> None:
    front = site.wallet.get("/")
    assert front.status_code == 200 and front.headers["content-type"].startswith("text/html")
    assert links_to(front.text, "/wallet/home") == [f"{BASE}/wallet/home"]
    for path in ("/wallet", "/wallet/"):
        reply = site.wallet.get(path, follow_redirects=False)
        assert reply.status_code == 303 and reply.headers["location"] == f"{BASE}/wallet/home"
    missing = site.wallet.get("/wallet/no/such/page")
    assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")
