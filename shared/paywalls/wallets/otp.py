"""Email one-time codes for wallet sign-in (SPEC §6).

- A code is 6 random digits, valid for 10 minutes, usable once, with at most 5 guesses.
- Only an HMAC of (challenge id, email, code) is stored, keyed by a key derived from the deployment
  secret: a copy of the table does not reveal codes, and 10^6 candidates cannot be tried offline.
- Every sign-in starts on a channel (`Channel`): `open` (the plain sign-in form), `device` (the browser
  holds a known-device cookie for this address, paywalls.wallets.devices) or `link` (started from a signed
  authorization link, keyed by the app user it names). Each channel of an address has its own sending
  quota, so someone who keeps requesting codes for a stranger's address exhausts only the `open`
  quota: the person still signs in from their own device or from the link an app sent them.
- Wrong codes are capped per address, channel and day, counted before comparing (so parallel guesses
  cannot exceed it) and given back when the code is right; all `link` channels of an address also
  share one cap, so collecting links does not multiply an attacker's guesses. A guesser works only
  on codes they requested (a challenge id is never shown to anyone else), so they burn only the
  budgets of channels they can reach.
- Sending is also limited per client (one client cannot mail the world), verifying too.

Item: `OTP#{challenge_id}` / `OTP`: email, channel, code_mac, attempts, used, expires_at (+ TTL)."""

from __future__ import annotations

import base64
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from typing import Literal

from paywalls.core.errors import InvalidRequest
from paywalls.infra import app_keys, links, store
from paywalls.infra.store import N
from paywalls.wallets import ratelimit
from paywalls.wallets.persons import normalize_email

CODE_TTL_S = 10 * 60
CODE_DIGITS = 6
MAX_GUESSES = 5
DAY_S = 24 * 3600
SEND_PER_EMAIL = ratelimit.Limit("otp-send-email", 5, 15 * 60)  # the `open` channel of an address
SEND_PER_CHANNEL = ratelimit.Limit("otp-send-channel", 5, 15 * 60)  # each `device` / `link` channel
SEND_PER_EMAIL_LINKS = ratelimit.Limit("otp-send-email-links", 20, 15 * 60)  # all `link` channels together
SEND_PER_CLIENT = ratelimit.Limit("otp-send-client", 20, 15 * 60)
VERIFY_PER_CLIENT = ratelimit.Limit("otp-verify-client", 60, 15 * 60)
FAILS_PER_CHANNEL = ratelimit.Limit("otp-fail-channel", 20, DAY_S)  # wrong codes per address and channel
FAILS_PER_EMAIL_LINKS = ratelimit.Limit("otp-fail-email-links", 60, DAY_S)  # all `link` channels together

# \A...\Z (`$` accepts a trailing newline) and [0-9], not \d (which matches "１" or "٣" too).
_CHALLENGE_RE = re.compile(r"\Ach_[A-Za-z0-9_-]{22}\Z")
_CODE_RE = re.compile(rf"\A[0-9]{{{CODE_DIGITS}}}\Z")


class CodeRejected(InvalidRequest):
    """The code is wrong, expired, used or out of guesses. Client-safe message."""

    code = "invalid_code"
    param = "code"


@dataclass(frozen=True)
class Channel:
    """Where a sign-in started (see the module doc). `key`: the device id, or the link's subject."""

    kind: Literal["open", "device", "link"]
    key: str = ""

    @property
    def label(self) -> str:
        return f"{self.kind}:{self.key}" if self.key else self.kind

    @classmethod
    def from_label(cls, label: object) -> Channel:
        kind, _, key = str(label or "open").partition(":")
        if kind == "device" and key:
            return cls("device", key)
        if kind == "link" and key:
            return cls("link", key)
        return OPEN


OPEN = Channel("open")


def device_channel(device_id: str) -> Channel:
    return Channel("device", device_id)


def link_channel(claims: links.LinkClaims) -> Channel:
    """One channel per app user a verified link names (not per token): fetching fresh links for the
    same app user does not buy more quota."""
    subject = "|".join((claims.purpose, claims.paywall_id, claims.environment, claims.user))
    return Channel("link", base64.urlsafe_b64encode(app_keys.mac("paywalls-otp-link-v1", subject)[:18]).decode())


def _send_limits(email: str, client: str, channel: Channel) -> list[tuple[ratelimit.Limit, str]]:
    limits = [(SEND_PER_CLIENT, client)]
    if channel.kind == "open":
        return [*limits, (SEND_PER_EMAIL, email)]
    limits.append((SEND_PER_CHANNEL, f"{email}|{channel.label}"))
    if channel.kind == "link":
        limits.append((SEND_PER_EMAIL_LINKS, email))
    return limits


def _failure_limits(email: str, channel: Channel) -> list[tuple[ratelimit.Limit, str]]:
    limits = [(FAILS_PER_CHANNEL, f"{email}|{channel.label}")]
    if channel.kind == "link":
        limits.append((FAILS_PER_EMAIL_LINKS, email))
    return limits


@dataclass(frozen=True)
class Challenge:
    id: str
    email: str
    code: str  # only handed to the mailer; never stored or logged
    expires_at: int


def _mac(challenge_id: str, email: str, code: str) -> str:
    digest = app_keys.mac("paywalls-otp-v1", f"{challenge_id}|{email}|{code}")
    return base64.urlsafe_b64encode(digest).decode()


def _key_of(challenge_id: str) -> tuple[str, str]:
    return f"OTP#{challenge_id}", "OTP"


def start(email: str, client: str, *, channel: Channel = OPEN, now: float | None = None) -> Challenge:
    """Create a code for `email` (raises ratelimit.RateLimited, persons.InvalidEmail). `channel` says
    whose sending quota pays for it; the caller establishes it (a verified device cookie or link)."""
    email = normalize_email(email)
    now = time.time() if now is None else now
    ratelimit.hit_all(_send_limits(email, client, channel), now=now)
    challenge_id = "ch_" + secrets.token_urlsafe(16)
    code = f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"
    expires_at = int(now) + CODE_TTL_S
    store.put(
        {
            "pk": f"OTP#{challenge_id}",
            "sk": "OTP",
            "email": email,
            "channel": channel.label,
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
    """The verified email address, or CodeRejected, or ratelimit.RateLimited (this client, or this
    address and channel out of wrong guesses for the day). A correct code works exactly once."""
    now = time.time() if now is None else now
    ratelimit.hit(VERIFY_PER_CLIENT, client, now=now)
    code = (code or "").strip().replace(" ", "") if isinstance(code, str) else ""
    if not valid_challenge_id(challenge_id):
        raise CodeRejected("This sign-in attempt is not valid. Request a new code.")
    if not _CODE_RE.fullmatch(code):
        raise CodeRejected(f"Enter the {CODE_DIGITS}-digit code from the email.")
    # Count the guess before comparing: concurrent guesses cannot exceed the limit.
    try:
        item = store.update(
            *_key_of(challenge_id),
            "ADD attempts :one",
            condition="attribute_exists(pk) AND used = :false AND attempts < :max AND expires_at > :now",
            values={
                ":one": N(1),
                ":false": {"BOOL": False},
                ":max": N(MAX_GUESSES),
                ":now": N(int(now)),
            },
            return_new=True,
        )
    except store.ConditionFailed:
        raise CodeRejected("This code has expired or was already used. Request a new code.") from None
    assert item is not None  # return_new: the item as updated
    # The day's budget of wrong codes for this address and channel, also counted before comparing
    # (atomically, across all of its challenges); a right code gives its count back below.
    failures = _failure_limits(item["email"], Channel.from_label(item.get("channel")))
    ratelimit.hit_all(failures, now=now)
    if not hmac.compare_digest(item["code_mac"], _mac(challenge_id, item["email"], code)):
        left = MAX_GUESSES - item["attempts"]
        if left <= 0:
            raise CodeRejected("Wrong code, and no attempts are left. Request a new code.")
        raise CodeRejected(f"Wrong code. {left} attempt{'s' if left != 1 else ''} left.")
    for rule, subject in failures:
        ratelimit.give_back(rule, subject, now=now)
    # Single use: of two concurrent correct submissions only one flips `used`.
    try:
        store.update(
            *_key_of(challenge_id),
            "SET used = :true",
            condition="used = :false",
            values={":true": {"BOOL": True}, ":false": {"BOOL": False}},
        )
    except store.ConditionFailed:
        raise CodeRejected("This code was already used. Request a new code.") from None
    return item["email"]
