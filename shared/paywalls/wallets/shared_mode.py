"""Shared-mode rules for the app-facing APIs (SPEC §6): who pays for an app user, why a request is
refused, the authorization link, manual charges, and the connect/disconnect answers.

An app user of a shared-mode paywall pays from the wallet of the person who authorized it, through
the connection (connections.py): every hold and charge names the connection as its ledger Budget (the
spending cap) and credits the paywall's earnings in the same transaction (earnings.credit_items).
A paywall only ever reaches connections in its own partition (paywall id from its API key), so it
cannot charge another paywall's users, nor a person who has not authorized it or has revoked it.

Refusals are not errors: the app gets its paywall message (HTTP 200) with a link and an action:
- `authorize`: not connected (never, revoked, or replaced) -> the authorization link;
- `topup`: the wallet's available balance does not cover it -> the person's wallet top-up page;
- `cap`: the spending cap the person set for this app is reached -> the wallet page, where the cap
  can be raised or removed. Documented value of X-Paywall-Action beyond `topup|authorize`.
Links carry the environment of the key that produced them: a test key's users land on the person's
test wallet pages (`/wallet/test/...`), a live key's on the live ones.

What an app sees of its user (Allowance): never the person's wallet balance, which would reveal their
top-ups and their spending in other apps. `balance` is the app's own allowance: the cap remaining
(cap - spent - held) when the person set a cap, else 0 (an uncapped connection has no figure that is
not the wallet's); `canCharge` says whether a charge can currently succeed at all (connected, cap
not exhausted, wallet not empty): one bit, which any refused request reveals anyway."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

from paywalls.billing import earnings, ledger
from paywalls.billing import paywall as paywalls
from paywalls.billing.deposits import parse_metadata
from paywalls.billing.identity import idempotency_scope, open_user_link
from paywalls.billing.paywall import Conflict, Paywall
from paywalls.chat.billing import Funding
from paywalls.core.money import format_micros, parse_amount
from paywalls.events import outbox
from paywalls.infra import links
from paywalls.wallets import connections, persons

AUTHORIZE_LINK_TTL_S = 3600
CAP_TEMPLATE = (
    "You have reached the spending limit you set for {{name}}. Raise or remove it in your wallet to continue: {{url}}"
)

Refusal = Literal["authorize", "topup", "cap"]


# ---- links --------------------------------------------------------------------------------------


def authorize_url(base_url: str, paywall_id: str, environment: str, user: str, *, now: float | None = None) -> str:
    expires_at = int(time.time() if now is None else now) + AUTHORIZE_LINK_TTL_S
    token = links.sign(links.LinkClaims("authorize", paywall_id, environment, user, expires_at))
    return f"{base_url.rstrip('/')}/wallet/authorize/{token}"


def wallet_url(base_url: str, environment: str) -> str:
    return base_url.rstrip("/") + links.wallet_path(environment, "home")


def wallet_topup_url(base_url: str, environment: str) -> str:
    return base_url.rstrip("/") + links.wallet_path(environment, "topup")


def refusal_text(paywall: Paywall, refusal: Refusal, base_url: str, environment: str, user: str) -> str:
    if refusal == "authorize":
        return paywall.render("authorize", authorize_url(base_url, paywall.id, environment, user))
    if refusal == "topup":
        return paywall.render("topup", wallet_topup_url(base_url, environment))
    return CAP_TEMPLATE.replace("{{url}}", wallet_url(base_url, environment)).replace("{{name}}", paywall.name)


@dataclass(frozen=True)
class AuthorizationRequest:
    """A verified authorization link: which app user of which paywall asks to be connected."""

    token: str
    paywall: Paywall
    environment: str
    user: str
    expires_at: int | None


def open_authorization(token: str) -> AuthorizationRequest:
    """Raises links.InvalidLink (forged, altered, expired, other purpose) or paywall.NotFound."""
    claims, paywall = open_user_link(token, "authorize", "shared", "this app does not use shared wallets")
    return AuthorizationRequest(token, paywall, claims.environment, claims.user, claims.expires_at)


# ---- who pays -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Payer:
    """The connection an app user pays through, and the person's wallet as last read."""

    paywall: Paywall
    environment: str
    user: str
    connection: connections.Connection
    wallet: ledger.Wallet

    @property
    def wallet_id(self) -> str:
        return self.connection.wallet_id

    @property
    def budget(self) -> ledger.Budget:
        return self.connection.budget

    @property
    def spendable(self) -> int:
        return self.connection.spendable(self.wallet.available)

    def also(self) -> ledger.Also:
        return earnings.credit_items(self.paywall, self.environment, self.user, self.connection.id)

    def metadata(self) -> dict[str, str]:
        """Recorded on the person's wallet entries so the wallet page can say which app charged."""
        return {"paywall_id": self.paywall.id, "environment": self.environment, "connection_id": self.connection.id}


def payer(paywall: Paywall, environment: str, user: str) -> Payer | None:
    """The app user's payer, or None when not connected (the app must ask for authorization)."""
    if paywall.mode != "shared":
        raise Conflict("not a shared-mode paywall")
    connection = connections.active(paywall.id, environment, user)
    if connection is None:
        return None
    return Payer(paywall, environment, user, connection, ledger.get_wallet(connection.wallet_id))


def refusal_for(paywall: Paywall, environment: str, user: str) -> Refusal:
    """Why this app user could not pay, on fresh state: not connected, or whichever of the cap and
    the wallet's available balance is the smaller limit."""
    current = payer(paywall, environment, user)
    if current is None:
        return "authorize"
    return "cap" if current.connection.remaining < current.wallet.available else "topup"


def funding(paywall: Paywall, environment: str, user: str, *, fresh: bool = False) -> Funding | None:
    """How a chat completion of this app user is paid (chat_billing.reserve), or None when not
    connected. From the cached connection pointer: no read per request (connections.pointer)."""
    found = connections.pointer(paywall.id, environment, user, fresh=fresh)
    return _funding_through(paywall, environment, user, found) if found is not None else None


def cached_funding(paywall: Paywall, environment: str, user: str) -> Funding | None:
    """`funding` from this instance's cached pointer only (None: not cached, ask `funding`): no read,
    so the chat path asks it on the event loop."""
    found = connections.cached_pointer(paywall.id, environment, user)
    return _funding_through(paywall, environment, user, found) if found is not None else None


def _funding_through(paywall: Paywall, environment: str, user: str, found: connections.Pointer) -> Funding:
    return Funding(
        found.wallet_id,
        found.budget,
        earnings.credit_items(paywall, environment, user, found.connection_id),
        {"paywall_id": paywall.id, "environment": environment, "connection_id": found.connection_id},
        refresh=lambda: funding(paywall, environment, user, fresh=True),
    )


def scoped_key(paywall: Paywall, environment: str, key: str) -> str:
    """Idempotency keys of person wallets are namespaced per app: two apps sending the same key can
    never replay or block each other's charges (within an app, the ledger's idempotency scope makes
    the key unique across users)."""
    return f"{paywall.id}:{environment}:{key}"


# ---- manual charges (/v1/user/charge) ------------------------------------------------------------


@dataclass(frozen=True)
class ChargeResult:
    posting: ledger.Posting | None
    refusal: Refusal | None = None


def charge(
    paywall: Paywall,
    environment: str,
    user: str,
    amount: object,
    *,
    idempotency_key: str,
    metadata: object = None,
) -> ChargeResult:
    micros = parse_amount(amount)
    meta = parse_metadata(metadata)
    current = payer(paywall, environment, user)
    if current is None:
        return ChargeResult(None, "authorize")
    try:
        posting = ledger.charge(
            current.wallet_id,
            micros,
            idempotency_key=f"charge:{scoped_key(paywall, environment, idempotency_key)}",
            idempotency_scope=idempotency_scope(paywall.id, environment),
            metadata={**meta, **current.metadata()},
            budget=current.budget,
            also=outbox.combine(
                current.also(),
                outbox.posting_events(
                    paywall,
                    environment,
                    user,
                    "paywall.balance.charge.created",
                    lambda entry: {"idempotencyKey": idempotency_key, "metadata": meta},
                ),
            ),
        )
    except ledger.InsufficientFunds:
        return ChargeResult(None, refusal_for(paywall, environment, user))
    except ledger.BudgetExceeded:
        # The cap, or a revocation that landed between our read and the charge.
        return ChargeResult(None, refusal_for(paywall, environment, user))
    return ChargeResult(posting)


# ---- connect / disconnect / balance (app API answers) --------------------------------------------


@dataclass(frozen=True)
class Allowance:
    """What an app may know about its user's ability to pay (module doc): its own allowance, never a
    figure derived from the person's wallet."""

    connected: bool
    cap: int | None = None
    cap_remaining: int | None = None  # None: uncapped or not connected
    can_charge: bool = False

    def as_api(self, currency: str) -> dict[str, Any]:
        figure = self.cap_remaining or 0
        return {
            # Paywalls.ai-compatible keys: here the allowance (module doc), not money in a wallet.
            "balance": str(figure),
            "balanceFormatted": format_micros(figure),
            "currency": currency,
            "connected": self.connected,
            "spendingCap": None if self.cap is None else str(self.cap),
            "capRemaining": None if self.cap_remaining is None else str(self.cap_remaining),
            "capRemainingFormatted": None if self.cap_remaining is None else format_micros(self.cap_remaining),
            "canCharge": self.can_charge,
        }


def allowance_of(current: Payer | None) -> Allowance:
    if current is None or not current.connection.active:
        return Allowance(connected=False)
    connection = current.connection
    return Allowance(
        connected=True,
        cap=connection.cap,
        cap_remaining=connection.cap_remaining,
        can_charge=current.spendable > 0,
    )


def allowance(paywall: Paywall, environment: str, user: str) -> Allowance:
    return allowance_of(payer(paywall, environment, user))


def connect_status(paywall: Paywall, environment: str, user: str, base_url: str) -> dict[str, Any]:
    current = payer(paywall, environment, user)
    if current is None:
        url = authorize_url(base_url, paywall.id, environment, user)
        outbox.emit(
            paywall, "paywall.authorization.requested", {"externalUserId": user, "environment": environment, "url": url}
        )
        return {"connected": False, "url": url, "message": paywall.render("authorize", url)}
    fields = allowance_of(current).as_api(paywall.currency)
    return {
        "connected": True,
        "connectedUser": {
            **current.connection.as_api(),  # the cap and what this app spent: the app's own figures
            **{k: fields[k] for k in ("balance", "balanceFormatted", "capRemaining", "capRemainingFormatted")},
            "canCharge": fields["canCharge"],
        },
        "message": f"{user} is connected to a wallet and can use {paywall.name}",
    }


def disconnect(paywall: Paywall, environment: str, user: str) -> dict[str, Any]:
    if paywall.mode != "shared":
        raise Conflict("not a shared-mode paywall")
    connection = connections.active(paywall.id, environment, user)
    if connections.disconnect(paywall.id, environment, user):
        data = {
            "externalUserId": user,
            "environment": environment,
            "connectionId": connection.id if connection else None,
        }
        outbox.emit(paywall, "paywall.authorization.revoked", data)
        return {"success": True, "message": f"{user} was disconnected from their wallet"}
    return {"success": False, "message": f"{user} is not connected"}


# ---- the person's side (wallet page, operator) ---------------------------------------------------


def person_summary(person: persons.Person) -> dict[str, Any]:
    """A person's wallets (one per environment, never added up) and the apps they authorized
    (operator view)."""
    wallets: dict[str, Any] = {}
    for environment in paywalls.ENVIRONMENTS:
        wallet = ledger.get_wallet(person.wallet_for(environment))
        wallets[environment] = {
            "wallet_id": wallet.wallet_id,
            "balance": str(wallet.balance),
            "balanceFormatted": format_micros(wallet.balance),
            "available": str(wallet.available),
        }
    return {
        "id": person.id,
        "object": "person",
        "email": person.email,
        "wallets": wallets,
        "created_at": person.created_at,
        "connections": [
            {
                "id": c.id,
                "paywall_id": c.paywall_id,
                "environment": c.environment,
                "user": c.user,
                "status": c.status,
                "cap": None if c.cap is None else str(c.cap),
                "spent": str(c.spent),
                "created_at": c.created_at,
                "revoked_at": c.revoked_at,
            }
            for c in connections.list_for_person(person.id)
        ],
    }
