"""The operator console in a real headless Chromium (as tests/test_pages_browser.py), served by the
local stack (`make run` starts it; its login link is in local.json) over the admin API: log in with
the per-start token, see KPIs that match the ledger, filter, export CSV and compare it with the API,
change a price, create and revoke a key, adjust a user. Every page is photographed at phone and
desktop size under .artifacts/screenshots/ (console-*.png)."""

from __future__ import annotations

import csv
import io
import uuid
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from paywalls.core.money import format_for_people
from tests.chat_support import fund, make_paywall, new_user
from tests.conftest import LocalStack
from tests.test_pages_browser import WAIT_S, Browser, browser  # noqa: F401  (the fixture)

CHAT = {"model": "demo/echo", "messages": [{"role": "user", "content": "hello there, console"}]}


def drain(stack: LocalStack) -> None:
    """Deliver the table stream to the analytics consumer now (make run polls it every half second)."""
    httpx.post(f"{stack.url}/_dev/events/drain", timeout=60).raise_for_status()


def chat(stack: LocalStack, key: str, user: str, times: int) -> None:
    for _ in range(times):
        reply = httpx.post(
            f"{stack.url}/v1/chat/completions",
            json={**CHAT, "user": user},
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        assert reply.status_code == 200, reply.text


def api_ledger(stack: LocalStack, pid: str, **params: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    cursor = None
    with stack.admin() as admin:
        while True:
            query = {"environment": "live", **params, **({"cursor": cursor} if cursor else {})}
            page = admin.get(f"/admin/paywalls/{pid}/ledger", params=query).raise_for_status().json()
            rows += page["data"]
            cursor = page["next_cursor"]
            if not cursor:
                return rows


@pytest.fixture
def shop(stack: LocalStack) -> dict[str, Any]:
    """A paywall with two funded users who chatted, the roll-ups up to date."""
    paywall = make_paywall(stack, name="Console Shop")
    users = [new_user("ann"), new_user("bob")]
    for user, requests in zip(users, (3, 1), strict=True):
        fund(stack, paywall["id"], user, "2")
        chat(stack, paywall["key"], user, requests)
    drain(stack)
    return {**paywall, "users": users}


def login(browser: Browser) -> str:  # noqa: F811
    """Open the console's login link; answers the console's base URL."""
    url = browser.stack.config["console_url"]
    parts = urlsplit(url)
    base = f"{parts.scheme}://{parts.netloc}"
    browser.open(url)
    assert browser.url == base + "/", "the token is exchanged for a cookie and dropped from the address"
    cookie = browser.driver.get_cookie("pwc_session")
    assert cookie and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    return base


def press(browser: Browser, text: str) -> None:  # noqa: F811
    """Click a button or link and wait for the page it leads to to finish loading (its scripts too:
    a click while the next page still loads Chart.js may land on a node being replaced)."""
    browser.click(text)
    WebDriverWait(browser.driver, WAIT_S).until(lambda d: d.execute_script("return document.readyState") == "complete")


def test_console_needs_the_start_token(stack: LocalStack) -> None:
    parts = urlsplit(stack.config["console_url"])
    base = f"{parts.scheme}://{parts.netloc}"
    assert parts.hostname == "127.0.0.1"
    assert httpx.get(base + "/").status_code == 401
    assert httpx.get(base + "/?token=wrong").status_code == 403
    with httpx.Client(base_url=base, follow_redirects=False) as client:
        assert client.get(stack.config["console_url"]).status_code == 303
        page = client.get("/")
        assert page.status_code == 200 and "script-src 'self'" in page.headers["content-security-policy"]
        # A change without the session's CSRF token is refused, whatever else it carries.
        pid = stack.config["paywall_id"]
        refused = client.post(f"/p/{pid}/keys", data={"environment": "test", "csrf": "forged"})
        assert refused.status_code == 403


def test_operator_console_end_to_end(stack: LocalStack, shop: dict[str, Any], browser: Browser) -> None:  # noqa: F811
    pid, (ann, bob) = shop["id"], shop["users"]
    base = login(browser)
    assert "Console Shop" in browser.text
    browser.shoot("console-paywalls")

    # Overview: the KPIs are the ledger's own sums (4 charges of the two users).
    charges = api_ledger(stack, pid, type="charge")
    assert len(charges) == 4
    revenue = sum(-int(c["amount"]) for c in charges)
    browser.open(f"{base}/p/{pid}?env=live&period=7&compare=on")
    kpi = {
        k.get_attribute("data-kpi"): k.find_element(By.CLASS_NAME, "value").text
        for k in browser.driver.find_elements(By.CLASS_NAME, "kpi")
    }
    assert kpi["Revenue"] == format_for_people(revenue, "usd")
    assert kpi["Requests"] == "4"
    assert kpi["Profit"] == format_for_people(revenue, "usd")  # the demo provider reports no cost
    assert browser.driver.execute_script("return Chart.instances && Object.keys(Chart.instances).length") == 3
    assert ann in browser.text and "demo/echo" in browser.text
    browser.shoot("console-overview")
    browser.driver.find_element(By.ID, "period").send_keys("Today")
    press(browser, "Show")
    assert (
        "Requests by hour" in browser.text
        and kpi["Requests"] == browser.driver.find_element(By.CSS_SELECTOR, '[data-kpi="Requests"] .value').text
    )
    browser.shoot("console-overview-today")

    # Users: the list, then one user found by id.
    browser.open(f"{base}/p/{pid}/users?env=live")
    assert ann in browser.text and bob in browser.text
    browser.shoot("console-users")
    browser.type("Find a user by id", ann)
    press(browser, "Find")
    assert f"User {ann}" in browser.text
    ann_spend = sum(-int(c["amount"]) for c in charges if c["user"] == ann)
    assert browser.driver.find_element(By.CSS_SELECTOR, '[data-field="total_spend"]').text == format_for_people(
        ann_spend, "usd"
    )
    link = browser.driver.find_element(By.ID, "user-link").get_attribute("value") or ""
    assert link.startswith(f"{stack.url}/pay/")
    copy = browser.driver.find_element(By.XPATH, '//button[.="Copy link"]')
    copy.click()  # the page's script selects the link and copies it
    assert copy.text == "Copied"
    browser.shoot("console-user")

    # Adjust the user, with a reason.
    before = Decimal(
        browser.driver.find_element(By.CSS_SELECTOR, '[data-field="balance"]').text.removeprefix("$").replace(",", "")
    )
    browser.type("Amount (negative to debit)", "1.25")
    browser.type("Reason", "goodwill credit")
    press(browser, "Adjust balance")
    assert "Adjusted by 1.25" in browser.text
    after = browser.driver.find_element(By.CSS_SELECTOR, '[data-field="balance"]').text
    assert after == f"${before + Decimal('1.25'):.2f}"
    adjustments = api_ledger(stack, pid, user=ann, type="adjustment")
    assert [a["metadata"].get("reason") for a in adjustments][0] == "goodwill credit"

    # Ledger: filter by type and user; the table shows exactly the API's rows.
    browser.open(f"{base}/p/{pid}/ledger?env=live")
    browser.type("User", bob)
    browser.driver.find_element(By.ID, "f-type").send_keys("charge")
    press(browser, "Filter")
    rows = browser.driver.find_elements(By.CSS_SELECTOR, "table.ledger tbody tr")
    assert len(rows) == len(api_ledger(stack, pid, user=bob, type="charge")) == 1
    browser.shoot("console-ledger")

    # CSV export (every page, streamed) equals the API's CSV pages.
    browser.open(f"{base}/p/{pid}/ledger?env=live")
    export = browser.driver.find_element(By.XPATH, '//a[.="Export CSV"]').get_attribute("href") or ""
    session = {"pwc_session": browser.driver.get_cookie("pwc_session")["value"]}  # type: ignore[index]
    exported = httpx.get(export, cookies=session, timeout=60)
    assert exported.status_code == 200 and exported.headers["content-type"].startswith("text/csv")
    with stack.admin() as admin:
        direct = admin.get(f"/admin/paywalls/{pid}/ledger.csv", params={"environment": "live", "limit": "1000"})
    assert exported.text == direct.text
    table = list(csv.DictReader(io.StringIO(exported.text)))
    assert {r["id"] for r in table} == {e["id"] for e in api_ledger(stack, pid)}

    # Settings: change a price (the marked-up price shows beside it), create a key (shown once) and revoke it.
    browser.open(f"{base}/p/{pid}/settings?env=live")
    browser.type("Model", "demo/echo")
    browser.type("Prompt price", "3")
    browser.type("Completion price", "4")
    browser.type("Request price", "0.0002")
    press(browser, "Save price")
    assert "Price of demo/echo saved" in browser.text
    with stack.admin() as admin:
        priced = admin.get(f"/admin/paywalls/{pid}").json()["pricing"]["demo/echo"]
    assert priced == {"prompt": "3", "completion": "4", "request": "0.0002"}
    press(browser, "Create key")
    key = browser.driver.find_element(By.ID, "new-key").get_attribute("value") or ""
    assert key.startswith("sk-paywalls-") and "shown only once" in browser.text
    browser.shoot("console-settings-new-key")
    check = {"Authorization": f"Bearer {key}"}
    assert httpx.get(f"{stack.url}/v1/user/balance", params={"user": ann}, headers=check).status_code == 200
    browser.open(f"{base}/p/{pid}/settings?env=live")
    assert key not in browser.driver.page_source, "a key is shown once, never again"
    with stack.admin() as admin:
        keys = admin.get(f"/admin/paywalls/{pid}/keys").json()["data"]
    newest = max((k for k in keys if k["environment"] == "test"), key=lambda k: k["created_at"])
    page = browser.driver.find_element(By.TAG_NAME, "html")
    browser.driver.find_element(By.CSS_SELECTOR, f'button[aria-label="Revoke key {newest["id"]}"]').click()
    WebDriverWait(browser.driver, WAIT_S).until(expected_conditions.staleness_of(page))
    WebDriverWait(browser.driver, WAIT_S).until(lambda d: d.execute_script("return document.readyState") == "complete")
    assert f"Key {newest['id']} revoked" in browser.text
    assert httpx.get(f"{stack.url}/v1/user/balance", params={"user": ann}, headers=check).status_code == 401
    browser.shoot("console-settings")

    browser.open(f"{base}/p/{pid}/earnings?env=live")
    assert "Earnings are for shared-mode paywalls" in browser.text
    browser.shoot("console-earnings")
    with stack.admin() as admin:  # the app's webhooks, through the admin mirror of the webhook API
        created = admin.post(
            f"/admin/paywalls/{pid}/webhooks/subscriptions",
            json={"url": "https://hooks.example.com/paywalls", "events": ["paywall.balance.*"]},
        ).raise_for_status()
    subscription = created.json()["subscription"]
    browser.open(f"{base}/p/{pid}/webhooks?env=live")
    assert "https://hooks.example.com/paywalls" in browser.text and "does not send webhooks" not in browser.text
    assert subscription["secret"] not in browser.driver.page_source  # the secret is shown once, by the API
    browser.shoot("console-webhooks")


def test_shared_mode_earnings_page(stack: LocalStack, browser: Browser) -> None:  # noqa: F811
    paywall = make_paywall(stack, name="Console Shared", mode="shared", platform_fee_percent="10")
    base = login(browser)
    browser.open(f"{base}/p/{paywall['id']}/earnings?env=live")
    assert "Platform fees" in browser.text and "No withdrawals yet" in browser.text
    browser.shoot("console-earnings-shared")
    browser.open(f"{base}/p/{paywall['id']}/users/{uuid.uuid4().hex[:8]}?env=live")
    assert "not connected" in browser.text and "/wallet/authorize/" in (
        browser.driver.find_element(By.ID, "user-link").get_attribute("value") or ""
    )
    browser.shoot("console-user-shared")
