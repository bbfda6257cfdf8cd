"""The hosted pages' pieces without a server: money and times as people read them, the one rule for
`Secure` cookies, where a page may send a person back to, every template escaping what it is given,
and the routes `/` and `/wallet` reaching the wallet function."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from starlette.responses import Response

from devserver.router import TemplateRouter
from paywalls.core.money import format_for_people
from paywalls.http import pages, wallet_pages
from paywalls.http.page_http import approval_path, next_path, secure_cookies, set_cookie

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("micros", "currency", "shown"),
    [
        (5_999_401, "usd", "$6.00"),  # was "$5.999401" on the wallet page
        (12_500_000, "usd", "$12.50"),
        (10_000_000, "usd", "$10.00"),
        (0, "usd", "$0.00"),
        (4_200, "usd", "$0.0042"),  # below a cent: its own digits, never "$0.00"
        (1, "usd", "$0.000001"),
        (9_999, "usd", "$0.009999"),
        (10_000, "usd", "$0.01"),
        (15_000, "usd", "$0.02"),  # half up
        (14_999, "usd", "$0.01"),
        (-250_000, "usd", "-$0.25"),
        (-4_200, "usd", "-$0.0042"),
        (1_234_500_000, "usd", "$1,234.50"),
        (2_500_000, "eur", "\u20ac2.50"),
        (1_500_000_000, "jpy", "1,500 JPY"),  # no minor unit
        (400_000, "jpy", "0.4 JPY"),
        (1_234_567, "kwd", "1.235 KWD"),  # three decimals
    ],
)
def test_money_is_shown_to_people_with_the_currencys_decimals(micros: int, currency: str, shown: str) -> None:
    assert format_for_people(micros, currency) == shown


def test_times_name_their_timezone() -> None:
    assert pages.when_for_people("2026-03-03T14:05:09.123Z") == "3 Mar 2026, 14:05 UTC"
    assert pages.when_for_people("2026-03-03T23:30:00+02:00") == "3 Mar 2026, 21:30 UTC"
    assert pages.when_for_people("2026-03-03T14:05:00") == "3 Mar 2026, 14:05 UTC"  # naive: ours are UTC
    assert pages.when_for_people("not a time") == "not a time" and pages.when_for_people(None) == ""


@pytest.mark.parametrize(
    ("base", "secure"),
    [
        ("https://pay.example.com", True),
        ("https://abc.execute-api.us-east-1.amazonaws.com/prod", True),
        ("http://pay.example.com", True),  # a misconfigured http base still never sends cookies in clear
        ("http://testserver", True),
        ("http://localhost.example.com:8000", True),
        ("http://127.0.0.1:8000", False),  # the local stack: browsers drop Secure cookies over http
        ("http://localhost:8000", False),
    ],
)
def test_one_rule_for_secure_cookies(base: str, secure: bool) -> None:
    assert secure_cookies(base) is secure
    response = Response()
    set_cookie(response, "pw_x", "v.1", max_age=60, path="/wallet", secure=secure_cookies(base))
    [cookie] = response.headers.getlist("set-cookie")
    for flag in ("HttpOnly", "SameSite=Lax", "Path=/wallet", "Max-Age=60"):
        assert flag in cookie
    assert ("Secure" in cookie) is secure


@pytest.mark.parametrize(
    ("value", "after_sign_in", "after_topup"),
    [
        ("/wallet/authorize/abc.def", "/wallet/authorize/abc.def", "/wallet/authorize/abc.def"),
        ("/wallet/test/topup", "/wallet/test/topup", None),  # a return after paying is an approval only
        ("/wallet/authorize/", "/wallet/authorize/", None),
        ("https://evil.example/x", "/wallet/home", None),
        ("//evil.example", "/wallet/home", None),
        ("/wallet/../admin", "/wallet/home", None),
        ("/wallet/authorize/../../admin", "/wallet/home", None),
        ("/wallet/authorize/x\n", "/wallet/home", None),
        ("/wallet/authorize/x?next=https://evil.example", "/wallet/home", None),
        (None, "/wallet/home", None),
    ],
)
def test_where_a_page_may_send_a_person_back_to(value: str | None, after_sign_in: str, after_topup: str | None) -> None:
    assert next_path(value) == after_sign_in
    assert approval_path(value) == after_topup


HOSTILE = "<script>alert('x')</script>\"&"


def test_every_template_escapes_what_it_is_given() -> None:
    """Each page rendered with hostile text in every field a person or an app controls: the text
    appears escaped, never as markup."""
    connection = {
        "app_name": HOSTILE,
        "user": HOSTILE,
        "environment": "live",
        "spent": 4_200,
        "currency": "usd",
        "csrf_token": HOSTILE,
    }
    rendered = [
        pages.message_page(HOSTILE, HOSTILE, (HOSTILE, HOSTILE)),
        pages.render("landing.html", wallet_url=HOSTILE),
        pages.topup_page(
            pages.TopupView(HOSTILE, HOSTILE, None, HOSTILE, "test", 1, "usd", [5_000_000], "stripe", HOSTILE, HOSTILE)
        ),
        wallet_pages.sign_in_page(
            action=HOSTILE,
            csrf_token=HOSTILE,
            next_path=HOSTILE,
            error=HOSTILE,
            email=HOSTILE,
            asking=wallet_pages.AppAsking(HOSTILE, None, "test"),
        ),
        wallet_pages.code_page(
            action=HOSTILE,
            csrf_token=HOSTILE,
            challenge=HOSTILE,
            email=HOSTILE,
            next_path=HOSTILE,
            resend_action=HOSTILE,
            resend_csrf_token=HOSTILE,
            other_email_url=HOSTILE,
            error=HOSTILE,
        ),
        wallet_pages.consent_page(
            wallet_pages.ConsentView(
                app_name=HOSTILE,
                description=HOSTILE,
                icon_url=None,
                user=HOSTILE,
                environment="test",
                email=HOSTILE,
                balance=0,
                currency="usd",
                action_url=HOSTILE,
                csrf_token=HOSTILE,
                topup_url=HOSTILE,
                default_cap=10_000_000,
                error=HOSTILE,
                entered_cap=HOSTILE,
            )
        ),
        wallet_pages.wallet_page(
            wallet_pages.WalletView(
                email=HOSTILE,
                environment="live",
                balance=1,
                available=0,
                currency="usd",
                topup_url=HOSTILE,
                signout_url=HOSTILE,
                csrf_token=HOSTILE,
                connections=[
                    wallet_pages.ConnectionRow("c", HOSTILE, HOSTILE, "test", "active", 1, 2, 0, HOSTILE, HOSTILE)
                ],
                entries=[wallet_pages.EntryRow(HOSTILE, HOSTILE, 1, "")],
                notice=HOSTILE,
                test_section=wallet_pages.TestSection(1, HOSTILE),
            )
        ),
        wallet_pages.connection_page(
            wallet_pages.ConnectionView(
                **connection,
                icon_url="https://x.example/i.png",
                active=True,
                created_at=HOSTILE,
                revoked_at=None,
                cap=1,
                cap_remaining=0,
                action_url=HOSTILE,
                revoke_url=HOSTILE,
                wallet_url=HOSTILE,
                default_cap=1,
                notice=HOSTILE,
                error=HOSTILE,
                entered_cap=HOSTILE,
            )
        ),
        wallet_pages.revoke_page(wallet_pages.RevokeView(**connection, action_url=HOSTILE, cancel_url=HOSTILE)),
        wallet_pages.topup_page(
            wallet_pages.WalletTopupView(
                email=HOSTILE,
                environment="live",
                balance=1,
                currency="usd",
                amounts=[5_000_000],
                method="simulate",
                action_url=HOSTILE,
                csrf_token=HOSTILE,
                back_url=HOSTILE,
                back_label=HOSTILE,
                returning_to=HOSTILE,
                extra_fields=[("next", HOSTILE)],
            )
        ),
    ]
    templates = {p.name for p in pages.TEMPLATES.glob("*.html") if not p.name.startswith(("_", "base"))}
    assert len(rendered) == len(templates)  # every page template is in this test
    for html in rendered:
        assert "<script>" not in html and "alert('x')" not in html
        assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&#34;&amp;" in html


def test_pages_have_one_layout_labels_and_no_script() -> None:
    html = wallet_pages.sign_in_page(action="/a", csrf_token="t", next_path="/wallet/home")
    assert html.startswith("<!doctype html>") and '<meta name="viewport"' in html
    assert '<label for="email">Email</label>' in html and '<input id="email"' in html
    assert "<script" not in html
    # No template builds HTML itself or escapes by hand: the layout and autoescape do.
    for path in pages.TEMPLATES.glob("*.html"):
        text = path.read_text()
        assert "|safe" not in text.replace(" ", "") and "Markup(" not in text, path.name
        assert path.name == "base.html" or "<html" not in text, path.name


def test_python_builds_no_html() -> None:
    """The pages' modules hand plain values to the templates: no f-string markup, no manual escape()."""
    for name in ("pages.py", "wallet_pages.py", "page_http.py", "pay_routes.py", "wallet_routes.py"):
        source = (ROOT / "shared" / "paywalls" / "http" / name).read_text()
        assert "from html import" not in source and "escape(" not in source, name
        assert not re.search(r"f[\"']<", source), name


def test_the_front_page_and_the_bare_wallet_path_reach_the_wallet_function() -> None:
    """`/wallet/{proxy+}` needs a segment, so these two are routes of their own (template.yaml)."""
    router = TemplateRouter(ROOT / "template.yaml")
    for path in ("/", "/wallet", "/wallet/", "/wallet/home", "/pay/x.y"):
        assert router.match("GET", path) == "WalletFunction", path
