"""Signed links to our hosted pages. A link names (paywall, environment, user) and cannot be forged
or altered to point at another user: the payload is HMAC-SHA256-signed with the deployment's link
signing key (Secrets Manager `<prefix>/app`, created by the template)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from dataclasses import dataclass
from typing import Any

from paywalls.core.errors import InvalidRequest
from paywalls.infra import secrets as secrets_store
from paywalls.infra.config import settings


class InvalidLink(InvalidRequest):
    """Forged, altered, expired or for another purpose; the message is client-safe."""

    code = "invalid_link"


MAX_TOKEN_CHARS = 2048
# base64url(payload) "." base64url(HMAC-SHA256): 43 characters, no padding.
_TOKEN_RE = re.compile(r"\A[A-Za-z0-9_-]{1,2000}\.[A-Za-z0-9_-]{43}\Z")


@dataclass(frozen=True)
class LinkClaims:
    purpose: str  # "topup", "authorize", ...
    paywall_id: str
    environment: str
    user: str
    expires_at: int | None = None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signing_key() -> bytes:
    secret = secrets_store.get_json_secret(f"{settings().secret_prefix}/app")
    return secret["link_signing_key"].encode()


def sign(claims: LinkClaims) -> str:
    payload: dict[str, Any] = {"p": claims.purpose, "w": claims.paywall_id, "e": claims.environment, "u": claims.user}
    if claims.expires_at is not None:
        payload["x"] = claims.expires_at
    body = _b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
    mac = hmac.new(_signing_key(), body.encode(), hashlib.sha256).digest()
    return f"{body}.{_b64(mac)}"


def verify(token: str, purpose: str) -> LinkClaims:
    """The claims of a token we signed for `purpose`, else InvalidLink (a 4xx page, never a 500).

    The MAC is checked first (constant time, on the text as sent) and only then is the payload decoded
    and parsed: nothing of a forged token reaches base64 or JSON, so no crafted input (a payload nested
    thousands deep, odd types) can make the parser fail; a payload we signed is still parsed defensively."""
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS or not _TOKEN_RE.fullmatch(token):
        raise InvalidLink("this link is not valid")
    body, _, mac = token.partition(".")
    expected = _b64(hmac.new(_signing_key(), body.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(expected, mac):
        raise InvalidLink("this link is not valid")
    try:
        payload = json.loads(_unb64(body))
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise InvalidLink("this link is not valid") from None
    if not isinstance(payload, dict) or payload.get("p") != purpose:
        raise InvalidLink("this link is not valid")
    paywall_id, environment, user, expires_at = payload.get("w"), payload.get("e"), payload.get("u"), payload.get("x")
    if not (isinstance(paywall_id, str) and isinstance(environment, str) and isinstance(user, str)):
        raise InvalidLink("this link is not valid")
    if expires_at is not None and (not isinstance(expires_at, int) or isinstance(expires_at, bool)):
        raise InvalidLink("this link is not valid")
    if expires_at is not None and time.time() > expires_at:
        raise InvalidLink("this link has expired")
    return LinkClaims(purpose, paywall_id, environment, user, expires_at)


def public_base_url(request_base_url: str | None = None) -> str:
    """Kept for callers without a request; HTTP handlers use web.public_base_url(request), which also
    knows API Gateway's stage prefix."""
    return (settings().public_base_url or request_base_url or "").rstrip("/")


def topup_url(base_url: str, paywall_id: str, environment: str, user: str) -> str:
    """Stable top-up link (no expiry): apps may show it in old messages."""
    return f"{base_url.rstrip('/')}/pay/{sign(LinkClaims('topup', paywall_id, environment, user))}"


def wallet_path(environment: str, page: str) -> str:
    """A shared-mode wallet page of one of a person's wallets: the live wallet at `/wallet/{page}`, the
    test wallet at `/wallet/test/{page}` (clearly apart, and a path survives the sign-in redirect)."""
    if environment == "live":
        return f"/wallet/{page}"
    if environment == "test":
        return f"/wallet/test/{page}"
    raise ValueError(f"unknown environment {environment!r}")
