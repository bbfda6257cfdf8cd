"""Admin API (SPEC §7) in-process against moto: validation, immutability, keys, secrets handling,
auth modes. The same app serves the local stack (see test_cli.py for over-HTTP checks)."""

from __future__ import annotations

import math
from collections.abc import Iterator
from decimal import Context, Decimal, localcontext

import pytest
from fastapi.testclient import TestClient
from hypothesis import given
from hypothesis import strategies as st

from devserver.router import load_function_app
from paywalls.billing.metering import Pricing
from paywalls.billing.paywall import ModelPrice
from paywalls.infra import aws, store
from paywalls.infra import secrets as secrets_store
from paywalls.infra.config import settings

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


def test_create_and_patch_take_the_same_profile_fields_and_refuse_others(aws_mock: None) -> None:
    from paywalls.billing import paywall as paywalls

    profile = {"description": "d", "icon_url": "https://example.com/i.png", "markup_percent": 10}
    profile |= {"trial_credits": "0.5", "platform_fee_percent": "5"}
    created = paywalls.create({"name": "P", "mode": "shared", **profile})
    patched = paywalls.patch(created.id, {"name": "Q", "mode": "shared", **profile, "description": "e"})
    assert (patched.name, patched.description, patched.mode) == ("Q", "e", "shared")
    for change in (lambda data: paywalls.create({"name": "x", **data}), lambda data: paywalls.patch(created.id, data)):
        with pytest.raises(paywalls.InvalidRequest) as refused:
            change({"description": "d", "surprise": 1})
        assert refused.value.param == "surprise" and "unknown field(s): surprise" in str(refused.value)


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
    # What the user pays: the table x 1.2 (markup 20%), exact decimals. It used to show the base prices.
    assert listed["data"][0]["pricing"] == {"prompt": "0.18", "completion": "0.72", "request": "0.0012"}
    assert "features" not in listed
    # The base table stays the operator's.
    base = admin.get(f"/admin/paywalls/{paywall['id']}").json()
    assert base["pricing"]["gpt-4o-mini"] == {"prompt": "0.15", "completion": "0.6", "request": "0.001"}
    assert base["markup_percent"] == "20"


def test_feature_surcharges_are_priced_validated_and_kept(admin: TestClient, user_api: TestClient) -> None:
    paywall = create(admin, markup_percent="12.5")
    key = admin.post(f"/admin/paywalls/{paywall['id']}/keys", json={}).json()["key"]
    url = f"/admin/paywalls/{paywall['id']}/pricing"
    models = {"m": {"prompt": "1", "completion": "2"}}
    ok = admin.put(url, json={"models": models, "features": {"web_search": {"request": "0.02"}}})
    assert ok.status_code == 200, ok.text
    assert ok.json()["features"] == {"web_search": {"prompt": "0", "completion": "0", "request": "0.02"}}
    for bad, param in (
        ({"features": {"teleport": {"request": "1"}}}, "features"),
        ({"features": {"web_search": {"request": "-1"}}}, "features"),
        ({"features": {"web_search": {"request": 0.02}}}, "features"),
        ({"features": {"web_search": {}}}, "features"),
        ({"features": {"web_search": {"per_call": "1"}}}, "per_call"),
        ({"features": ["web_search"]}, "features"),
    ):
        response = admin.put(url, json={"models": models, **bad})
        assert response.status_code == 400 and response.json()["error"]["param"] == param, (bad, response.text)
    # A price table sent without features (an older client, the CLI's --model) keeps them.
    assert admin.put(url, json={"models": models}).json()["features"] == ok.json()["features"]
    fetched = admin.get(f"/admin/paywalls/{paywall['id']}").json()
    assert fetched["features"]["web_search"]["request"] == "0.02"
    listed = user_api.get("/v1/models", headers={"Authorization": f"Bearer {key}"}).json()
    assert listed["features"] == {"web_search": {"prompt": "0", "completion": "0", "request": "0.0225"}}
    assert listed["data"][0]["pricing"] == {"prompt": "1.125", "completion": "2.25", "request": "0"}
    assert admin.put(url, json={"models": models, "features": {}}).json()["features"] == {}, "{} prices none"


@given(
    price=st.decimals(min_value=0, max_value=10_000, places=6),
    markup=st.decimals(min_value=0, max_value=1000, places=4),
    tokens=st.integers(0, 100_000),
)
def test_the_price_shown_is_exactly_what_a_request_pays(price: Decimal, markup: Decimal, tokens: int) -> None:
    """/v1/models shows price x (1 + markup/100) as an exact decimal (no float, no rounding), so the
    charge for any token count is that shown price times the tokens, rounded up once."""
    shown = ModelPrice(price, price, price).with_markup(markup).as_api()
    assert shown["prompt"] == shown["completion"] == shown["request"]
    with localcontext(Context(prec=100)):
        assert Decimal(shown["completion"]) * 100 == price * (100 + markup), "exact"
        expected = math.ceil(Decimal(shown["completion"]) * tokens)
        request_fee = math.ceil(Decimal(shown["request"]) * 1_000_000)
    assert Pricing(ModelPrice(Decimal(0), price), markup).cost(0, tokens) == expected
    assert Pricing(ModelPrice(Decimal(0), Decimal(0), price), markup).cost(0, 0) == request_fee


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
    # Spend comes from the roll-ups, which the table stream feeds (none in-process: nothing yet).
    assert users == [
        {
            "user": "alice",
            "balance": "2000000",
            "balanceFormatted": "2.000000",
            "available": "2000000",
            "total_spend": "0.000000",
            "last_activity": None,
        }
    ]
    usage = admin.get(f"/admin/paywalls/{pid}/usage", params={"from": "2026-01-01", "to": "2026-02-01"}).json()
    assert usage["requests"] == 0 and usage["revenue"] == "0.000000" and len(usage["by_day"]) == 31
    assert usage["previous"]["from"] == "2025-12-01T00:00:00Z"
    too_long = admin.get(f"/admin/paywalls/{pid}/usage", params={"from": "2000-01-01"})
    assert too_long.status_code == 400 and too_long.json()["error"]["param"] == "from"


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


# ---- hostile input: every admin route answers 400, never 500 ------------------------------------

# Every field of a paywall's profile, as creating and changing one take them.
PROFILE_BODY: dict[str, object] = {
    "name": "App",
    "mode": "default",
    "description": "d",
    "icon_url": "https://x.example/i.png",
    "markup_percent": "1",
    "trial_credits": "0.5",
    "platform_fee_percent": "1",
}
# One valid body per admin route that takes JSON; each field in turn gets a value of the wrong type.
# `{pid}` is a default-mode paywall, `{shared}` a shared-mode one (the routes that need that mode),
# `{person}` a wallet owner.
ADMIN_BODY_ROUTES: list[tuple[str, str, dict[str, object]]] = [
    ("POST", "/admin/paywalls", PROFILE_BODY),
    ("PATCH", "/admin/paywalls/{pid}", PROFILE_BODY),
    ("POST", "/admin/paywalls/{pid}/keys", {"environment": "live"}),
    (
        "PUT",
        "/admin/paywalls/{pid}/provider",
        {"kind": "openai-compatible", "base_url": "https://llm.example/v1", "api_key": "k"},
    ),
    (
        "PUT",
        "/admin/paywalls/{pid}/pricing",
        {"models": {"m": {"prompt": "1", "completion": "2"}}, "markup_percent": "1"},
    ),
    (
        "PUT",
        "/admin/paywalls/{pid}/templates",
        {"topup": "Top up: {{url}}", "authorize": "{{url}}", "provider_error": "x"},
    ),
    ("PUT", "/admin/paywalls/{pid}/stripe", {"secret_key": "sk_test_123", "topup_amounts": ["5", "10"]}),
    ("POST", "/admin/paywalls/{pid}/users/u1/adjustments", {"amount": "1", "environment": "live", "reason": "r"}),
    ("POST", "/admin/paywalls/{shared}/withdrawals", {"amount": "1", "environment": "live"}),
    ("PUT", "/admin/paywalls/{shared}/payout", {"stripe_account": "acct_123"}),
    ("PUT", "/admin/operator/stripe", {"secret_key": "sk_test_123", "topup_amounts": ["5", "10"]}),
    ("POST", "/admin/persons/{person}/adjustments", {"amount": "1", "reason": "r"}),
]
WRONG_TYPES: list[object] = [["x"], {"x": "y"}, True, 1.5, 12345, {"a": [{"b": None}]}]
INTEGERS_ALLOWED = {"amount", "trial_credits"}  # decimal strings or whole numbers (money.parse_amount)
# Values nested inside fields (a price object, a preset list), where the same confusion can hide.
NESTED_WRONG: list[tuple[str, str, dict[str, object]]] = [
    ("PUT", "/admin/paywalls/{pid}/pricing", {"models": ["m"]}),
    ("PUT", "/admin/paywalls/{pid}/pricing", {"models": {"m": ["1", "2"]}}),
    ("PUT", "/admin/paywalls/{pid}/pricing", {"models": {"m": {"prompt": ["1"], "completion": "2"}}}),
    ("PUT", "/admin/paywalls/{pid}/pricing", {"models": {"m": {"prompt": {"a": 1}, "completion": "2"}}}),
    ("PUT", "/admin/paywalls/{pid}/pricing", {"models": {"m": {"prompt": "1", "completion": "2", "request": [1]}}}),
    ("PUT", "/admin/paywalls/{pid}/stripe", {"secret_key": "sk_test_123", "topup_amounts": [["5"]]}),
    ("PUT", "/admin/paywalls/{pid}/stripe", {"secret_key": "sk_test_123", "topup_amounts": [{"a": "5"}]}),
    ("PUT", "/admin/operator/stripe", {"secret_key": "sk_test_123", "topup_amounts": [True]}),
    ("PUT", "/admin/paywalls/{pid}/templates", {"topup": ["{{url}}"]}),
]


def _wrong_type_cases() -> list[tuple[str, str, dict[str, object]]]:
    cases = []
    for method, path, valid in ADMIN_BODY_ROUTES:
        for field in valid:
            for wrong in WRONG_TYPES:
                if isinstance(wrong, int) and not isinstance(wrong, bool) and field in INTEGERS_ALLOWED:
                    continue
                cases.append((method, path, {**valid, field: wrong}))
    return cases + NESTED_WRONG


@pytest.fixture
def targets(admin: TestClient) -> dict[str, str]:
    from paywalls.wallets import persons

    return {
        "pid": create(admin)["id"],
        "shared": create(admin, mode="shared")["id"],
        "person": persons.get_or_create("hostile@example.com").id,
    }


def test_every_admin_route_answers_wrong_json_types_with_400(admin: TestClient, targets: dict[str, str]) -> None:
    """Lists, objects, numbers and booleans where strings (or decimal strings) belong: each is a 400
    naming the problem, never a TypeError surfacing as a 500 (e.g. an unhashable list as `kind`)."""
    client = TestClient(admin.app, headers=dict(admin.headers), raise_server_exceptions=False)
    failures = []
    for index, (method, path, body) in enumerate(_wrong_type_cases()):
        response = client.request(
            method, path.format(**targets), json=body, headers={"Idempotency-Key": f"wrong-type-{index}"}
        )
        if response.status_code != 400 or response.json()["error"]["type"] != "invalid_request_error":
            failures.append((method, path, body, response.status_code, response.text[:200]))
    assert not failures, "\n".join(map(repr, failures))


def test_provider_kind_of_the_wrong_type_is_a_400(admin: TestClient) -> None:
    pid = create(admin)["id"]
    for kind in (["openai"], {"openai": 1}, 7, None):
        response = admin.put(f"/admin/paywalls/{pid}/provider", json={"kind": kind, "api_key": "k"})
        assert response.status_code == 400 and response.json()["error"]["param"] == "kind", response.text


def test_patching_mode_with_a_non_mode_is_a_400_not_a_conflict(admin: TestClient) -> None:
    pid = create(admin)["id"]
    response = admin.patch(f"/admin/paywalls/{pid}", json={"mode": ["default"]})
    assert response.status_code == 400 and response.json()["error"]["param"] == "mode"


def _cursor(key: object) -> str:
    import base64
    import json

    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode()


def test_users_cursor_must_be_one_this_listing_issued(admin: TestClient) -> None:
    """A cursor is checked before it reaches DynamoDB: other key names, another paywall's partition or
    values DynamoDB cannot take are a 400 (moto accepts what real DynamoDB rejects with a 500)."""
    pid, other = create(admin)["id"], create(admin)["id"]
    for user in ("ann", "bob", "cyd"):
        admin.post(
            f"/admin/paywalls/{pid}/users/{user}/adjustments", json={"amount": "1"}, headers={"Idempotency-Key": user}
        )
    first = admin.get(f"/admin/paywalls/{pid}/users", params={"limit": 2}).json()
    assert first["has_more"] and first["next_cursor"]
    second = admin.get(f"/admin/paywalls/{pid}/users", params={"limit": 2, "cursor": first["next_cursor"]})
    assert [u["user"] for u in second.json()["data"]] == ["cyd"]

    import base64
    import json

    issued = json.loads(base64.urlsafe_b64decode(first["next_cursor"]))
    assert set(issued) == {"gsi1pk", "gsi1sk", "pk", "sk"}
    for bad in (
        _cursor({"foo": "bar"}),
        _cursor({**issued, "extra": "x"}),
        _cursor({k: v for k, v in issued.items() if k != "pk"}),
        _cursor({**issued, "gsi1pk": f"USERS#{other}#live"}),  # another paywall's users
        _cursor({**issued, "gsi1pk": f"USERS#{pid}#test"}),  # the other environment
        _cursor({**issued, "gsi1sk": "not a user id!"}),
        _cursor({**issued, "sk": ""}),
        _cursor({**issued, "pk": 5}),
        _cursor({**issued, "sk": "x" * 1025}),
        base64.urlsafe_b64encode(b'{"gsi1pk": "\\ud800", "gsi1sk": "a", "pk": "p", "sk": "s"}').decode(),
        _cursor(["gsi1pk"]),
        "!!!",
        base64.urlsafe_b64encode(b"[" * 5000).decode(),
    ):
        response = admin.get(f"/admin/paywalls/{pid}/users", params={"cursor": bad})
        assert response.status_code == 400 and response.json()["error"]["param"] == "cursor", (bad, response.text)


def test_paywalls_are_listed_oldest_first_in_pages(admin: TestClient) -> None:
    """GET /admin/paywalls (CLI `paywalls list`): every paywall, including one changed since, paged by a
    cursor that only this listing accepts."""
    assert admin.get("/admin/paywalls").json() == {"object": "list", "data": [], "has_more": False, "next_cursor": None}
    ids = [create(admin, name=f"App {i}")["id"] for i in range(3)]
    admin.patch(f"/admin/paywalls/{ids[0]}", json={"description": "changed"})
    first = admin.get("/admin/paywalls", params={"limit": 2}).json()
    assert first["has_more"] and first["next_cursor"]
    second = admin.get("/admin/paywalls", params={"limit": 2, "cursor": first["next_cursor"]}).json()
    listed = first["data"] + second["data"]
    assert sorted(p["id"] for p in listed) == sorted(ids) and not second["has_more"]
    assert {p["id"]: p["description"] for p in listed}[ids[0]] == "changed"
    assert all(p["object"] == "paywall" and "provider" in p for p in listed)

    import base64
    import json

    issued = json.loads(base64.urlsafe_b64decode(first["next_cursor"]))
    for bad in (
        _cursor({**issued, "gsi1pk": "USERS#x#live"}),  # another listing's partition
        _cursor({**issued, "gsi1sk": "nope"}),
        "!!!",
    ):
        response = admin.get("/admin/paywalls", params={"cursor": bad})
        assert response.status_code == 400 and response.json()["error"]["param"] == "cursor", (bad, response.text)
    assert admin.get("/admin/paywalls", params={"limit": 0}).status_code == 400


@pytest.mark.parametrize(
    "raw",
    [
        b'{"name": "\\ud800"}',  # a lone surrogate escape in a value
        b'{"\\udfff": "x", "name": "App"}',  # ... in a key
        b'{"name": "App \xed\xa0\x80"}',  # the surrogate's raw UTF-8 bytes (json.loads accepts them)
        b'{"name": "App", "description": ["\\ud83d"]}',  # half of an emoji's surrogate pair, nested
    ],
)
def test_lone_surrogates_are_a_400_not_a_500(admin: TestClient, raw: bytes) -> None:
    response = TestClient(admin.app, headers=dict(admin.headers), raise_server_exceptions=False).post(
        "/admin/paywalls", content=raw, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_json"


def test_a_surrogate_pair_escape_is_fine(admin: TestClient) -> None:
    response = admin.post("/admin/paywalls", content=b'{"name": "App \\ud83d\\ude00"}')
    assert response.status_code == 201 and response.json()["name"] == "App \U0001f600"


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"[" * 5000 + b"]" * 5000, "nests more than 64"),  # json.loads would raise RecursionError
        (b'{"a":' * 5000 + b"1" + b"}" * 5000, "nests more than 64"),
        (b'{"name": "x", "d": ' + b"[" * 64 + b"]" * 64 + b"}", "nests more than 64"),  # 65 levels
        (b'{"name": "App", "markup_percent": NaN}', "not valid JSON"),  # not JSON (RFC 8259)
        (b'{"name": "App", "markup_percent": -Infinity}', "not valid JSON"),
    ],
)
def test_deep_nesting_and_non_json_constants_are_a_400(admin: TestClient, raw: bytes, message: str) -> None:
    response = TestClient(admin.app, headers=dict(admin.headers), raise_server_exceptions=False).post(
        "/admin/paywalls", content=raw, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "invalid_json" and message in response.json()["error"]["message"]


def test_nesting_up_to_the_limit_is_accepted(admin: TestClient) -> None:
    # 64 levels: the body object and 63 arrays. It reaches validation (unknown field), not the parser.
    raw = b'{"deep": ' + b"[" * 63 + b"]" * 63 + b"}"
    response = admin.post("/admin/paywalls", content=raw)
    assert response.status_code == 400 and response.json()["error"]["param"] == "deep", response.text
