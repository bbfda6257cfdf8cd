"""AWS's JSON protocol over httpx, signed with Signature Version 4: the transport of the DynamoDB and
Secrets Manager calls when the process has credentials in its environment (every Lambda function;
`make run`). See aws.py for when botocore is used instead.

Why not botocore on this path (DESIGN.md "Hot path", "Cold start"): botocore's import is about half
of the chat function's cold start, its per-call work (parameter validation, serialising, event
hooks, signing, parsing) was ~20% of a proxied request's CPU, and its calls block, so each one cost a
worker-thread hop and back into the event loop. These two services speak one protocol: a POST of a
JSON body to `/` with an `X-Amz-Target` header naming the operation, answered with JSON. So a request
here is one `json.dumps`, four HMACs (the signing key is cached per day) and one httpx exchange,
awaitable on the event loop (`acall`) or blocking (`call`), on pooled keep-alive connections.

What botocore's "standard" retry mode did is kept: throttling, 5xx and connection failures are
retried here with full-jitter backoff, 4 attempts in all (store.py's own retries sit above this, as
they sat above botocore's). Errors come back in botocore's shape (`ServiceError.response` holds
`Error.Code`, `Error.Message` and the body's other fields, such as `CancellationReasons`), so the
store maps them the same way whichever transport answered."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import json
import random
import ssl
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from paywalls.core.errors import PaywallsError

ALGORITHM = "AWS4-HMAC-SHA256"
MAX_ATTEMPTS = 4  # botocore "standard" mode's default
BASE_DELAY_S = 0.05
MAX_DELAY_S = 2.0
# botocore "standard" mode's throttling and transient codes (botocore/retries/standard.py).
RETRYABLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalServerError",
        "ServiceUnavailable",
    }
)
RETRYABLE_STATUS = frozenset({500, 502, 503, 504})


class ServiceError(PaywallsError):
    """The service refused the call. `response` is shaped as botocore's ClientError.response:
    {"Error": {"Code", "Message"}, "ResponseMetadata": {"HTTPStatusCode"}, **the body's other fields}."""

    def __init__(self, response: dict[str, Any], operation: str):
        error = response.get("Error", {})
        super().__init__(f"{operation}: {error.get('Code')}: {error.get('Message', '')}")
        self.response = response
        self.operation = operation

    @property
    def aws_code(self) -> str:
        return str(self.response.get("Error", {}).get("Code", ""))


@dataclass(frozen=True)
class Credentials:
    access_key: str
    secret_key: str = field(repr=False)
    token: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Protocol:
    """How one service names its operations on the wire."""

    signing_name: str  # the service in the credential scope
    target_prefix: str  # X-Amz-Target: "<prefix>.<Operation>"
    content_type: str  # application/x-amz-json-1.0 or -1.1


PROTOCOLS = {
    "dynamodb": Protocol("dynamodb", "DynamoDB_20120810", "application/x-amz-json-1.0"),
    "secretsmanager": Protocol("secretsmanager", "secretsmanager", "application/x-amz-json-1.1"),
}


def default_endpoint(service: str, region: str) -> str:
    return f"https://{service}.{region}.amazonaws.com"


# ---- Signature Version 4 ------------------------------------------------------------------------


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


class Signer:
    """SigV4 for a POST to the endpoint's root with a JSON body (all this protocol sends). The
    signing key depends only on the day, region and service, so it is derived once per day."""

    def __init__(self, credentials: Credentials, region: str, service: str):
        self.credentials = credentials
        self.region = region
        self.service = service
        self._day_key: tuple[str, bytes] | None = None

    def _signing_key(self, day: str) -> bytes:
        if self._day_key is None or self._day_key[0] != day:
            key = _hmac(("AWS4" + self.credentials.secret_key).encode(), day)
            for part in (self.region, self.service, "aws4_request"):
                key = _hmac(key, part)
            self._day_key = (day, key)
        return self._day_key[1]

    def headers(self, host: str, headers: dict[str, str], body: bytes, now: datetime) -> dict[str, str]:
        """`headers` plus X-Amz-Date, X-Amz-Security-Token and Authorization. Every header given is
        signed (host too), as botocore signs a request's headers."""
        stamp = now.strftime("%Y%m%dT%H%M%SZ")
        day = stamp[:8]
        signed = {"host": host, "x-amz-date": stamp, **{k.lower(): v.strip() for k, v in headers.items()}}
        if self.credentials.token:
            signed["x-amz-security-token"] = self.credentials.token
        names = sorted(signed)
        canonical = "\n".join(
            [
                "POST",
                "/",
                "",
                "".join(f"{name}:{signed[name]}\n" for name in names),
                ";".join(names),
                hashlib.sha256(body).hexdigest(),
            ]
        )
        scope = f"{day}/{self.region}/{self.service}/aws4_request"
        to_sign = f"{ALGORITHM}\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
        signature = hmac.new(self._signing_key(day), to_sign.encode(), hashlib.sha256).hexdigest()
        result = {**headers, "X-Amz-Date": stamp}
        if self.credentials.token:
            result["X-Amz-Security-Token"] = self.credentials.token
        result["Authorization"] = (
            f"{ALGORITHM} Credential={self.credentials.access_key}/{scope}, "
            f"SignedHeaders={';'.join(names)}, Signature={signature}"
        )
        return result


# ---- the transport ------------------------------------------------------------------------------


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One TLS context (the CA bundle loaded once) for every pool of the process. The chat path uses
    only the awaited pool: the blocking one, and its context, are not made until something blocks."""
    return httpx.create_ssl_context()


def _backoff_s(attempt: int) -> float:
    return random.uniform(0, min(MAX_DELAY_S, BASE_DELAY_S * (2**attempt)))


def _error_of(status: int, content: bytes, operation: str) -> ServiceError:
    try:
        body = json.loads(content) if content else {}
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    kind = str(body.pop("__type", "") or f"HTTP{status}")
    message = body.pop("message", None) or body.pop("Message", None) or ""
    response = {
        **body,
        "Error": {"Code": kind.rsplit("#", 1)[-1], "Message": str(message)},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ServiceError(response, operation)


class JsonTransport:
    """One service's endpoint. `transport`/`async_transport` replace httpx's network transports
    (benchmarks answer from recorded responses; tests inject faults).

    Requests go straight to httpx's transport (its connection pool), not through an httpx.Client:
    the client's per-request machinery (cookies, redirects, auth flows, event hooks) serves nothing
    here and cost ~0.1 ms of CPU per call."""

    def __init__(
        self,
        service: str,
        *,
        endpoint: str,
        region: str,
        credentials: Credentials,
        connect_timeout_s: float = 3.0,
        read_timeout_s: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.protocol = PROTOCOLS[service]
        self.endpoint = endpoint.rstrip("/") + "/"
        self.url = httpx.URL(self.endpoint)
        self.host = urlsplit(self.endpoint).netloc
        self.signer = Signer(credentials, region, self.protocol.signing_name)
        self.timeout = httpx.Timeout(read_timeout_s, connect=connect_timeout_s).as_dict()
        self._sleep = sleep
        self.use_transports(transport, async_transport)

    def use_transports(
        self, transport: httpx.BaseTransport | None, async_transport: httpx.AsyncBaseTransport | None
    ) -> None:
        """Replace the network layer from the next call on (benchmarks: recorded answers)."""
        self._given_transport = transport
        self._sync_pool: httpx.BaseTransport | None = None  # made on first blocking call
        self._given_async_transport = async_transport
        # A pool of connections belongs to the event loop that opened them: one per loop (a Lambda
        # process has one; tests start several).
        self._async_transports: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncBaseTransport] = (
            weakref.WeakKeyDictionary()
        )

    def _request(self, operation: str, params: dict[str, Any]) -> httpx.Request:
        body = json.dumps(params, separators=(",", ":")).encode()
        headers = {
            "Content-Type": self.protocol.content_type,
            "X-Amz-Target": f"{self.protocol.target_prefix}.{operation}",
        }
        signed = self.signer.headers(self.host, headers, body, datetime.now(UTC))
        return httpx.Request("POST", self.url, content=body, headers=signed, extensions={"timeout": self.timeout})

    @staticmethod
    def _retryable(exc: Exception) -> bool:
        if isinstance(exc, httpx.TransportError):
            return True
        if isinstance(exc, ServiceError):
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            return exc.aws_code in RETRYABLE_CODES or status in RETRYABLE_STATUS
        return False

    @staticmethod
    def _answer(status: int, content: bytes, operation: str) -> dict[str, Any]:
        if status == 200:
            return json.loads(content) if content else {}
        raise _error_of(status, content, operation)

    def call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        for attempt in range(MAX_ATTEMPTS):
            request = self._request(operation, params)  # signed again: X-Amz-Date moves on
            try:
                response = self._sync_transport().handle_request(request)
                try:
                    content = response.read()
                finally:
                    response.close()
                return self._answer(response.status_code, content, operation)
            except (httpx.TransportError, ServiceError) as exc:
                if attempt + 1 == MAX_ATTEMPTS or not self._retryable(exc):
                    raise
            self._sleep(_backoff_s(attempt))
        raise AssertionError("unreachable")

    def _sync_transport(self) -> httpx.BaseTransport:
        if self._given_transport is not None:
            return self._given_transport
        if self._sync_pool is None:
            self._sync_pool = httpx.HTTPTransport(retries=0, verify=_tls_context())
        return self._sync_pool

    def _async_transport(self) -> httpx.AsyncBaseTransport:
        if self._given_async_transport is not None:
            return self._given_async_transport
        loop = asyncio.get_running_loop()
        transport = self._async_transports.get(loop)
        if transport is None:
            transport = self._async_transports[loop] = httpx.AsyncHTTPTransport(retries=0, verify=_tls_context())
        return transport

    async def acall(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        transport = self._async_transport()
        for attempt in range(MAX_ATTEMPTS):
            request = self._request(operation, params)
            try:
                response = await transport.handle_async_request(request)
                try:
                    content = await response.aread()
                finally:
                    await response.aclose()
                return self._answer(response.status_code, content, operation)
            except (httpx.TransportError, ServiceError) as exc:
                if attempt + 1 == MAX_ATTEMPTS or not self._retryable(exc):
                    raise
            await asyncio.sleep(_backoff_s(attempt))
        raise AssertionError("unreachable")
