"""Verified Stripe events -> ledger postings (SPEC §5, §6). The caller has checked the signature; this
module decides what an event means for the wallets of the Stripe account that sent it: a default-mode
paywall's app wallets (`handle`), or, through the same `process`, the person wallets topped up with
the operator's account (wallet_topup: only which wallet a Checkout Session pays into differs, given
as `resolve_wallet`).

- A paid Checkout Session credits its wallet once, whichever of `checkout.session.completed` (paid)
  and `checkout.session.async_payment_succeeded` arrives first, however often: the ledger key is the
  session id, kept forever.
- Refunds (per refund id) and lost disputes (`charge.dispute.closed`, per dispute id) debit the
  wallet with a `refund` entry, even below zero. Only a `succeeded` refund is debited: a `pending` one
  may still fail (and then the money never left), so it waits for the `refund.updated` event that
  reports its success (or a later `charge.refunded` that lists it as succeeded); whichever comes
  first debits it, the others are duplicates of the same ledger key. The wallet is found through the
  PaymentIntent (mapping item `STRIPEPI#{pi}`/`MAP`, written when the session is credited). A refund
  that arrives before its payment is parked (`STRIPEPI#{pi}`/`PENDING#...`) and applied when the
  credit lands, so out-of-order delivery still nets right.
  The mapping and parked items name the account's owner (a paywall id, or `operator`), so one
  account's events never debit another's wallets. An account may add its own items to a debit's
  transaction (`Account.debit_also`: the operator records the loss a refund of a spent wallet
  top-up leaves and takes back the pending earnings it paid for, losses.py).
- Anything that does not belong to this paywall, this environment or this currency is ignored (2xx:
  Stripe must not retry it) and logged."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

from paywalls.billing import ledger
from paywalls.billing.identity import USER_ID_RE, app_wallet_id, app_wallet_listing
from paywalls.billing.paywall import Paywall
from paywalls.core.currency import UnsupportedAmount, minor_to_micros
from paywalls.events import outbox
from paywalls.infra import store

log = logging.getLogger(__name__)

PARKED_TTL_S = 30 * 24 * 3600  # Stripe retries for 3 days; a payment that never comes is not ours
# A pending refund is not debited yet: it can still fail, and a debit is never reversed here.
DEBITED_REFUND_STATUSES = ("succeeded",)
# A refund's own events (data.object is the refund): Stripe sends them when its status changes.
REFUND_EVENTS = ("refund.updated", "charge.refund.updated")
CREDIT_EVENTS = ("checkout.session.completed", "checkout.session.async_payment_succeeded")

Result = Literal["credited", "debited", "duplicate", "ignored", "pending"]


@dataclass(frozen=True)
class Outcome:
    result: Result
    reason: str = ""

    def as_api(self) -> dict[str, Any]:
        body: dict[str, Any] = {"received": True, "result": self.result}
        if self.reason:
            body["reason"] = self.reason
        return body


def _ignored(reason: str, **context: Any) -> Outcome:
    log.warning("stripe event ignored: %s", reason, extra=context)
    return Outcome("ignored", reason)


def environment_of(livemode: bool) -> str:
    return "live" if livemode else "test"


def _id_of(value: object) -> str | None:
    """Stripe fields that are an id, or the object when expanded."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


RefundLister = Callable[[str], list[dict[str, Any]]]


@dataclass(frozen=True)
class Debit:
    """A refund or lost dispute to debit from the wallet its payment credited."""

    kind: str  # "refund" | "dispute"
    source_id: str
    amount: int  # micro-units
    metadata: dict[str, str]

    @property
    def idempotency_key(self) -> str:
        return f"stripe:{self.kind}:{self.source_id}"


@dataclass(frozen=True)
class Credited:
    """Which payment a debit takes back: the wallet it credited, in which environment, by which
    Checkout Session (its ledger key is `stripe:{checkout_session}`)."""

    wallet_id: str
    environment: str
    checkout_session: str | None


# (the payment, the debit) -> extra items for the debit's ledger transaction, or None.
DebitAlso = Callable[[Credited, Debit], "ledger.Also | None"]


@dataclass(frozen=True)
class Account:
    """The Stripe account whose endpoint received the event: `owner_id` is what its payments are
    mapped and parked under (a paywall id, or `operator` for wallet top-ups), `currency` the one its
    wallets are kept in, `debit_also` what else a debit of its wallets writes."""

    owner_id: str
    currency: str
    debit_also: DebitAlso | None = None
    # A default-mode paywall's account: its webhook outbox gets the top-up, refund and dispute events.
    paywall: Paywall | None = None


@dataclass(frozen=True)
class Payer:
    """The wallet a paid Checkout Session credits."""

    wallet_id: str
    listing: ledger.Listing | None = None


# (environment, checkout session, log context) -> the wallet it pays into, or why it credits nothing.
WalletResolver = Callable[[str, dict[str, Any], dict[str, Any]], "Payer | Outcome"]


def handle(paywall: Paywall, mode: str, event: dict[str, Any], *, list_refunds: RefundLister | None = None) -> Outcome:
    """A default-mode paywall's event: `mode` is the Stripe mode whose webhook secret verified it;
    `list_refunds(charge_id)` fetches a charge's refunds from Stripe when the event does not carry them
    (recent API versions)."""
    account = Account(paywall.id, paywall.currency, paywall=paywall)
    return process(account, mode, event, resolve_wallet=partial(_app_wallet, paywall), list_refunds=list_refunds)


def process(
    account: Account,
    mode: str,
    event: dict[str, Any],
    *,
    resolve_wallet: WalletResolver,
    list_refunds: RefundLister | None = None,
) -> Outcome:
    """Any account's event: credits go to the wallet `resolve_wallet` names (and the payment intent is
    mapped to it); refunds and lost disputes debit whichever wallet that payment credited."""
    event_type = event.get("type")
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict):
        return _ignored("malformed event", event_id=event.get("id"))
    livemode = bool(event.get("livemode"))
    if environment_of(livemode) != mode:
        return _ignored("livemode does not match the signing endpoint's mode", event_id=event.get("id"))
    environment = mode
    context = {"event_id": event.get("id"), "event_type": event_type, "paywall_id": account.owner_id}
    if event_type in CREDIT_EVENTS:
        if event_type == "checkout.session.completed" and obj.get("payment_status") != "paid":
            return Outcome("ignored", "not paid yet")
        return _credit_session(account, environment, obj, resolve_wallet, context)
    if event_type == "checkout.session.async_payment_failed":
        log.info("async checkout payment failed; nothing to credit", extra=context)
        return Outcome("ignored", "payment failed")
    if event_type == "charge.refunded":
        return _charge_refunded(account, environment, obj, list_refunds, context)
    if event_type in REFUND_EVENTS:
        return _refund_updated(account, environment, obj, context)
    if event_type == "charge.dispute.closed":
        return _dispute_closed(account, environment, obj, context)
    return Outcome("ignored", "event type not handled")


# ---- credits ------------------------------------------------------------------------------------


def _app_wallet(
    paywall: Paywall, environment: str, session: dict[str, Any], context: dict[str, Any]
) -> Payer | Outcome:
    """Default mode: the app user the session's metadata names, in the event's environment."""
    meta = session.get("metadata") or {}
    if not isinstance(meta, dict) or meta.get("paywall_id") != paywall.id:
        return _ignored("session belongs to another paywall or app", **context)
    if meta.get("environment") != environment:
        return _ignored("session environment does not match livemode", **context)
    user = meta.get("user")
    if not isinstance(user, str) or not USER_ID_RE.match(user):
        return _ignored("session names no valid user", **context)
    wallet_id = app_wallet_id(paywall.id, environment, user)
    reference = session.get("client_reference_id")
    if reference is not None and reference != wallet_id:
        return _ignored("client_reference_id does not match the metadata", **context)
    return Payer(wallet_id, app_wallet_listing(paywall.id, environment, user))


def _credit_session(
    account: Account,
    environment: str,
    session: dict[str, Any],
    resolve_wallet: WalletResolver,
    context: dict[str, Any],
) -> Outcome:
    session_id = _id_of(session)
    if not session_id or session.get("object") != "checkout.session":
        return _ignored("not a checkout session", **context)
    context = {**context, "checkout_session": session_id}
    payer = resolve_wallet(environment, session, context)
    if isinstance(payer, Outcome):
        return payer
    currency = str(session.get("currency") or "").lower()
    if currency != account.currency:
        return _ignored("session currency is not the wallet's currency", **context)
    try:
        micros = minor_to_micros(session.get("amount_total"), currency)  # type: ignore[arg-type]
    except UnsupportedAmount:
        return _ignored("session has no amount", **context)
    meta = session.get("metadata")
    if micros <= 0 or not isinstance(meta, dict) or meta.get("amount_micros") != str(micros):
        # Paid but not what our page asked for: never guess. The operator settles it by hand.
        log.error("paid checkout amount does not match its metadata; not credited", extra=context)
        return Outcome("ignored", "amount does not match the top-up that was started")

    payment_intent = _id_of(session.get("payment_intent"))
    if payment_intent:
        _remember_payment_intent(payment_intent, account.owner_id, environment, payer.wallet_id, session_id)
    metadata = {"source": "stripe", "checkout_session": session_id}
    if payment_intent:
        metadata["payment_intent"] = payment_intent
    try:
        posting = ledger.credit(
            payer.wallet_id,
            micros,
            idempotency_key=f"stripe:{session_id}",
            keep_key_forever=True,
            listing=payer.listing,
            metadata=metadata,
            also=_events(
                account,
                payer.wallet_id,
                "paywall.stripe.checkout.session.completed",
                {"checkoutSessionId": session_id, "paymentIntentId": payment_intent},
            ),
        )
        duplicate = posting.duplicate
    except ledger.IdempotencyMismatch:
        duplicate = True  # this session was credited already (by an event with other details)
    if payment_intent:
        _apply_parked(payment_intent, account, environment, Credited(payer.wallet_id, environment, session_id))
    log.info("stripe checkout %s", "duplicate" if duplicate else "credited", extra={**context, "amount": micros})
    return Outcome("duplicate" if duplicate else "credited")


def _events(account: Account, wallet_id: str, event_type: str, extra: dict[str, Any]) -> ledger.Also | None:
    """The webhook outbox's event for a posting on an app user's wallet (`{paywall}:{env}:{user}`)."""
    if account.paywall is None:
        return None
    _, environment, user = wallet_id.split(":", 2)
    return outbox.posting_events(account.paywall, environment, user, event_type, lambda entry: extra)


def _mapping_key(payment_intent: str) -> str:
    return f"STRIPEPI#{payment_intent}"


def _remember_payment_intent(
    payment_intent: str, paywall_id: str, environment: str, wallet_id: str, session_id: str
) -> None:
    store.put(
        {
            "pk": _mapping_key(payment_intent),
            "sk": "MAP",
            "paywall_id": paywall_id,
            "environment": environment,
            "wallet_id": wallet_id,
            "checkout_session": session_id,
        }
    )


# ---- debits (refunds, lost disputes) -------------------------------------------------------------


def _charge_refunded(
    account: Account,
    environment: str,
    charge: dict[str, Any],
    list_refunds: RefundLister | None,
    context: dict[str, Any],
) -> Outcome:
    charge_id = _id_of(charge)
    payment_intent = _id_of(charge.get("payment_intent"))
    if not charge_id or not payment_intent:
        return _ignored("refunded charge has no payment intent", **context)
    refunds_list = charge.get("refunds")
    listed = isinstance(refunds_list, dict) and isinstance(refunds_list.get("data"), list)
    if listed and not refunds_list.get("has_more"):  # type: ignore[union-attr]
        refunds = refunds_list["data"]  # type: ignore[index]
    elif list_refunds:
        refunds = list_refunds(charge_id)
    else:
        return _ignored("the event does not list the refunds and no key can fetch them", **context)
    debits = [
        debit
        for refund in refunds
        if isinstance(refund, dict)
        and (debit := _refund_debit(account, refund, charge_id, payment_intent, charge.get("currency"), context))
    ]
    if not debits:
        return Outcome("ignored", "no completed refunds")
    return _debit_wallet(account, environment, payment_intent, debits, context)


def _refund_updated(account: Account, environment: str, refund: dict[str, Any], context: dict[str, Any]) -> Outcome:
    """A refund changed status. Succeeded: debit it (the same ledger key as through charge.refunded,
    so whichever event arrives first debits and the other is a duplicate). Anything else: nothing."""
    refund_id = _id_of(refund)
    if not refund_id or refund.get("object") != "refund":
        return _ignored("not a refund", **context)
    context = {**context, "refund": refund_id}
    if refund.get("status") not in DEBITED_REFUND_STATUSES:
        return Outcome("ignored", f"refund is {refund.get('status')!s}"[:80])
    payment_intent = _id_of(refund.get("payment_intent"))
    if not payment_intent:
        return _ignored("refund has no payment intent", **context)
    debit = _refund_debit(account, refund, _id_of(refund.get("charge")), payment_intent, None, context)
    if debit is None:
        return Outcome("ignored", "refund has no amount in the paywall's currency")
    return _debit_wallet(account, environment, payment_intent, [debit], context)


def _refund_debit(
    account: Account,
    refund: dict[str, Any],
    charge_id: str | None,
    payment_intent: str,
    charge_currency: object,
    context: dict[str, Any],
) -> Debit | None:
    """The debit of one succeeded refund, or None (not succeeded, other currency, no amount)."""
    refund_id = _id_of(refund)
    if not refund_id or refund.get("status") not in DEBITED_REFUND_STATUSES:
        return None
    currency = str(refund.get("currency") or charge_currency or "").lower()
    if currency != account.currency:
        _ignored("refund currency is not the paywall's currency", **{**context, "refund": refund_id})
        return None
    try:
        micros = minor_to_micros(refund.get("amount"), currency)  # type: ignore[arg-type]
    except UnsupportedAmount:
        return None
    if micros <= 0:
        return None
    meta = {"source": "stripe", "refund": refund_id, "payment_intent": payment_intent}
    if charge_id:
        meta["charge"] = charge_id
    return Debit("refund", refund_id, micros, meta)


def _dispute_closed(account: Account, environment: str, dispute: dict[str, Any], context: dict[str, Any]) -> Outcome:
    dispute_id = _id_of(dispute)
    if dispute.get("status") != "lost":
        return Outcome("ignored", f"dispute closed as {dispute.get('status')!s}"[:80])
    payment_intent = _id_of(dispute.get("payment_intent"))
    if not dispute_id or not payment_intent:
        return _ignored("lost dispute has no payment intent", **context)
    currency = str(dispute.get("currency") or "").lower()
    if currency != account.currency:
        return _ignored("dispute currency is not the paywall's currency", **context)
    try:
        micros = minor_to_micros(dispute.get("amount"), currency)  # type: ignore[arg-type]
    except UnsupportedAmount:
        return _ignored("dispute has no amount", **context)
    if micros <= 0:
        return Outcome("ignored", "dispute has no amount")
    meta = {"source": "stripe", "dispute": dispute_id, "payment_intent": payment_intent}
    charge_id = _id_of(dispute.get("charge"))
    if charge_id:
        meta["charge"] = charge_id
    debit = Debit("dispute", dispute_id, micros, meta)
    return _debit_wallet(account, environment, payment_intent, [debit], context)


def _debit_wallet(
    account: Account, environment: str, payment_intent: str, debits: list[Debit], context: dict[str, Any]
) -> Outcome:
    paywall_id = account.owner_id
    mapping = store.get(_mapping_key(payment_intent), "MAP")
    if mapping is None:
        for debit in debits:
            _park(payment_intent, paywall_id, environment, debit)
        # Re-read after parking: a credit that landed meanwhile may have missed what we parked.
        mapping = store.get(_mapping_key(payment_intent), "MAP")
        if mapping is None:
            # The credit has not looked for parked debits yet (it writes the mapping first): it will.
            log.info("debit parked until its payment is credited", extra=context)
            return Outcome("pending", "payment not credited yet; applied when it is")
        # Else the credit may have looked before we parked: apply ours now (idempotent either way).
    if mapping["paywall_id"] != paywall_id or mapping["environment"] != environment:
        return _ignored("payment belongs to another paywall or environment", **context)
    credited = Credited(mapping["wallet_id"], environment, mapping.get("checkout_session"))
    postings = [_post_debit(account, credited, debit) for debit in debits]
    new = [posting is not None and not posting.duplicate for posting in postings]
    log.info("stripe debit %s", "applied" if any(new) else "duplicate", extra=context)
    return Outcome("debited" if any(new) else "duplicate")


def _post_debit(account: Account, credited: Credited, debit: Debit) -> ledger.Posting | None:
    """The posting, or None when this refund/dispute id was already debited with another amount
    (Stripe never changes one; never debit twice for it)."""
    also = account.debit_also(credited, debit) if account.debit_also else None
    kind = "paywall.balance.refund.created" if debit.kind == "refund" else "paywall.balance.dispute.lost"
    source = {"refundId" if debit.kind == "refund" else "disputeId": debit.source_id}
    extra = {"paymentIntentId": debit.metadata.get("payment_intent"), **source}
    also = outbox.combine(also, _events(account, credited.wallet_id, kind, extra))
    try:
        return ledger.debit(
            credited.wallet_id,
            debit.amount,
            idempotency_key=debit.idempotency_key,
            entry_type="refund",
            metadata=debit.metadata,
            also=also,
        )
    except ledger.IdempotencyMismatch:
        log.error(
            "stripe debit seen before with another amount; not debited again", extra={"key": debit.idempotency_key}
        )
        return None


def _park(payment_intent: str, paywall_id: str, environment: str, debit: Debit) -> None:
    store.put(
        {
            "pk": _mapping_key(payment_intent),
            "sk": f"PENDING#{paywall_id}#{debit.kind}:{debit.source_id}",
            "paywall_id": paywall_id,
            "environment": environment,
            "kind": debit.kind,
            "source_id": debit.source_id,
            "amount": debit.amount,
            "metadata": debit.metadata,
            "expires_at_ttl": int(time.time()) + PARKED_TTL_S,
        }
    )


def _apply_parked(payment_intent: str, account: Account, environment: str, credited: Credited) -> None:
    for item in store.query_all(_mapping_key(payment_intent), sk_prefix=f"PENDING#{account.owner_id}#"):
        if item.get("environment") != environment:
            continue
        debit = Debit(item["kind"], item["source_id"], item["amount"], item.get("metadata") or {})
        _post_debit(account, credited, debit)
