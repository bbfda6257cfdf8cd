"""What the shared-mode wallet pages show (SPEC §6): sign-in, code, consent, the wallet, one connected
app, the revoke confirmation, top-up. Plain data (views) for the templates in `paywalls/templates/`,
rendered by `pages.render` with autoescape: callers pass plain text. Every form carries the CSRF token
it is given.

A person has a live and a test wallet (persons.py). Every page that shows or moves money says which:
test pages carry a "Test mode" badge and banner, live pages a "Live" tag; the live wallet page shows
the test balance in its own section (only once there is test activity) with the way to the test wallet."""

from __future__ import annotations

from dataclasses import dataclass, field

from paywalls.http import pages
from paywalls.wallets.otp import CODE_TTL_S

# How the wallet's activity names an entry that no app made (an app's charges show the app's name).
ENTRY_LABELS = {
    "deposit": "Added money",
    "adjustment": "Adjustment by the operator",
    "refund": "Top-up refunded",
    "charge": "Charge",
    "trial": "Trial credit",
    "withdrawal": "Withdrawal",
}


@dataclass(frozen=True)
class AppAsking:
    """The app whose authorization link a sign-in started from: the sign-in page names it."""

    name: str
    icon_url: str | None
    environment: str


def sign_in_page(
    *,
    action: str,
    csrf_token: str,
    next_path: str,
    error: str | None = None,
    email: str = "",
    asking: AppAsking | None = None,
) -> str:
    return pages.render(
        "signin.html",
        action=action,
        csrf_token=csrf_token,
        next_path=next_path,
        error=error,
        email=email,
        asking=asking,
    )


def code_page(
    *,
    action: str,
    csrf_token: str,
    challenge: str,
    email: str,
    next_path: str,
    resend_action: str,
    resend_csrf_token: str,
    other_email_url: str,
    error: str | None = None,
    asking: AppAsking | None = None,
) -> str:
    """The code form; with `email` known, also "Send a new code" (a new challenge for that address)."""
    return pages.render(
        "code.html",
        action=action,
        csrf_token=csrf_token,
        challenge=challenge,
        email=email,
        next_path=next_path,
        resend_action=resend_action,
        resend_csrf_token=resend_csrf_token,
        other_email_url=other_email_url,
        error=error,
        asking=asking,
        ttl_minutes=CODE_TTL_S // 60,
    )


def _cap_value(entered_cap: str | None, cap: int | None, default_cap: int) -> str:
    """The amount a spending-limit form shows (consent and connection pages alike): what the person
    typed (re-shown with its error), else the current limit; uncapped now, the field still offers a
    starting figure, the deployment's default."""
    if entered_cap is not None:
        return entered_cap
    return pages.plain_amount(default_cap if cap is None else cap)


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
    topup_url: str  # "Add money", returning to this page afterwards
    default_cap: int  # prefilled limit (deployment setting)
    current_cap: int | None = None
    already_connected: bool = False
    error: str | None = None
    entered_cap: str | None = None  # what the person typed, re-shown with the error

    @property
    def uncapped(self) -> bool:
        """The "no limit" choice is checked only when it is the current state, never by default."""
        return self.already_connected and self.current_cap is None and self.entered_cap is None

    @property
    def cap_value(self) -> str:
        return _cap_value(self.entered_cap, self.current_cap, self.default_cap)


def consent_page(view: ConsentView) -> str:
    return pages.render("consent.html", view=view)


@dataclass(frozen=True)
class ConnectionRow:
    id: str
    app_name: str
    user: str
    environment: str
    status: str
    spent: int
    cap: int | None
    cap_remaining: int | None
    manage_url: str
    revoke_url: str

    @property
    def limit_reached(self) -> bool:
        return self.status == "active" and self.cap_remaining is not None and self.cap_remaining <= 0


@dataclass(frozen=True)
class EntryRow:
    created_at: str
    kind: str
    amount: int
    app_name: str

    @property
    def label(self) -> str:
        return self.app_name or ENTRY_LABELS.get(self.kind, self.kind)


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
    return pages.render("wallet_home.html", view=view)


@dataclass(frozen=True)
class ConnectionView:
    """One connected app on the person's wallet: its figures, the limit form, the way to revoke."""

    app_name: str
    icon_url: str | None
    user: str
    environment: str
    active: bool
    created_at: str
    revoked_at: str | None
    spent: int
    cap: int | None
    cap_remaining: int | None
    currency: str
    action_url: str  # the limit form posts here
    revoke_url: str  # the confirmation page
    wallet_url: str
    csrf_token: str
    default_cap: int  # the amount offered when the connection has no limit now
    notice: str | None = None
    error: str | None = None
    entered_cap: str | None = None
    entered_uncapped: bool = False

    @property
    def limit_reached(self) -> bool:
        return self.active and self.cap_remaining is not None and self.cap_remaining <= 0

    @property
    def uncapped(self) -> bool:
        if self.entered_cap is not None:
            return self.entered_uncapped
        return self.cap is None

    @property
    def cap_value(self) -> str:
        return _cap_value(self.entered_cap, self.cap, self.default_cap)


def connection_page(view: ConnectionView) -> str:
    return pages.render("connection.html", view=view)


@dataclass(frozen=True)
class RevokeView:
    app_name: str
    user: str
    environment: str
    spent: int
    currency: str
    action_url: str
    cancel_url: str
    csrf_token: str


def revoke_page(view: RevokeView) -> str:
    return pages.render("revoke_confirm.html", view=view)


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
    back_label: str = "Back to your wallet"
    unavailable_reason: str = ""
    returning_to: str | None = None  # the app whose approval the person returns to after paying
    extra_fields: list[tuple[str, str]] = field(default_factory=list)  # hidden fields of each form


def topup_page(view: WalletTopupView) -> str:
    return pages.render("wallet_topup.html", view=view)
