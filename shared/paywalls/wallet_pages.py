"""HTML of the shared-mode wallet pages (SPEC §6): sign-in, code, consent, wallet, top-up. Built on
pages.layout (same look and security headers as the top-up page). Every value is escaped here;
callers pass plain text. Every form carries the CSRF token it is given.

A person has a live and a test wallet (persons.py). Every page that shows or moves money says which:
test pages carry a "Test mode" badge and banner, live pages a "Live" tag; the live wallet page shows
the test balance in its own section (only once there is test activity) with the way to the test wallet."""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape

from paywalls.pages import display_amount, layout, payment_forms, plain_amount

_EXTRA_STYLE = (
    "<style>label{display:block;margin:12px 0 6px;font-weight:600}"
    "input[type=email],input[type=text]{width:100%;box-sizing:border-box;padding:10px;font-size:1rem;"
    "border:1px solid #d0d5dd;border-radius:8px}"
    ".error{background:#fef3f2;border:1px solid #fda29b;border-radius:10px;padding:10px;color:#912018}"
    ".row{display:flex;justify-content:space-between;gap:8px;align-items:center;padding:10px 0;"
    "border-top:1px solid #eaecf0}.row form{width:auto}.row button{width:auto;padding:8px 12px;font-size:.9rem}"
    "button.secondary{background:#eef0f4;color:#1d2330}button.secondary:hover{background:#e0e3ea}"
    "table{width:100%;border-collapse:collapse;font-size:.85rem}td{padding:4px 0;border-top:1px solid #f0f1f4}"
    ".stack{display:grid;gap:10px;margin-top:14px}.tag{font-size:.75rem;background:#eef0f4;border-radius:6px;"
    "padding:2px 6px;margin-left:6px}"
    ".testmode{font-size:.8rem;font-weight:700;background:#b45309;color:#fff;border-radius:6px;padding:2px 8px;"
    "margin-left:8px;vertical-align:middle}.testbanner{background:#fff7e6;border:1px solid #f5c16c;"
    "border-radius:10px;padding:10px;font-size:.9rem}.section{border:1px solid #eaecf0;border-radius:10px;"
    "padding:10px;margin:14px 0}label.choice{font-weight:400;display:flex;gap:8px;align-items:center}"
    "label.choice input[type=text]{width:8em}</style>"
)

TEST_BADGE = '<span class="testmode">Test mode</span>'
LIVE_TAG = '<span class="tag">Live</span>'


def _env_tag(environment: str) -> str:
    return TEST_BADGE if environment == "test" else LIVE_TAG


def _test_banner(text: str) -> str:
    return f'<p class="testbanner" role="note"><strong>Test mode.</strong> {escape(text)}</p>'


def _page(title: str, body: str) -> str:
    return layout(title, _EXTRA_STYLE + body)


def _hidden(name: str, value: str) -> str:
    return f'<input type="hidden" name="{escape(name)}" value="{escape(value)}">'


def _error(message: str | None) -> str:
    return f'<p class="error" role="alert">{escape(message)}</p>' if message else ""


def _head(name: str, icon_url: str | None, subtitle: str = "") -> str:
    head = '<div class="head">'
    if icon_url and icon_url.startswith("https://"):
        head += f'<img src="{escape(icon_url)}" alt="" referrerpolicy="no-referrer">'
    head += f"<div><h1>{escape(name)}</h1>"
    if subtitle:
        head += f'<div class="muted">{escape(subtitle)}</div>'
    return head + "</div></div>"


def sign_in_page(*, action: str, csrf_token: str, next_path: str, error: str | None = None, email: str = "") -> str:
    body = (
        "<h1>Sign in to your wallet</h1>"
        '<p class="muted">One wallet pays for every app that uses it. We email you a one-time code.</p>'
        + _error(error)
        + f'<form method="post" action="{escape(action)}">'
        + _hidden("csrf", csrf_token)
        + _hidden("next", next_path)
        + '<label for="email">Email</label>'
        + f'<input id="email" type="email" name="email" value="{escape(email)}" required autocomplete="email">'
        + '<div class="stack"><button type="submit">Email me a code</button></div></form>'
    )
    return _page("Sign in", body)


def code_page(
    *, action: str, csrf_token: str, challenge: str, email: str, next_path: str, error: str | None = None
) -> str:
    body = (
        "<h1>Enter your code</h1>"
        f"<p>We sent a 6-digit code to <strong>{escape(email)}</strong>. It expires in 10 minutes.</p>"
        + _error(error)
        + f'<form method="post" action="{escape(action)}">'
        + _hidden("csrf", csrf_token)
        + _hidden("challenge", challenge)
        + _hidden("next", next_path)
        + '<label for="code">Code</label>'
        + '<input id="code" type="text" name="code" inputmode="numeric" pattern="[0-9 ]*" maxlength="8" '
        + 'autocomplete="one-time-code" required>'
        + '<div class="stack"><button type="submit">Sign in</button></div></form>'
    )
    return _page("Enter your code", body)


@dataclass(frozen=True)
class ConsentView:
    app_name: str
    description: str
    icon_url: str | None
    user: str
    environment: str
    email: str
    balance: int  # of the person's wallet of `environment`
    currency: str
    action_url: str
    csrf_token: str
    default_cap: int  # prefilled limit (deployment setting)
    current_cap: int | None = None
    already_connected: bool = False
    error: str | None = None


def consent_page(view: ConsentView) -> str:
    test = view.environment == "test"
    subtitle = "wants to use your test wallet" if test else "wants to use your wallet"
    body = _head(view.app_name, view.icon_url, subtitle)
    if test:
        body += _test_banner(
            "This app uses a test key: it can only charge your test balance (test money, never real money)."
        )
    if view.description:
        body += f'<p class="muted">{escape(view.description)}</p>'
    body += _error(view.error)
    which = "test balance" if test else "balance"
    body += (
        f"<p>Approve to let <strong>{escape(view.app_name)}</strong> charge your wallet for what you use as "
        f"<strong>{escape(view.user)}</strong> in this app. You can revoke it at any time from your wallet.</p>"
        f'<p class="balance">Signed in as {escape(view.email)} · {which} '
        f"<strong>{escape(display_amount(view.balance, view.currency))}</strong>{_env_tag(view.environment)}</p>"
    )
    if view.already_connected:
        body += "<p class=muted>This app is already connected to your wallet; approving again updates the limit.</p>"
    # A limit is the default (prefilled); "no limit" must be chosen explicitly.
    uncapped = view.already_connected and view.current_cap is None
    cap_value = plain_amount(view.default_cap if view.current_cap is None else view.current_cap)
    body += (
        f'<form method="post" action="{escape(view.action_url)}">'
        + _hidden("csrf", view.csrf_token)
        + _hidden("decision", "approve")
        + "<label>Spending limit for this app</label>"
        + '<label class="choice"><input type="radio" name="limit" value="cap"'
        + ("" if uncapped else " checked")
        + "> Up to "
        + f'<input id="cap" type="text" name="cap" value="{escape(cap_value)}" inputmode="decimal" '
        + 'aria-label="Spending limit"></label>'
        + '<label class="choice"><input type="radio" name="limit" value="none"'
        + (" checked" if uncapped else "")
        + "> No limit: only my balance limits what it can spend</label>"
        + '<div class="stack"><button type="submit">Approve</button></div></form>'
        + f'<form method="post" action="{escape(view.action_url)}" class="stack">'
        + _hidden("csrf", view.csrf_token)
        + _hidden("decision", "deny")
        + '<button type="submit" class="secondary">Deny</button></form>'
    )
    return _page(f"Authorize {view.app_name}", body)


@dataclass(frozen=True)
class ConnectionRow:
    id: str
    app_name: str
    user: str
    environment: str
    status: str
    spent: int
    cap: int | None
    revoke_url: str


@dataclass(frozen=True)
class EntryRow:
    created_at: str
    kind: str
    amount: int
    app_name: str


@dataclass(frozen=True)
class TestSection:
    """The live wallet page's view of the test wallet (shown only once there is test activity)."""

    balance: int
    url: str


@dataclass(frozen=True)
class WalletView:
    email: str
    environment: str  # which of the person's wallets this page shows
    balance: int
    available: int
    currency: str
    topup_url: str
    signout_url: str
    csrf_token: str
    connections: list[ConnectionRow] = field(default_factory=list)
    entries: list[EntryRow] = field(default_factory=list)
    notice: str | None = None
    test_section: TestSection | None = None  # live page only
    live_url: str | None = None  # test page only: back to the live wallet


def wallet_page(view: WalletView) -> str:
    money = display_amount
    test = view.environment == "test"
    title = "Your test wallet" if test else "Your wallet"
    body = f"<h1>{title}{_env_tag(view.environment)}</h1><p class=muted>{escape(view.email)}</p>"
    if test:
        body += _test_banner(
            "Test money, for trying apps with their test keys. Only test keys can spend it; "
            "it is never real money, never reaches live apps and is not your live balance."
        )
    if view.notice:
        body += f"<p>{escape(view.notice)}</p>"
    label = "Test balance" if test else "Balance"
    body += f'<p class="balance">{label}: <strong>{escape(money(view.balance, view.currency))}</strong>'
    if view.available != view.balance:
        body += f' <span class="muted">({escape(money(view.available, view.currency))} available)</span>'
    add = "Add test money" if test else "Add money"
    body += f'</p><p><a href="{escape(view.topup_url)}">{add}</a></p>'
    if view.test_section:
        body += (
            f'<div class="section"><strong>Test mode</strong>{TEST_BADGE}<div class="muted">Test balance '
            f"{escape(money(view.test_section.balance, view.currency))}: test money for apps in test mode, "
            f'separate from your balance.</div><a href="{escape(view.test_section.url)}">Open your test wallet</a>'
            "</div>"
        )
    if view.live_url:
        body += f'<p><a href="{escape(view.live_url)}">Back to your live wallet</a></p>'
    body += "<h2>Connected apps</h2>"
    if not view.connections:
        body += '<p class="muted">No app is connected yet.</p>'
    for row in view.connections:
        cap = "no limit" if row.cap is None else f"limit {money(row.cap, view.currency)}"
        tag = '<span class="tag">test</span>' if row.environment == "test" else ""
        line = (
            f"<div><strong>{escape(row.app_name)}</strong>{tag}<div class=muted>as {escape(row.user)} · spent "
            f"{escape(money(row.spent, view.currency))} · {escape(cap)}</div></div>"
        )
        if row.status == "active":
            line += (
                f'<form method="post" action="{escape(row.revoke_url)}">'
                + _hidden("csrf", view.csrf_token)
                + '<button type="submit" class="secondary">Revoke</button></form>'
            )
        else:
            line += '<span class="muted">revoked</span>'
        body += f'<div class="row">{line}</div>'
    if view.entries:
        body += "<h2>Recent activity</h2><table>"
        for entry in view.entries:
            what = entry.app_name or entry.kind
            body += (
                f"<tr><td>{escape(entry.created_at[:16].replace('T', ' '))}</td><td>{escape(what)}</td>"
                f'<td style="text-align:right">{escape(money(entry.amount, view.currency))}</td></tr>'
            )
        body += "</table>"
    body += (
        f'<form method="post" action="{escape(view.signout_url)}" class="stack">'
        + _hidden("csrf", view.csrf_token)
        + '<button type="submit" class="secondary">Sign out</button></form>'
    )
    return _page(title, body)


@dataclass(frozen=True)
class WalletTopupView:
    email: str
    environment: str
    balance: int
    currency: str
    amounts: list[int]
    method: str  # "stripe" | "simulate" | "unavailable"
    action_url: str
    csrf_token: str
    back_url: str
    unavailable_reason: str = ""


def topup_page(view: WalletTopupView) -> str:
    test = view.environment == "test"
    title = "Add test money" if test else "Add money to your wallet"
    body = f"<h1>{title}{_env_tag(view.environment)}</h1><p class=muted>{escape(view.email)}</p>"
    if test:
        body += _test_banner(
            "This adds test money to your test wallet, paid in Stripe test mode (test cards only). "
            "Only apps' test keys can spend it."
        )
    label = "Test balance" if test else "Balance"
    body += f'<p class="balance">{label}: <strong>{escape(display_amount(view.balance, view.currency))}</strong></p>'
    if view.method == "unavailable":
        body += f"<p>{escape(view.unavailable_reason or 'Card payments are not set up yet.')}</p>"
    else:
        key = "operator Stripe test key" if test else "operator Stripe live key"
        body += payment_forms(view.amounts, view.currency, view.method, view.action_url, view.csrf_token, key)
    body += f'<p><a href="{escape(view.back_url)}">Back to your wallet</a></p>'
    return _page(title, body)
