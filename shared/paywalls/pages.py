"""HTML of our hosted pages (top-up, results). Every value is escaped here; callers pass plain text.

Small, dependency-free, readable without JavaScript. Headers that go with every page (CSP, no
framing, no referrer so the link's token never leaks to an icon host) are in `SECURITY_HEADERS`."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from html import escape

from paywalls.currency import minor_unit_exponent
from paywalls.money import MICROS_PER_UNIT

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; "
        "form-action 'self' https://checkout.stripe.com; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}

_SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£"}

_STYLE = """
body{margin:0;font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:#f5f6f8;color:#1d2330}
main{max-width:420px;margin:48px auto;padding:28px;background:#fff;border-radius:14px;
box-shadow:0 2px 14px rgba(20,30,60,.08)}
h1{font-size:1.35rem;margin:0 0 6px}p{line-height:1.45;margin:8px 0}.muted{color:#667085;font-size:.9rem}
.head{display:flex;gap:12px;align-items:center;margin-bottom:14px}.head img{width:44px;height:44px;border-radius:10px}
.balance{font-size:1.05rem;margin:14px 0 18px}.amounts{display:grid;gap:10px}
form{margin:0}button{width:100%;padding:12px;font-size:1rem;border:0;border-radius:10px;background:#4f46e5;
color:#fff;cursor:pointer}button:hover{background:#4338ca}
.dev{background:#fff7e6;border:1px solid #f5c16c;border-radius:10px;padding:10px;font-size:.9rem}
.dev button{background:#b45309}a{color:#4f46e5}
"""


def display_amount(micros: int, currency: str) -> str:
    """12_500_000 usd -> "$12.50"; shows more decimals only when the amount has them (balances)."""
    places = minor_unit_exponent(currency)
    value = Decimal(micros) / MICROS_PER_UNIT
    text = f"{value:.6f}".rstrip("0")
    whole, _, frac = text.partition(".")
    frac = frac.ljust(places, "0")
    number = f"{whole}.{frac}" if frac else whole
    symbol = _SYMBOLS.get(currency.lower())
    if symbol:
        return f"-{symbol}{number[1:]}" if number.startswith("-") else f"{symbol}{number}"
    return f"{number} {currency.upper()}"


def layout(title: str, body_html: str) -> str:
    """`body_html` must already be escaped (it is built by the functions below)."""
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta name=viewport content="width=device-width,initial-scale=1">'
        '<meta name=robots content="noindex">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main>{body_html}</main></body></html>"
    )


def message_page(title: str, message: str, link: tuple[str, str] | None = None) -> str:
    body = f"<h1>{escape(title)}</h1><p>{escape(message)}</p>"
    if link:
        body += f'<p><a href="{escape(link[1])}">{escape(link[0])}</a></p>'
    return layout(title, body)


@dataclass(frozen=True)
class TopupView:
    app_name: str
    description: str
    icon_url: str | None
    user: str
    balance: int
    currency: str
    amounts: list[int]
    method: str  # "stripe" | "simulate" | "unavailable"
    action_url: str
    csrf_token: str


def topup_page(view: TopupView) -> str:
    head = '<div class="head">'
    if view.icon_url and view.icon_url.startswith("https://"):
        head += f'<img src="{escape(view.icon_url)}" alt="" referrerpolicy="no-referrer">'
    head += f"<div><h1>Top up {escape(view.app_name)}</h1>"
    head += f'<div class="muted">Account: {escape(view.user)}</div></div></div>'
    body = head
    if view.description:
        body += f'<p class="muted">{escape(view.description)}</p>'
    body += f'<p class="balance">Balance: <strong>{escape(display_amount(view.balance, view.currency))}</strong></p>'
    if view.method == "unavailable":
        body += "<p>Card payments are not set up for this app yet. Please contact the app's support.</p>"
        return layout(f"Top up {view.app_name}", body)
    body += payment_forms(view.amounts, view.currency, view.method, view.action_url, view.csrf_token, "Stripe key")
    return layout(f"Top up {view.app_name}", body)


def payment_forms(amounts: list[int], currency: str, method: str, action_url: str, csrf_token: str, key: str) -> str:
    """One form a preset (both top-up pages); `method` "simulate" says so (`key`: whose Stripe key is missing)."""
    verb = "Simulate payment of" if method == "simulate" else "Add"
    buttons = "".join(
        f'<form method="post" action="{escape(action_url)}">'
        f'<input type="hidden" name="csrf" value="{escape(csrf_token)}">'
        f'<input type="hidden" name="amount" value="{escape(plain_amount(micros))}">'
        f"<button type=submit>{escape(verb)} {escape(display_amount(micros, currency))}</button></form>"
        for micros in amounts
    )
    if method == "simulate":
        return (
            f'<div class="dev"><p><strong>Local development.</strong> No {key} is configured, so payments '
            "are simulated: the button sends a signed Stripe-shaped webhook to this stack.</p>"
            f'<div class="amounts">{buttons}</div></div>'
        )
    return f'<div class="amounts">{buttons}</div><p class="muted">Secure payment by Stripe.</p>'


def plain_amount(micros: int) -> str:
    """An amount as a form value: "12.5", not "12.500000"."""
    whole, frac = divmod(micros, MICROS_PER_UNIT)
    return f"{whole}.{frac:06d}".rstrip("0").rstrip(".")
