"""Known devices: a signed cookie a browser gets when it signs in, so that the person's next sign-ins
from it have a sending and guessing quota of their own (otp.Channel "device").

Why: the per-address quota of the plain sign-in form can be used up by anyone who knows the address
(requesting codes for it over and over). A device cookie is only ever issued to a browser that proved
it reads that inbox, and is bound to that address, so no one else can spend its quota.

Value: `base64(json{d: device id, e: tag of the email, x: expiry}).HMAC`, with keys derived for this
purpose only (app_keys): a session cookie or a link token cannot pass as one. The email appears only
as a keyed tag. 90 days, HttpOnly, SameSite=Lax, Path=/wallet (sent to the sign-in form), Secure like
the session cookie (set by the wallet pages, paywalls.http.page_http.set_cookie). It grants nothing but the
quota: signing in still takes a code from the inbox. Signing out keeps it (it describes the browser,
not a session)."""

from __future__ import annotations

import hmac
import re
import secrets
import time

from paywalls.infra import app_keys

COOKIE_NAME = "pw_device"
DEVICE_TTL_S = 90 * 24 * 3600
_LABEL = "paywalls-device-v1"
_EMAIL_LABEL = "paywalls-device-email-v1"
_DEVICE_ID_RE = re.compile(r"\A[A-Za-z0-9_-]{16}\Z")


def _email_tag(email: str) -> str:
    return app_keys.b64(app_keys.mac(_EMAIL_LABEL, email)[:16])


def issue(email: str, *, device_id: str | None = None, now: float | None = None) -> str:
    """A cookie value for this (normalized) address; `device_id` keeps a known browser's id."""
    payload = {
        "d": device_id or secrets.token_urlsafe(12),
        "e": _email_tag(email),
        "x": int(time.time() if now is None else now) + DEVICE_TTL_S,
    }
    return app_keys.seal(_LABEL, payload)


def read(token: str | None, email: str, *, now: float | None = None) -> str | None:
    """The device id of a valid, unexpired cookie issued for `email` (normalized), else None. The MAC
    is checked before anything is decoded or parsed."""
    payload = app_keys.unseal(_LABEL, token, max_body=400)
    if payload is None:
        return None
    device_id, tag, expires_at = payload.get("d"), payload.get("e"), payload.get("x")
    if not (isinstance(device_id, str) and _DEVICE_ID_RE.fullmatch(device_id) and isinstance(tag, str)):
        return None
    if not isinstance(expires_at, int) or (time.time() if now is None else now) >= expires_at:
        return None
    if not hmac.compare_digest(tag, _email_tag(email)):
        return None
    return device_id
