"""HTTP glue shared by every function's ASGI app: OpenAI-style errors, request ids, paywall-key auth.

Adapters only; the rules they call live in the domain modules."""

from __future__ import annotations

import json
import logging
import os
import secrets
import time
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from paywalls import logs
from paywalls import paywall as paywalls
from paywalls.config import settings
from paywalls.identity import InvalidUser
from paywalls.ledger import IdempotencyMismatch, InsufficientFunds, InvalidCursor
from paywalls.money import InvalidAmount
from paywalls.store import StoreUnavailable

log = logging.getLogger(__name__)

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    502: "api_error",
    503: "api_error",
    504: "api_error",
}


class ApiError(Exception):
    """An error with an OpenAI-shaped body: {"error": {message, type, param, code}}."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": _ERROR_TYPES.get(self.status, "api_error"),
                "param": self.param,
                "code": self.code,
            }
        }


def error_response(error: ApiError, request_id: str | None = None) -> JSONResponse:
    headers = dict(error.headers)
    if request_id:
        headers["X-Request-Id"] = request_id
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


def translate(exc: Exception) -> ApiError | None:
    """Domain exceptions -> client errors. None means: unexpected, answer a generic 500."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, InvalidUser):
        return ApiError(400, str(exc), code="invalid_user", param="user")
    if isinstance(exc, InvalidAmount):
        return ApiError(400, str(exc), code="invalid_amount", param="amount")
    if isinstance(exc, paywalls.InvalidRequest):
        return ApiError(400, str(exc), code="invalid_request", param=exc.param)
    if isinstance(exc, InvalidCursor):
        return ApiError(400, str(exc), code="invalid_cursor", param="cursor")
    if isinstance(exc, paywalls.NotFound):
        return ApiError(404, str(exc), code="not_found")
    if isinstance(exc, paywalls.Conflict):
        return ApiError(409, str(exc), code="conflict")
    if isinstance(exc, IdempotencyMismatch):
        return ApiError(409, str(exc), code="idempotency_key_reused")
    if isinstance(exc, InsufficientFunds):
        return ApiError(402, "insufficient balance", code="insufficient_balance")
    if isinstance(exc, StoreUnavailable):
        return ApiError(503, "the service is busy, please retry", code="busy", headers={"Retry-After": "1"})
    return None


CLIENT_ERRORS: tuple[type[Exception], ...] = (
    ApiError,
    InvalidUser,
    InvalidAmount,
    paywalls.InvalidRequest,
    InvalidCursor,
    paywalls.NotFound,
    paywalls.Conflict,
    IdempotencyMismatch,
    InsufficientFunds,
    StoreUnavailable,
)


def request_id_of(request: Request) -> str:
    return request.scope.get("state", {}).get("request_id") or new_request_id()


def new_request_id() -> str:
    return "req_" + secrets.token_hex(12)


class RequestIdMiddleware:
    """Pure ASGI (not BaseHTTPMiddleware) so streaming responses pass through untouched."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = new_request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        logs.request_id.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_id)


def install(app: FastAPI) -> FastAPI:
    """Every app answers errors in OpenAI's shape and never leaks a traceback."""
    logs.configure()

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", []) if p not in ("body", "query", "path", "header")]
        message = first.get("msg", "invalid request")
        param = ".".join(loc) or None
        text = f"{param}: {message}" if param else message
        return error_response(ApiError(400, text, param=param, code="invalid_request"), request_id_of(request))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route for {request.method} {request.url.path}"
        if exc.status_code == 405:
            message = f"method {request.method} not allowed on {request.url.path}"
        return error_response(ApiError(exc.status_code, message), request_id_of(request))

    async def _known(request: Request, exc: Exception) -> JSONResponse:
        error = translate(exc)
        assert error is not None
        return error_response(error, request_id_of(request))

    # Registered per class: a handler for plain `Exception` is Starlette's last resort, which
    # re-raises after answering and would log every client mistake as a server traceback.
    for known in CLIENT_ERRORS:
        app.add_exception_handler(known, _known)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        error = translate(exc) or ApiError(
            500, "internal error; the request id identifies it in the logs", code="internal_error"
        )
        return error_response(error, request_id_of(request))

    app.add_middleware(RequestIdMiddleware)
    return app


async def json_body(request: Request, *, limit: int = 1_000_000) -> dict[str, Any]:
    raw = await request.body()
    if len(raw) > limit:
        raise ApiError(413, f"request body too large (limit {limit} bytes)", code="body_too_large")
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "the request body is not valid JSON", code="invalid_json") from None
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object", code="invalid_json")
    return data


def public_base_url(request: Request) -> str:
    """The public URL of this deployment, for links to our hosted pages.

    API Gateway's default URL carries the stage (`/prod`) but the path our apps see does not, so the
    base comes from the API Gateway request context: Mangum puts the event in the scope; the Lambda
    Web Adapter forwards the context as the `x-amzn-request-context` header. PUBLIC_BASE_URL (a custom
    domain) wins; locally the request's own base URL is right."""
    configured = settings().public_base_url
    if configured:
        return configured.rstrip("/")
    context = (request.scope.get("aws.event") or {}).get("requestContext")
    if context is None and "x-amzn-request-context" in request.headers:
        try:
            context = json.loads(request.headers["x-amzn-request-context"])
        except ValueError:
            context = None
    if isinstance(context, dict) and context.get("domainName") and context.get("stage"):
        return f"https://{context['domainName']}/{context['stage']}"
    return str(request.base_url).rstrip("/")


def idempotency_key(request: Request, *, required: bool = True) -> str | None:
    value = request.headers.get("idempotency-key")
    if value is None or value == "":
        if required:
            raise ApiError(
                400,
                "the Idempotency-Key header is required for this request",
                code="missing_idempotency_key",
                param="Idempotency-Key",
            )
        return None
    if len(value) > 255 or not value.isprintable():
        raise ApiError(
            400,
            "Idempotency-Key must be at most 255 printable characters",
            code="invalid_idempotency_key",
            param="Idempotency-Key",
        )
    return value


# ---- paywall key authentication -----------------------------------------------------------------


@dataclass(frozen=True)
class Caller:
    """An authenticated paywall key: which paywall, which environment."""

    key: paywalls.ApiKey
    paywall: paywalls.Paywall

    @property
    def environment(self) -> str:
        return self.key.environment


# A revoked key (or a price change) reaches every warm instance within this time. Tests set 0.
_KEY_CACHE_TTL_S = float(os.environ.get("PAYWALLS_CACHE_TTL_S", "30"))
_key_cache: dict[str, tuple[float, Caller | None]] = {}


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def authenticate(request: Request) -> Caller:
    token = bearer_token(request)
    if not token:
        raise ApiError(401, "missing API key: send Authorization: Bearer sk-paywalls-...", code="invalid_api_key")
    now = time.monotonic()
    cached = _key_cache.get(token)
    if cached and cached[0] > now:
        caller = cached[1]
    else:
        caller = _load_caller(token)
        if len(_key_cache) > 10_000:
            _key_cache.clear()
        _key_cache[token] = (now + _KEY_CACHE_TTL_S, caller)
    if caller is None:
        raise ApiError(401, "invalid API key", code="invalid_api_key")
    return caller


def _load_caller(token: str) -> Caller | None:
    key = paywalls.lookup_key(token)
    if key is None:
        return None
    try:
        return Caller(key, paywalls.get(key.paywall_id))
    except paywalls.NotFound:
        return None


def clear_caches() -> None:
    _key_cache.clear()
