"""Helpers of the shared-mode tests: an app secret in moto, shared paywalls, funded persons, and a
Stripe stub that also knows Connect transfers."""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from html import unescape
from typing import Any

import httpx
import pytest

from paywalls.billing import earnings, ledger
from paywalls.billing import paywall as paywalls
from paywalls.infra import secrets as secrets_store
from paywalls.infra.config import settings
from paywalls.wallets import persons
from tests import stripe_stub as st


def app_secret() -> None:
    secrets_store.put_secret(f"{settings().secret_prefix}/app", json.dumps({"link_signing_key": "s" * 43}))


@contextmanager
def hosted_pages(monkeypatch: pytest.MonkeyPatch, base: str) -> Iterator[None]:
    """Settings of the hosted pages under test: links on `base`, mail to the local sink instead of SES,
    the app secret links are signed with; the settings are read again on leaving."""
    monkeypatch.setenv("PAYWALLS_LOCAL_DEV", "1")
    monkeypatch.setenv("PUBLIC_BASE_URL", base)
    settings.cache_clear()
    app_secret()
    yield
    settings.cache_clear()


def shared_paywall(name: str = "Shared app", fee: str = "10", **fields: Any) -> paywalls.Paywall:
    paywall = paywalls.create({"name": name, "mode": "shared", "platform_fee_percent": fee, **fields})
    return paywalls.set_pricing(paywall.id, {"models": {"demo/echo": {"prompt": "1", "completion": "2"}}})


def funded_person(email: str | None = None, micros: int = 10_000_000, environment: str = "live") -> persons.Person:
    """A person whose wallet of `environment` holds `micros` (the other wallet stays empty)."""
    person = persons.get_or_create(email or f"p{secrets.token_hex(4)}@example.com")
    if micros:
        ledger.credit(person.wallet_for(environment), micros, idempotency_key=f"fund-{secrets.token_hex(4)}")
    return person


def consistent(wallet_id: str) -> int:
    """SPEC §4.5: the entries of a wallet sum to its balance."""
    total = sum(e.amount for e in ledger.all_entries(wallet_id))
    assert total == ledger.get_wallet(wallet_id).balance
    return total


class Clock:
    """The earnings clock (earnings.now, which decides what has matured) moved by a test instead of
    sleeping through the settlement delay. Charges keep the real time of their entries."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.offset = timedelta(0)
        monkeypatch.setattr(earnings, "now", self.now)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, days: float) -> None:
        self.offset += timedelta(days=days)

    def set(self, moment: datetime) -> None:
        self.offset = moment - datetime.now(UTC)

    def past_hold(self) -> None:
        """Past every earning made so far: the hold, plus the day its maturity is rounded up to."""
        self.advance(settings().earnings_hold_days + 1)


def earnings_consistent(paywall_id: str, environment: str) -> None:
    """Per shard, the earnings entries sum to available + pending, the counters agree with each
    other, and `pending` is the sum of the day buckets."""
    for shard in earnings.shards(paywall_id, environment):
        entries = earnings.entries(paywall_id, environment, shard.index)
        assert sum(e["amount"] for e in entries) == shard.available + shard.pending
        assert shard.earned - shard.withdrawn - shard.reversed == shard.available + shard.pending
        assert shard.pending == sum(shard.buckets.values())
        assert shard.gross - shard.fees == shard.earned
        assert sum(1 for e in entries if e["type"] == "charge") == shard.charges
        assert shard.available >= 0 and all(v >= 0 for v in shard.buckets.values())


class ConnectStripeStub(st.StripeStub):
    """The payments stub, which also knows Stripe Connect transfers (tests/stripe_stub.py)."""


# ---- a browser on the wallet pages --------------------------------------------------------------


def forms(html: str) -> list[dict[str, str]]:
    """Each form's action and the values a browser would submit as is: hidden inputs, prefilled fields
    and the checked radio button of each group."""
    found = []
    for form in re.findall(r"<form .*?</form>", html, re.S):
        fields = {"action": unescape(re.search(r'action="([^"]+)"', form).group(1))}  # type: ignore[union-attr]
        for tag in re.findall(r"<input [^>]*>", form):
            named = re.search(r'name="([^"]+)" value="([^"]*)"', tag)
            if named and ('type="radio"' not in tag or re.search(r"\schecked\b", tag)):
                fields[named.group(1)] = unescape(named.group(2))
        found.append(fields)
    return found


def links_to(html: str, suffix: str) -> list[str]:
    """The targets of the page's links (`<a href>`) that end with `suffix`."""
    return [unescape(href) for href in re.findall(r'<a [^>]*href="([^"]+)"', html) if unescape(href).endswith(suffix)]


def form_with(html: str, **match: str) -> dict[str, str]:
    for form in forms(html):
        if all(form.get(k) == v for k, v in match.items()):
            return form
    raise AssertionError(f"no form with {match} in:\n{html}")


def code_from(mail_subject: str) -> str:
    found = re.search(r"\b(\d{6})\b", mail_subject)
    assert found, mail_subject
    return found.group(1)


class WalletBrowser:
    """A person's browser: keeps cookies, submits the pages' own forms, reads codes from an inbox."""

    def __init__(self, client: httpx.Client, base: str, inbox: Callable[[str], str]):
        self.client = client
        self.base = base.rstrip("/")
        self.inbox = inbox  # email -> subject of the newest mail sent to it

    def get(self, url: str) -> httpx.Response:
        return self.client.get(url, follow_redirects=False)

    def submit(self, form: dict[str, str], **values: str) -> httpx.Response:
        data = {k: v for k, v in form.items() if k != "action"} | values
        return self.client.post(form["action"], data=data, follow_redirects=False)

    def sign_in(self, email: str, next_path: str = "/wallet/home") -> httpx.Response:
        page = self.get(f"{self.base}/wallet/signin?next={next_path}")
        assert page.status_code == 200, page.text
        code_page = self.submit(form_with(page.text), email=email)
        assert code_page.status_code == 200, code_page.text
        verify = form_with(code_page.text)
        done = self.submit(verify, code=code_from(self.inbox(email)))
        assert done.status_code == 303, done.text
        return done

    def approve(self, authorize_url: str, cap: str | None = None) -> httpx.Response:
        """Approve with a spending limit of `cap`, or with the explicit "no limit" choice (None)."""
        page = self.get(authorize_url)
        assert page.status_code == 200, page.text
        form = form_with(page.text, decision="approve")
        if cap is None:
            return self.submit(form, limit="none")
        return self.submit(form, limit="cap", cap=cap)

    def simulate_topup(self, amount: str = "10", environment: str = "live") -> httpx.Response:
        page = self.get(self.base + ("/wallet/topup" if environment == "live" else "/wallet/test/topup"))
        assert page.status_code == 200, page.text
        return self.submit(form_with(page.text, amount=amount))

    def revoke_all(self) -> int:
        """Revoke every connected app from the wallet page: each "Revoke" link asks for confirmation,
        whose form revokes."""
        home = self.get(f"{self.base}/wallet/home")
        revoked = 0
        for url in links_to(home.text, "/revoke"):
            confirm = self.get(url)
            assert confirm.status_code == 200, confirm.text
            assert self.submit(form_with(confirm.text, action=url)).status_code == 303
            revoked += 1
        return revoked
