"""Wallet sign-in sessions: a signed, expiring cookie naming the person (SPEC §6).

The cookie value is `base64(json{p: person id, x: expiry, n: nonce}).HMAC` with a key derived for this
purpose only, so neither a link token nor a CSRF token can pass as a session. Stateless on purpose:
reading it costs no database call on every page. The cookie is set by the wallet pages
(paywalls.http.page_http.set_cookie): HttpOnly (scripts never see it), SameSite=Lax (not sent on cross-site
POSTs), Path=/wallet, and Secure everywhere except a local stack served over plain http on
127.0.0.1 / localhost (page_http.secure_cookies, the one rule for every cookie of ours)."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from paywalls.infra import app_keys
from paywalls.wallets.persons import valid_person_id

COOKIE_NAME = "pw_wallet"
SESSION_TTL_S = 12 * 3600
_LABEL = "paywalls-session-v1"


@dataclass(frozen=True)
class Session:
    person_id: str
    expires_at: int


def issue(person_id: str, *, now: float | None = None) -> str:
    expires_at = int(time.time() if now is None else now) + SESSION_TTL_S
    payload = {"p": person_id, "x": expires_at, "n": secrets.token_urlsafe(8)}
    return app_keys.seal(_LABEL, payload)


def read(token: str | None, *, now: float | None = None) -> Session | None:
    """The session of a cookie value, or None (missing, forged, altered, expired). The MAC is checked
    (constant time, on the text as sent) before anything is decoded or parsed; the payload is parsed
    defensively even then."""
    payload = app_keys.unseal(_LABEL, token, max_body=980)  # the whole value at most 1024 characters
    if payload is None or not valid_person_id(payload.get("p")):
        return None
    expires_at = payload.get("x")
    if not isinstance(expires_at, int) or (time.time() if now is None else now) >= expires_at:
        return None
    return Session(payload["p"], expires_at)
