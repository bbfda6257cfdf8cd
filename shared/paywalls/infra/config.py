"""Process configuration, read once from the environment (Lambda env vars or the local stack).

This module is the only one that reads the environment (tests/test_settings.py fails on a read
anywhere else in shared/paywalls or functions/): every setting is a field of `Settings`, parsed here,
and `settings()` builds it on first use and caches it for the life of the process, as a Lambda
environment never changes. Whoever changes the environment afterwards (tests, the local stack) calls
`settings.cache_clear()`; the tests' `monkeypatch` fixture does so on every setenv/delenv."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from functools import lru_cache

log = logging.getLogger(__name__)

DEFAULT_EARNINGS_HOLD_DAYS = 7
MAX_EARNINGS_HOLD_DAYS = 365
DEFAULT_CACHE_TTL_S = 30.0
DEFAULT_MAX_COMPLETION_TOKENS = 4096
MAX_COMPLETION_TOKENS = 1_000_000


@dataclass(frozen=True)
class Settings:
    table_name: str
    secret_prefix: str
    region: str
    public_base_url: str | None
    admin_auth: str  # "iam" (API Gateway enforced SigV4) or "token" (local bearer token)
    admin_token: str | None = field(repr=False)
    local_dev: bool  # enables dev-only behaviour such as simulated payments; never set in AWS
    # Shared mode: days a paywall's earnings stay pending (not withdrawable) after the charge, so a
    # refund or lost dispute of the top-up that paid for them can still take them back (earnings.py).
    earnings_hold_days: int = DEFAULT_EARNINGS_HOLD_DAYS
    # `sam local invoke` only: the `make run` engine as seen from SAM CLI's container
    # (events/sam-local/env.json). Honoured only inside that container (AWS_SAM_LOCAL=true).
    sam_local_endpoint: str | None = None
    # PAYWALLS_CACHE_TTL_S: how long a warm instance trusts what it cached (API keys with their
    # paywall, shared-mode connection pointers); a revoked key is refused everywhere within it.
    cache_ttl_s: float = DEFAULT_CACHE_TTL_S
    # PAYWALLS_SECRET_MISS_TTL_S (else the cache TTL): how long a missing secret is remembered.
    secret_miss_ttl_s: float = DEFAULT_CACHE_TTL_S
    stripe_api_base: str | None = None  # STRIPE_API_BASE: a local Stripe stub instead of Stripe's API
    email_from: str = ""  # EMAIL_FROM: the verified SES sender of sign-in codes ("" = sign-in by email off)
    # DEFAULT_SPENDING_CAP: the consent form's prefilled limit, as configured (connections.default_cap
    # parses it, falling back to its own default when it is not an amount).
    default_spending_cap: str = ""
    # PAYWALLS_DEFAULT_MAX_COMPLETION_TOKENS: the completion limit of a chat request that sets none.
    default_max_completion_tokens: int = DEFAULT_MAX_COMPLETION_TOKENS
    provider_connect_timeout_s: float = 5.0  # PAYWALLS_PROVIDER_CONNECT_TIMEOUT_S
    provider_read_timeout_s: float = 120.0  # PAYWALLS_PROVIDER_READ_TIMEOUT_S: between two reads
    stream_drain_timeout_s: float = 60.0  # PAYWALLS_STREAM_DRAIN_TIMEOUT_S (chat_stream)
    stream_max_s: float = 870.0  # PAYWALLS_STREAM_MAX_S: Lambda's 900 s minus time to write the charge
    # Logging (logs.configure): JSON through Powertools in Lambda (AWS_LAMBDA_FUNCTION_NAME is set
    # there), plain text locally.
    in_lambda: bool = False
    service_name: str = "paywalls"  # POWERTOOLS_SERVICE_NAME
    log_level: str = "INFO"  # POWERTOOLS_LOG_LEVEL
    # Telemetry (telemetry.py): EMF metrics go to this namespace (unset: none written, as locally);
    # X-Ray tracing runs only in Lambda, never under `sam local` (AWS_SAM_LOCAL), unless disabled.
    metrics_namespace: str | None = None  # POWERTOOLS_METRICS_NAMESPACE
    metrics_disabled: bool = False  # POWERTOOLS_METRICS_DISABLED
    trace_disabled: bool = False  # POWERTOOLS_TRACE_DISABLED
    sam_local: bool = False  # AWS_SAM_LOCAL=true inside SAM CLI's container
    # Outbound webhooks (events/): the delivery queue (EVENT_QUEUE_URL, set by the template), the
    # first retry's delay (PAYWALLS_WEBHOOK_RETRY_BASE_S; tests shorten it), failed deliveries in a row
    # that deactivate a subscription (PAYWALLS_WEBHOOK_DEACTIVATE_AFTER), and http://127.0.0.1
    # receivers, honoured only with local_dev (PAYWALLS_WEBHOOK_ALLOW_LOCAL=1: make run; never deployed).
    event_queue_url: str = ""
    # PAYWALLS_RESPONSES_CONTEXT_TOKENS: held on top of a Responses request that continues a stored
    # conversation (previous_response_id...), whose content the provider adds and we cannot see.
    responses_context_tokens: int = 128_000
    webhook_retry_base_s: float = 30.0
    webhook_deactivate_after: int = 10
    webhook_allow_local: bool = False
    # AWS (aws.py): how DynamoDB and Secrets Manager are called. PAYWALLS_AWS_TRANSPORT "http" (our own
    # SigV4 JSON calls; needs the credentials in the environment, as Lambda gives them) or "botocore";
    # unset: "http" when AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY are set, else "botocore".
    aws_transport: str = "botocore"
    aws_credentials: tuple[str, str, str | None] | None = field(default=None, repr=False)
    aws_endpoint_url: str | None = None  # AWS_ENDPOINT_URL: the local engine
    # AWS_ENDPOINT_URL_DYNAMODB / AWS_ENDPOINT_URL_SECRETS_MANAGER (botocore's per-service names)
    aws_endpoints: dict[str, str] = field(default_factory=dict)


@lru_cache(maxsize=1)
def settings() -> Settings:
    env = os.environ
    return Settings(
        table_name=env.get("TABLE_NAME", "PaywallsTable"),
        secret_prefix=env.get("SECRET_PREFIX", "paywalls/local"),
        region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
        public_base_url=env.get("PUBLIC_BASE_URL") or None,
        admin_auth=env.get("ADMIN_AUTH", "token"),
        admin_token=env.get("ADMIN_TOKEN") or None,
        local_dev=env.get("PAYWALLS_LOCAL_DEV") == "1",
        earnings_hold_days=_hold_days(env.get("EARNINGS_HOLD_DAYS")),
        cache_ttl_s=_seconds("PAYWALLS_CACHE_TTL_S", DEFAULT_CACHE_TTL_S),
        secret_miss_ttl_s=_miss_ttl_s(env.get("PAYWALLS_SECRET_MISS_TTL_S") or env.get("PAYWALLS_CACHE_TTL_S")),
        stripe_api_base=env.get("STRIPE_API_BASE") or None,
        email_from=env.get("EMAIL_FROM", "").strip(),
        default_spending_cap=env.get("DEFAULT_SPENDING_CAP", "").strip(),
        default_max_completion_tokens=_completion_limit(env.get("PAYWALLS_DEFAULT_MAX_COMPLETION_TOKENS")),
        provider_connect_timeout_s=_seconds("PAYWALLS_PROVIDER_CONNECT_TIMEOUT_S", 5.0),
        provider_read_timeout_s=_seconds("PAYWALLS_PROVIDER_READ_TIMEOUT_S", 120.0),
        stream_drain_timeout_s=_seconds("PAYWALLS_STREAM_DRAIN_TIMEOUT_S", 60.0),
        stream_max_s=_seconds("PAYWALLS_STREAM_MAX_S", 870.0),
        in_lambda=bool(env.get("AWS_LAMBDA_FUNCTION_NAME")),
        service_name=env.get("POWERTOOLS_SERVICE_NAME", "paywalls"),
        log_level=env.get("POWERTOOLS_LOG_LEVEL", "INFO"),
        metrics_namespace=env.get("POWERTOOLS_METRICS_NAMESPACE") or None,
        metrics_disabled=_flag(env.get("POWERTOOLS_METRICS_DISABLED")),
        trace_disabled=_flag(env.get("POWERTOOLS_TRACE_DISABLED")),
        sam_local=env.get("AWS_SAM_LOCAL") == "true",
        event_queue_url=env.get("EVENT_QUEUE_URL", ""),
        responses_context_tokens=int(env.get("PAYWALLS_RESPONSES_CONTEXT_TOKENS") or 128_000),
        webhook_retry_base_s=_seconds("PAYWALLS_WEBHOOK_RETRY_BASE_S", 30.0),
        webhook_deactivate_after=int(env.get("PAYWALLS_WEBHOOK_DEACTIVATE_AFTER") or 10),
        webhook_allow_local=env.get("PAYWALLS_WEBHOOK_ALLOW_LOCAL") == "1",
        sam_local_endpoint=(env.get("PAYWALLS_LOCAL_ENDPOINT_URL") or None)
        if env.get("AWS_SAM_LOCAL") == "true"
        else None,
        aws_transport=_aws_transport(env.get("PAYWALLS_AWS_TRANSPORT"), credentials := _aws_credentials()),
        aws_credentials=credentials,
        aws_endpoint_url=env.get("AWS_ENDPOINT_URL") or None,
        aws_endpoints={
            service: url
            for service, name in (("dynamodb", "DYNAMODB"), ("secretsmanager", "SECRETS_MANAGER"))
            if (url := env.get(f"AWS_ENDPOINT_URL_{name}"))
        },
    )


def _aws_credentials() -> tuple[str, str, str | None] | None:
    env = os.environ
    access_key, secret_key = env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")
    if not access_key or not secret_key:
        return None
    return access_key, secret_key, env.get("AWS_SESSION_TOKEN") or None


def _aws_transport(raw: str | None, credentials: tuple[str, str, str | None] | None) -> str:
    choice = (raw or "").strip().lower()
    if choice not in ("", "http", "botocore"):
        raise ValueError(f"PAYWALLS_AWS_TRANSPORT must be http or botocore, not {raw!r}")
    if choice == "http" and credentials is None:
        raise ValueError("PAYWALLS_AWS_TRANSPORT=http needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    return choice or ("http" if credentials else "botocore")


def _flag(raw: str | None) -> bool:
    return (raw or "").strip().lower() in ("1", "true", "yes", "on")


def set_trace_id(trace_id: str) -> None:
    """The chat function's per-request X-Ray trace id, where the X-Ray SDK and the log formatter read
    it (`_X_AMZN_TRACE_ID`): the one environment write of the package, kept beside the reads."""
    os.environ["_X_AMZN_TRACE_ID"] = trace_id


def _seconds(name: str, default: float) -> float:
    """A duration in seconds. A value that is not a number fails (at start-up: the first settings()
    call), naming the variable; a timeout or TTL is never guessed."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number of seconds, not {raw!r}") from None


def _miss_ttl_s(raw: str | None) -> float:
    """PAYWALLS_SECRET_MISS_TTL_S, else PAYWALLS_CACHE_TTL_S; 30 s when neither is a number (the tests
    set 0, which turns this cache off). Never negative."""
    try:
        return max(0.0, float(raw or DEFAULT_CACHE_TTL_S))
    except ValueError:
        return DEFAULT_CACHE_TTL_S


def _completion_limit(raw: str | None) -> int:
    """PAYWALLS_DEFAULT_MAX_COMPLETION_TOKENS (1..1,000,000, default 4096). A wrong value would size
    every hold: fail at start-up rather than guess."""
    if raw is None:
        return DEFAULT_MAX_COMPLETION_TOKENS
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if not 1 <= value <= MAX_COMPLETION_TOKENS:
        raise ValueError(f"PAYWALLS_DEFAULT_MAX_COMPLETION_TOKENS must be an integer from 1 to 1000000, not {raw!r}")
    return value


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


# ---- the admin CLI (a separate program, on the operator's machine) ---------------------------------


@dataclass(frozen=True)
class CliSettings:
    """What the `paywalls` CLI reads from its environment; flags win over these."""

    admin_url: str | None  # PAYWALLS_ADMIN_URL
    admin_token: str | None = field(repr=False)  # PAYWALLS_ADMIN_TOKEN
    # Secrets a command sends, given in the environment rather than on the command line.
    stripe_secret_key: str = field(default="", repr=False)  # PAYWALLS_STRIPE_SECRET_KEY
    provider_api_key: str = field(default="", repr=False)  # PAYWALLS_PROVIDER_API_KEY


def cli_settings() -> CliSettings:
    """Read when a command runs (one per process)."""
    env = os.environ
    return CliSettings(
        admin_url=env.get("PAYWALLS_ADMIN_URL") or None,
        admin_token=env.get("PAYWALLS_ADMIN_TOKEN") or None,
        stripe_secret_key=env.get("PAYWALLS_STRIPE_SECRET_KEY", ""),
        provider_api_key=env.get("PAYWALLS_PROVIDER_API_KEY", ""),
    )
