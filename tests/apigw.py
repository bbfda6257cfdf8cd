"""API Gateway (REST, Lambda proxy) events for handler tests, shaped like events/ (which came from
real API Gateway payloads): what `sam local invoke` would pass, without Docker."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

EVENTS = Path(__file__).resolve().parent.parent / "events"


def apigw_event(
    method: str,
    path: str,
    body: Any = None,
    *,
    iam: bool = False,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    resource: str | None = None,
    base64_body: bool = False,
) -> dict[str, Any]:
    event = copy.deepcopy(json.loads((EVENTS / "admin-get-paywall.json").read_text()))
    raw = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else b"")
    all_headers = {
        "Host": "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com",
        "Content-Type": "application/json",
        **(headers or {}),
    }
    event.update(
        httpMethod=method,
        path=path,
        resource=resource or path,
        headers=all_headers,
        multiValueHeaders={k: [v] for k, v in all_headers.items()},
        queryStringParameters=query or None,
        multiValueQueryStringParameters={k: [v] for k, v in (query or {}).items()} or None,
        pathParameters=None,
        body=(base64.b64encode(raw).decode() if base64_body else raw.decode()) if raw else None,
        isBase64Encoded=base64_body,
    )
    context = event["requestContext"]
    context.update(httpMethod=method, path=f"/prod{path}", resourcePath=resource or path)
    if not iam:
        context["identity"] = {k: None for k in context["identity"]} | {"sourceIp": "203.0.113.10"}
    return event
