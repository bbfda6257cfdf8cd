"""Forged and malformed tokens (signed links, session cookies, CSRF tokens), in-process against moto:
the MAC is checked before anything of a token is decoded or parsed, and every bad token is a 4xx page,
never a 500. A payload nested past the JSON parser's recursion limit is tried both with a forged MAC
and with a valid one (signed here with the deployment's key)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as hs

from devserver.router import load_function_app
from paywalls.http import csrf
from paywalls.infra import app_keys, links
from paywalls.infra import secrets as secrets_store
from paywalls.infra.config import settings
from paywalls.wallets import persons, sessions, shared_mode
from tests.shared_support import app_secret, shared_paywall

BASE = "https://testserver"
DEEP = "[" * 1400  # past json's recursion limit (~1000) while the token stays under 2048 characters


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def link_key() -> bytes:
    return secrets_store.get_json_secret(f"{settings().secret_prefix}/app")["link_signing_key"].encode()


def signed_link(payload: str | bytes) -> str:
    """A token over any payload with a valid MAC: what only the holder of the key can make."""
    body = b64(payload.encode() if isinstance(payload, str) else payload)
    return f"{body}.{b64(hmac.new(link_key(), body.encode(), hashlib.sha256).digest())}"


def forged_link(payload: str) -> str:
    return f"{b64(payload.encode())}.{b64(b'x' * 32)}"


def signed_session(payload: str) -> str:
    body = b64(payload.encode())
    return f"{body}.{b64(app_keys.mac('paywalls-session-v1', body))}"


@dataclass
class Pages:
    client: TestClient
    paywall_id: str

    def get(self, path: str) -> int:
        return self.client.get(path, follow_redirects=False).status_code


@pytest.fixture
def pages(aws_mock: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Pages]:
    monkeypatch.setenv("PUBLIC_BASE_URL", BASE)
    settings.cache_clear()
    app_secret()
    client = TestClient(
        load_function_app("functions/wallet", "WalletFunction"), base_url=BASE, raise_server_exceptions=False
    )
    yield Pages(client, shared_paywall().id)
    settings.cache_clear()


def bad_link_tokens(paywall_id: str) -> dict[str, str]:
    now = int(time.time())
    good = {"p": "authorize", "w": paywall_id, "e": "live", "u": "u1", "x": now + 600}
    return {
        "deep, forged MAC": forged_link(DEEP),
        "deep, valid MAC": signed_link(DEEP),
        "deep mixed, valid MAC": signed_link('[{"":' * 300),
        "not base64, valid MAC": signed_link(b"\xff\xfe\x00"),
        "not JSON, valid MAC": signed_link("not json"),
        "a list, valid MAC": signed_link("[1, 2]"),
        "fields of the wrong type, valid MAC": signed_link(json.dumps({**good, "w": ["x"], "x": "soon"})),
        "expiry of the wrong type, valid MAC": signed_link(json.dumps({**good, "x": "tomorrow"})),
        "no fields, valid MAC": signed_link(json.dumps({"p": "authorize"})),
        "wrong purpose": signed_link(json.dumps({**good, "p": "topup"})),
        "expired": signed_link(json.dumps({**good, "x": now - 1})),
        "altered": forged_link(json.dumps(good)),
        "huge": "a" * 5000 + "." + "b" * 43,
        "no dot": "abc",
        "empty parts": ".",
        "bad base64 MAC": signed_link(json.dumps(good)).split(".")[0] + ".%%%",
    }


def test_links_verify_checks_the_mac_before_parsing_and_refuses_every_bad_token(pages: Pages) -> None:
    for name, token in bad_link_tokens(pages.paywall_id).items():
        with pytest.raises(links.InvalidLink):
            links.verify(token, "authorize")
        assert name  # every case refused with InvalidLink, none with another exception


def test_bad_tokens_on_the_hosted_pages_are_4xx_pages_never_500(pages: Pages) -> None:
    failures = []
    for name, token in bad_link_tokens(pages.paywall_id).items():
        for path in (f"/pay/{quote(token)}", f"/wallet/authorize/{quote(token)}", f"/pay/cancel?link={quote(token)}"):
            status = pages.get(path)
            if not (200 <= status < 500) or (status == 200 and not path.startswith("/pay/cancel")):
                failures.append((name, path[:40], status))
    assert not failures, failures


def test_a_valid_authorize_link_still_opens(pages: Pages) -> None:
    url = shared_mode.authorize_url(BASE, pages.paywall_id, "live", "u1")
    assert pages.get(url) == 303  # to the sign-in page, the link itself checked out
    claims = links.verify(url.rsplit("/", 1)[1], "authorize")
    assert (claims.paywall_id, claims.environment, claims.user) == (pages.paywall_id, "live", "u1")


def test_session_cookies_check_the_mac_before_parsing(pages: Pages) -> None:
    person = persons.get_or_create("cookie@example.com")
    now = int(time.time())
    for token in (
        signed_session(DEEP),
        signed_session("[" * 700),
        signed_session(json.dumps({"p": person.id, "x": "later"})),
        signed_session(json.dumps({"p": [person.id], "x": now + 60})),
        f"{b64(DEEP.encode())}.{b64(b'x' * 32)}",
        "x" * 2000,
    ):
        assert sessions.read(token) is None
        pages.client.cookies.set(sessions.COOKIE_NAME, token)
        reply = pages.client.get("/wallet/home", follow_redirects=False)
        assert reply.status_code == 303 and "/wallet/signin" in reply.headers["location"], reply.status_code
    pages.client.cookies.set(sessions.COOKIE_NAME, sessions.issue(person.id))
    assert pages.get("/wallet/home") == 200


TOKEN_TEXT = hs.one_of(
    hs.text(max_size=300),
    hs.text(alphabet="ABCDEFabcdef0123456789-_.=[]{}\"':,%", max_size=300),
    hs.builds(lambda a, b: f"{a}.{b}", hs.text(max_size=200), hs.text(max_size=60)),
)


@hsettings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(token=TOKEN_TEXT)
def test_random_tokens_are_refused_cleanly(pages: Pages, token: str) -> None:
    """Whatever the text: InvalidLink / None / False from the token readers, and never a 5xx page."""
    with pytest.raises(links.InvalidLink):
        links.verify(token, "authorize")
    assert sessions.read(token) is None
    assert csrf.check(token, "n" * 32, "wallet:signin") is False
    safe = quote(token, safe="")
    if safe and safe not in (".", ".."):
        for path in (f"/pay/{safe}", f"/wallet/authorize/{safe}"):
            assert pages.get(path) < 500, (path, token)
