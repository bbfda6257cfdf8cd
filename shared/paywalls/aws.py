"""boto3 clients, created once per process. The endpoint comes from configuration (AWS_ENDPOINT_URL,
which boto3 reads itself), so the same code talks to the local engine, moto in-process or real AWS."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

from paywalls.config import settings

# botocore's "standard" mode retries throttling and 5xx itself; TransactionConflict is ours (store.py).
_CLIENT_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 4},
    connect_timeout=3,
    read_timeout=10,
    max_pool_connections=64,
)


@cache
def client(service: str) -> Any:
    config = settings()
    if config.sam_local_endpoint:  # `sam local invoke` against the `make run` engine
        return boto3.client(
            service, region_name=config.region, config=_CLIENT_CONFIG, endpoint_url=config.sam_local_endpoint
        )
    return boto3.client(service, region_name=config.region, config=_CLIENT_CONFIG)


def reset_clients() -> None:
    """Tests that switch endpoints or inject faults start from fresh clients."""
    client.cache_clear()
    settings.cache_clear()
