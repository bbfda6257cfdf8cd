"""Purpose-bound keys derived from the deployment's one root secret (Secrets Manager `<prefix>/app`).

Each use (session cookies, sign-in code hashes, ...) gets its own HMAC key, so a value produced for
one purpose can never be replayed as another, and only one secret has to be created and rotated."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from typing import Any

from paywalls.infra import secrets as secrets_store
from paywalls.infra.config import settings


def derived_key(label: str) -> bytes:
    root = secrets_store.get_json_secret(f"{settings().secret_prefix}/app")["link_signing_key"].encode()
    return hmac.new(root, label.encode(), hashlib.sha256).digest()


def mac(label: str, message: str) -> bytes:
    return hmac.new(derived_key(label), message.encode(), hashlib.sha256).digest()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def seal(label: str, payload: dict[str, Any]) -> str:
    """`base64url(json).base64url(HMAC)`, the MAC keyed for `label`: a signed cookie value."""
    body = b64(json.dumps(payload, separators=(",", ":"), sort_keys=True).encode())
    return f"{body}.{b64(mac(label, body))}"


def unseal(label: str, token: str | None, *, max_body: int) -> dict[str, Any] | None:
    """The payload of a value `seal` made for `label`, or None. The shape is checked, then the MAC (in
    constant time, on the text as sent), and only then is anything decoded or parsed: forged input
    never reaches the JSON parser. The payload's fields are the caller's to check."""
    if not token or not re.fullmatch(rf"[A-Za-z0-9_-]{{1,{max_body}}}\.[A-Za-z0-9_-]{{43}}", token):
        return None
    body, _, signature = token.partition(".")
    if not hmac.compare_digest(b64(mac(label, body)), signature):
        return None
    try:
        payload = json.loads(_unb64(body))
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return payload if isinstance(payload, dict) else None
