"""HTTP glue shared by every function's ASGI app: OpenAI-style errors, request ids, paywall-key auth.

Errors: a domain error is one of the kinds in `paywalls.core.errors`; `ERROR_TABLE` below is the one place
that says what each kind is over HTTP, used by the JSON APIs (`install`) and the hosted HTML pages
(their status and headers come from `translate`).

Adapters only; the rules they call live in the domain modules. Starlette only at import time: the chat
function is a plain Starlette app (FastAPI and pydantic cost ~200 ms of its cold start), so what the
FastAPI apps alone need is imported when first used (request validation errors) or lives in
`paywalls.http.api_models` (typed bodies)."""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from paywalls.billing import paywall as paywalls
from paywalls.billing.ledger import InsufficientFunds
from paywalls.core import errors
from paywalls.infra import logs
from paywalls.infra.config import settings
from paywalls.infra.store import StoreUnavailable

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


class ApiError(errors.PaywallsError):
    """An error with an OpenAI-shaped body: {"error": {message, type, param, code}}. Raised by the HTTP
    layer itself (a missing key, a body too large), or made by `translate` from a domain error."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
        error_type: str | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or {}
        self.error_type = error_type or _ERROR_TYPES.get(status, "api_error")

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": encodable(self.message),
                "type": self.error_type,
                "param": None if self.param is None else encodable(self.param),
                "code": self.code,
            }
        }


def encodable(text: object) -> str:
    """`text` as a string that always encodes as UTF-8. Messages echo client input (a model name, a
    field name); a lone surrogate in it would make the error response itself fail with a 500."""
    value = str(text)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "replace").decode("utf-8")
    return value


def error_response(error: ApiError, request_id: str | None = None) -> JSONResponse:
    headers = dict(error.headers)
    if request_id:
        headers["X-Request-Id"] = request_id
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


@dataclass(frozen=True)
class HttpAnswer:
    """How an error kind is answered: status and OpenAI error type; `message`, a fixed text instead of
    the error's own (which for these carries internal detail). The OpenAI `code` and `param` are the
    error's own (each kind has a default code, a domain class may name its own: `identity.InvalidUser`
    is `invalid_user` / `user`); an error's `retry_after` becomes a Retry-After header."""

    status: int
    type: str
    message: str | None = None


# The one table from error kinds (paywalls.core.errors) to HTTP. An error is answered by the entry of its
# closest class (errors.nearest): its own, else its kind's. An error of no kind listed here is a bug
# when it reaches a client: a generic 500, logged (see `install`).
ERROR_TABLE: dict[type[BaseException], HttpAnswer] = {
    errors.InvalidRequest: HttpAnswer(400, "invalid_request_error"),
    errors.Unauthorized: HttpAnswer(401, "authentication_error"),
    errors.PaymentRequired: HttpAnswer(402, "api_error"),
    InsufficientFunds: HttpAnswer(402, "api_error", message="insufficient balance"),
    errors.Forbidden: HttpAnswer(403, "permission_error"),
    errors.NotFound: HttpAnswer(404, "not_found_error"),
    errors.Conflict: HttpAnswer(409, "conflict_error"),
    errors.RateLimited: HttpAnswer(429, "rate_limit_error"),
    errors.UpstreamFailed: HttpAnswer(502, "api_error"),
    errors.Unavailable: HttpAnswer(503, "api_error"),
    StoreUnavailable: HttpAnswer(503, "api_error", message="the service is busy, please retry"),
}


def translate(exc: BaseException) -> ApiError | None:
    """A domain error as its client error (ERROR_TABLE). None means: unexpected, answer a generic 500."""
    if isinstance(exc, ApiError):
        return exc  # already said in HTTP terms
    answer = errors.nearest(ERROR_TABLE, exc)
    if answer is None or not isinstance(exc, errors.PaywallsError):
        return None
    retry_after = exc.retry_after
    return ApiError(
        answer.status,
        answer.message or str(exc),
        code=exc.code,
        param=exc.param,
        headers={"Retry-After": str(retry_after)} if retry_after is not None else None,
        error_type=answer.type,
    )


# What `install` answers with a handler of its own (no traceback logged): every class in the table.
CLIENT_ERRORS: tuple[type[BaseException], ...] = (ApiError, *ERROR_TABLE)


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


AppT = TypeVar("AppT", bound=Starlette)


def install(app: AppT) -> AppT:
    """Every app (Starlette or FastAPI) answers errors in OpenAI's shape and never leaks a traceback."""
    logs.configure()

    if "fastapi" in type(app).__module__:
        from fastapi.exceptions import RequestValidationError

        async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
            first = exc.errors()[0] if exc.errors() else {}
            loc = [str(p) for p in first.get("loc", []) if p not in ("body", "query", "path", "header")]
            message = first.get("msg", "invalid request")
            param = ".".join(loc) or None
            text = f"{param}: {message}" if param else message
            return error_response(ApiError(400, text, param=param, code="invalid_request"), request_id_of(request))

        app.add_exception_handler(RequestValidationError, _validation)  # type: ignore[arg-type]

    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route for {request.method} {request.url.path}"
        if exc.status_code == 405:
            message = f"method {request.method} not allowed on {request.url.path}"
        return error_response(ApiError(exc.status_code, message), request_id_of(request))

    app.add_exception_handler(StarletteHTTPException, _http)  # type: ignore[arg-type]

    async def _known(request: Request, exc: Exception) -> JSONResponse:
        error = translate(exc)
        assert error is not None
        return error_response(error, request_id_of(request))

    # Registered per class: a handler for plain `Exception` is Starlette's last resort, which
    # re-raises after answering and would log every client mistake as a server traceback.
    for known in CLIENT_ERRORS:
        app.add_exception_handler(known, _known)

    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        error = translate(exc) or ApiError(
            500, "internal error; the request id identifies it in the logs", code="internal_error"
        )
        return error_response(error, request_id_of(request))

    app.add_exception_handler(Exception, _unexpected)

    app.add_middleware(RequestIdMiddleware)
    return app


MAX_JSON_DEPTH = 64  # no request we accept nests deeper; json.loads itself would recurse ~1000 deep first


class BodyTooLarge(ApiError):
    """A body over its route's limit. Its own class so HTML pages can answer it their own way."""

    def __init__(self, limit: int, message: str | None = None):
        super().__init__(413, message or f"request body too large (limit {limit} bytes)", code="body_too_large")


async def read_body(request: Request, *, limit: int, message: str | None = None) -> bytes:
    """The raw body, never holding more than `limit` bytes in memory: a declared Content-Length over
    the limit is refused before reading anything, and a chunked (or lying) body is cut off as soon as
    it passes the limit. Locally one uvicorn process serves every function, so an unbounded read would
    let one client exhaust the memory of all of them."""
    declared = request.headers.get("content-length")
    if declared is not None:
        # ASCII digits only: str.isdigit() also accepts "²", which int() then refuses (a 500).
        if not (declared.isascii() and declared.isdigit()):
            raise ApiError(400, "invalid Content-Length header", code="invalid_request")
        if int(declared) > limit:
            raise BodyTooLarge(limit, message)
    received = bytearray()
    async for chunk in request.stream():
        received += chunk
        if len(received) > limit:
            raise BodyTooLarge(limit, message)
    body = bytes(received)
    # Starlette's own cache: a later request.body() answers these bytes instead of "stream consumed".
    request._body = body
    return body


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON (RFC 8259); accepted, they would fail later when a reply is rendered.
    raise ValueError(f"{name} is not valid JSON")


def _too_deep(max_depth: int) -> ApiError:
    return ApiError(400, f"the request body nests more than {max_depth} levels of arrays/objects", code="invalid_json")


def _check_structure(data: Any, max_depth: int) -> None:
    """Iteratively (no recursion to exhaust): nesting within `max_depth`, and every string and key
    encodable as UTF-8. json.loads turns escapes like "\\ud800" (or raw bytes ED A0 80) into lone
    surrogates, which cannot be written to DynamoDB or echoed in a response: a 500 otherwise."""
    pending: list[tuple[Any, int]] = [(data, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, str):
            value.encode("utf-8")  # UnicodeEncodeError on a lone surrogate
            continue
        if isinstance(value, dict):
            children = [*value.keys(), *value.values()]
        elif isinstance(value, list):
            children = value
        else:
            continue
        if depth > max_depth:
            raise _too_deep(max_depth)
        pending.extend((child, depth + 1) for child in children)


async def json_body(request: Request, *, limit: int = 1_000_000, max_depth: int = MAX_JSON_DEPTH) -> dict[str, Any]:
    """The body as a JSON object, or a 400/413 ApiError: never an exception that would answer 500."""
    raw = await read_body(request, limit=limit)
    if not raw:
        return {}
    try:
        data = json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError):
        raise ApiError(400, "the request body is not valid JSON", code="invalid_json") from None
    except RecursionError:  # thousands of levels: the parser's own recursion gave up first
        raise _too_deep(max_depth) from None
    try:
        _check_structure(data, max_depth)
    except UnicodeEncodeError:
        raise ApiError(
            400, "the request body contains an invalid Unicode escape (a lone surrogate)", code="invalid_json"
        ) from None
    if not isinstance(data, dict):
        raise ApiError(400, "the request body must be a JSON object", code="invalid_json")
    return data


async def json_object(request: Request) -> dict[str, Any]:
    """json_body as a FastAPI dependency, for the few routes without a typed body (api_models) yet."""
    return await json_body(request)


if TYPE_CHECKING:
    JsonBody = Annotated[dict[str, Any], Any]


def __getattr__(name: str) -> Any:
    # `JsonBody` (a FastAPI dependency) is built on first use, so importing this module does not
    # import FastAPI (module doc). The FastAPI apps name it in annotations: resolved when they load.
    if name == "JsonBody":
        from fastapi import Depends

        value = Annotated[dict[str, Any], Depends(json_object)]
        globals()["JsonBody"] = value
        return value
    raise AttributeError(name)


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


_COUNT_RE = re.compile(r"\A[0-9]{1,9}\Z")


def count_param(value: str | None, name: str, *, default: int, minimum: int, maximum: int) -> int:
    """A whole-number query parameter (a page size). Read as text and checked here, not by FastAPI's
    `int`, which also takes " 1", "1_000", "+1" and "1.0": ASCII digits only, within the range."""
    if value is None:
        return default
    if not _COUNT_RE.fullmatch(value) or not minimum <= int(value) <= maximum:
        raise ApiError(
            400, f"{name} must be a whole number between {minimum} and {maximum}", param=name, code=f"invalid_{name}"
        )
    return int(value)


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


# A revoked key (or a price change) reaches every warm instance within this time. Tests set 0. Copied
# from the settings when this module loads, as a module attribute the in-process stack can warm.
_KEY_CACHE_TTL_S = settings().cache_ttl_s
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
    hit, caller = _cached_caller(token)
    if not hit:
        caller = _load_caller(token)
        if len(_key_cache) > 10_000:
            _key_cache.clear()
        _key_cache[token] = (time.monotonic() + _KEY_CACHE_TTL_S, caller)
    if caller is None:
        raise ApiError(401, "invalid API key", code="invalid_api_key")
    return caller


async def authenticate_on_loop(request: Request) -> Caller:
    """`authenticate` for the event loop: a key cached by this instance answers at once; only a miss
    (a read of the key and its paywall) goes to a worker thread."""
    token = bearer_token(request)
    hit, caller = _cached_caller(token) if token else (False, None)
    if hit and caller is not None:
        return caller
    return await anyio.to_thread.run_sync(authenticate, request)


def _cached_caller(token: str) -> tuple[bool, Caller | None]:
    """(whether this instance's cache still answers for `token`, the caller it holds: None for a key
    found invalid)."""
    cached = _key_cache.get(token)
    if cached and cached[0] > time.monotonic():
        return True, cached[1]
    return False, None


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
