"""PUT /admin/paywalls/{id}/stripe in-process (moto) with the real `stripe` library talking to the local
Stripe stub: the key goes to Secrets Manager, the webhook endpoint is created through the API, its
signing secret is stored, and no secret ever appears in a response or on the paywall record."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from devserver.router import load_function_app
from paywalls.billing import paywall as paywalls
from paywalls.billing import stripe_config
from paywalls.infra import secrets as secrets_store
from paywalls.infra.config import settings
from tests import stripe_stub as st

TOKEN = "adm_test_token"
EVENTS = [
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
    "charge.refunded",
    "refund.updated",
    "charge.dispute.closed",
]


@pytest.fixture
def stub(monkeypatch: pytest.MonkeyPatch) -> Iterator[st.StripeStub]:
    with st.StripeStub().running() as running:
        monkeypatch.setenv("STRIPE_API_BASE", running.url)
        yield running


@pytest.fixture
def admin(aws_mock: None, stub: st.StripeStub, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("ADMIN_AUTH", "token")
    monkeypatch.setenv("ADMIN_TOKEN", TOKEN)
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://pay.example.com")
    settings.cache_clear()
    app = load_function_app("functions/admin", "AdminFunction")
    with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield client
    settings.cache_clear()


def new_paywall(admin: TestClient, **fields: Any) -> str:
    return admin.post("/admin/paywalls", json={"name": "Shop", **fields}).json()["id"]


def stored(paywall_id: str, mode: str) -> dict[str, Any]:
    return json.loads(secrets_store.get_secret(stripe_config.secret_name(paywall_id, mode), force_fetch=True))


def test_configuring_a_test_key_creates_the_webhook_and_stores_its_secret(
    admin: TestClient, stub: st.StripeStub
) -> None:
    pid = new_paywall(admin)
    reply = admin.put(
        f"/admin/paywalls/{pid}/stripe", json={"secret_key": "rk_test_abc123", "topup_amounts": ["10", "2.5"]}
    )
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["mode"] == "test"
    assert body["test"]["configured"] is True and body["test"]["key_type"] == "restricted"
    assert body["test"]["webhook_url"] == f"https://pay.example.com/webhooks/stripe/{pid}"
    assert body["live"] is None
    assert body["topup_amounts"] == ["2.5", "10"]

    [call] = stub.calls("POST", "/v1/webhook_endpoints")
    assert call.api_key == "rk_test_abc123"
    assert call.form["url"] == f"https://pay.example.com/webhooks/stripe/{pid}"
    assert call.form_list("enabled_events") == EVENTS
    endpoint = stub.endpoints[body["test"]["webhook_endpoint_id"]]

    secret = stored(pid, "test")
    assert secret == {
        "secret_key": "rk_test_abc123",
        "webhook_secret": endpoint["secret"],
        "webhook_endpoint_id": endpoint["id"],
    }
    paywall_view = admin.get(f"/admin/paywalls/{pid}").text
    for text in (reply.text, paywall_view, json.dumps(paywalls.get(pid).stripe)):
        assert "rk_test_abc123" not in text
        assert endpoint["secret"] not in text
        assert "whsec_" not in text


def test_live_and_test_keys_are_kept_apart_and_reconfiguring_replaces_the_endpoint(
    admin: TestClient, stub: st.StripeStub
) -> None:
    pid = new_paywall(admin)
    first = admin.put(f"/admin/paywalls/{pid}/stripe", json={"secret_key": "sk_test_one"}).json()
    live = admin.put(f"/admin/paywalls/{pid}/stripe", json={"secret_key": "sk_live_one"}).json()
    assert live["mode"] == "live" and live["live"]["configured"] and live["test"]["configured"]
    assert stored(pid, "live")["secret_key"] == "sk_live_one"
    assert stored(pid, "test")["secret_key"] == "sk_test_one"
    assert live["topup_amounts"] == ["5", "10", "20"]

    second = admin.put(f"/admin/paywalls/{pid}/stripe", json={"secret_key": "sk_test_two"}).json()
    old_id, new_id = first["test"]["webhook_endpoint_id"], second["test"]["webhook_endpoint_id"]
    assert old_id != new_id
    [delete] = stub.calls("DELETE", "/v1/webhook_endpoints/")
    assert delete.path.endswith(old_id) and delete.api_key == "sk_test_one"
    assert stored(pid, "test")["webhook_secret"] == stub.webhook_secret(new_id)
    assert stored(pid, "live")["secret_key"] == "sk_live_one"  # untouched


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({}, 400, "secret_key"),
        ({"secret_key": "pk_test_123"}, 400, "secret_key"),
        ({"secret_key": "whsec_123"}, 400, "secret_key"),
        ({"secret_key": "sk_test_ 1"}, 400, "secret_key"),
        ({"secret_key": 42}, 400, "secret_key"),
        ({"secret_key": "sk_test_1", "topup_amounts": []}, 400, "topup_amounts"),
        ({"secret_key": "sk_test_1", "topup_amounts": ["0.25"]}, 400, "topup_amounts"),
        ({"secret_key": "sk_test_1", "topup_amounts": ["1.005"]}, 400, "topup_amounts"),
        ({"secret_key": "sk_test_1", "topup_amounts": [5.5]}, 400, "topup_amounts"),
        ({"secret_key": "sk_test_1", "topup_amounts": ["5", "5"]}, 400, "topup_amounts"),
        ({"secret_key": "sk_test_1", "topup_amounts": ["20000"]}, 400, "topup_amounts"),
        ({"secret_key": "sk_test_1", "webhook_secret": "whsec_x"}, 400, "webhook_secret"),
    ],
)
def test_bad_input_is_400_and_calls_nobody(
    admin: TestClient, stub: st.StripeStub, body: dict[str, Any], status: int, param: str
) -> None:
    pid = new_paywall(admin)
    reply = admin.put(f"/admin/paywalls/{pid}/stripe", json=body)
    assert reply.status_code == status, reply.text
    assert reply.json()["error"]["param"] == param
    assert stub.requests == []
    assert paywalls.get(pid).stripe is None


def test_keys_stripe_refuses_are_400_without_echoing_the_key(admin: TestClient, stub: st.StripeStub) -> None:
    pid = new_paywall(admin)
    stub.rejected_keys.add("sk_test_revokedkey9999")
    stub.forbidden_keys.add("rk_test_readonly7777")
    rejected = admin.put(f"/admin/paywalls/{pid}/stripe", json={"secret_key": "sk_test_revokedkey9999"})
    forbidden = admin.put(f"/admin/paywalls/{pid}/stripe", json={"secret_key": "rk_test_readonly7777"})
    assert rejected.status_code == 400 and rejected.json()["error"]["code"] == "stripe_rejected"
    assert forbidden.status_code == 400 and "permission" in forbidden.json()["error"]["message"]
    for reply in (rejected, forbidden):
        assert "9999" not in reply.text and "7777" not in reply.text and "sk_test_" not in reply.text
    assert paywalls.get(pid).stripe is None
    with pytest.raises(secrets_store.SecretMissing):
        stored(pid, "test")


def test_unreachable_stripe_is_502(admin: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import free_port

    monkeypatch.setenv("STRIPE_API_BASE", f"http://127.0.0.1:{free_port()}")
    pid = new_paywall(admin)
    reply = admin.put(f"/admin/paywalls/{pid}/stripe", json={"secret_key": "sk_test_abc"})
    assert reply.status_code == 502
    assert reply.json()["error"]["code"] == "stripe_unavailable"
    assert paywalls.get(pid).stripe is None


def test_shared_mode_and_unknown_paywalls_are_refused(admin: TestClient, stub: st.StripeStub) -> None:
    shared = new_paywall(admin, mode="shared")
    assert admin.put(f"/admin/paywalls/{shared}/stripe", json={"secret_key": "sk_test_1"}).status_code == 409
    assert admin.put("/admin/paywalls/pw_nope/stripe", json={"secret_key": "sk_test_1"}).status_code == 404
    assert stub.requests == []


def test_admin_auth_is_required(admin: TestClient, stub: st.StripeStub) -> None:
    pid = new_paywall(admin)
    reply = admin.put(
        f"/admin/paywalls/{pid}/stripe", json={"secret_key": "sk_test_1"}, headers={"Authorization": "Bearer nope"}
    )
    assert reply.status_code == 401
    assert stub.requests == []
