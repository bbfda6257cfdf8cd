"""AWS clients, created once per process. The endpoint comes from configuration (AWS_ENDPOINT_URL...),
so the same code talks to the local engine, moto in-process or real AWS.

DynamoDB and Secrets Manager (`client("dynamodb")`, `client("secretsmanager")`) are a `JsonClient`:
botocore's method names (`get_item(**params)`), plus `call(operation, params)` and the awaitable
`acall`, on one of two transports (`settings().aws_transport`):
- "http" (aws_json.py): our own SigV4-signed JSON calls over httpx. Used whenever the credentials are
  in the environment, as in every Lambda function and `make run`: no botocore import, no worker
  thread per awaited call.
- "botocore": the SDK, for everything else: credentials from a profile, SSO or an instance role
  (botocore's credential chain), and moto's in-process mock (unit tests), which patches botocore.
  An awaited call runs in a worker thread.
Both raise `ServiceError` with botocore's error shape, so nothing above tells them apart.

Other services (SQS, SES) are botocore clients (`botocore_client`). botocore, not boto3: boto3 adds
nothing we use and its import (boto3.compat pulls in s3transfer) costs half of botocore's again."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from functools import cache
from typing import TYPE_CHECKING, Any

from paywalls.infra import telemetry
from paywalls.infra.aws_json import PROTOCOLS, Credentials, JsonTransport, ServiceError, default_endpoint
from paywalls.infra.config import settings

if TYPE_CHECKING:
    import botocore.session

__all__ = ["JsonClient", "ServiceError", "botocore_client", "client", "reset_clients"]

_lock = threading.Lock()  # creating clients from one session is not thread-safe in botocore
# Called before every call of a JsonClient, with (service, operation, params): counting benchmarks
# and tests (devserver.inprocess.Recorder, tests/test_hot_path_calls.py) see every call, on
# either transport.
CallHook = Callable[[str, str, dict[str, Any]], None]


class _BotocoreTransport:
    """The SDK behind a JsonClient. botocore is imported here, when a process first uses it, never on
    the chat function's import path."""

    def __init__(self, service: str):
        self.sdk = botocore_client(service)

    def call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        method = getattr(self.sdk, _snake(operation))
        try:
            return method(**params)
        except ClientError as exc:
            raise ServiceError(exc.response, operation) from None

    async def acall(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        import anyio

        return await anyio.to_thread.run_sync(self.call, operation, params)


def _snake(operation: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in operation).lstrip("_")


def _pascal(method: str) -> str:
    return "".join(part.capitalize() for part in method.split("_"))


class JsonClient:
    """A JSON-protocol service on this process's transport."""

    def __init__(self, service: str, transport: JsonTransport | _BotocoreTransport):
        self.service = service
        self.transport = transport
        self.hooks: list[CallHook] = []

    @property
    def kind(self) -> str:
        return "http" if isinstance(self.transport, JsonTransport) else "botocore"

    @property
    def endpoint_url(self) -> str:
        if isinstance(self.transport, JsonTransport):
            return self.transport.endpoint.rstrip("/")
        return str(self.transport.sdk.meta.endpoint_url)

    def call(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        for hook in self.hooks:
            hook(self.service, operation, params)
        with self._traced(operation):
            return self.transport.call(operation, params)

    async def acall(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        for hook in self.hooks:
            hook(self.service, operation, params)
        with self._traced(operation):
            return await self.transport.acall(operation, params)

    @contextlib.contextmanager
    def _traced(self, operation: str) -> Iterator[None]:
        """An X-Ray subsegment named after the service, as X-Ray's botocore patch names its own (the
        botocore transport is traced by that patch; httpx is not patched: the provider call has its
        own named subsegment)."""
        if not isinstance(self.transport, JsonTransport):
            yield
            return
        with telemetry.subsegment(self.service) as segment:
            if segment is not None:
                segment.put_annotation("operation", operation)
            yield

    def __getattr__(self, method: str) -> Callable[..., dict[str, Any]]:
        if method.startswith("_"):
            raise AttributeError(method)
        operation = _pascal(method)
        return lambda **params: self.call(operation, params)


@cache
def _session() -> botocore.session.Session:
    import botocore.session

    return botocore.session.get_session()


@cache
def botocore_client(service: str) -> Any:
    from botocore.config import Config

    config = settings()
    # botocore's "standard" mode retries throttling and 5xx itself; TransactionConflict is ours (store.py).
    client_config = Config(
        retries={"mode": "standard", "max_attempts": 4}, connect_timeout=3, read_timeout=10, max_pool_connections=64
    )
    with _lock:
        if config.sam_local_endpoint:  # `sam local invoke` against the `make run` engine
            return _session().create_client(
                service, region_name=config.region, config=client_config, endpoint_url=config.sam_local_endpoint
            )
        return _session().create_client(service, region_name=config.region, config=client_config)


@cache
def client(service: str) -> Any:
    """The JsonClient of DynamoDB or Secrets Manager; a botocore client of any other service."""
    if service not in PROTOCOLS:
        return botocore_client(service)
    config = settings()
    endpoint = config.sam_local_endpoint or config.aws_endpoints.get(service) or config.aws_endpoint_url
    if config.aws_transport == "http" and config.aws_credentials is not None:
        access_key, secret_key, token = config.aws_credentials
        transport = JsonTransport(
            service,
            endpoint=endpoint or default_endpoint(service, config.region),
            region=config.region,
            credentials=Credentials(access_key, secret_key, token),
        )
        return JsonClient(service, transport)
    return JsonClient(service, _BotocoreTransport(service))


def reset_clients() -> None:
    """Tests that switch endpoints or inject faults start from fresh clients."""
    client.cache_clear()
    botocore_client.cache_clear()
    _session.cache_clear()
    settings.cache_clear()
