"""People who own a shared-mode wallet (SPEC §6): one person per email address, two wallets per person.

Items:
- `PERSON#{person_id}` / `PERSON`: email, created_at.
- `EMAIL#{sha256(email)}` / `EMAIL`: person_id. The lookup by email; the hash keeps arbitrary
  address characters out of key space. Created together with the person (one transaction), so two
  concurrent first sign-ins of one address agree on a single person.

A person has one wallet per environment: the ledger wallets `person:{person_id}:live` (real money,
topped up with the operator's live Stripe key) and `person:{person_id}:test` (test money, topped up in
Stripe test mode). Each is shared by every shared-mode paywall the person authorizes in that
environment: a paywall's live keys spend only the live wallet, its test keys only the test wallet
(connections.Connection.wallet_id), so test money can never pay a live app nor end up in withdrawable
live earnings, and a test key never spends real money."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from paywalls.billing import adjustments, ledger
from paywalls.billing.paywall import ENVIRONMENTS, InvalidRequest, NotFound
from paywalls.infra import store
from paywalls.infra.store import TransactionCancelled

# Deliberately plain: RFC 5321 limits, the characters real providers accept in the local part, and a
# dotted domain. Anything odder is refused rather than sent to the mail service.
# \A...\Z throughout (not $, which accepts a trailing newline).
_EMAIL_RE = re.compile(r"\A[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})+\Z")
_PERSON_ID_RE = re.compile(r"\Aps_[0-9a-f]{20}\Z")


class InvalidEmail(InvalidRequest):
    def __init__(self) -> None:
        super().__init__("enter a valid email address", "email")


@dataclass(frozen=True)
class Person:
    id: str
    email: str
    created_at: str

    # Deliberately no environment-less `wallet_id`: every caller must say which money it means.
    def wallet_for(self, environment: str) -> str:
        return wallet_id(self.id, environment)


def wallet_id(person_id: str, environment: str) -> str:
    """The person's wallet of one environment (`live` or `test`); anything else is refused rather than
    mapped to some default wallet."""
    if environment not in ENVIRONMENTS:
        raise InvalidRequest("environment must be 'live' or 'test'", "environment")
    return f"person:{person_id}:{environment}"


def valid_person_id(value: object) -> bool:
    return isinstance(value, str) and _PERSON_ID_RE.fullmatch(value) is not None


def normalize_email(value: object) -> str:
    """Trimmed and lower-cased: sign-ins with `Ann@Example.com` and `ann@example.com` are one person."""
    if not isinstance(value, str):
        raise InvalidEmail()
    email = value.strip().lower()
    if len(email) > 254 or not _EMAIL_RE.fullmatch(email):
        raise InvalidEmail()
    return email


def email_hash(email: str) -> str:
    return hashlib.sha256(email.encode()).hexdigest()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _from_item(item: dict) -> Person:
    return Person(item["person_id"], item["email"], item["created_at"])


def get(person_id: str) -> Person | None:
    if not valid_person_id(person_id):
        return None
    item = store.get(f"PERSON#{person_id}", "PERSON")
    return _from_item(item) if item else None


def find_by_email(email: str) -> Person | None:
    lookup = store.get(f"EMAIL#{email_hash(normalize_email(email))}", "EMAIL")
    return get(lookup["person_id"]) if lookup else None


def get_or_create(email: str) -> Person:
    """The person who owns this (verified) address; created on their first sign-in."""
    email = normalize_email(email)
    for _ in range(3):
        existing = find_by_email(email)
        if existing:
            return existing
        person = Person("ps_" + secrets.token_hex(10), email, _now())
        item = {"person_id": person.id, "email": email, "created_at": person.created_at}
        try:
            store.transact(
                [
                    {
                        "Put": {
                            "TableName": store.table_name(),
                            "Item": store.encode({"pk": f"EMAIL#{email_hash(email)}", "sk": "EMAIL", **item}),
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                    {
                        "Put": {
                            "TableName": store.table_name(),
                            "Item": store.encode({"pk": f"PERSON#{person.id}", "sk": "PERSON", **item}),
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                ]
            )
            return person
        except TransactionCancelled:
            continue  # a concurrent first sign-in created it: read theirs
    raise store.StoreUnavailable("could not create the wallet, please retry")


def balance(person_id: str, environment: str) -> ledger.Wallet:
    return ledger.get_wallet(wallet_id(person_id, environment))


def adjust(
    person_id: str, environment: object, amount: object, *, idempotency_key: str, reason: object = None
) -> ledger.Posting:
    """Operator correction of a person's wallet of one environment (`adjustment` entry): a signed decimal
    amount; a debit never takes the wallet below what is available (holds included). The environment
    is required, never defaulted: crediting real money by mistake is not a correction."""
    if environment is None:
        raise InvalidRequest("environment is required: 'live' or 'test'", "environment")
    if not isinstance(environment, str) or environment not in ENVIRONMENTS:
        raise InvalidRequest("environment must be 'live' or 'test'", "environment")
    if get(person_id) is None:
        raise NotFound(f"person {person_id!r} not found")
    return adjustments.correct(
        wallet_id(person_id, environment), amount, idempotency_key=idempotency_key, reason=reason
    )
