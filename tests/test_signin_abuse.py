"""Sign-in abuse, in-process (moto) and on the local engine: wrong codes are capped per address and
day across all challenges (counted atomically before comparing), and someone who keeps requesting codes
for a stranger's address cannot lock that person out: a sign-in from a known-device cookie or from a
signed authorization link has a quota of its own (otp module doc, docs/DESIGN.md "Sign-in and pages")."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from devserver.router import load_function_app
from paywalls.infra import links, mailer
from paywalls.wallets import devices, otp, ratelimit, sessions, shared_mode
from tests.shared_support import WalletBrowser, app_secret, code_from, form_with, hosted_pages, shared_paywall

BASE = "https://testserver"


def address() -> str:
    return f"p{uuid.uuid4().hex[:10]}@example.com"


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 10**6:06d}"


# ---- wrong codes per address and day --------------------------------------------------------------


@pytest.fixture
def keyed(aws_mock: None) -> None:
    app_secret()


def test_wrong_codes_across_many_challenges_for_one_address_are_capped_per_day(keyed: None) -> None:
    """Before: 5 guesses per code and 5 codes per 15 minutes, i.e. 2,400 guesses a day. Now every wrong
    code of the day counts against the address (on the channel it was requested from)."""
    email, day = address(), 86_400 * 20_000  # a fixed UTC midnight: the whole test is in one day
    cap = otp.FAILS_PER_CHANNEL.limit
    wrong_answers = 0
    for n in range(cap):  # new clients and 15-minute windows: only the daily cap can stop this
        challenge = otp.start(email, f"198.51.100.{n}", now=day + n * 900)
        for _ in range(otp.MAX_GUESSES - 1):
            try:
                otp.verify(challenge.id, wrong(challenge.code), f"203.0.113.{n}", now=day + n * 900 + 1)
            except otp.CodeRejected:
                wrong_answers += 1
            except ratelimit.RateLimited:
                break
    assert wrong_answers == cap
    # Out of wrong guesses for today on the open form: even the right code is not looked at.
    last = otp.start(email, "198.51.100.250", now=day + 80_000)
    with pytest.raises(ratelimit.RateLimited) as limited:
        otp.verify(last.id, last.code, "203.0.113.250", now=day + 80_001)
    assert 0 < limited.value.retry_after <= 86_400 - 80_001
    # The person's own known device has its own budget, untouched by the guesser.
    mine = otp.start(email, "192.0.2.1", channel=otp.device_channel("dev_mine_12345678"), now=day + 80_100)
    assert otp.verify(mine.id, mine.code, "192.0.2.1", now=day + 80_101) == email
    # The next day the open form works again.
    fresh = otp.start(email, "198.51.100.251", now=day + 86_400 + 10)
    assert otp.verify(fresh.id, fresh.code, "203.0.113.251", now=day + 86_400 + 11) == email


def test_right_codes_give_their_count_back(keyed: None) -> None:
    email, day = address(), 86_400 * 20_001
    cap = otp.FAILS_PER_CHANNEL.limit
    # cap - 1 sign-ins, each with a wrong code first: 2 x (cap - 1) guesses, but only the wrong ones stay
    # counted (the right code's count is given back), so all of them work.
    for n in range(cap - 1):
        challenge = otp.start(email, f"c{n}", now=day + n * 900)
        with pytest.raises(otp.CodeRejected):
            otp.verify(challenge.id, wrong(challenge.code), f"c{n}", now=day + n * 900 + 1)
        assert otp.verify(challenge.id, challenge.code, f"c{n}", now=day + n * 900 + 2) == email
    # One more wrong code fills the day's budget; then no code is compared at all, not even a right one.
    last = otp.start(email, "c-last", now=day + cap * 900)
    with pytest.raises(otp.CodeRejected):
        otp.verify(last.id, wrong(last.code), "c-last", now=day + cap * 900 + 1)
    with pytest.raises(ratelimit.RateLimited):
        otp.verify(last.id, last.code, "c-last", now=day + cap * 900 + 2)


def test_links_share_one_cap_so_collecting_links_buys_no_more_guesses(keyed: None) -> None:
    """Each app user's link is a channel of its own (sending), but all link channels of an address
    share one daily budget of wrong codes."""
    email, day = address(), 86_400 * 20_002
    paywall = shared_paywall()
    wrong_answers = 0
    for n in range(otp.FAILS_PER_EMAIL_LINKS.limit // otp.FAILS_PER_CHANNEL.limit + 2):
        token = shared_mode.authorize_url(BASE, paywall.id, "live", f"u{n}").rsplit("/", 1)[1]
        channel = otp.link_channel(links.verify(token, "authorize"))
        for k in range(otp.FAILS_PER_CHANNEL.limit // (otp.MAX_GUESSES - 1) + 1):
            moment = day + (n * 10 + k) * 900
            challenge = otp.start(email, f"c{n}-{k}", channel=channel, now=moment)
            for _ in range(otp.MAX_GUESSES - 1):
                try:
                    otp.verify(challenge.id, wrong(challenge.code), f"c{n}-{k}", now=moment + 1)
                except otp.CodeRejected:
                    wrong_answers += 1
                except ratelimit.RateLimited:
                    break
    assert wrong_answers == otp.FAILS_PER_EMAIL_LINKS.limit


@pytest.mark.usefixtures("engine")
def test_parallel_wrong_codes_never_exceed_the_cap() -> None:
    """The daily count is taken (conditionally, atomically) before any comparison: 60 wrong codes sent
    at once on 15 challenges get exactly `cap` "wrong code" answers, the rest are refused unread."""
    app_secret()
    email = address()
    cap = otp.FAILS_PER_CHANNEL.limit
    day = 86_400 * 20_003  # one fixed day: every guess falls in the same daily window
    starts = [day + (n // otp.SEND_PER_EMAIL.limit) * 900 for n in range(15)]  # within the sending limit
    challenges = [(otp.start(email, f"client-{n}", now=start), start) for n, start in enumerate(starts)]

    def guess(i: int) -> str:
        challenge, start = challenges[i % len(challenges)]
        try:
            otp.verify(challenge.id, wrong(challenge.code), f"guesser-{i}", now=start + 1)
        except otp.CodeRejected:
            return "wrong"
        except ratelimit.RateLimited:
            return "limited"
        return "signed in"

    with ThreadPoolExecutor(max_workers=16) as pool:
        answers = list(pool.map(guess, range(60)))
    assert answers.count("wrong") == cap and answers.count("signed in") == 0, answers


# ---- someone using up an address's sending quota cannot lock its owner out -------------------------


@dataclass
class Site:
    app: object

    def browser(self) -> WalletBrowser:
        client = TestClient(self.app, base_url=BASE)  # type: ignore[arg-type]
        return WalletBrowser(client, BASE, lambda email: mailer.sent_mail(email)[-1].subject)


@pytest.fixture
def site(aws_mock: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    with hosted_pages(monkeypatch, BASE):
        yield Site(load_function_app("functions/wallet", "WalletFunction"))


def use_up_open_quota(site: Site, email: str) -> None:
    attacker = site.browser()
    page = attacker.get(f"{BASE}/wallet/signin")
    for _ in range(otp.SEND_PER_EMAIL.limit + 1):
        reply = attacker.submit(form_with(page.text), email=email)
        if reply.status_code == 429:
            return
        assert reply.status_code == 200, reply.text
    raise AssertionError("the open quota never ran out")


def test_a_known_device_signs_in_while_someone_uses_up_the_open_quota(site: Site) -> None:
    victim_email = address()
    victim = site.browser()
    first = victim.sign_in(victim_email)
    cookie = next(c for c in first.headers.get_list("set-cookie") if c.startswith(devices.COOKIE_NAME))
    for flag in ("HttpOnly", "SameSite=Lax", "Path=/wallet", "Secure"):
        assert flag in cookie
    victim.client.cookies.delete(sessions.COOKIE_NAME)  # signed out / session expired
    use_up_open_quota(site, victim_email)
    # The attacker's own known-device cookie (for their own address) buys nothing for the victim's.
    attacker = site.browser()
    attacker.sign_in(address())
    page = attacker.get(f"{BASE}/wallet/signin")
    assert attacker.submit(form_with(page.text), email=victim_email).status_code == 429
    # The person's own browser still gets a code and signs in, and keeps its device id.
    device_before = devices.read(victim.client.cookies[devices.COOKIE_NAME], victim_email)
    again = victim.sign_in(victim_email)
    assert again.headers["location"] == f"{BASE}/wallet/home"
    assert devices.read(victim.client.cookies[devices.COOKIE_NAME], victim_email) == device_before


def test_a_sign_in_from_a_signed_link_works_while_someone_uses_up_the_open_quota(site: Site) -> None:
    victim_email = address()
    paywall = shared_paywall()
    url = shared_mode.authorize_url(BASE, paywall.id, "live", "alice")
    use_up_open_quota(site, victim_email)
    victim = site.browser()  # a new browser: no device cookie
    to_sign_in = victim.get(url)
    assert to_sign_in.status_code == 303
    page = victim.get(to_sign_in.headers["location"])
    form = form_with(page.text)
    assert form["next"].startswith("/wallet/authorize/")
    code_page = victim.submit(form, email=victim_email)
    assert code_page.status_code == 200, code_page.text
    done = victim.submit(form_with(code_page.text), code=code_from(mailer.sent_mail(victim_email)[-1].subject))
    assert done.status_code == 303 and done.headers["location"] == url
    # A `next` naming no valid link (forged, or not a link at all) is the open form: still limited.
    for next_path in ("/wallet/authorize/abc.def", "/wallet/home"):
        stranger = site.browser()
        page = stranger.get(f"{BASE}/wallet/signin?next={next_path}")
        assert stranger.submit(form_with(page.text), email=victim_email).status_code == 429
