"""The console's pages in-process, over a stub admin API (the browser tests drive the real one):
the webhooks page against the shapes of the admin webhook operations, escaping, and the money and
data-block helpers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.testclient import TestClient

from paywalls.cli import CliError
from paywalls.console.app import build_app, json_for_page, micros_of

PAYWALL = {
    "id": "pw_0123456789abcdef",
    "name": "Stub <App>",
    "mode": "default",
    "currency": "usd",
    "markup_percent": "20",
    "pricing": {},
    "templates": {},
}


class StubAdmin:
    """Answers admin API paths from a dict; a missing path is the admin API's 404."""

    def __init__(self, answers: dict[str, Any]):
        self.answers = answers
        self.calls: list[str] = []

    def request(self, method: str, path: str, body: Any = None, headers: Any = None) -> Any:
        self.calls.append(f"{method} {path}")
        key = path.split("?", 1)[0]
        if key not in self.answers:
            raise CliError("HTTP 404: not found", 404)
        return self.answers[key]


def console(answers: dict[str, Any]) -> tuple[TestClient, StubAdmin]:
    stub = StubAdmin(answers)
    app, state = build_app(stub, token="t0ken")  # type: ignore[arg-type]
    client = TestClient(app, base_url="http://127.0.0.1:8765")
    assert client.get("/?token=t0ken", follow_redirects=False).status_code == 303
    return client, stub


SUBSCRIPTION = {
    "id": "whsub_1",
    "paywallId": PAYWALL["id"],
    "url": "https://hooks.example.com/<script>alert(1)</script>",
    "events": ["paywall.balance.*", "paywall.charge.succeeded"],
    "isActive": True,
    "description": "billing",
    "customHeaders": {},
    "createdAt": "2026-11-20T10:00:00.000Z",
    "updatedAt": "2026-11-20T10:00:00.000Z",
    "secretSuffix": "abcd",
    "consecutiveFailures": 2,
    "lastDeliveredAt": "2026-11-21T08:30:00.000Z",
}
DELIVERY = {
    "id": "whlog_1",
    "subscriptionId": "whsub_1",
    "eventId": "evt_1",
    "eventType": "paywall.charge.succeeded",
    "status": "error",
    "attempts": 3,
    "lastStatusCode": 502,
    "attemptLog": [],
    "nextAttemptAt": None,
    "createdAt": "2026-11-21T08:30:00.000Z",
    "updatedAt": None,
    "event": {},
}


def test_webhooks_page_lists_subscriptions_and_deliveries() -> None:
    base = f"/paywalls/{PAYWALL['id']}"
    client, stub = console(
        {
            base: PAYWALL,
            f"{base}/webhooks/subscriptions": {"object": "list", "data": [SUBSCRIPTION]},
            f"{base}/webhooks/logs": {"object": "list", "data": [DELIVERY], "hasMore": True, "nextCursor": "c1"},
        }
    )
    page = client.get(f"/p/{PAYWALL['id']}/webhooks?env=live&status=error")
    assert page.status_code == 200
    html = page.text
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "paywall.balance.*, paywall.charge.succeeded" in html and "21 Nov 2026, 08:30 UTC" in html
    assert ">502<" in html and "cursor=c1" in html and "Stub &lt;App&gt;" in html
    assert f"GET {base}/webhooks/logs?limit=50&status=error" in stub.calls


def test_webhooks_page_without_webhooks_in_the_deployment() -> None:
    client, _ = console({f"/paywalls/{PAYWALL['id']}": PAYWALL})
    page = client.get(f"/p/{PAYWALL['id']}/webhooks")
    assert page.status_code == 200 and "does not send webhooks yet" in page.text


def test_an_admin_api_refusal_is_a_page_not_a_traceback() -> None:
    client, _ = console({})
    page = client.get("/p/pw_missing")
    assert page.status_code == 404 and "not found" in page.text and "Traceback" not in page.text
    assert client.get("/p/pw_missing?env=staging").status_code in (400, 404)


def test_sessions_and_forms_are_guarded() -> None:
    client, _ = console({})
    fresh = TestClient(client.app, base_url="http://127.0.0.1:8765")
    assert fresh.get("/").status_code == 401 and fresh.get("/?token=nope").status_code == 403
    refused = client.post("/p/pw_x/keys", data={"environment": "test", "csrf": "forged"})
    assert refused.status_code == 403


@pytest.mark.parametrize(
    "formatted, micros", [("1.234500", 1_234_500), ("-0.000104", -104), ("0.000000", 0), (None, 0)]
)
def test_money_from_the_api(formatted: str | None, micros: int) -> None:
    assert micros_of(formatted) == micros


def test_page_data_cannot_close_its_block() -> None:
    text = json_for_page({"models": ["</script><script>alert(1)</script>", "a&b"]})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"models": ["</script><script>alert(1)</script>", "a&b"]}
