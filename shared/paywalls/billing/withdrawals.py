"""Withdrawals of a shared-mode paywall's earnings and their payout (SPEC §6).

Only matured earnings are withdrawable (earnings.py: EarningsHoldDays after the charge). A withdrawal
is one DynamoDB transaction:
- per earnings shard it draws from: fold the shard's matured buckets into `available` (each under
  `m_{day} = value read`) and `ADD available -x, withdrawn +x` under `available >= x - folded`, and a
  `withdrawal` entry (-x) in that shard's earnings ledger;
- the withdrawal record `WD#{paywall_id}#{environment}` / `W#{withdrawal_id}`;
- its idempotency record `WD#{...}` / `IDEM#{key}` (kept forever: it moved money);
- the operator side: a `payout` entry (-amount) in the operator ledger `OPLEDGER#{environment}` /
  `ENTRY#{created_at}#{withdrawal_id}`: money owed out of the operator's Stripe balance to the paywall.

So a withdrawal can never exceed what has matured (each shard's conditions), concurrent withdrawals
cannot both take the same money, and a retried request (same Idempotency-Key) answers the first
withdrawal instead of moving money again.

Payout, after the transaction: when the paywall has a Stripe Connect account (PUT .../payout) and the
operator's Stripe key for that environment is configured, the withdrawal's transfer is looked up first
(transfer_group = the withdrawal id: a transfer whose answer was lost is adopted, even after Stripe's
24 h idempotency window) and created only if there is none (idempotency key = the withdrawal id); the
record becomes `paid`. Otherwise, or if Stripe fails, it stays `pending` (retried by sending the same
request again). A manual withdrawal (no payout account when it was made), once paid by hand, is marked
`paid` by the operator (`mark_paid`, POST .../withdrawals/{id}/paid {reference?}), once; a Stripe one
never is (its transfer may exist: marking it paid by hand could pay it twice). Amounts are whole minor
units of the currency (cents), because that is what a transfer can move; "everything" is rounded down
to a cent."""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from paywalls.billing import earnings, operator_stripe
from paywalls.billing.paywall import ENVIRONMENTS, Conflict, InvalidRequest, NotFound, Paywall
from paywalls.core.currency import UnsupportedAmount, micros_to_minor, minor_unit_exponent
from paywalls.core.money import MICROS_PER_UNIT, format_micros, parse_amount
from paywalls.infra import payouts, store
from paywalls.infra.store import S, TransactionCancelled

log = logging.getLogger(__name__)

ATTEMPTS = 10
_ACCOUNT_RE = re.compile(r"\Aacct_[A-Za-z0-9]{1,64}\Z")  # \Z: `$` would accept a trailing newline
_WITHDRAWAL_ID_RE = re.compile(r"\Awd_[A-Za-z0-9]{1,64}\Z")
CONDITION_FAILED = store.CONDITION_FAILED  # a TransactionCancelled reason


class InsufficientEarnings(Conflict):
    def __init__(self, available: int, requested: int, pending: str = ""):
        super().__init__(
            f"available earnings are {format_micros(available)}; cannot withdraw {format_micros(requested)}{pending}"
        )
        self.available = available
        self.requested = requested


def _pending_note(shards: list[earnings.Shard], day: date) -> str:
    """How much is still held and when the first of it matures, for the refusal message."""
    by_day: dict[date, int] = {}
    for shard in shards:
        for d, v in shard.pending_after(day).items():
            by_day[d] = by_day.get(d, 0) + v
    upcoming = sorted((d, v) for d, v in by_day.items() if v > 0)
    if not upcoming:
        return ""
    first_day, first = upcoming[0]
    return (
        f" ({format_micros(sum(v for _, v in upcoming))} more is pending, the settlement delay of recent"
        f" earnings; {format_micros(first)} becomes withdrawable at {earnings.midnight(first_day)})"
    )


@dataclass(frozen=True)
class Withdrawal:
    id: str
    paywall_id: str
    environment: str
    amount: int
    currency: str
    status: str  # "pending" | "paid"
    method: str  # "stripe_transfer" | "manual"
    created_at: str
    destination: str | None = None
    transfer_id: str | None = None
    paid_at: str | None = None
    last_error: str | None = None
    reference: str | None = None  # the operator's note of a payout made by hand (bank transfer id, ...)

    def as_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "withdrawal",
            "paywall_id": self.paywall_id,
            "environment": self.environment,
            "amount": str(self.amount),
            "amountFormatted": format_micros(self.amount),
            "currency": self.currency,
            "status": self.status,
            "method": self.method,
            "destination": self.destination,
            "transfer_id": self.transfer_id,
            "created_at": self.created_at,
            "paid_at": self.paid_at,
            "last_error": self.last_error,
            "reference": self.reference,
        }


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _partition(paywall_id: str, environment: str) -> str:
    return f"WD#{paywall_id}#{environment}"


def _from_item(item: dict[str, Any]) -> Withdrawal:
    return Withdrawal(
        id=item["withdrawal_id"],
        paywall_id=item["paywall_id"],
        environment=item["environment"],
        amount=item["amount"],
        currency=item["currency"],
        status=item["status"],
        method=item["method"],
        created_at=item["created_at"],
        destination=item.get("destination"),
        transfer_id=item.get("transfer_id"),
        paid_at=item.get("paid_at"),
        last_error=item.get("last_error"),
        reference=item.get("reference"),
    )


# ---- payout settings ----------------------------------------------------------------------------


def set_payout(paywall: Paywall, data: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(data) - {"stripe_account"})
    if unknown:
        raise InvalidRequest(f"unknown field(s): {', '.join(unknown)}", unknown[0])
    if paywall.mode != "shared":
        raise Conflict("payouts are for shared-mode paywalls (default-mode paywalls collect with their own Stripe)")
    account = data.get("stripe_account")
    if account is None:
        store.put({"pk": f"PAYWALL#{paywall.id}", "sk": "PAYOUT", "updated_at": _now()})
    elif not isinstance(account, str) or not _ACCOUNT_RE.fullmatch(account.strip()):
        raise InvalidRequest("stripe_account must be a Stripe Connect account id (acct_...)", "stripe_account")
    else:
        store.put(
            {"pk": f"PAYWALL#{paywall.id}", "sk": "PAYOUT", "stripe_account": account.strip(), "updated_at": _now()}
        )
    return payout_settings(paywall.id)


def payout_settings(paywall_id: str) -> dict[str, Any]:
    item = store.get(f"PAYWALL#{paywall_id}", "PAYOUT") or {}
    return {
        "object": "payout_settings",
        "paywall_id": paywall_id,
        "stripe_account": item.get("stripe_account"),
        "updated_at": item.get("updated_at"),
    }


# ---- withdrawing --------------------------------------------------------------------------------


def _requested(amount: object, currency: str) -> int | None:
    if amount is None:
        return None
    micros = parse_amount(amount)
    try:
        micros_to_minor(micros, currency)
    except UnsupportedAmount:
        raise InvalidRequest(
            f"amount must be a whole number of {currency.upper()} minor units (payouts move whole cents)", "amount"
        ) from None
    return micros


def _whole_minor_units(micros: int, currency: str) -> int:
    step = MICROS_PER_UNIT // 10 ** minor_unit_exponent(currency)
    return micros // step * step


def _allocate(withdrawable: dict[int, int], amount: int) -> dict[int, int]:
    """Take from the fullest shards first (what each may give now): the fewest entries."""
    plan: dict[int, int] = {}
    left = amount
    for index, can in sorted(withdrawable.items(), key=lambda kv: kv[1], reverse=True):
        if left == 0:
            break
        if can <= 0:
            continue
        take = min(can, left)
        plan[index] = take
        left -= take
    return plan


def _replay(paywall_id: str, environment: str, key: str, fingerprint: str) -> Withdrawal | None:
    record = store.get(_partition(paywall_id, environment), f"IDEM#{key}")
    if not record:
        return None
    if record.get("fingerprint") != fingerprint:
        raise Conflict("this Idempotency-Key was already used with different parameters")
    item = store.get(_partition(paywall_id, environment), record["withdrawal_sk"])
    if item is None:  # cannot happen: written in one transaction
        raise store.StoreUnavailable("withdrawal record missing, please retry")
    return _from_item(item)


def withdraw(
    paywall: Paywall, environment: str, amount: object = None, *, idempotency_key: str
) -> tuple[Withdrawal, bool]:
    """(the withdrawal, whether it is a replay). `amount` None withdraws everything available."""
    earnings.check_environment(environment)
    if paywall.mode != "shared":
        raise Conflict("only shared-mode paywalls have earnings to withdraw")
    if not isinstance(idempotency_key, str) or not 0 < len(idempotency_key) <= 255:
        raise InvalidRequest("an Idempotency-Key is required", "Idempotency-Key")
    requested = _requested(amount, paywall.currency)
    fingerprint = f"{environment}|{requested if requested is not None else 'all'}"
    destination = payout_settings(paywall.id).get("stripe_account")
    pk = _partition(paywall.id, environment)
    for attempt in range(ATTEMPTS):
        replayed = _replay(paywall.id, environment, idempotency_key, fingerprint)
        if replayed:
            return pay_out(paywall, replayed), True
        shards = earnings.shards(paywall.id, environment)
        day = earnings.today()
        withdrawable = {s.index: max(s.withdrawable(day), 0) for s in shards}
        total = sum(withdrawable.values())
        want = requested if requested is not None else _whole_minor_units(total, paywall.currency)
        if want <= 0:
            raise Conflict(f"there are no earnings to withdraw{_pending_note(shards, day)}")
        if want > total:
            raise InsufficientEarnings(total, want, _pending_note(shards, day))
        now = _now()
        withdrawal = Withdrawal(
            id=f"wd_{int(time.time() * 1000):013d}{secrets.token_hex(4)}",
            paywall_id=paywall.id,
            environment=environment,
            amount=want,
            currency=paywall.currency,
            status="pending",
            method="stripe_transfer" if destination else "manual",
            created_at=now,
            destination=destination,
        )
        plan = _allocate(withdrawable, want)
        items = _transaction(paywall, environment, withdrawal, shards, day, plan, idempotency_key, fingerprint)
        try:
            store.transact(items, token_seed=f"withdraw|{pk}|{idempotency_key}|{withdrawal.id}")
        except TransactionCancelled:
            # A concurrent withdrawal took money first, or a duplicate of this request won: re-read.
            store.backoff(min(attempt, 4))
            continue
        log.info(
            "earnings withdrawn",
            extra={
                "paywall_id": paywall.id,
                "withdrawal_id": withdrawal.id,
                "amount": want,
                "method": withdrawal.method,
            },
        )
        return pay_out(paywall, withdrawal), False
    raise store.StoreUnavailable("too many concurrent withdrawals, please retry")


def _transaction(
    paywall: Paywall,
    environment: str,
    withdrawal: Withdrawal,
    shards: list[earnings.Shard],
    day: date,
    plan: dict[int, int],
    idempotency_key: str,
    fingerprint: str,
) -> list[dict[str, Any]]:
    """At most 32 shard updates + 32 entries + 3 = 67 items (DynamoDB's limit is 100). Only the shards
    drawn from: every other item would be one more chance to collide with the charges writing there."""
    table = store.table_name()
    pk = _partition(paywall.id, environment)
    items: list[dict[str, Any]] = []
    for read in shards:
        take = plan.get(read.index, 0)
        if take <= 0:
            continue
        update = earnings.draw_update(paywall.id, environment, read, day, take)
        assert update is not None  # take > 0 always updates
        items.append(update)
        shard = read.index
        shard_pk = earnings.shard_pk(paywall.id, environment, shard)
        entry = {
            "pk": shard_pk,
            "sk": f"ENTRY#{withdrawal.created_at}#{withdrawal.id}",
            "entry_id": f"{withdrawal.id}.{shard:02d}",
            "type": "withdrawal",
            "amount": -take,
            "withdrawal_id": withdrawal.id,
            "created_at": withdrawal.created_at,
        }
        items.append(
            {
                "Put": {
                    "TableName": table,
                    "Item": store.encode(entry),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            }
        )
    record = {
        "pk": pk,
        "sk": f"W#{withdrawal.id}",
        "withdrawal_id": withdrawal.id,
        "paywall_id": paywall.id,
        "environment": environment,
        "amount": withdrawal.amount,
        "currency": withdrawal.currency,
        "status": withdrawal.status,
        "method": withdrawal.method,
        "destination": withdrawal.destination,
        "created_at": withdrawal.created_at,
        "idempotency_key": idempotency_key,
        "shards": {f"{s:02d}": take for s, take in plan.items()},
    }
    idem = {
        "pk": pk,
        "sk": f"IDEM#{idempotency_key}",
        "withdrawal_sk": f"W#{withdrawal.id}",
        "fingerprint": fingerprint,
    }
    operator_entry = {
        "pk": f"OPLEDGER#{environment}",
        "sk": f"ENTRY#{withdrawal.created_at}#{withdrawal.id}",
        "type": "payout",
        "amount": -withdrawal.amount,
        "currency": withdrawal.currency,
        "paywall_id": paywall.id,
        "withdrawal_id": withdrawal.id,
        "method": withdrawal.method,
        "created_at": withdrawal.created_at,
    }
    for item in (record, idem, operator_entry):
        items.append(
            {"Put": {"TableName": table, "Item": store.encode(item), "ConditionExpression": "attribute_not_exists(pk)"}}
        )
    return items


# ---- payout -------------------------------------------------------------------------------------


def pay_out(paywall: Paywall, withdrawal: Withdrawal) -> Withdrawal:
    """Transfer a pending Stripe withdrawal; a manual or already paid one is returned as it is."""
    if withdrawal.status != "pending" or withdrawal.method != "stripe_transfer" or not withdrawal.destination:
        return withdrawal
    keys = (
        operator_stripe.secrets_for(withdrawal.environment)
        if operator_stripe.mode_configured(withdrawal.environment)
        else None
    )
    if keys is None or not keys.secret_key:
        return _note(withdrawal, f"the operator's Stripe {withdrawal.environment} key is not configured; retry later")
    try:
        # A transfer whose answer was lost (created, then a timeout) must be adopted, never repeated:
        # Stripe's idempotency key only protects retries within 24 h, so look for it first.
        transfer = payouts.find_transfer(keys.secret_key, transfer_group=withdrawal.id, withdrawal_id=withdrawal.id)
        if transfer is not None:
            log.warning("adopting an existing transfer of this withdrawal", extra={"withdrawal_id": withdrawal.id})
        else:
            transfer = payouts.create_transfer(
                keys.secret_key,
                amount_minor=micros_to_minor(withdrawal.amount, withdrawal.currency),
                currency=withdrawal.currency,
                destination=withdrawal.destination,
                idempotency_key=withdrawal.id,
                metadata={
                    "paywall_id": paywall.id,
                    "withdrawal_id": withdrawal.id,
                    "environment": withdrawal.environment,
                },
                description=f"Paywalls earnings of {paywall.name}"[:300],
            )
    except (payouts.StripeRejected, payouts.StripeUnavailable) as exc:
        log.warning("payout transfer failed", extra={"withdrawal_id": withdrawal.id})
        return _note(withdrawal, str(exc))
    paid_at = _now()
    # A concurrent retry may have recorded the same transfer first (same Stripe idempotency key).
    with contextlib.suppress(TransactionCancelled):
        store.transact(
            [
                {
                    "Update": {
                        "TableName": store.table_name(),
                        "Key": store.key(_partition(paywall.id, withdrawal.environment), f"W#{withdrawal.id}"),
                        "UpdateExpression": "SET #status = :paid, transfer_id = :tr, paid_at = :at REMOVE last_error",
                        "ConditionExpression": "#status = :pending",
                        "ExpressionAttributeNames": {"#status": "status"},
                        "ExpressionAttributeValues": {
                            ":paid": S("paid"),
                            ":pending": S("pending"),
                            ":tr": S(transfer.id),
                            ":at": S(paid_at),
                        },
                    }
                }
            ]
        )
    return get(paywall.id, withdrawal.environment, withdrawal.id)


def _note(withdrawal: Withdrawal, error: str) -> Withdrawal:
    store.update(
        _partition(withdrawal.paywall_id, withdrawal.environment),
        f"W#{withdrawal.id}",
        "SET last_error = :error",
        values={":error": S(error[:500])},
    )
    return Withdrawal(**{**withdrawal.__dict__, "last_error": error[:500]})


MAX_REFERENCE = 200


def mark_paid(paywall: Paywall, withdrawal_id: str, data: dict[str, Any]) -> tuple[Withdrawal, bool]:
    """The operator paid a pending manual withdrawal by hand ({reference?}: e.g. the bank transfer's
    id): pending -> paid, once. (the withdrawal, whether it is a replay): marking it again with the same
    or no reference answers it as it is; another reference is a conflict. A Stripe-transfer withdrawal
    is always a conflict, even when its transfer failed: a transfer whose answer was lost may exist, so
    paying it by hand could pay it twice (it is settled by retrying the withdrawal request, which adopts
    or makes its one transfer). Nothing else moves: the earnings and the operator's payout entry were
    written when it was withdrawn."""
    unknown = sorted(set(data) - {"reference"})
    if unknown:
        raise InvalidRequest(f"unknown field(s): {', '.join(unknown)}", unknown[0])
    reference = data.get("reference")
    if reference is not None:
        if not isinstance(reference, str) or not 0 < len(reference.strip()) <= MAX_REFERENCE:
            raise InvalidRequest(
                f"reference must be a non-empty string of at most {MAX_REFERENCE} characters", "reference"
            )
        reference = reference.strip()
    withdrawal = _find(paywall.id, withdrawal_id)
    if withdrawal.method != "manual":
        if withdrawal.transfer_id:
            raise Conflict(f"withdrawal {withdrawal.id} was already paid by Stripe transfer {withdrawal.transfer_id}")
        raise Conflict(
            f"withdrawal {withdrawal.id} is paid by Stripe transfer, not by hand: retry the withdrawal request"
            " with the same Idempotency-Key (it finds or makes its one transfer)"
        )
    if withdrawal.status == "pending":
        values = {":paid": S("paid"), ":pending": S("pending"), ":manual": S("manual"), ":at": S(_now())}
        update = "SET #status = :paid, paid_at = :at"
        names = {"#status": "status", "#method": "method"}
        if reference is not None:
            update += ", #reference = :ref"
            names["#reference"] = "reference"  # a DynamoDB reserved word
            values[":ref"] = S(reference)
        update += " REMOVE last_error"
        try:
            store.transact(
                [
                    {
                        "Update": {
                            "TableName": store.table_name(),
                            "Key": store.key(_partition(paywall.id, withdrawal.environment), f"W#{withdrawal.id}"),
                            "UpdateExpression": update,
                            # Only a manual one: the method is fixed at creation, checked here too.
                            "ConditionExpression": "#status = :pending AND #method = :manual",
                            "ExpressionAttributeNames": names,
                            "ExpressionAttributeValues": values,
                        }
                    }
                ]
            )
        except TransactionCancelled:
            pass  # paid meanwhile (a concurrent mark or transfer): answered below from what was recorded
        else:
            log.info("withdrawal marked paid", extra={"paywall_id": paywall.id, "withdrawal_id": withdrawal.id})
            return get(paywall.id, withdrawal.environment, withdrawal.id), False
        withdrawal = get(paywall.id, withdrawal.environment, withdrawal.id)
    if withdrawal.status == "paid" and reference in (None, withdrawal.reference):
        return withdrawal, True
    raise Conflict(f"withdrawal {withdrawal.id} was already marked paid (reference {withdrawal.reference!r})")


def _find(paywall_id: str, withdrawal_id: str) -> Withdrawal:
    """A withdrawal of either environment (its id is unique)."""
    if not isinstance(withdrawal_id, str) or not _WITHDRAWAL_ID_RE.fullmatch(withdrawal_id):
        raise NotFound(f"withdrawal {withdrawal_id!r} not found")
    for environment in ENVIRONMENTS:
        item = store.get(_partition(paywall_id, environment), f"W#{withdrawal_id}")
        if item:
            return _from_item(item)
    raise NotFound(f"withdrawal {withdrawal_id!r} not found")


def get(paywall_id: str, environment: str, withdrawal_id: str) -> Withdrawal:
    item = store.get(_partition(paywall_id, environment), f"W#{withdrawal_id}")
    if not item:
        raise NotFound(f"withdrawal {withdrawal_id!r} not found")
    return _from_item(item)


def list_withdrawals(paywall_id: str, environment: str, *, limit: int = 100) -> list[Withdrawal]:
    earnings.check_environment(environment)
    items, _ = store.query(_partition(paywall_id, environment), sk_prefix="W#", newest_first=True, limit=limit)
    return [_from_item(i) for i in items]
