"""The OpenAPI document of the user API and the admin API, generated from their FastAPI apps.

`docs/openapi.json` is both apps in one document: request bodies (paywalls.http.api_models, attached here
because the apps read them through `api_models.from_json`, which FastAPI does not see as a body),
answers and the OpenAI-style errors each operation gives, and the two ways in (a paywall key; the
admin token locally or IAM in AWS). Regenerate with `make openapi`
(`python -m paywalls.http.openapi_doc --output docs/openapi.json`); tests/test_openapi_doc.py fails when the
checked-in file drifts. The admin app serves its own half at /admin/openapi.json (`served`).

Not in it: the chat proxy (OpenAI's own schema), the hosted wallet and pay pages, the Stripe webhook
and the local stack's /_dev routes."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from paywalls.http import api_models

Auth = Literal["key", "admin"]

SECURITY_SCHEMES: dict[str, Any] = {
    "paywallKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "A paywall API key: `Authorization: Bearer sk-paywalls-...` (test keys sk-paywalls-test-...).",
    },
    "adminToken": {
        "type": "http",
        "scheme": "bearer",
        "description": "The local stack's admin token (ADMIN_AUTH=token): `Authorization: Bearer <ADMIN_TOKEN>`.",
    },
    "awsSigV4": {
        "type": "apiKey",
        "in": "header",
        "name": "Authorization",
        "description": "In AWS (ADMIN_AUTH=iam): a request signed with SigV4 by an IAM principal allowed to "
        "invoke the admin routes; API Gateway checks the signature.",
        "x-amazon-apigateway-authtype": "awsSigv4",
    },
}
_SECURITY: dict[Auth, list[dict[str, list[str]]]] = {
    "key": [{"paywallKey": []}],
    "admin": [{"adminToken": []}, {"awsSigV4": []}],
}
_TAGS: dict[Auth, str] = {"key": "user", "admin": "admin"}


def body_model(dependant: Dependant) -> type[BaseModel] | None:
    """The model of the body an operation reads through api_models.from_json, if any."""
    for dependency in dependant.dependencies:
        model = getattr(dependency.call, "body_model", None) or body_model(dependency)
        if model is not None:
            return model
    return None


def document(app: FastAPI, *, auth: Auth) -> dict[str, Any]:
    """One app's document: FastAPI's paths and parameters, with the request bodies, the answers
    (api_models.answers), the security, and without FastAPI's 422."""
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    models: dict[type[BaseModel], JsonSchemaMode] = {}
    for route in app.routes:
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        body = body_model(route.dependant)
        if body is not None:
            models[body] = "validation"
        for method in sorted(route.methods):
            operation = schema["paths"][route.path_format][method.lower()]
            operation["operationId"] = route.name
            operation["tags"] = [_TAGS[auth]]
            operation["responses"] = _responses(operation.pop(api_models.ANSWERS_KEY), models)
            # /health alone answers without a key.
            operation["security"] = [] if route.path_format == "/health" else _SECURITY[auth]
            if body is not None:
                operation["requestBody"] = {
                    # Every field optional: an empty body is read as {} (web.json_body).
                    "required": bool(body.model_json_schema().get("required")),
                    "content": {"application/json": {"schema": _ref(body.__name__)}},
                }
    _, definitions = models_json_schema(list(models.items()), ref_template=_REF)
    schemas: dict[str, Any] = {}
    for name, definition in definitions.get("$defs", {}).items():
        _add(schemas, name, definition)
    schema["components"] = {
        "schemas": dict(sorted(schemas.items())),
        "securitySchemes": {name: SECURITY_SCHEMES[name] for option in _SECURITY[auth] for name in option},
    }
    return schema


_REF = "#/components/schemas/{model}"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=name)}


def _responses(answers: dict[str, Any], models: dict[type[BaseModel], JsonSchemaMode]) -> dict[str, Any]:
    responses = {}
    for status, answer in answers.items():
        if answer.get("media"):  # text, e.g. a CSV page
            content_type = {answer["media"]: {"schema": {"type": "string"}}}
            responses[status] = {"description": answer["description"], "content": content_type}
            continue
        named = [getattr(api_models, name) for name in answer["models"]]
        models.update((model, "serialization") for model in named)
        content = _ref(named[0].__name__) if len(named) == 1 else {"anyOf": [_ref(m.__name__) for m in named]}
        responses[status] = {"description": answer["description"], "content": {"application/json": {"schema": content}}}
    return responses


def _add(schemas: dict[str, Any], name: str, definition: dict[str, Any]) -> None:
    if name in schemas and schemas[name] != definition:
        raise ValueError(f"two different schemas are named {name!r}")
    schemas[name] = definition


def served(app: FastAPI) -> dict[str, Any]:
    """The admin app's /admin/openapi.json (FastAPI caches it on the app)."""
    if app.openapi_schema is None:
        app.openapi_schema = document(app, auth="admin")
    return app.openapi_schema


def load_app(root: Path, function: str) -> FastAPI:
    """functions/<function>/app.py's `app`, imported as its Lambda would (the folder is not a package)."""
    path = root / "functions" / function / "app.py"
    name = f"paywalls_openapi_{function}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module.app


def published(root: Path) -> dict[str, Any]:
    """docs/openapi.json: the user API and the admin API in one document."""
    parts = [document(load_app(root, "user_api"), auth="key"), document(load_app(root, "admin"), auth="admin")]
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for part in parts:
        overlap = set(paths) & set(part["paths"])
        if overlap:
            raise ValueError(f"both apps document {sorted(overlap)}")
        paths.update(part["paths"])
        for name, definition in part["components"]["schemas"].items():
            _add(schemas, name, definition)
    return {
        "openapi": parts[0]["openapi"],
        "info": {
            "title": "Paywalls API",
            "version": "v1",
            "description": "The user API (an app's calls with its paywall key: balances, deposits, charges, "
            "connections, the ledger, the model list) and the admin API (the operator's control plane). "
            'Every error is OpenAI-shaped: `{"error": {"message", "type", "param", "code"}}`. '
            "Amounts are decimal strings (or whole numbers) in currency units; balances are answered in "
            "integer micro-units (10^-6) as strings. The chat proxy (/v1/chat/completions) follows "
            "OpenAI's own schema and is not described here.",
        },
        "tags": [
            {"name": "user", "description": "Called by an app with its paywall key."},
            {"name": "admin", "description": "The operator's control plane (admin token locally, IAM in AWS)."},
        ],
        "paths": paths,
        "components": {"schemas": dict(sorted(schemas.items())), "securitySchemes": SECURITY_SCHEMES},
    }


def render(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m paywalls.http.openapi_doc", description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="the repository (default: here)")
    parser.add_argument("--output", type=Path, help="write here instead of standard output")
    args = parser.parse_args(argv)
    text = render(published(args.root))
    if args.output:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
