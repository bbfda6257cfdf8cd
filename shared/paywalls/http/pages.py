"""Rendering of our hosted pages (top-up, sign-in, consent, wallet, results) from the Jinja2 templates
in `paywalls/templates/`: one base layout (`base.html`), partials and macros (`_*.html`), one template
per page. Autoescape is on for every template, so a value is escaped where it is written: callers pass
plain text, never markup. The templates ship inside the package (the SharedLayer copies the whole
`paywalls` directory), loaded relative to this file.

Small, readable without JavaScript (no script runs: the CSP has no script-src). Headers that go with
every page (CSP, no framing, no referrer so a link's token never leaks to an icon host) are in
`SECURITY_HEADERS`. Money is shown with `money.format_for_people`, times in UTC, saying so."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from paywalls.core.money import MICROS_PER_UNIT, format_for_people

TEMPLATES = Path(__file__).resolve().parent / "templates"

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


def plain_amount(micros: int) -> str:
    """An amount as a form value: "12.5", not "12.500000"."""
    whole, frac = divmod(micros, MICROS_PER_UNIT)
    return f"{whole}.{frac:06d}".rstrip("0").rstrip(".")


def when_for_people(timestamp: str | None) -> str:
    """An ISO-8601 UTC timestamp as people read it, naming its timezone: "3 Mar 2026, 14:05 UTC".
    Without JavaScript (none runs on our pages) the browser's own timezone is unknown, so the time
    says which one it is in rather than passing for local time. Text that is not a timestamp is
    shown as it is."""
    if not timestamp:
        return ""
    try:
        moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return timestamp
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return f"{moment.day} {moment:%b %Y, %H:%M} UTC"


def https_only(url: str | None) -> str | None:
    """Icons are shown only from https URLs (the CSP allows no other image source but data:)."""
    return url if url and url.startswith("https://") else None


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,  # every template is HTML
        undefined=jinja2.StrictUndefined,  # a missing value is a bug, never an empty string on the page
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,  # templates never change while a Lambda instance lives: no stat per render
    )
    env.filters["money"] = format_for_people
    env.filters["form_amount"] = plain_amount
    env.filters["when"] = when_for_people
    env.filters["https_only"] = https_only
    return env


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)


def message_page(title: str, message: str, link: tuple[str, str] | None = None) -> str:
    """A page that says one thing, with at most one way on (label, url)."""
    return render("message.html", title=title, message=message, link=link)


@dataclass(frozen=True)
class TopupView:
    """The default-mode top-up page of one app user (SPEC §5)."""

    app_name: str
    description: str
    icon_url: str | None
    user: str
    environment: str
    balance: int
    currency: str
    amounts: list[int]
    method: str  # "stripe" | "simulate" | "unavailable"
    action_url: str
    csrf_token: str


def topup_page(view: TopupView) -> str:
    return render("pay_topup.html", view=view)
