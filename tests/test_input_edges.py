"""Input edges at every entry point, in-process against moto: user ids and redirect targets must match
in full (a `$`-anchored pattern also accepts a trailing newline: "victim\\n" would be a user of its own),
and amounts, prices, counts and codes take ASCII digits only (int() and Decimal() also read "１", "٣",
"1_000", " 1" and "1e2"). Every refusal is a 400 and is checked to have written nothing."""

from __future__ import annotations

import ast
import asyncio
import re
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from starlette.requests import Request

from devserver.router import load_function_app
from paywalls.billing import deposits, ledger
from paywalls.billing import paywall as paywalls
from paywalls.http import web
from paywalls.infra import links, store
from paywalls.infra.config import settings
from paywalls.wallets import otp, persons
from tests.shared_support import app_secret, form_with, shared_paywall

ROOT = Path(__file__).resolve().parent.parent
ADMIN_TOKEN = "adm_edges"
BASE = "http://testserver"

BAD_USERS = ["victim\n", "victim\r\n", "victim ", " victim", "vic tim", "víctim", "victim\x00", "１"]
# Each of these was (or could have been) read as a number by int(), Decimal() or a `\d` pattern.
BAD_AMOUNTS = ["１", "٣", "1_000", " 1", "1 ", "1\n", "1e2", "1E2", "+1", "²", "१", "1.", ".5", "0x10", "NaN", "1,5"]
BAD_PRESETS = ["５", "٥", " 5", "5 ", "5\n", "5_0", "5e0", "+5"]
BAD_COUNTS = ["１", "٣", "1_0", " 1", "1 ", "1\n", "+1", "1.0", "1e1", "²", "-1", "0", ""]


@dataclass
class Site:
    api: TestClient
    admin: TestClient
    wallet: TestClient
    chat: TestClient
    paywall_id: str
    shared_id: str
    person_id: str
    auth: dict[str, str]


@pytest.fixture
def site(aws_mock: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    monkeypatch.setenv("ADMIN_AUTH", "token")
    monkeypatch.setenv("ADMIN_TOKEN", ADMIN_TOKEN)
    monkeypatch.setenv("PAYWALLS_LOCAL_DEV", "1")  # the mail sink instead of SES
    settings.cache_clear()
    app_secret()
    paywall = paywalls.create({"name": "Edges", "mode": "default"})
    paywalls.set_pricing(paywall.id, {"models": {"demo/echo": {"prompt": "1", "completion": "2"}}})
    key = paywalls.issue_key(paywall.id, "live")[1]
    auth = {"Authorization": f"Bearer {key}"}
    deposits.deposit(paywall, "live", "victim", "5", idempotency_key="seed")
    person = persons.get_or_create("edges@example.com")

    def client(path: str, name: str, **kw: Any) -> TestClient:
        return TestClient(load_function_app(path, name), raise_server_exceptions=False, **kw)

    yield Site(
        api=client("functions/user_api", "UserApiFunction"),
        admin=client("functions/admin", "AdminFunction", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}),
        # https: the pages' cookies are Secure except on a local 127.0.0.1 / localhost stack.
        wallet=client("functions/wallet", "WalletFunction", base_url="https://testserver"),
        chat=client("functions/chat", "ChatFunction"),
        paywall_id=paywall.id,
        shared_id=shared_paywall().id,
        person_id=person.id,
        auth=auth,
    )
    settings.cache_clear()


def table() -> list[dict[str, Any]]:
    """Every item of the table: a refused request must leave it exactly as it was."""
    items: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"TableName": store.table_name(), "ConsistentRead": True}
    while True:
        page = store.ddb().scan(**kwargs)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            return sorted(items, key=lambda i: (i["pk"]["S"], i["sk"]["S"]))
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def refused(reply: Any, before: list[dict[str, Any]], what: str) -> None:
    assert reply.status_code == 400, f"{what}: {reply.status_code} {reply.text[:300]}"
    assert table() == before, f"{what}: a refused request changed the table"


def once() -> dict[str, str]:
    return {"Idempotency-Key": secrets.token_hex(8)}


# ---- user ids -------------------------------------------------------------------------------------

USER_ENTRY_POINTS: dict[str, Callable[[Site, str], Any]] = {
    "query ?user=": lambda s, u: s.api.get("/v1/user/balance", params={"user": u}, headers=s.auth),
    "X-Paywall-User header": lambda s, u: s.api.get("/v1/user/balance", headers={**s.auth, "X-Paywall-User": u}),
    "body user (deposit)": lambda s, u: s.api.post(
        "/v1/user/balance/deposit", json={"user": u, "amount": "1"}, headers={**s.auth, **once()}
    ),
    "body user (charge)": lambda s, u: s.api.post(
        "/v1/user/charge", json={"user": u, "amount": "1"}, headers={**s.auth, **once()}
    ),
    "ledger ?user=": lambda s, u: s.api.get("/v1/user/ledger", params={"user": u}, headers=s.auth),
    "path /v1/{user}/chat/completions": lambda s, u: s.chat.post(
        f"/v1/{_quote(u)}/chat/completions",
        json={"model": "demo/echo", "messages": [{"role": "user", "content": "hi"}]},
        headers=s.auth,
    ),
    "admin path user (adjustment)": lambda s, u: s.admin.post(
        f"/admin/paywalls/{s.paywall_id}/users/{_quote(u)}/adjustments", json={"amount": "1"}, headers=once()
    ),
}


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


@pytest.mark.parametrize("entry", sorted(USER_ENTRY_POINTS))
def test_user_ids_must_match_in_full_at_every_entry_point(site: Site, entry: str) -> None:
    before = table()
    for bad in BAD_USERS:
        if entry == "X-Paywall-User header" and not bad.isascii():
            continue  # a header value travels as bytes: non-ASCII ids go through the other entry points
        reply = USER_ENTRY_POINTS[entry](site, bad)
        refused(reply, before, f"{entry} {bad!r}")
        assert reply.json()["error"]["code"] == "invalid_user"
        assert not ledger.get_wallet(f"{site.paywall_id}:live:{bad}").exists


def test_a_good_user_id_still_passes_everywhere(site: Site) -> None:
    assert site.api.get("/v1/user/balance", params={"user": "victim"}, headers=site.auth).json()["balance"] == "5000000"
    reply = site.admin.post(
        f"/admin/paywalls/{site.paywall_id}/users/victim/adjustments", json={"amount": "1"}, headers=once()
    )
    assert reply.status_code == 201, reply.text
    assert ledger.get_wallet(f"{site.paywall_id}:live:victim").balance == 6_000_000


# ---- amounts --------------------------------------------------------------------------------------


def _topup_checkout(site: Site, amount: str) -> Any:
    token = links.topup_url(BASE, site.paywall_id, "live", "victim").rsplit("/", 1)[1]
    page = site.wallet.get(f"/pay/{token}")
    form = form_with(page.text, amount="5")  # locally its action is the simulation; the checkout is the same
    return site.wallet.post(f"/pay/{token}/checkout", data={"csrf": form["csrf"], "amount": amount})


AMOUNT_ENTRY_POINTS: dict[str, Callable[[Site, str], Any]] = {
    "deposit amount": lambda s, a: s.api.post(
        "/v1/user/balance/deposit", json={"user": "victim", "amount": a}, headers={**s.auth, **once()}
    ),
    "charge amount": lambda s, a: s.api.post(
        "/v1/user/charge", json={"user": "victim", "amount": a}, headers={**s.auth, **once()}
    ),
    "admin user adjustment": lambda s, a: s.admin.post(
        f"/admin/paywalls/{s.paywall_id}/users/victim/adjustments", json={"amount": a}, headers=once()
    ),
    "admin user adjustment (debit)": lambda s, a: s.admin.post(
        f"/admin/paywalls/{s.paywall_id}/users/victim/adjustments", json={"amount": f"-{a}"}, headers=once()
    ),
    "admin person adjustment": lambda s, a: s.admin.post(
        f"/admin/persons/{s.person_id}/adjustments", json={"amount": a}, headers=once()
    ),
    "admin withdrawal": lambda s, a: s.admin.post(
        f"/admin/paywalls/{s.shared_id}/withdrawals", json={"amount": a, "environment": "live"}, headers=once()
    ),
    "admin trial credits": lambda s, a: s.admin.patch(f"/admin/paywalls/{s.paywall_id}", json={"trial_credits": a}),
    "admin markup percent": lambda s, a: s.admin.patch(f"/admin/paywalls/{s.paywall_id}", json={"markup_percent": a}),
    "admin price": lambda s, a: s.admin.put(
        f"/admin/paywalls/{s.paywall_id}/pricing", json={"models": {"m": {"prompt": a, "completion": "1"}}}
    ),
    "admin top-up presets": lambda s, a: s.admin.put(
        f"/admin/paywalls/{s.paywall_id}/stripe", json={"secret_key": "sk_test_x", "topup_amounts": [a]}
    ),
    "top-up page amount": _topup_checkout,
}


@pytest.mark.parametrize("entry", sorted(AMOUNT_ENTRY_POINTS))
def test_amounts_take_ascii_digits_only_at_every_entry_point(site: Site, entry: str) -> None:
    before = table()
    # The page sells only its presets (5, 10, 20): the bad spellings of 5 are the ones it could take.
    values = BAD_PRESETS if entry == "top-up page amount" else BAD_AMOUNTS
    for bad in values:
        refused(AMOUNT_ENTRY_POINTS[entry](site, bad), before, f"{entry} {bad!r}")


def test_plain_amounts_still_work(site: Site) -> None:
    reply = site.api.post(
        "/v1/user/balance/deposit", json={"user": "victim", "amount": "1.5"}, headers={**site.auth, **once()}
    )
    assert reply.status_code == 200 and reply.json()["balance"] == "6500000", reply.text
    debit = site.admin.post(
        f"/admin/paywalls/{site.paywall_id}/users/victim/adjustments", json={"amount": "-0.5"}, headers=once()
    )
    assert debit.status_code == 201 and debit.json()["entry"]["amount"] == "-500000", debit.text
    priced = site.admin.put(
        f"/admin/paywalls/{site.paywall_id}/pricing", json={"models": {"m": {"prompt": "0.15", "completion": 2}}}
    )
    assert priced.status_code == 200 and priced.json()["models"]["m"]["completion"] == "2", priced.text


def test_metadata_keys_must_match_in_full(site: Site) -> None:
    before = table()
    reply = site.api.post(
        "/v1/user/balance/deposit",
        json={"user": "victim", "amount": "1", "metadata": {"order\n": "A-1"}},
        headers={**site.auth, **once()},
    )
    refused(reply, before, "metadata key with a trailing newline")


# ---- counts, cursors, headers ---------------------------------------------------------------------


def test_page_sizes_take_ascii_digits_only(site: Site) -> None:
    for bad in BAD_COUNTS:
        ledger_page = site.api.get("/v1/user/ledger", params={"user": "victim", "limit": bad}, headers=site.auth)
        assert ledger_page.status_code == 400 and ledger_page.json()["error"]["param"] == "limit", (
            bad,
            ledger_page.text,
        )
        users = site.admin.get(f"/admin/paywalls/{site.paywall_id}/users", params={"limit": bad})
        assert users.status_code == 400 and users.json()["error"]["param"] == "limit", (bad, users.text)
    assert (
        site.api.get("/v1/user/ledger", params={"user": "victim", "limit": "7"}, headers=site.auth).status_code == 200
    )


def test_a_ledger_cursor_with_non_ascii_digits_is_refused(site: Site) -> None:
    import base64

    cursor = base64.urlsafe_b64encode(("ENTRY#" + "٣" * 12).encode()).decode().rstrip("=")
    reply = site.api.get("/v1/user/ledger", params={"user": "victim", "cursor": cursor}, headers=site.auth)
    assert reply.status_code == 400 and reply.json()["error"]["code"] == "invalid_cursor", reply.text


@pytest.mark.parametrize("declared", ["²", "1²", "¹0", "1_0"])
def test_a_content_length_of_non_ascii_digits_is_a_400(declared: str) -> None:
    """Header bytes are read as Latin-1, where "²" is one byte that str.isdigit() accepts."""

    async def receive() -> dict[str, Any]:
        raise AssertionError("nothing may be read")

    headers = [(b"content-length", declared.encode("latin-1"))]
    request = Request({"type": "http", "method": "POST", "headers": headers}, receive)
    with pytest.raises(web.ApiError) as refusal:
        asyncio.run(web.read_body(request, limit=10))
    assert refusal.value.status == 400


# ---- the wallet's redirect target and sign-in codes ------------------------------------------------


def test_the_sign_in_redirect_target_must_match_in_full(site: Site) -> None:
    for evil in ("/wallet/home\n", "/wallet/home\r\nSet-Cookie: x=1", "/wallet/..", "/wallet/a/../../x", "/wallet/./"):
        page = site.wallet.get("/wallet/signin", params={"next": evil})
        assert page.status_code == 200
        assert form_with(page.text)["next"] == "/wallet/home", evil
    kept = site.wallet.get("/wallet/signin", params={"next": "/wallet/authorize/abc.def"})
    assert form_with(kept.text)["next"] == "/wallet/authorize/abc.def"


def test_sign_in_codes_take_ascii_digits_only_and_a_malformed_one_costs_no_guess(site: Site) -> None:
    challenge = otp.start("digits@example.com", "198.51.100.7")
    for typed in ("１２３４５６", "١٢٣٤٥٦", "12345６", "12٣456", "123456²"):
        with pytest.raises(otp.CodeRejected, match="6-digit code"):
            otp.verify(challenge.id, typed, "198.51.100.7")
    item = store.get(f"OTP#{challenge.id}", "OTP")
    assert item and item["attempts"] == 0
    assert otp.verify(challenge.id, challenge.code, "198.51.100.7") == "digits@example.com"


# ---- no `$` anchor and no `\d` in any validation pattern -------------------------------------------


def _patterns(path: Path) -> Iterator[tuple[int, str]]:
    """The literal patterns given to re.compile/match/fullmatch/search in a source file."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args):
            continue
        if not (isinstance(node.func.value, ast.Name) and node.func.value.id == "re"):
            continue
        if node.func.attr not in ("compile", "match", "fullmatch", "search"):
            continue
        first = node.args[0]
        parts = [first] if isinstance(first, ast.Constant) else getattr(first, "values", [])
        text = "".join(p.value for p in parts if isinstance(p, ast.Constant) and isinstance(p.value, str))
        yield node.lineno, text


def test_no_validation_pattern_ends_in_dollar_or_uses_backslash_d() -> None:
    """`$` also matches before a trailing newline and `\\d` matches every Unicode digit: validation
    patterns use \\A...\\Z (or fullmatch) and [0-9]."""
    offenders = []
    for folder in ("shared/paywalls", "functions", "devserver"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            for line, pattern in _patterns(path):
                outside_classes = re.sub(r"\[(?:\\.|[^\]])*\]", "", pattern)  # "[$%]" is a literal $
                if re.search(r"(?<!\\)\$", outside_classes) or "\\d" in pattern:
                    offenders.append(f"{path.relative_to(ROOT)}:{line}: {pattern!r}")
    assert not offenders, "\n".join(offenders)
