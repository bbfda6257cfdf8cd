"""Purpose-bound keys derived from the deployment's one root secret (Secrets Manager `<prefix>/app`).

Each use (session cookies, sign-in code hashes, ...) gets its own HMAC key, so a value produced for
one purpose can never be replayed as another, and only one secret has to be created and rotated."""

from __future__ import annotations

import hashlib
import hmac

from paywalls import secrets_store
from paywalls.config import settings


def derived_key(label: str) -> bytes:
    root = secrets_store.get_json_secret(f"{settings().secret_prefix}/app")["link_signing_key"].encode()
    return hmac.new(root, label.encode(), hashlib.sha256).digest()


def mac(label: str, message: str) -> bytes:
    return hmac.new(derived_key(label), message.encode(), hashlib.sha256).digest()
