"""An app user's wallet in default mode: where it lives, and the trial credits a new user gets once."""

from __future__ import annotations

from paywalls.billing import ledger
from paywalls.billing.identity import app_wallet_id, app_wallet_listing
from paywalls.billing.paywall import Paywall
from paywalls.events import outbox


def wallet_id(paywall: Paywall, environment: str, user: str) -> str:
    return app_wallet_id(paywall.id, environment, user)


def ensure_trial(paywall: Paywall, environment: str, user: str) -> None:
    """Grant the paywall's trial credits to a user the first time we see them. Idempotent (one
    `trial` key per wallet, kept forever), so concurrent first requests grant it once."""
    if paywall.trial_credits <= 0 or paywall.mode != "default":
        return
    wid = wallet_id(paywall, environment, user)
    if ledger.get_wallet(wid).exists:
        return
    ledger.credit(
        wid,
        paywall.trial_credits,
        idempotency_key="trial",
        entry_type="trial",
        keep_key_forever=True,
        listing=app_wallet_listing(paywall.id, environment, user),
        also=outbox.posting_events(paywall, environment, user, "paywall.balance.trial.granted"),
    )
