"""Secrets Manager adapter: provider and Stripe keys never touch DynamoDB, logs or responses."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from aws_lambda_powertools.utilities.parameters import SecretsProvider
from botocore.exceptions import ClientError

from paywalls import aws

SECRET_CACHE_S = 300


@lru_cache(maxsize=1)
def _provider() -> SecretsProvider:
    return SecretsProvider(boto3_client=aws.client("secretsmanager"))


def get_secret(name: str, *, force_fetch: bool = False) -> str:
    """Cached read (Powertools); force_fetch after the secret was rotated (e.g. provider said 401)."""
    value = _provider().get(name, max_age=SECRET_CACHE_S, force_fetch=force_fetch)
    return value if isinstance(value, str) else value.decode()


def get_json_secret(name: str, *, force_fetch: bool = False) -> dict[str, Any]:
    return json.loads(get_secret(name, force_fetch=force_fetch))


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


def reset() -> None:
    _provider.cache_clear()
