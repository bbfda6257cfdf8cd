"""Who pays for an app user: one answer for both modes, asked by every path that charges an app user,
shows what they can spend or sends them to top up.

- Default mode (`OwnWallet`): the app user's own wallet at this paywall. Trial credits are granted on
  first sight; the top-up link is the hosted top-up page; the app sees the balance and the entry.
- Shared mode (`PersonWallet`): the wallet of the person who authorized this app user, within the
  connection's spending cap; a charge credits the paywall's earnings. The app sees only its allowance
  (shared_mode.Allowance), never a figure of the person's wallet; the top-up link is the person's
  wallet page; not connected means the authorization link.

`payer_for(paywall, environment, user)` picks one; callers (the user API's balance, top-up link and
manual charge; the chat proxy's hold and paywall replies, for chat, Responses and embeddings) call the
same methods whatever the mode, so the mode is decided here and nowhere else. Operator corrections go
through `billing.adjustments.correct` for both kinds of wallet (an app user's, a person's)."""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

from paywalls.billing import accounts, deposits, ledger
from paywalls.billing.paywall import Paywall
from paywalls.chat.billing import Funding, Refused, blocking
from paywalls.core.money import format_micros
from paywalls.infra import links

if TYPE_CHECKING:
    from paywalls.wallets.shared_mode import Refusal


def _shared_mode() -> ModuleType:
    """Shared mode's modules (connections, persons, earnings...), imported on first use: the chat
    function of a deployment whose paywalls are all in default mode never loads them (part of its
    cold start, DESIGN.md "Cold start")."""
    from paywalls.wallets import shared_mode

    return shared_mode


@dataclass(frozen=True)
class Charged:
    """A manual charge's outcome: the posting, or the refusal to explain (nothing was charged)."""

    posting: ledger.Posting | None
    refusal: Refusal | None = None


class Payer(Protocol):
    paywall: Paywall
    environment: str
    user: str

    def balance(self) -> dict[str, Any]:
        """What the app may show of this user's ability to pay (the `/v1/user/balance` answer)."""
        ...

    def topup_url(self, base_url: str) -> str:
        """Where the user adds money."""
        ...

    def charge(self, amount: object, *, idempotency_key: str, metadata: object = None) -> Charged: ...

    def after_charge(self, charged: Charged) -> dict[str, Any]:
        """The balance fields of a charge's answer, after it (no read where the entry says it)."""
        ...

    def refusal_text(self, refusal: Refusal, base_url: str) -> str:
        """The paywall's words for a refusal, with the link that resolves it."""
        ...

    async def chat_funding(self) -> Funding | Refused | None:
        """Who a metered request's hold is placed on (chat.billing.reserve): None for the app user's
        own wallet (reserve's default, nothing read), a Funding, or Refused when nobody pays yet."""
        ...


def balance_fields(balance: int, currency: str) -> dict[str, Any]:
    return {"balance": str(balance), "balanceFormatted": format_micros(balance), "currency": currency}


@dataclass(frozen=True)
class OwnWallet:
    paywall: Paywall
    environment: str
    user: str

    def balance(self) -> dict[str, Any]:
        accounts.ensure_trial(self.paywall, self.environment, self.user)
        return self._wallet_fields()

    def topup_url(self, base_url: str) -> str:
        accounts.ensure_trial(self.paywall, self.environment, self.user)
        return self._topup_link(base_url)

    def charge(self, amount: object, *, idempotency_key: str, metadata: object = None) -> Charged:
        result = deposits.charge(
            self.paywall, self.environment, self.user, amount, idempotency_key=idempotency_key, metadata=metadata
        )
        return Charged(result.posting, None if result.posting else "topup")

    def after_charge(self, charged: Charged) -> dict[str, Any]:
        if charged.posting is None:
            return self._wallet_fields()  # the charge granted any trial already
        entry = charged.posting.entry
        return {**balance_fields(entry.balance_after, self.paywall.currency), "entry": entry.as_api()}

    def refusal_text(self, refusal: Refusal, base_url: str) -> str:
        return self.paywall.render("topup", self._topup_link(base_url))

    async def chat_funding(self) -> Funding | Refused | None:
        return None  # the app user's own wallet: no read, no thread hop

    def _wallet_fields(self) -> dict[str, Any]:
        wallet = ledger.get_wallet(accounts.wallet_id(self.paywall, self.environment, self.user))
        return balance_fields(wallet.balance, self.paywall.currency)

    def _topup_link(self, base_url: str) -> str:
        return links.topup_url(base_url, self.paywall.id, self.environment, self.user)


@dataclass(frozen=True)
class PersonWallet:
    paywall: Paywall
    environment: str
    user: str

    def balance(self) -> dict[str, Any]:
        return _shared_mode().allowance(self.paywall, self.environment, self.user).as_api(self.paywall.currency)

    def topup_url(self, base_url: str) -> str:
        # The person tops up their own wallet (after signing in), in the environment of this key.
        return _shared_mode().wallet_topup_url(base_url, self.environment)

    def charge(self, amount: object, *, idempotency_key: str, metadata: object = None) -> Charged:
        result = _shared_mode().charge(
            self.paywall, self.environment, self.user, amount, idempotency_key=idempotency_key, metadata=metadata
        )
        return Charged(result.posting, None if result.posting else (result.refusal or "topup"))

    def after_charge(self, charged: Charged) -> dict[str, Any]:
        # The app's allowance after the attempt; no entry (its balance_after is the person's).
        return self.balance()

    def refusal_text(self, refusal: Refusal, base_url: str) -> str:
        return _shared_mode().refusal_text(self.paywall, refusal, base_url, self.environment, self.user)

    async def chat_funding(self) -> Funding | Refused | None:
        # The person who authorized this app user pays, within their cap (SPEC §6); from the cached
        # connection pointer (no read per request, and then no worker thread either).
        shared_mode = _shared_mode()
        found = shared_mode.cached_funding(self.paywall, self.environment, self.user)
        if found is None:
            found = await blocking(shared_mode.funding, self.paywall, self.environment, self.user)
        return found if found is not None else Refused("authorize")


def payer_for(paywall: Paywall, environment: str, user: str) -> Payer:
    if paywall.mode == "shared":
        return PersonWallet(paywall, environment, user)
    return OwnWallet(paywall, environment, user)
