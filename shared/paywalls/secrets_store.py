"""Secrets Manager adapter: provider and Stripe keys never touch DynamoDB, logs or responses.

Values are cached by Powertools (SECRET_CACHE_S). Misses are cached here too: a secret that does not
exist (a paywall without Stripe, one mode of two) is remembered as missing for a while, so requests
naming it, forged webhook calls above all, do not each cost a Secrets Manager read. That memory is
bounded (MISS_CACHE_SIZE names, oldest dropped first) and expires after `miss_ttl_s()`; writing the
secret through this module forgets the miss at once in this instance (other instances learn within
the TTL)."""

from __future__ import annotations

import json
import os
import threading
from collections import OrderedDict
from functools import lru_cache
from time import monotonic
from typing import Any

from aws_lambda_powertools.utilities.parameters import SecretsProvider
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError
from botocore.exceptions import ClientError

from paywalls import aws

SECRET_CACHE_S = 300
MISS_CACHE_SIZE = 1024

_misses: OrderedDict[str, float] = OrderedDict()  # name -> monotonic time the miss expires
_misses_lock = threading.Lock()  # handlers run in a threadpool


@lru_cache(maxsize=1)
def _provider() -> SecretsProvider:
    return SecretsProvider(boto3_client=aws.client("secretsmanager"))


def miss_ttl_s() -> float:
    """How long a missing secret is remembered: PAYWALLS_SECRET_MISS_TTL_S, else the deployment's cache
    TTL (PAYWALLS_CACHE_TTL_S, 30 s by default; the tests set 0, which turns this cache off)."""
    raw = os.environ.get("PAYWALLS_SECRET_MISS_TTL_S") or os.environ.get("PAYWALLS_CACHE_TTL_S") or "30"
    try:
        return max(0.0, float(raw))
    except ValueError:
        return 30.0


def get_secret(name: str, *, force_fetch: bool = False) -> str:
    """Cached read (Powertools); force_fetch after the secret was rotated (e.g. provider said 401)."""
    value = _provider().get(name, max_age=SECRET_CACHE_S, force_fetch=force_fetch)
    return value if isinstance(value, str) else value.decode()


def get_json_secret(name: str, *, force_fetch: bool = False) -> dict[str, Any]:
    return json.loads(get_secret(name, force_fetch=force_fetch))


def _is_not_found(exc: Exception) -> bool:
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, ClientError):
        return cause.response["Error"]["Code"] == "ResourceNotFoundException"
    return "ResourceNotFoundException" in str(exc)


def known_missing(name: str) -> bool:
    """Whether `name` was found missing less than the miss TTL ago (no read needed to say so)."""
    with _misses_lock:
        expires = _misses.get(name)
        if expires is None:
            return False
        if expires > monotonic():
            return True
        del _misses[name]
        return False


def _remember_missing(name: str) -> None:
    ttl = miss_ttl_s()
    if ttl <= 0:
        return
    with _misses_lock:
        _misses.pop(name, None)
        _misses[name] = monotonic() + ttl
        while len(_misses) > MISS_CACHE_SIZE:
            _misses.popitem(last=False)


def forget_missing(name: str) -> None:
    """The secret now exists (created by this instance): stop answering it as missing."""
    with _misses_lock:
        _misses.pop(name, None)


def get_json_secret_if_exists(name: str, *, force_fetch: bool = False) -> dict[str, Any] | None:
    """The secret's JSON, or None when it does not exist. A miss is remembered (see the module doc);
    force_fetch reads Secrets Manager whatever is cached, hit or miss. Other read failures raise
    GetParameterError."""
    if not force_fetch and known_missing(name):
        return None
    try:
        value = get_json_secret(name, force_fetch=force_fetch)
    except GetParameterError as exc:
        if not _is_not_found(exc):
            raise
        _remember_missing(name)
        return None
    forget_missing(name)
    return value


def put_secret(name: str, value: str) -> None:
    """Create the secret or store a new version of it; the old value stops being served at once here."""
    client = aws.client("secretsmanager")
    try:
        client.put_secret_value(SecretId=name, SecretString=value)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "ResourceNotFoundException":
            raise
        client.create_secret(Name=name, SecretString=value)
    _provider().clear_cache()
    forget_missing(name)


def reset() -> None:
    _provider.cache_clear()
    with _misses_lock:
        _misses.clear()
