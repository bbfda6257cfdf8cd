"""CSRF protection for our unauthenticated hosted forms: a signed double-submit token.

The page sets a random nonce in a SameSite=Lax, HttpOnly cookie and puts `nonce.HMAC(nonce, link)`
in each form. A POST is accepted only when the form's token carries the cookie's nonce and a valid MAC
for the very link it posts to: a third-party site can neither read nor set our cookie, and a token
from one link does not work for another."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping

from paywalls.core.errors import Forbidden
from paywalls.infra import secrets as secrets_store
from paywalls.infra.config import settings

COOKIE_NAME = "pw_csrf"


class Rejected(Forbidden):
    """The form's CSRF token is missing, expired or was not issued for this page."""

    code = "invalid_csrf_token"


_NONCE_RE = re.compile(r"\A[A-Za-z0-9_-]{32}\Z")  # \Z: `$` would accept a trailing newline


def _key() -> bytes:
    root = secrets_store.get_json_secret(f"{settings().secret_prefix}/app")["link_signing_key"].encode()
    return hmac.new(root, b"paywalls-csrf-v1", hashlib.sha256).digest()  # a key of its own, derived


def new_nonce() -> str:
    return secrets.token_urlsafe(24)  # 32 characters


def usable_nonce(value: str | None) -> str | None:
    return value if value and _NONCE_RE.fullmatch(value) else None


def _mac(nonce: str, bound_to: str) -> str:
    digest = hmac.new(_key(), f"{nonce}|{bound_to}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def form_token(nonce: str, bound_to: str) -> str:
    return f"{nonce}.{_mac(nonce, bound_to)}"


def check(form_value: str | None, cookie_nonce: str | None, bound_to: str) -> bool:
    if not form_value or not usable_nonce(cookie_nonce):
        return False
    nonce, _, mac = form_value.partition(".")
    if not hmac.compare_digest(nonce.encode(), str(cookie_nonce).encode()):
        return False
    return hmac.compare_digest(mac.encode(), _mac(nonce, bound_to).encode())


def require(form_value: str | None, cookie_nonce: str | None, bound_to: str) -> None:
    if not check(form_value, cookie_nonce, bound_to):
        raise Rejected("CSRF token missing or invalid")


def page_nonce(cookies: Mapping[str, str]) -> str:
    """The nonce a page's form tokens are bound to: the browser's own when usable, so tokens of pages
    open in other tabs stay valid, else a fresh one (the page then sets it as the cookie)."""
    return usable_nonce(cookies.get(COOKIE_NAME)) or new_nonce()


def require_form(form: Mapping[str, str], cookies: Mapping[str, str], bound_to: str) -> None:
    """Double submit: the posted form's `csrf` field must match the browser's nonce cookie and `bound_to`."""
    require(form.get("csrf"), cookies.get(COOKIE_NAME), bound_to)
