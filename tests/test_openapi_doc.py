"""docs/openapi.json is generated from the user and admin apps (paywalls.http.openapi_doc). This fails when
the checked-in document drifts from the code (regenerate: `make openapi`), and checks what the
document promises: every operation of both APIs and nothing else, request body schemas, OpenAI-style
error responses, the two security schemes, no float for money."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from openapi_spec_validator import validate

from devserver.router import load_function_app
from paywalls.http import openapi_doc
from paywalls.infra.config import settings

ROOT = Path(__file__).resolve().parent.parent
CHECKED_IN = ROOT / "docs" / "openapi.json"
METHODS = ("get", "put", "post", "patch", "delete")


@pytest.fixture(scope="module")
def generated() -> dict[str, Any]:
    return openapi_doc.published(ROOT)


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in doc["paths"].items():
        for method in METHODS:
            if method in item:
                yield method, path, item[method]


def test_the_checked_in_document_is_the_generated_one(generated: dict[str, Any]) -> None:
    checked_in = json.loads(CHECKED_IN.read_text())
    assert checked_in == generated, "docs/openapi.json is out of date: run `make openapi` and commit it"
    assert CHECKED_IN.read_text() == openapi_doc.render(generated), "formatting: run `make openapi`"


def test_it_is_a_valid_openapi_document(generated: dict[str, Any]) -> None:
    validate(generated)
    refs = {ref for ref in _values(generated, "$ref")}
    assert refs and all(ref.removeprefix("#/components/schemas/") in generated["components"]["schemas"] for ref in refs)


def test_every_operation_of_both_apis_and_nothing_else(generated: dict[str, Any]) -> None:
    expected = set()
    for function, logical_id in (("user_api", "UserApiFunction"), ("admin", "AdminFunction")):
        app = load_function_app(f"functions/{function}", logical_id)
        for route in app.routes:
            if isinstance(route, APIRoute) and route.include_in_schema:
                expected |= {(method.lower(), route.path_format) for method in route.methods}
    documented = {(method, path) for method, path, _ in operations(generated)}
    assert documented == expected
    assert len(documented) > 30
    for left_out in ("/v1/chat/completions", "/pay", "/wallet", "/webhooks", "/_dev", "/_demo"):
        assert not any(path.startswith(left_out) for _, path in documented), left_out


def test_bodies_errors_and_security_are_declared(generated: dict[str, Any]) -> None:
    schemas = generated["components"]["schemas"]
    bodies = 0
    for method, path, operation in operations(generated):
        responses = operation["responses"]
        assert "422" not in responses, f"{method} {path}: bad input is a 400 here, never FastAPI's 422"
        for status, response in responses.items():
            if status.startswith("2") and path.endswith(".csv"):  # an export: text, not JSON
                assert response["content"] == {"text/csv": {"schema": {"type": "string"}}}, (method, path)
                continue
            content = response["content"]["application/json"]["schema"]
            if status.startswith(("4", "5")):
                assert content == {"$ref": "#/components/schemas/ErrorResponse"}, (method, path, status)
        if path == "/health":
            assert operation["security"] == []
            continue
        assert {"401", "503"} <= set(responses), (method, path)
        expected = [{"adminToken": []}, {"awsSigV4": []}] if path.startswith("/admin/") else [{"paywallKey": []}]
        assert operation["security"] == expected, (method, path)
        if method in ("post", "put", "patch"):
            bodies += 1
            assert {"400", "413"} <= set(responses), (method, path)
            name = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
            assert schemas[name]["additionalProperties"] is False, f"{name}: unknown fields must be refused"
    assert bodies >= 15
    assert set(generated["components"]["securitySchemes"]) == {"paywallKey", "adminToken", "awsSigV4"}
    error = schemas["ErrorDetail"]
    assert set(error["required"]) == {"message", "type", "param", "code"}


def test_no_request_field_takes_a_float(generated: dict[str, Any]) -> None:
    """Money is a decimal string (or a whole number) everywhere: no request schema says `number`."""
    requests = {
        operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
        for _, _, operation in operations(generated)
        if "requestBody" in operation
    }
    schemas = generated["components"]["schemas"]
    seen = set()
    pending = sorted(requests)
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        types = [t for value in _values(schemas[name], "type") for t in (value if isinstance(value, list) else [value])]
        assert "number" not in types, name
        pending += [ref.rsplit("/", 1)[1] for ref in _values(schemas[name], "$ref")]
    assert {"MoneyRequest", "SetPricing", "ModelPriceIn", "UserAdjustment"} <= seen


def test_the_admin_app_serves_its_half_with_request_bodies(aws_mock: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADMIN_AUTH", "token")
    monkeypatch.setenv("ADMIN_TOKEN", "adm_doc")
    settings.cache_clear()
    try:
        served = TestClient(load_function_app("functions/admin", "AdminFunction")).get("/admin/openapi.json").json()
    finally:
        settings.cache_clear()
    published = openapi_doc.published(ROOT)
    assert served["paths"] == {p: item for p, item in published["paths"].items() if p.startswith("/admin/")}
    assert sum("requestBody" in op for _, _, op in operations(served)) >= 10


def _values(node: Any, key: str) -> Iterator[Any]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == key:
                yield v
            yield from _values(v, key)
    elif isinstance(node, list):
        for item in node:
            yield from _values(item, key)
