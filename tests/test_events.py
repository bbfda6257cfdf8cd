"""Every file in events/ through its function's handler, as `sam local invoke` would run it (without
Docker): Mangum for the buffered functions; for the chat function, whose Lambda entry point is the
Web Adapter in front of uvicorn, the same API Gateway event through Mangum around the same ASGI app.

Events carry placeholders (paywall `pw_demo`, an example key, a dummy Stripe signature); the test
seeds a real paywall in moto and substitutes them, so each event exercises its real code path."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import pytest
from mangum import Mangum

from devserver.router import load_function_module
from devserver.stack import create_app_secret
from devserver.template import functions, load_template
from paywalls.analytics import reports as analytics_reports
from paywalls.billing import ledger, stripe_config
from paywalls.billing import paywall as paywalls
from paywalls.infra import links
from paywalls.infra import secrets as secrets_store
from paywalls.infra.config import settings

ROOT = Path(__file__).resolve().parent.parent
EVENTS = sorted((ROOT / "events").glob("*.json"))
TEMPLATE = load_template(ROOT / "template.yaml")
EXAMPLE_KEY = "sk-paywalls-test-EXAMPLEKEYEXAMPLEKEYEXAMPLEKEY"
WEBHOOK_SECRET = "whsec_events_test_secret"


class LambdaContext:
    function_name = "test"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:test"
    aws_request_id = "00000000-0000-0000-0000-000000000000"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def function_for(event_file: Path) -> str:
    """events/<code folder>-<case>.json -> the logical id whose CodeUri is functions/<code folder>/."""
    folder = event_file.stem.split("-", 1)[0]
    for logical_id, resource in functions(TEMPLATE).items():
        if resource["Properties"]["CodeUri"].rstrip("/") == f"functions/{folder}":
            return logical_id
    raise AssertionError(f"{event_file.name}: no function with CodeUri functions/{folder}/")


@pytest.fixture
def seeded(aws_mock: None, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setenv("ADMIN_AUTH", "iam")  # as in AWS: the admin event carries an IAM identity
    monkeypatch.delenv("ADMIN_TOKEN", raising=False)
    monkeypatch.delenv("PUBLIC_BASE_URL", raising=False)
    settings.cache_clear()
    create_app_secret()
    paywall = paywalls.create({"name": "Events app"})
    paywalls.set_pricing(paywall.id, {"models": {"demo/echo": {"prompt": "1", "completion": "2"}}})
    secret_name = paywalls.provider_secret_name(settings().secret_prefix, paywall.id)
    secrets_store.put_secret(secret_name, "unused-provider-key")
    paywalls.set_provider(paywall.id, "openai-compatible", "http://127.0.0.1:9/v1", secret_name)
    _, key = paywalls.issue_key(paywall.id, "test")
    stripe_config.save_secrets(paywall.id, "test", stripe_config.StripeSecrets(None, WEBHOOK_SECRET))
    yield {"paywall": paywall, "key": key}
    settings.cache_clear()


def substitute(event: dict[str, Any], seeded: dict[str, Any]) -> dict[str, Any]:
    text = json.dumps(event).replace("pw_demo", seeded["paywall"].id).replace(EXAMPLE_KEY, seeded["key"])
    return json.loads(text)


def sign_stripe(event: dict[str, Any]) -> None:
    timestamp = int(time.time())
    body = event["body"]
    signature = hmac.new(WEBHOOK_SECRET.encode(), f"{timestamp}.{body}".encode(), hashlib.sha256).hexdigest()
    header = f"t={timestamp},v1={signature}"
    event["headers"]["Stripe-Signature"] = header
    event["multiValueHeaders"]["Stripe-Signature"] = [header]


def invoke(logical_id: str, event: dict[str, Any]) -> dict[str, Any]:
    code_uri = TEMPLATE["Resources"][logical_id]["Properties"]["CodeUri"]
    module = load_function_module(code_uri.rstrip("/"), logical_id)
    # ChatFunction's entry point is run.sh (Web Adapter + uvicorn); the adapter's event -> HTTP
    # translation is what Mangum does for the buffered ones.
    handler = Mangum(module.app, lifespan="off") if logical_id == "ChatFunction" else module.handler
    return handler(event, LambdaContext())


def body_of(response: dict[str, Any]) -> str:
    raw = response.get("body") or ""
    return base64.b64decode(raw).decode() if response.get("isBase64Encoded") else raw


def test_every_function_has_an_event() -> None:
    covered = {function_for(f) for f in EVENTS}
    assert covered == set(functions(TEMPLATE))


@pytest.mark.parametrize("event_file", EVENTS, ids=lambda f: f.stem)
def test_event_runs_through_its_handler(event_file: Path, seeded: dict[str, Any]) -> None:
    logical_id = function_for(event_file)
    event = substitute(json.loads(event_file.read_text()), seeded)
    paywall = seeded["paywall"]
    if logical_id == "SweeperFunction":
        ledger.credit("pw_x:test:u", 100, idempotency_key="seed")
        ledger.hold("pw_x:test:u", 60, hold_id="stale", ttl_s=-1)
        assert invoke(logical_id, event) == {"released": 1}
        assert ledger.get_wallet("pw_x:test:u").available == 100
        return
    if logical_id == "AnalyticsFunction":
        # The same charge delivered twice (a retried batch): counted once, nothing reported failed.
        assert invoke(logical_id, event) == {"batchItemFailures": []}
        report = analytics_reports.usage(paywall.id, "test", "2026-11-20", "2026-11-21", compare=False)
        assert (report["revenue"], report["provider_cost"], report["requests"]) == ("0.001500", "0.000900", 1)
        return
    if logical_id in ("EventDispatcherFunction", "EventDeliveryFunction"):
        # An outbox event of a paywall without subscriptions fans out to nothing; a delivery message
        # for an event that is gone (expired) is done: neither is a failure to retry.
        assert invoke(logical_id, event) == {"batchItemFailures": []}
        return
    if logical_id == "StripeWebhookFunction":
        sign_stripe(event)
    if logical_id == "WalletFunction":
        token = links.sign(links.LinkClaims("topup", paywall.id, "test", "alice"))
        event["path"] = f"/pay/{token}"
        event["pathParameters"] = {"proxy": token}
    response = invoke(logical_id, event)
    status, text = response["statusCode"], body_of(response)
    headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
    assert status == 200, (status, text)
    if logical_id == "ChatFunction":
        # A new user has no balance: the top-up reply, nothing charged.
        assert headers.get("x-paywall-action") == "topup" and "/pay/" in text
    elif logical_id == "UserApiFunction":
        assert json.loads(text)["balance"] == "0"
    elif logical_id == "AdminFunction":
        assert json.loads(text)["id"] == paywall.id
    elif logical_id == "StripeWebhookFunction":
        balance = ledger.get_wallet(f"{paywall.id}:test:alice").balance
        assert balance == 1000 * 10_000  # amount_total 1000 cents
    elif logical_id == "WalletFunction":
        # No Stripe key and not the local stack: the page says so instead of offering checkout.
        assert "Events app" in text and "not set up" in text
    if logical_id != "StripeWebhookFunction":
        assert headers.get("x-request-id", "").startswith("req_")
