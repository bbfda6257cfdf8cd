"""AWS clients, created once per process. The endpoint comes from configuration (AWS_ENDPOINT_URL,
which botocore reads itself), so the same code talks to the local engine, moto in-process or real AWS.

botocore, not boto3: boto3 adds nothing we use (resources, S3 transfers) and its import (boto3.compat
pulls in s3transfer) costs about half of botocore's again on every cold start."""

from __future__ import annotations

import threading
from functools import cache
from typing import Any

import botocore.session
from botocore.config import Config

from paywalls.infra.config import settings

# botocore's "standard" mode retries throttling and 5xx itself; TransactionConflict is ours (store.py).
_CLIENT_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 4},
    connect_timeout=3,
    read_timeout=10,
    max_pool_connections=64,
)
_lock = threading.Lock()  # creating clients from one session is not thread-safe in botocore


@cache
def _session() -> botocore.session.Session:
    return botocore.session.get_session()


@cache
def client(service: str) -> Any:
    config = settings()
    with _lock:
        if config.sam_local_endpoint:  # `sam local invoke` against the `make run` engine
            return _session().create_client(
                service, region_name=config.region, config=_CLIENT_CONFIG, endpoint_url=config.sam_local_endpoint
            )
        return _session().create_client(service, region_name=config.region, config=_CLIENT_CONFIG)


def reset_clients() -> None:
    """Tests that switch endpoints or inject faults start from fresh clients."""
    client.cache_clear()
    _session.cache_clear()
    settings.cache_clear()
