"""Who is asking: user ids (SPEC §1) and the wallets they map to."""

from __future__ import annotations

import re

from paywalls.billing import paywall as paywalls
from paywalls.billing.ledger import Listing
from paywalls.core.errors import InvalidRequest
from paywalls.infra import links

# \A...\Z, not ^...$: `$` also matches before a trailing newline, so "victim\n" would pass as a user of
# its own next to "victim". Anchored this way, .match(), .search() and .fullmatch() all mean the same.
USER_ID_RE = re.compile(r"\A[A-Za-z0-9._:@-]{1,128}\Z")


class InvalidUser(InvalidRequest):
    """Client-safe message explaining what a valid user id looks like."""

    code = "invalid_user"
    param = "user"


def valid_user_id(value: object) -> bool:
    return isinstance(value, str) and USER_ID_RE.fullmatch(value) is not None


def open_user_link(token: str, purpose: str, mode: str, elsewhere: str) -> tuple[links.LinkClaims, paywalls.Paywall]:
    """A link we signed for `purpose` that names an app user of a `mode` paywall (a top-up link, an
    authorization link): its claims and the paywall. Raises links.InvalidLink (forged, altered, expired,
    another purpose, not an environment or not a user id) or paywall.NotFound, saying `elsewhere` (the
    paywall is of the other mode)."""
    claims = links.verify(token, purpose)
    if claims.environment not in paywalls.ENVIRONMENTS or not USER_ID_RE.match(claims.user or ""):
        raise links.InvalidLink("this link is not valid")
    paywall = paywalls.get(claims.paywall_id)
    if paywall.mode != mode:
        raise paywalls.NotFound(elsewhere)
    return claims, paywall


def resolve_user(*candidates: str | None) -> str:
    """The first present candidate wins (body `user` > `X-Paywall-User` > path > query), and it must
    be valid: a bad explicit id is an error, never silently replaced by a lower-priority one."""
    for candidate in candidates:
        if candidate is None or candidate == "":
            continue
        if not valid_user_id(candidate):
            raise InvalidUser("invalid user id: use 1-128 characters from A-Z a-z 0-9 . _ : @ -")
        return candidate
    raise InvalidUser("a user id is required: set `user` in the body, the X-Paywall-User header, or /v1/{user}/...")


def app_wallet_id(paywall_id: str, environment: str, user: str) -> str:
    """Default mode: one wallet per (paywall, environment, user); test and live never meet."""
    return f"{paywall_id}:{environment}:{user}"


def app_wallet_listing(paywall_id: str, environment: str, user: str) -> Listing:
    return Listing(index_pk=f"USERS#{paywall_id}#{environment}", index_sk=user)


def idempotency_scope(paywall_id: str, environment: str) -> str:
    """An app's Idempotency-Key is unique per (paywall, environment), not per user: reused for another
    user it is refused (409) instead of moving money a second time."""
    return f"{paywall_id}:{environment}"
