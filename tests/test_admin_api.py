"""Admin API (SPEC §7) in-process against moto: validation, immutability, keys, secrets handling,
auth modes. The same app serves the local stack (see test_cli.py for over-HTTP checks)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from devserver.router import load_function_app
from paywalls import aws, secrets_store, store
from paywalls.config import settings

TOKEN = "adm_test_token"


@pytest.fixture
def admin(aws_mock: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    monkeypatch.setenv("ADMIN_AUTH", "token")
    monkeypatch.setenv("ADMIN_TOKEN", TOKEN)
    settings.cache_clear()
    app = load_function_app("functions/admin", "AdminFunction")
    with TestClient(app, headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        yield client
    settings.cache_clear()


@pytest.fixture
def user_api(aws_mock: None) -> TestClient:
    return TestClient(load_function_app("functions/user_api", "UserApiFunction"))


def create(admin: TestClient, **fields: object) -> dict:
    response = admin.post("/admin/paywalls", json={"name": "App", **fields})
    assert response.status_code == 201, response.text
    return response.json()


def test_create_get_patch_and_mode_is_immutable(admin: TestClient) -> None:
    paywall = create(admin, mode="shared", markup_percent="12.5", trial_credits="0.25", platform_fee_percent="10")
    assert paywall["id"].startswith("pw_") and paywall["mode"] == "shared"
    assert (paywall["markup_percent"], paywall["trial_credits"]) == ("12.5", "0.250000")
    fetched = admin.get(f"/admin/paywalls/{paywall['id']}").json()
    assert fetched["name"] == "App" and fetched["templates"]["topup"].count("{{url}}") == 1
    changed = admin.patch(f"/admin/paywalls/{paywall['id']}", json={"description": "Hello", "mode": "shared"})
    assert changed.status_code == 200 and changed.json()["description"] == "Hello"
    refused = admin.patch(f"/admin/paywalls/{paywall['id']}", json={"mode": "default"})
    assert refused.status_code == 409 and refused.json()["error"]["type"] == "conflict_error"
    assert admin.get(f"/admin/paywalls/{paywall['id']}").json()["mode"] == "shared"


@pytest.mark.parametrize(
    "body, param",
    [
        ({"mode": "default"}, "name"),
        ({"name": "x", "mode": "weird"}, "mode"),
        ({"name": "x", "markup_percent": -1}, "markup_percent"),
        ({"name": "x", "markup_percent": 1.5}, "markup_percent"),
        ({"name": "x", "trial_credits": "0.0000001"}, "trial_credits"),
        ({"name": "x", "platform_fee_percent": "101"}, "platform_fee_percent"),
        ({"name": "x", "icon_url": "javascript:alert(1)"}, "icon_url"),
        ({"name": "x", "surprise": True}, "surprise"),
    ],
)
def test_bad_paywall_input_is_a_clear_400(admin: TestClient, body: dict, param: str) -> None:
    response = admin.post("/admin/paywalls", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error" and error["message"]


def test_not_json_and_unknown_paywall(admin: TestClient) -> None:
    bad = admin.post("/admin/paywalls", content=b"{nope", headers={"Content-Type": "application/json"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_json"
    missing = admin.get("/admin/paywalls/pw_doesnotexist")
    assert missing.status_code == 404 and "X-Request-Id" in missing.headers


def test_keys_are_hashed_shown_once_and_revocable(admin: TestClient, user_api: TestClient) -> None:
    paywall = create(admin)
    live = admin.post(f"/admin/paywalls/{paywall['id']}/keys", json={"environment": "live"}).json()
    test = admin.post(f"/admin/paywalls/{paywall['id']}/keys", json={"environment": "test"}).json()
    assert live["key"].startswith("sk-paywalls-") and not live["key"].startswith("sk-paywalls-test-")
    assert test["key"].startswith("sk-paywalls-test-")
    listed = admin.get(f"/admin/paywalls/{paywall['id']}/keys").json()["data"]
    assert {k["id"] for k in listed} == {live["id"], test["id"]}
    assert all("key" not in k for k in listed)
    assert not table_contains(live["key"]), "raw keys must never be stored"

    models = user_api.get("/v1/models", headers={"Authorization": f"Bearer {live['key']}"})
    assert models.status_code == 200
    assert admin.delete(f"/admin/paywalls/{paywall['id']}/keys/{live['id']}").json()["revoked"] is True
    after = user_api.get("/v1/models", headers={"Authorization": f"Bearer {live['key']}"})
    assert after.status_code == 401 and after.json()["error"]["code"] == "invalid_api_key"
    bad_env = admin.post(f"/admin/paywalls/{paywall['id']}/keys", json={"environment": "prod"})
    assert bad_env.status_code == 400


def table_contains(text: str) -> bool:
    items = aws.client("dynamodb").scan(TableName=store.table_name())["Items"]
    return text in repr(items)


def test_provider_key_goes_to_secrets_manager_only(admin: TestClient) -> None:
    paywall = create(admin)
    secret = "sk-provider-SECRET-123456"
    response = admin.put(
        f"/admin/paywalls/{paywall['id']}/provider",
        json={"kind": "openai-compatible", "base_url": "https://llm.example.com/v1/", "api_key": secret},
    )
    assert response.status_code == 200, response.text
    assert secret not in response.text and response.json()["base_url"] == "https://llm.example.com/v1"
    assert secret not in admin.get(f"/admin/paywalls/{paywall['id']}").text
    assert not table_contains(secret)
    name = f"{settings().secret_prefix}/paywall/{paywall['id']}/provider"
    assert secrets_store.get_secret(name) == secret
    openai = admin.put(f"/admin/paywalls/{paywall['id']}/provider", json={"kind": "openai", "api_key": "k2"})
    assert openai.json()["base_url"] == "https://api.openai.com/v1"
    assert secrets_store.get_secret(name) == "k2", "a new key replaces the cached one at once"
    missing_url = admin.put(
        f"/admin/paywalls/{paywall['id']}/provider", json={"kind": "openai-compatible", "api_key": "k"}
    )
    assert missing_url.status_code == 400 and missing_url.json()["error"]["param"] == "base_url"


def test_pricing_validation_and_models_listing(admin: TestClient, user_api: TestClient) -> None:
    paywall = create(admin)
    key = admin.post(f"/admin/paywalls/{paywall['id']}/keys", json={}).json()["key"]
    ok = admin.put(
        f"/admin/paywalls/{paywall['id']}/pricing",
        json={
            "models": {"gpt-4o-mini": {"prompt": "0.15", "completion": "0.60", "request": "0.001"}},
            "markup_percent": "20",
        },
    )
    assert ok.status_code == 200 and ok.json()["models"]["gpt-4o-mini"]["completion"] == "0.6"
    for bad in (
        {"models": {}},
        {"models": {"m": {"prompt": "-1", "completion": "1"}}},
        {"models": {"m": {"prompt": 0.1, "completion": "1"}}},
        {"models": {"m": {"prompt": "1"}}},
    ):
        assert admin.put(f"/admin/paywalls/{paywall['id']}/pricing", json=bad).status_code == 400
    listed = user_api.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).json()
    assert listed["object"] == "list"
    assert listed["data"][0]["id"] == "gpt-4o-mini"
    assert listed["data"][0]["pricing"] == {"prompt": "0.15", "completion": "0.6", "request": "0.001"}


def test_templates_need_the_link_placeholder(admin: TestClient) -> None:
    paywall = create(admin)
    bad = admin.put(f"/admin/paywalls/{paywall['id']}/templates", json={"topup": "Pay up!"})
    assert bad.status_code == 400
    good = admin.put(f"/admin/paywalls/{paywall['id']}/templates", json={"topup": "{{name}}: top up at {{url}}"})
    assert good.json()["topup"] == "{{name}}: top up at {{url}}"


def test_adjustments_users_and_usage(admin: TestClient) -> None:
    paywall = create(admin)
    pid = paywall["id"]
    url = f"/admin/paywalls/{pid}/users/alice/adjustments"
    first = admin.post(url, json={"amount": "2.5", "reason": "goodwill"}, headers={"Idempotency-Key": "a1"})
    again = admin.post(url, json={"amount": "2.5", "reason": "goodwill"}, headers={"Idempotency-Key": "a1"})
    assert first.status_code == 201 and again.json()["duplicate"] is True
    debit = admin.post(url, json={"amount": "-0.5"}, headers={"Idempotency-Key": "a2"})
    assert debit.json()["entry"]["amount"] == "-500000"
    too_much = admin.post(url, json={"amount": "-100"}, headers={"Idempotency-Key": "a3"})
    assert too_much.status_code == 402
    assert admin.post(url, json={"amount": "1"}).status_code == 400  # Idempotency-Key required
    users = admin.get(f"/admin/paywalls/{pid}/users").json()["data"]
    assert users == [{"user": "alice", "balance": "2000000", "balanceFormatted": "2.000000", "available": "2000000"}]
    usage = admin.get(f"/admin/paywalls/{pid}/usage", params={"from": "2000-01-01"}).json()
    assert usage["requests"] == 0 and usage["revenue"] == "0.000000"


def test_admin_auth_token_mode(admin: TestClient) -> None:
    assert admin.get("/admin/paywalls/x", headers={"Authorization": "Bearer wrong"}).status_code == 401
    no_header = TestClient(admin.app).get("/admin/paywalls/x")
    assert no_header.status_code == 401 and no_header.json()["error"]["type"] == "authentication_error"


def test_admin_auth_iam_mode_requires_gateway_identity(aws_mock: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """In AWS, API Gateway's AWS_IAM authorizer verified the signature; the app checks it did."""
    import json
    import sys

    from tests.apigw import apigw_event

    monkeypatch.setenv("ADMIN_AUTH", "iam")
    monkeypatch.delenv("ADMIN_TOKEN", raising=False)
    settings.cache_clear()
    try:
        load_function_app("functions/admin", "AdminFunction")
        handler = sys.modules["fn_AdminFunction"].handler
        signed = handler(apigw_event("POST", "/admin/paywalls", {"name": "Via IAM"}, iam=True), None)
        assert signed["statusCode"] == 201, signed
        unsigned = handler(apigw_event("POST", "/admin/paywalls", {"name": "No IAM"}, iam=False), None)
        assert unsigned["statusCode"] == 403
        assert json.loads(unsigned["body"])["error"]["type"] == "permission_error"
    finally:
        settings.cache_clear()
