"""Process configuration, read once from the environment (Lambda env vars or the local stack)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache


@dataclass(frozen=True)
class Settings:
    table_name: str
    secret_prefix: str
    region: str
    public_base_url: str | None
    admin_auth: str  # "iam" (API Gateway enforced SigV4) or "token" (local bearer token)
    admin_token: str | None
    local_dev: bool  # enables dev-only behaviour such as simulated payments; never set in AWS
    # `sam local invoke` only: the `make run` engine as seen from SAM CLI's container
    # (events/sam-local/env.json). Honoured only inside that container (AWS_SAM_LOCAL=true).
    sam_local_endpoint: str | None = None


@lru_cache(maxsize=1)
def settings() -> Settings:
    return Settings(
        table_name=os.environ.get("TABLE_NAME", "PaywallsTable"),
        secret_prefix=os.environ.get("SECRET_PREFIX", "paywalls/local"),
        region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
        public_base_url=os.environ.get("PUBLIC_BASE_URL") or None,
        admin_auth=os.environ.get("ADMIN_AUTH", "token"),
        admin_token=os.environ.get("ADMIN_TOKEN") or None,
        local_dev=os.environ.get("PAYWALLS_LOCAL_DEV") == "1",
        sam_local_endpoint=(os.environ.get("PAYWALLS_LOCAL_ENDPOINT_URL") or None)
        if os.environ.get("AWS_SAM_LOCAL") == "true"
        else None,
    )
