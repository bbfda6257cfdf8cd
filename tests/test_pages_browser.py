"""The hosted pages in a real browser: headless Chromium (Debian's `chromium` + `chromium-driver`,
driven by Selenium) against the one local stack of the end-to-end tests (conftest `stack`), clicking
through the flows a person meets:

- default mode: the top-up link an app hands out -> "Simulate payment" -> paid -> the balance;
- shared mode: the authorization link -> a sign-in page naming the app -> an email code (from the
  local mail sink), a wrong one first and "Send a new code" -> consent -> "Add money" -> paid -> back
  to the approval -> a bad limit, then a good one -> approved -> the wallet -> the app's limit reached
  and raised -> revoked after a confirmation.

Every page met is written as a phone (390x844) and a desktop (1280x900) screenshot, the full page,
to `.artifacts/screenshots/` (not committed). A missing browser FAILS these tests: `make test-deps`
installs it."""

from __future__ import annotations

import base64
import os
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.ui import WebDriverWait

from tests.chat_support import new_user
from tests.conftest import LocalStack, api, balance

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOTS = ROOT / ".artifacts" / "screenshots"
SIZES = {"phone": (390, 844, True), "desktop": (1280, 900, False)}  # width, height, mobile
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
WAIT_S = 30  # a bound on waiting for a page, not a timing assertion


class Browser:
    """A person's browser on the local stack: opens pages, fills and clicks, photographs each page."""

    def __init__(self, driver: WebDriver, stack: LocalStack):
        self.driver = driver
        self.stack = stack

    @property
    def url(self) -> str:
        return self.driver.current_url

    @property
    def text(self) -> str:
        """The page's visible text, its white space collapsed (a block element breaks the line)."""
        return " ".join(self.driver.find_element(By.TAG_NAME, "body").text.split())

    def open(self, path_or_url: str) -> None:
        self.driver.get(path_or_url if path_or_url.startswith("http") else self.stack.url + path_or_url)

    def field(self, label: str) -> WebElement:
        """An input by its accessible label (a <label for> or aria-label): the pages label every field."""
        for found in self.driver.find_elements(By.XPATH, f'//label[normalize-space()="{label}"]'):
            target = found.get_attribute("for")
            if target:
                return self.driver.find_element(By.ID, target)
        return self.driver.find_element(By.CSS_SELECTOR, f'input[aria-label="{label}"]')

    def type(self, label: str, text: str) -> None:
        box = self.field(label)
        box.clear()
        box.send_keys(text)

    def click(self, text: str) -> None:
        """Click the button or link showing `text` (exactly, ignoring outer spaces) and wait for the
        page it leads to."""
        xpath = f'//button[normalize-space()="{text}"] | //a[normalize-space()="{text}"]'
        matches = self.driver.find_elements(By.XPATH, xpath)
        assert len(matches) == 1, f"{len(matches)} buttons/links {text!r} on {self.url}:\n{self.text}"
        page = self.driver.find_element(By.TAG_NAME, "html")
        matches[0].click()
        WebDriverWait(self.driver, WAIT_S).until(expected_conditions.staleness_of(page))
        WebDriverWait(self.driver, WAIT_S).until(lambda d: d.find_elements(By.TAG_NAME, "main"))

    def links(self, text: str) -> list[str]:
        return [
            str(a.get_attribute("href"))
            for a in self.driver.find_elements(By.XPATH, f'//a[normalize-space()="{text}"]')
        ]

    def shoot(self, name: str) -> None:
        """The whole page at phone and desktop size (through CDP: the pages' CSP lets no script run)."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        for size, (width, height, mobile) in SIZES.items():
            metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile}
            self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
            content = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
            if size == "phone":  # nothing may scroll sideways on a phone
                assert content["width"] <= width + 1, f"{name}: {content['width']} px wide on a {width} px phone"
            metrics["height"] = max(height, int(content["height"]) + 1)
            self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
            shot = self.driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
            (SCREENSHOTS / f"{name}-{size}.png").write_bytes(base64.b64decode(shot["data"]))
        self.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


@pytest.fixture
def browser(stack: LocalStack) -> Iterator[Browser]:
    """A fresh headless Chromium with its own profile (no cookies from another test)."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        pytest.fail(
            f"{' and '.join(missing)} missing: the browser tests need Debian's chromium and chromium-driver "
            "(`make test-deps` installs them)",
            pytrace=False,
        )
    profile = tempfile.mkdtemp(prefix="paywalls-chromium-")
    options = Options()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(WAIT_S)
    try:
        yield Browser(driver, stack)
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def latest_code(stack: LocalStack, email: str) -> str:
    mail = httpx.get(f"{stack.url}/_dev/mail", params={"to": email}, timeout=10).json()["data"]
    assert mail, f"no mail for {email}"
    found = re.search(r"\b(\d{6})\b", mail[-1]["subject"])
    assert found, mail[-1]
    return found.group(1)


def mail_count(stack: LocalStack, email: str) -> int:
    return len(httpx.get(f"{stack.url}/_dev/mail", params={"to": email}, timeout=10).json()["data"])


def test_default_mode_top_up_page_to_a_simulated_payment(stack: LocalStack, new_paywall: Any, browser: Browser) -> None:
    paywall = new_paywall(name="Echo Shop", description="Answers & more, by the token.")
    with api(stack, paywall["key"]) as client:
        url = client.get("/user/balance/topup", params={"user": "alice"}).json()["url"]
        browser.open(url)
        assert browser.driver.title == "Top up Echo Shop"
        assert "Account: alice" in browser.text and "Balance: $0.00" in browser.text
        browser.shoot("pay-topup")
        browser.click("Simulate payment of $10.00")
        assert browser.url == f"{stack.url}/pay/success" and "Payment received" in browser.text
        browser.shoot("pay-success")
        assert balance(client, "alice") == 10_000_000
        browser.open(url)
        assert "Balance: $10.00" in browser.text

    token = url.rsplit("/", 1)[1]
    browser.open(f"/pay/cancel?link={token}")
    assert "Nothing was charged" in browser.text and browser.links("Choose another amount") == [url]
    browser.shoot("pay-cancel")
    browser.open("/pay/forged.link")
    assert "Link not valid" in browser.text
    browser.shoot("pay-link-not-valid")
    browser.open("/")
    assert "Open your wallet" in browser.text
    browser.shoot("front-page")


def test_shared_mode_from_the_authorize_link_to_a_revoked_app(
    stack: LocalStack, new_paywall: Any, browser: Browser
) -> None:
    app = new_paywall(mode="shared", platform_fee_percent="10", name="Echo Pro", description="Answers questions.")
    user = new_user()
    email = f"{user}-{uuid.uuid4().hex[:6]}@example.com"
    app_api = api(stack, app["key"])

    def charge(amount: str) -> tuple[dict[str, Any], str | None]:
        reply = app_api.post(
            "/user/charge", json={"user": user, "amount": amount}, headers={"Idempotency-Key": uuid.uuid4().hex}
        )
        assert reply.status_code == 200, reply.text
        return reply.json(), reply.headers.get("x-paywall-action")

    # 1. The app's authorization link lands on a sign-in page that names the app.
    authorize = app_api.get("/user/connect", params={"user": user}).json()["url"]
    browser.open(authorize)
    assert "/wallet/signin?next=" in browser.url
    assert "Echo Pro" in browser.text and "wants to use your wallet" in browser.text
    browser.shoot("wallet-signin-for-an-app")
    browser.type("Email", email)
    browser.click("Email me a code")
    assert f"We sent a 6-digit code to {email}" in browser.text
    browser.shoot("wallet-code")

    # 2. A wrong code keeps the address and offers a new code.
    code = latest_code(stack, email)
    browser.type("Code", f"{(int(code) + 1) % 10**6:06d}")
    browser.click("Sign in")
    assert "Wrong code" in browser.text and email in browser.text
    browser.shoot("wallet-code-wrong")
    browser.click("Send a new code")
    assert mail_count(stack, email) == 2 and f"code to {email}" in browser.text
    browser.type("Code", latest_code(stack, email))
    browser.click("Sign in")

    # 3. Consent, with an empty wallet: "Add money", then back to this approval.
    assert browser.url == authorize and "Approve to let Echo Pro charge your wallet" in browser.text
    assert "Your wallet is empty" in browser.text
    browser.shoot("wallet-consent-empty-wallet")
    browser.click("Add money")
    assert "After paying you go back to approving Echo Pro" in browser.text
    browser.shoot("wallet-topup-for-an-approval")
    browser.click("Simulate payment of $5.00")
    assert "Payment received" in browser.text
    browser.shoot("wallet-topup-success")
    browser.click("Continue to approve Echo Pro")
    assert browser.url == authorize and "$5.00" in browser.text

    # 4. A bad limit shows the form again, with the error and what was typed; then approved.
    browser.type("Spending limit amount", "1,5")
    browser.click("Approve")
    assert "Spending cap: amount must be a decimal string" in browser.text
    assert browser.field("Spending limit amount").get_attribute("value") == "1,5"
    browser.shoot("wallet-consent-bad-limit")
    browser.type("Spending limit amount", "1")
    browser.click("Approve")
    assert "Connected" in browser.text and "Echo Pro can now charge your wallet" in browser.text
    browser.shoot("wallet-connected")

    # 5. The wallet; the app reaches its limit and the wallet raises it.
    browser.click("Manage your wallet")
    assert browser.url == f"{stack.url}/wallet/home" and "Echo Pro" in browser.text and "limit $1.00" in browser.text
    browser.shoot("wallet-home")
    assert charge("1")[0]["success"] is True
    refused, action = charge("0.25")
    assert action == "cap" and f"{stack.url}/wallet/home" in refused["message"]
    browser.open(f"{stack.url}/wallet/home")
    assert "limit reached" in browser.text and "spent $1.00" in browser.text and "Balance: $4.00" in browser.text
    browser.shoot("wallet-home-limit-reached")
    browser.click("Raise or remove the limit for Echo Pro")
    assert "Echo Pro has reached the limit you set" in browser.text
    browser.shoot("wallet-connection-limit-reached")
    browser.type("Spending limit amount", "lots")
    browser.click("Save limit")
    assert "Spending cap: amount must be a decimal string" in browser.text
    browser.shoot("wallet-connection-bad-limit")
    browser.type("Spending limit amount", "3")
    browser.click("Save limit")
    assert "Spending limit saved." in browser.text and "$3.00" in browser.text
    browser.shoot("wallet-connection-saved")
    assert charge("0.25")[0]["success"] is True

    # 6. Revoking asks first; then the app is asked to authorize again.
    browser.click("Your wallet")
    browser.click("Revoke Echo Pro")
    assert "Revoke Echo Pro?" in browser.text
    browser.shoot("wallet-revoke-confirm")
    assert app_api.get("/user/connect", params={"user": user}).json()["connected"] is True
    browser.click("Revoke access")
    assert browser.url == f"{stack.url}/wallet/home" and "revoked" in browser.text
    browser.shoot("wallet-home-revoked")
    assert app_api.get("/user/connect", params={"user": user}).json()["connected"] is False
    assert charge("0.25")[1] == "authorize"
    app_api.close()

    # 7. The rest of the wallet's pages: test wallet, its top-up, a missing page, signed out.
    browser.open("/wallet/test/home")
    assert "Your test wallet" in browser.text and "Test mode" in browser.text
    browser.shoot("wallet-test-home")
    browser.click("Add test money")
    assert "Add test money" in browser.text
    browser.shoot("wallet-test-topup")
    browser.open("/wallet/no-such-page")
    assert "This page does not exist." in browser.text
    browser.shoot("wallet-not-found")
    browser.open("/wallet")
    assert browser.url == f"{stack.url}/wallet/home"
    browser.click("Sign out")
    assert "Sign in to your wallet" in browser.text and "Echo Pro" not in browser.text
    browser.shoot("wallet-signin")
