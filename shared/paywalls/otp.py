"""Email one-time codes for wallet sign-in (SPEC §6).

- A code is 6 random digits, valid for 10 minutes, usable once, with at most 5 guesses.
- Only an HMAC of (challenge id, email, code) is stored, keyed by a key derived from the deployment
  secret: a copy of the table does not reveal codes, and 10^6 candidates cannot be tried offline.
- Sending is rate-limited per email address (the inbox owner is not spammed; guesses per address stay
  bounded: 5 codes x 5 guesses per 15 min) and per client (one client cannot mail the world).
- Verifying is rate-limited per client too, on top of the per-code guess limit.

Item: `OTP#{challenge_id}` / `OTP`: email, code_mac, attempts, used, expires_at (+ TTL)."""

from __future__ import annotations

import base64
import hmac
import re
import secrets
import time
from dataclasses import dataclass

from botocore.exceptions import ClientError

from paywalls import app_keys, ratelimit, store
from paywalls.persons import normalize_email
from paywalls.store import N, S

CODE_TTL_S = 10 * 60
CODE_DIGITS = 6
MAX_GUESSES = 5
SEND_PER_EMAIL = ratelimit.Limit("otp-send-email", 5, 15 * 60)
SEND_PER_CLIENT = ratelimit.Limit("otp-send-client", 20, 15 * 60)
VERIFY_PER_CLIENT = ratelimit.Limit("otp-verify-client", 60, 15 * 60)

# \A...\Z (`$` accepts a trailing newline) and [0-9], not \d (which matches "１" or "٣" too).
_CHALLENGE_RE = re.compile(r"\Ach_[A-Za-z0-9_-]{22}\Z")
_CODE_RE = re.compile(rf"\A[0-9]{{{CODE_DIGITS}}}\Z")


class CodeRejected(Exception):
    """The code is wrong, expired, used or out of guesses. Client-safe message."""


@dataclass(frozen=True)
class Challenge:
    id: str
    email: str
    code: str  # only handed to the mailer; never stored or logged
    expires_at: int


def _mac(challenge_id: str, email: str, code: str) -> str:
    digest = app_keys.mac("paywalls-otp-v1", f"{challenge_id}|{email}|{code}")
    return base64.urlsafe_b64encode(digest).decode()


def _key(challenge_id: str) -> dict:
    return {"pk": S(f"OTP#{challenge_id}"), "sk": S("OTP")}


def start(email: str, client: str, *, now: float | None = None) -> Challenge:
    """Create a code for `email` (raises ratelimit.RateLimited, persons.InvalidEmail)."""
    email = normalize_email(email)
    ratelimit.hit(SEND_PER_CLIENT, client, now=now)
    ratelimit.hit(SEND_PER_EMAIL, email, now=now)
    now = time.time() if now is None else now
    challenge_id = "ch_" + secrets.token_urlsafe(16)
    code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
    expires_at = int(now) + CODE_TTL_S
    store.put(
        {
            "pk": f"OTP#{challenge_id}",
            "sk": "OTP",
            "email": email,
            "code_mac": _mac(challenge_id, email, code),
            "attempts": 0,
            "used": False,
            "expires_at": expires_at,
            "expires_at_ttl": expires_at + 24 * 3600,
        },
        condition="attribute_not_exists(pk)",
    )
    return Challenge(challenge_id, email, code, expires_at)


def valid_challenge_id(value: object) -> bool:
    return isinstance(value, str) and _CHALLENGE_RE.fullmatch(value) is not None


def verify(challenge_id: str, code: str, client: str, *, now: float | None = None) -> str:
    """The verified email address, or CodeRejected. A correct code works exactly once."""
    ratelimit.hit(VERIFY_PER_CLIENT, client, now=now)
    now = time.time() if now is None else now
    code = (code or "").strip().replace(" ", "") if isinstance(code, str) else ""
    if not valid_challenge_id(challenge_id):
        raise CodeRejected("This sign-in attempt is not valid. Request a new code.")
    if not _CODE_RE.fullmatch(code):
        raise CodeRejected(f"Enter the {CODE_DIGITS}-digit code from the email.")
    # Count the guess before comparing: concurrent guesses cannot exceed the limit.
    try:
        result = store.with_retries(
            lambda: store.ddb().update_item(
                TableName=store.table_name(),
                Key=_key(challenge_id),
                UpdateExpression="ADD attempts :one",
                ConditionExpression="attribute_exists(pk) AND used = :false AND attempts < :max AND expires_at > :now",
                ExpressionAttributeValues={
                    ":one": N(1),
                    ":false": {"BOOL": False},
                    ":max": N(MAX_GUESSES),
                    ":now": N(int(now)),
                },
                ReturnValues="ALL_NEW",
            )
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise
        raise CodeRejected("This code has expired or was already used. Request a new code.") from None
    item = store.decode(result["Attributes"])
    if not hmac.compare_digest(item["code_mac"], _mac(challenge_id, item["email"], code)):
        left = MAX_GUESSES - item["attempts"]
        if left <= 0:
            raise CodeRejected("Wrong code, and no attempts are left. Request a new code.")
        raise CodeRejected(f"Wrong code. {left} attempt{'s' if left != 1 else ''} left.")
    # Single use: of two concurrent correct submissions only one flips `used`.
    try:
        store.with_retries(
            lambda: store.ddb().update_item(
                TableName=store.table_name(),
                Key=_key(challenge_id),
                UpdateExpression="SET used = :true",
                ConditionExpression="used = :false",
                ExpressionAttributeValues={":true": {"BOOL": True}, ":false": {"BOOL": False}},
            )
        )
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ConditionalCheckFailedException":
            raise
        raise CodeRejected("This code was already used. Request a new code.") from None
    return item["email"]
