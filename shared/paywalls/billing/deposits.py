"""Money the app moves itself through the user API (SPEC §3, default mode): deposits from its own
payment rails and manual charges. Validation happens before anything is written."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from paywalls.billing import accounts, ledger
from paywalls.billing.identity import app_wallet_listing, idempotency_scope
from paywalls.billing.paywall import Conflict, InvalidRequest, Paywall
from paywalls.core.money import parse_amount
from paywalls.events import outbox

METADATA_MAX_KEYS = 20
METADATA_KEY_RE = re.compile(r"\A[A-Za-z0-9_.:-]{1,40}\Z")  # \Z: `$` would accept a trailing newline
METADATA_VALUE_MAX = 500
METADATA_MAX_CHARS = 4000


def parse_metadata(value: object) -> dict[str, str]:
    """A small flat object of strings (Stripe's rules, a little stricter): at most 20 keys of 1-40
    characters from A-Z a-z 0-9 _ . : -, string values of at most 500 characters, 4000 in total."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest("metadata must be a JSON object of string values", "metadata")
    if len(value) > METADATA_MAX_KEYS:
        raise InvalidRequest(f"metadata can have at most {METADATA_MAX_KEYS} keys", "metadata")
    total = 0
    for key, item in value.items():
        if not isinstance(key, str) or not METADATA_KEY_RE.fullmatch(key):
            raise InvalidRequest("metadata keys must be 1-40 characters from A-Z a-z 0-9 _ . : -", "metadata")
        if not isinstance(item, str):
            raise InvalidRequest(f"metadata.{key} must be a string (nested values are not allowed)", "metadata")
        if len(item) > METADATA_VALUE_MAX:
            raise InvalidRequest(f"metadata.{key} is longer than {METADATA_VALUE_MAX} characters", "metadata")
        total += len(key) + len(item)
    if total > METADATA_MAX_CHARS:
        raise InvalidRequest(f"metadata is larger than {METADATA_MAX_CHARS} characters", "metadata")
    return dict(value)


def _require_default_mode(paywall: Paywall, what: str) -> None:
    if paywall.mode != "default":
        raise Conflict(f"{what} is only available for default-mode paywalls; this paywall is in {paywall.mode} mode")


def deposit(
    paywall: Paywall,
    environment: str,
    user: str,
    amount: object,
    *,
    idempotency_key: str,
    metadata: object = None,
) -> ledger.Posting:
    """Credit the user's wallet; the same key never credits twice (kept forever: it is the app's
    payment reference)."""
    _require_default_mode(paywall, "the Deposit API")
    return _post(
        ledger.credit, "deposit", paywall, environment, user, amount, idempotency_key, metadata, keep_key_forever=True
    )


@dataclass(frozen=True)
class ChargeResult:
    posting: ledger.Posting | None  # None: the available balance could not pay; nothing was charged


def charge(
    paywall: Paywall,
    environment: str,
    user: str,
    amount: object,
    *,
    idempotency_key: str,
    metadata: object = None,
) -> ChargeResult:
    """Debit the user's wallet if the available balance covers it; never below zero."""
    _require_default_mode(paywall, "/v1/user/charge")
    try:
        posting = _post(
            ledger.charge, "charge", paywall, environment, user, amount, idempotency_key, metadata, depletes=True
        )
    except ledger.InsufficientFunds:
        return ChargeResult(None)
    return ChargeResult(posting)


def _post(
    post: Callable[..., ledger.Posting],
    kind: str,
    paywall: Paywall,
    environment: str,
    user: str,
    amount: object,
    idempotency_key: str,
    metadata: object,
    *,
    depletes: bool = False,
    **options: Any,
) -> ledger.Posting:
    """What a deposit and a manual charge share: validate everything before anything is written, then
    `post` (ledger.credit or ledger.charge) on the app user's wallet, keyed `{kind}:{idempotency_key}`,
    with the `paywall.balance.{kind}.created` event (`depletes`: see outbox.posting_events) in the same
    transaction. `options` go to `post`."""
    micros = parse_amount(amount)
    meta = parse_metadata(metadata)
    accounts.ensure_trial(paywall, environment, user)
    return post(
        accounts.wallet_id(paywall, environment, user),
        micros,
        idempotency_key=f"{kind}:{idempotency_key}",
        idempotency_scope=idempotency_scope(paywall.id, environment),
        listing=app_wallet_listing(paywall.id, environment, user),
        metadata=meta,
        also=outbox.posting_events(
            paywall,
            environment,
            user,
            f"paywall.balance.{kind}.created",
            lambda entry: {"idempotencyKey": idempotency_key, "metadata": meta},
            depletes=depletes,
        ),
        **options,
    )
