"""Process configuration, read once from the environment (Lambda env vars or the local stack)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from functools import lru_cache

log = logging.getLogger(__name__)

DEFAULT_EARNINGS_HOLD_DAYS = 7
MAX_EARNINGS_HOLD_DAYS = 365


@dataclass(frozen=True)
class Settings:
    table_name: str
    secret_prefix: str
    region: str
    public_base_url: str | None
    admin_auth: str  # "iam" (API Gateway enforced SigV4) or "token" (local bearer token)
    admin_token: str | None
    local_dev: bool  # enables dev-only behaviour such as simulated payments; never set in AWS
    # Shared mode: days a paywall's earnings stay pending (not withdrawable) after the charge, so a
    # refund or lost dispute of the top-up that paid for them can still take them back (earnings.py).
    earnings_hold_days: int = DEFAULT_EARNINGS_HOLD_DAYS
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
        earnings_hold_days=_hold_days(os.environ.get("EARNINGS_HOLD_DAYS")),
        sam_local_endpoint=(os.environ.get("PAYWALLS_LOCAL_ENDPOINT_URL") or None)
        if os.environ.get("AWS_SAM_LOCAL") == "true"
        else None,
    )


def _hold_days(raw: str | None) -> int:
    """EARNINGS_HOLD_DAYS (the template's EarningsHoldDays, 0..365). A value that is not such a number
    falls back to the default rather than to 0: a typo must never make earnings withdrawable at once."""
    if raw is None or raw.strip() == "":
        return DEFAULT_EARNINGS_HOLD_DAYS
    try:
        days = int(raw.strip())
    except ValueError:
        days = -1
    if not 0 <= days <= MAX_EARNINGS_HOLD_DAYS:
        log.error("EARNINGS_HOLD_DAYS is not a whole number of days in 0..365; using the default")
        return DEFAULT_EARNINGS_HOLD_DAYS
    return days
