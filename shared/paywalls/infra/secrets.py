"""Secrets Manager adapter: provider and Stripe keys never touch DynamoDB, logs or responses.

Values are cached for SECRET_CACHE_S per instance (a 401 from a provider forces a refetch). The cache
is a dict, not Powertools Parameters: that package imports boto3 (~100 ms of every cold start of the
chat function, which needs nothing else from it). Misses are cached too: a secret that does not
exist (a paywall without Stripe, one mode of two) is remembered as missing for a while, so requests
naming it, forged webhook calls above all, do not each cost a Secrets Manager read. That memory is
bounded (MISS_CACHE_SIZE names, oldest dropped first) and expires after `miss_ttl_s()`; writing the
secret through this module forgets the miss at once in this instance (other instances learn within
the TTL)."""

from __future__ import annotations

import base64
import json
import threading
from collections import OrderedDict
from time import monotonic
from typing import Any

from paywalls.core.errors import PaywallsError
from paywalls.infra import aws
from paywalls.infra.aws import ServiceError
from paywalls.infra.config import settings

SECRET_CACHE_S = 300
MISS_CACHE_SIZE = 1024

_misses: OrderedDict[str, float] = OrderedDict()  # name -> monotonic time the miss expires
_misses_lock = threading.Lock()  # handlers run in a threadpool
_values: dict[str, tuple[float, str]] = {}  # name -> (monotonic time the value expires, value)
_values_lock = threading.Lock()


class SecretUnavailable(PaywallsError, RuntimeError):
    """Secrets Manager did not answer the secret (access, throttling, a network failure...). Of no
    kind: its message names the secret, so it must never reach a client (a generic 500; callers that
    can do better, like stripe_config, turn it into StoreUnavailable)."""


class SecretMissing(SecretUnavailable):
    """The secret does not exist."""


def miss_ttl_s() -> float:
    """How long a missing secret is remembered: PAYWALLS_SECRET_MISS_TTL_S, else the deployment's cache
    TTL (PAYWALLS_CACHE_TTL_S, 30 s by default; the tests set 0, which turns this cache off)."""
    return settings().secret_miss_ttl_s


def cached(name: str) -> str | None:
    """The value of `name` while its cache entry is fresh, else None: no read, nothing blocks (the
    chat path asks this on the event loop before it would read in a worker thread)."""
    with _values_lock:
        entry = _values.get(name)
    return entry[1] if entry and entry[0] > monotonic() else None


def get_secret(name: str, *, force_fetch: bool = False) -> str:
    """Cached read; force_fetch after the secret was rotated (e.g. provider said 401)."""
    now = monotonic()
    if not force_fetch and (value := cached(name)) is not None:
        return value
    try:
        answer = aws.client("secretsmanager").get_secret_value(SecretId=name)
    except ServiceError as exc:
        code = exc.aws_code
        if code == "ResourceNotFoundException":
            raise SecretMissing(f"secret {name} does not exist") from None
        raise SecretUnavailable(f"secret {name} could not be read ({code})") from None
    value = answer["SecretString"] if "SecretString" in answer else _binary(answer["SecretBinary"]).decode()
    with _values_lock:
        _values[name] = (now + SECRET_CACHE_S, value)
    return value


def _binary(value: bytes | str) -> bytes:
    """SecretBinary: bytes from botocore, base64 text on the wire (the http transport)."""
    return value if isinstance(value, bytes) else base64.b64decode(value)


def get_json_secret(name: str, *, force_fetch: bool = False) -> dict[str, Any]:
    return json.loads(get_secret(name, force_fetch=force_fetch))


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
    SecretUnavailable."""
    if not force_fetch and known_missing(name):
        return None
    try:
        value = get_json_secret(name, force_fetch=force_fetch)
    except SecretMissing:
        _remember_missing(name)
        return None
    forget_missing(name)
    return value


def put_secret(name: str, value: str) -> None:
    """Create the secret or store a new version of it; the old value stops being served at once here."""
    client = aws.client("secretsmanager")
    try:
        client.put_secret_value(SecretId=name, SecretString=value)
    except ServiceError as exc:
        if exc.aws_code != "ResourceNotFoundException":
            raise
        client.create_secret(Name=name, SecretString=value)
    with _values_lock:
        _values.pop(name, None)
    forget_missing(name)


def create_if_absent(name: str, value: str) -> bool:
    """Create the secret unless it exists (then nothing changes); whether this call created it. Of
    concurrent creators exactly one wins; the others read the winner's value afterwards."""
    try:
        aws.client("secretsmanager").create_secret(Name=name, SecretString=value)
    except ServiceError as exc:
        if exc.aws_code != "ResourceExistsException":
            raise
        return False
    forget_missing(name)
    return True


def reset() -> None:
    with _values_lock:
        _values.clear()
    with _misses_lock:
        _misses.clear()
