"""The bodies of the user API and the admin API (SPEC §3, §7) as pydantic models: what a request may
send and what each answer carries. docs/openapi.json is generated from these (paywalls.http.openapi_doc).

Request models are the HTTP contract, checked before a handler runs: types, required fields, unknown
fields (`extra="forbid"`), and the syntax of every amount, price and percentage, checked by the money
module's own parsers (no floats: a decimal string or a whole number). A validator never converts: a
model holds exactly what the client sent, so `sent()` hands the domain functions the dict they always
took, and the rules that need state or context (a paywall's mode, an existing key, a template's
`{{url}}`, a currency's minor units...) stay where they were. A refusal is the OpenAI-style 400 the
domain itself raises (`client_error`), never FastAPI's 422.

Response models document the answers. The handlers still return the domain's dicts, so the wire shape
is exactly what it was and a model that lags behind can never turn an answer into a 500; instead
tests/test_api_schema.py checks every answer of the running stack against these schemas (which forbid
undeclared fields)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar, get_args

from fastapi import Depends
from pydantic import (
    MISSING,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    WithJsonSchema,
    model_validator,
)
from starlette.requests import Request

from paywalls.billing import deposits, stripe_config
from paywalls.billing.identity import InvalidUser, resolve_user
from paywalls.billing.paywall import InvalidRequest
from paywalls.core.money import InvalidAmount, parse_amount, parse_percent, parse_price
from paywalls.events import subscriptions as webhook_subscriptions
from paywalls.http import web

# ---- wire types ---------------------------------------------------------------------------------

# JSON Schema patterns are ECMA-262 regular expressions, where `$` (no multiline flag) is the very end.
_AMOUNT_PATTERN = r"^[0-9]{1,16}(\.[0-9]{1,6})?$"
_PRICE_PATTERN = r"^[0-9]{1,16}(\.[0-9]{1,18})?$"
_MICROS_PATTERN = r"^-?[0-9]+$"
_FORMATTED_PATTERN = r"^-?[0-9]+\.[0-9]{6}$"
_DECIMAL_PATTERN = r"^[0-9]+(\.[0-9]+)?$"
USER_PATTERN = r"^[A-Za-z0-9._:@-]{1,128}$"  # identity.USER_ID_RE


def _checked_by(check: Callable[[Any], object]) -> BeforeValidator:
    """A validator that runs a domain parser for its refusal and keeps the value as sent."""

    def validate(value: Any) -> Any:
        check(value)
        return value

    return BeforeValidator(validate)


def _decimal_schema(pattern: str, description: str, *, minimum: int = 0, example: str = "10") -> WithJsonSchema:
    return WithJsonSchema(
        {
            "anyOf": [{"type": "string", "pattern": pattern}, {"type": "integer", "minimum": minimum}],
            "description": description,
            "examples": [example],
        }
    )


def _signed_amount(value: Any) -> None:
    # Adjustments: a leading "-" debits; the rest is an ordinary amount (adjustments.adjust).
    negative = isinstance(value, str) and value.startswith("-")
    parse_amount(value[1:] if negative else value)


Amount = Annotated[
    str | int,
    _checked_by(parse_amount),
    _decimal_schema(
        _AMOUNT_PATTERN,
        'A positive amount in currency units: a decimal string ("10", "0.25"; at most 6 decimals, at most '
        "1000000) or a whole number. Never a float.",
        minimum=1,
    ),
]
SignedAmount = Annotated[
    str | int,
    _checked_by(_signed_amount),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": r"^-?[0-9]{1,16}(\.[0-9]{1,6})?$"},
                {"type": "integer", "minimum": 1},
            ],
            "description": 'A signed amount: "2.5" credits, "-0.5" debits (never below zero). Never a float.',
            "examples": ["2.5", "-0.5"],
        }
    ),
]
Credits = Annotated[
    str | int,
    _checked_by(lambda value: parse_amount(value, allow_zero=True)),
    _decimal_schema(
        _AMOUNT_PATTERN, "An amount in currency units, zero allowed (decimal string or whole number).", example="0.5"
    ),
]
Price = Annotated[
    str | int,
    _checked_by(parse_price),
    _decimal_schema(
        _PRICE_PATTERN, "A price in currency units (per 1M tokens, or per request): a decimal string.", example="2.50"
    ),
]
Percent = Annotated[
    str | int,
    _checked_by(parse_percent),
    _decimal_schema(_PRICE_PATTERN, "A percentage, 0-1000, as a decimal string.", example="20"),
]
FeePercent = Annotated[
    str | int,
    _checked_by(lambda value: parse_percent(value, maximum=100)),
    _decimal_schema(_PRICE_PATTERN, "A percentage, 0-100, as a decimal string.", example="10"),
]


def _text(limit: int, *, nullable: bool = True, url: bool = False) -> BeforeValidator:
    """paywall._text's rule (and message): a string that is not blank, at most `limit` characters;
    for a URL also http(s) once trimmed. Null passes only where the field's type allows it."""

    def validate(value: Any, info: ValidationInfo) -> Any:
        name = info.field_name or "value"
        if value is None:
            if nullable:
                return value
            raise InvalidRequest(f"{name} is required", name)
        if not isinstance(value, str) or not value.strip() or len(value) > limit:
            raise InvalidRequest(f"{name} must be a non-empty string of at most {limit} characters", name)
        if url and not value.strip().startswith(("https://", "http://")):
            raise InvalidRequest(f"{name} must be an http(s) URL", name)
        return value

    return BeforeValidator(validate)


def _schema(**keywords: Any) -> Any:
    """JSON Schema keywords for the document only. The domain trims some values before its checks
    (a URL, a Stripe key): pydantic enforcing a pattern on the untrimmed value would refuse what the
    domain accepts, so such rules stay the domain's and are only described here."""
    return Field(json_schema_extra=keywords)


def _user(value: Any) -> Any:
    # identity.resolve_user's rule: absent, null or "" leaves the choice to the header or the query.
    if value is not None and value != "":
        resolve_user(value)
    return value


Name = Annotated[str, _text(200, nullable=False), _schema(minLength=1, maxLength=200)]
Description = Annotated[str | None, _text(2000), _schema(maxLength=2000)]
Url = Annotated[str | None, _text(2048, url=True), _schema(maxLength=2048, pattern=r"^\s*https?://")]
Template = Annotated[str | None, _text(4000), _schema(minLength=1, maxLength=4000)]
UserId = Annotated[
    str | None,
    BeforeValidator(_user),
    WithJsonSchema(
        {"anyOf": [{"type": "string", "pattern": USER_PATTERN}, {"type": "null"}], "description": "The app's user id."}
    ),
]
Metadata = Annotated[
    dict[str, str] | None,
    _checked_by(deposits.parse_metadata),
    WithJsonSchema(
        {
            "anyOf": [
                {
                    "type": "object",
                    "maxProperties": deposits.METADATA_MAX_KEYS,
                    "propertyNames": {"pattern": r"^[A-Za-z0-9_.:-]{1,40}$"},
                    "additionalProperties": {"type": "string", "maxLength": deposits.METADATA_VALUE_MAX},
                },
                {"type": "null"},
            ],
            "description": "Flat string values, stored on the ledger entry (at most 20 keys, 4000 characters).",
        }
    ),
]
Environment = Literal["live", "test"]  # paywall.ENVIRONMENTS
Mode = Literal["default", "shared"]  # paywall.MODES
ProviderKind = Literal["openai", "openrouter", "together", "anthropic", "openai-compatible"]
Feature = Literal[
    "web_search", "audio", "priority_tier", "provider_routing", "file_search", "code_interpreter"
]  # paywall.FEATURES
EndpointKind = Literal["chat", "responses", "embeddings"]  # chat.routing.ENDPOINTS
ProviderName = Annotated[str, _schema(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")]  # chat.routing.NAME_RE


# ---- request bodies -----------------------------------------------------------------------------


class RequestBody(BaseModel):
    """Strict: no coercion (a number is not a string, `true` is not 1), no unknown fields."""

    # defer_build: each model's validator is built on its first request, not when the app is imported.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, defer_build=True)

    def sent(self) -> dict[str, Any]:
        """The fields the client sent, as sent (validators never convert): what the domain takes."""
        return self.model_dump(exclude_unset=True)


class MoneyRequest(RequestBody):
    """POST /v1/user/balance/deposit and /v1/user/charge."""

    amount: Amount
    user: UserId = None
    metadata: Metadata = None


class CreatePaywall(RequestBody):
    name: Name
    mode: Mode = "default"
    description: Description | MISSING = MISSING
    icon_url: Url | MISSING = MISSING
    markup_percent: Percent | MISSING = MISSING
    trial_credits: Credits | MISSING = MISSING
    platform_fee_percent: FeePercent | MISSING = MISSING


class PatchPaywall(RequestBody):
    """Only the fields sent change. `mode` cannot change (409); sending the current one is fine."""

    name: Name | MISSING = MISSING
    mode: Mode | MISSING = MISSING
    description: Description | MISSING = MISSING
    icon_url: Url | MISSING = MISSING
    markup_percent: Percent | MISSING = MISSING
    trial_credits: Credits | MISSING = MISSING
    platform_fee_percent: FeePercent | MISSING = MISSING


class SetLimits(RequestBody):
    """PUT /admin/paywalls/{id}/limits: the paywall's default per-user limits; absent or null: none.
    Counts are whole numbers, spend a decimal amount (limits.py checks the values)."""

    requests_per_minute: int | None | MISSING = MISSING
    tokens_per_day: int | None | MISSING = MISSING
    spend_per_day: str | int | None | MISSING = MISSING
    spend_per_month: str | int | None | MISSING = MISSING


class SetUserLimits(SetLimits):
    """PUT /admin/paywalls/{id}/users/{user}/limits: one user's override (null: no limit for them)."""

    environment: Environment | MISSING = MISSING


class IssueKey(RequestBody):
    environment: Environment = "live"


class SetProvider(RequestBody):
    kind: ProviderKind
    base_url: Url | MISSING = Field(default=MISSING, description="Required for openai-compatible.")
    api_key: Annotated[str, _text(4096, nullable=False), _schema(minLength=1, maxLength=4096)] = Field(
        description="Kept in Secrets Manager only, never answered."
    )


class ModelPriceIn(RequestBody):
    prompt: Price
    completion: Price
    request: Price | MISSING = MISSING


class SetNamedProvider(RequestBody):
    """PUT /admin/paywalls/{id}/providers/{name}: add or replace a named provider (`default` is the
    one PUT .../provider sets). `api_key` is required for a new provider and kept when left out;
    `prices` (what the provider charges per model: the cost recorded on each charge) replaces the
    table when sent, null stops tracking it (chat/routing.py)."""

    kind: ProviderKind
    base_url: Url | MISSING = Field(default=MISSING, description="Required for openai-compatible.")
    api_key: Annotated[str, _text(4096, nullable=False), _schema(minLength=1, maxLength=4096)] | MISSING = Field(
        default=MISSING, description="Kept in Secrets Manager only, never answered."
    )
    prices: (
        Annotated[
            dict[str, ModelPriceIn],
            _schema(propertyNames={"minLength": 1, "maxLength": 200}, description="model id -> provider price"),
        ]
        | None
        | MISSING
    ) = MISSING


class RouteTargetIn(RequestBody):
    name: ProviderName
    model: Annotated[str, _schema(minLength=1, maxLength=200)] | MISSING = Field(
        default=MISSING, description="The upstream model id (exact routes only)."
    )
    strip_prefix: bool | MISSING = Field(
        default=MISSING, description="Send the model id without the matched prefix (prefix routes only)."
    )


class RouteIn(RequestBody):
    match: Annotated[str, _schema(minLength=1, maxLength=200)] = Field(
        description="An exact model id, or a prefix ending in * (e.g. anthropic/*)."
    )
    providers: Annotated[list[RouteTargetIn], _schema(minItems=1, maxItems=5)] = Field(
        description="Providers in fallback order."
    )


class SetRoutes(RequestBody):
    """PUT /admin/paywalls/{id}/routes: replaces every routing rule (chat/routing.py)."""

    routes: Annotated[list[RouteIn], _schema(maxItems=100)]


class FeaturePriceIn(RequestBody):
    """A surcharge: at least one part; the missing parts are 0."""

    prompt: Price | MISSING = MISSING
    completion: Price | MISSING = MISSING
    request: Price | MISSING = MISSING

    @model_validator(mode="after")
    def _not_empty(self) -> FeaturePriceIn:
        if not self.model_fields_set:
            raise ValueError("needs at least one of request, prompt, completion")
        return self


def _models_object(value: Any) -> Any:
    # paywall.set_pricing's rule: a non-empty object; each id 1-200 characters.
    if not isinstance(value, dict) or not value:
        raise InvalidRequest("models must be an object of model id -> {prompt, completion, request?}", "models")
    if any(not 0 < len(model) <= 200 for model in value):
        raise InvalidRequest("model ids must be 1-200 character strings", "models")
    return value


class SetPricing(RequestBody):
    """Replaces the price table; `markup_percent` and `features` change only when sent."""

    models: Annotated[
        dict[str, ModelPriceIn],
        BeforeValidator(_models_object),
        _schema(minProperties=1, propertyNames={"minLength": 1, "maxLength": 200}, description="model id -> price"),
    ]
    markup_percent: Percent | MISSING = MISSING
    features: dict[Feature, FeaturePriceIn] | MISSING = MISSING


class SetTemplates(RequestBody):
    """Null restores a template's default; `topup` and `authorize` must contain {{url}}."""

    topup: Template | MISSING = MISSING
    authorize: Template | MISSING = MISSING
    provider_error: Template | MISSING = MISSING
    limit: Template | MISSING = MISSING


def _secret_key(value: Any) -> Any:
    stripe_config.parse_secret_key({"secret_key": value})
    return value


def _presets(value: Any) -> Any:
    # The shape and each amount's syntax; the currency's minor units are checked where it is known.
    if not isinstance(value, list) or not 1 <= len(value) <= stripe_config.MAX_PRESETS:
        raise InvalidRequest(
            f'topup_amounts must be a list of 1-{stripe_config.MAX_PRESETS} decimal strings, e.g. ["5", "10", "20"]',
            "topup_amounts",
        )
    for item in value:
        try:
            parse_amount(item)
        except InvalidAmount as exc:
            raise InvalidRequest(f"topup_amounts: {exc}", "topup_amounts") from None
    return value


class SetStripe(RequestBody):
    """A paywall's (or the operator's) Stripe key; its prefix says test or live mode."""

    secret_key: Annotated[
        str, BeforeValidator(_secret_key), _schema(pattern=r"^(sk|rk)_(test|live)_[!-~]+$", maxLength=512)
    ]
    topup_amounts: (
        Annotated[list[Amount], BeforeValidator(_presets), _schema(minItems=1, maxItems=stripe_config.MAX_PRESETS)]
        | MISSING
    ) = MISSING


class UserAdjustment(RequestBody):
    amount: SignedAmount
    environment: Environment = "live"
    reason: Annotated[str | None, Field(max_length=500)] = None


class PersonAdjustment(RequestBody):
    """The environment names the wallet (live or test money): required, never defaulted."""

    amount: SignedAmount
    environment: Environment
    reason: Annotated[str | None, Field(max_length=500)] = None


class WithdrawalRequest(RequestBody):
    amount: Annotated[Amount | None, Field(description="Whole cents; absent or null: everything available.")] = None
    environment: Environment = "live"


class MarkPaid(RequestBody):
    reference: Annotated[str | None, _schema(minLength=1, maxLength=200)] = None


class SetPayout(RequestBody):
    stripe_account: Annotated[
        str | None, _schema(pattern=r"^acct_[A-Za-z0-9]{1,64}$", description="null: paid by hand (manual)")
    ] = None


# ---- reading a request body ---------------------------------------------------------------------

B = TypeVar("B", bound=RequestBody)
AMOUNT_REQUIRED = 'amount is required, e.g. "10" or "0.25"'


def parse(model: type[B], data: dict[str, Any]) -> B:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise client_error(exc) from None


def client_error(exc: ValidationError) -> Exception:
    """The refusal the domain would have raised: unknown fields first (named, as the domain's own
    `unknown field(s)` message does), then the first field in the model's order. A domain parser's
    own exception is raised as it is (its code and param: `invalid_amount` for `amount`...)."""
    errors = exc.errors(include_url=False)
    unknown = sorted((e for e in errors if e["type"] == "extra_forbidden"), key=lambda e: len(e["loc"]))
    if unknown:
        where = unknown[0]["loc"][:-1]
        names = sorted(str(e["loc"][-1]) for e in unknown if e["loc"][:-1] == where)
        return InvalidRequest(f"unknown field(s): {', '.join(names)}", names[0])
    first = errors[0]
    # "[key]" is pydantic's mark for an object's key (a feature name): the key itself names the place.
    path = ".".join(str(part) for part in first["loc"] if part != "[key]")
    field = str(first["loc"][0]) if first["loc"] else None
    cause = (first.get("ctx") or {}).get("error")
    if isinstance(cause, InvalidAmount):
        # money.parse_* know no field names: the `amount` fields keep their own error (code
        # invalid_amount), other fields get it named, as paywall._decimal_field does.
        return cause if path == "amount" else InvalidRequest(f"{path}: {cause}", field)
    if isinstance(cause, InvalidRequest | InvalidUser):
        return cause
    if first["type"] == "missing":
        if path == "amount":
            return web.ApiError(400, AMOUNT_REQUIRED, code="invalid_amount", param="amount")
        return InvalidRequest(f"{path} is required", field)
    message = first["msg"].removeprefix("Value error, ")
    return InvalidRequest(f"{path}: {message}" if path else message, field)


def from_json(model: type[B], *, limit: int = 1_000_000) -> Any:
    """A FastAPI dependency: the body read by web.json_body (size cap, nesting depth, valid Unicode,
    `{}` for an empty body), then checked by `model`. Read on the event loop before the handler, which
    can stay a plain `def` (FastAPI's threadpool: its blocking AWS calls never hold the loop).
    `body_model` names the model for the OpenAPI document."""

    async def read(request: Request) -> B:
        return parse(model, await web.json_body(request, limit=limit))

    read.body_model = model  # type: ignore[attr-defined]
    return Depends(read)


# ---- responses ----------------------------------------------------------------------------------


class ResponseBody(BaseModel):
    """An answer's documented shape: no undeclared field (additionalProperties false). Only the
    document uses these (defer_build: nothing is built when an app is imported)."""

    model_config = ConfigDict(extra="forbid", defer_build=True)


Micros = Annotated[str, Field(pattern=_MICROS_PATTERN, description="integer micro-units (10^-6 of the currency)")]
Formatted = Annotated[str, Field(pattern=_FORMATTED_PATTERN, description="currency units, six decimals")]
DecimalText = Annotated[str, Field(pattern=_DECIMAL_PATTERN, description="an exact decimal")]


class ErrorDetail(ResponseBody):
    message: str
    type: Literal[
        "invalid_request_error",
        "authentication_error",
        "permission_error",
        "not_found_error",
        "conflict_error",
        "rate_limit_error",
        "api_error",
    ]
    param: str | None
    code: str | None


class ErrorResponse(ResponseBody):
    """OpenAI's error shape."""

    error: ErrorDetail


class Health(ResponseBody):
    status: Literal["ok"]


class PriceOut(ResponseBody):
    prompt: DecimalText
    completion: DecimalText
    request: DecimalText


class ModelInfo(ResponseBody):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str
    name: str
    display_name: str
    description: str
    pricing: PriceOut
    endpoints: list[EndpointKind]


class ModelList(ResponseBody):
    """Prices with the paywall's markup: what the user pays. `features`: paid extras' surcharges."""

    object: Literal["list"]
    data: list[ModelInfo]
    features: dict[str, PriceOut] | MISSING = MISSING


class Balance(ResponseBody):
    """Default mode: the user's wallet (and the user's limits, when some apply)."""

    balance: Micros
    balanceFormatted: Formatted
    currency: str
    limits: dict[str, LimitUsage] | None = None


class _AllowanceFields(ResponseBody):
    connected: bool
    spendingCap: Micros | None
    capRemaining: Micros | None
    capRemainingFormatted: Formatted | None
    canCharge: bool


class Allowance(_AllowanceFields):
    """Shared mode: what this app may still spend (the cap remaining), never the person's wallet."""

    balance: Micros
    balanceFormatted: Formatted
    currency: str


class TopupLink(ResponseBody):
    url: str


class LedgerEntry(ResponseBody):
    id: str
    type: str
    amount: Annotated[str, Field(pattern=_MICROS_PATTERN, description="signed micro-units")]
    balance_after: Micros
    request_id: str | None
    model: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    provider_cost: Micros | None
    provider: str | None = Field(description="The paywall's provider that served this charge, if any.")
    created_at: str
    metadata: dict[str, Any]


class Deposited(Balance):
    entry: LedgerEntry


class Charged(ResponseBody):
    """Default mode. Not enough funds is `success: false` with the paywall's top-up message (and
    X-Paywall-Action: topup), no entry, nothing charged."""

    success: bool
    message: str
    balance: Micros
    balanceFormatted: Formatted
    currency: str
    entry: LedgerEntry | MISSING = MISSING


class SharedCharged(_AllowanceFields):
    """Shared mode: the allowance after the attempt; refused (`success: false`) with the paywall's
    text and X-Paywall-Action authorize, topup or cap."""

    success: bool
    message: str
    balance: Micros
    balanceFormatted: Formatted
    currency: str


class ConnectedUser(ResponseBody):
    id: str
    connectionId: str
    connectedAt: str
    spendingCap: Micros | None
    spendingCapFormatted: Formatted | None
    spent: Micros
    spentFormatted: Formatted
    balance: Micros
    balanceFormatted: Formatted
    capRemaining: Micros | None
    capRemainingFormatted: Formatted | None
    canCharge: bool


class Connected(ResponseBody):
    connected: Literal[True]
    connectedUser: ConnectedUser
    message: str


class NotConnected(ResponseBody):
    connected: Literal[False]
    url: str = Field(description="the authorization link to send the user to")
    message: str


class Disconnected(ResponseBody):
    success: bool
    message: str


class LedgerPage(ResponseBody):
    object: Literal["list"]
    data: list[LedgerEntry]
    has_more: bool
    next_cursor: str | None


class ProviderOut(ResponseBody):
    kind: str
    base_url: str
    api_key_set: Literal[True]
    updated_at: str


class NamedProviderOut(ProviderOut):
    name: str
    prices: dict[str, PriceOut] | None


class NamedProviderList(ResponseBody):
    object: Literal["list"]
    data: list[NamedProviderOut]


class RouteTargetOut(ResponseBody):
    name: str
    model: str | MISSING = MISSING
    strip_prefix: bool | MISSING = MISSING


class RouteOut(ResponseBody):
    match: str
    providers: list[RouteTargetOut]


class RoutesOut(ResponseBody):
    object: Literal["routes"]
    routes: list[RouteOut]


class TemplatesOut(ResponseBody):
    topup: str
    authorize: str
    provider_error: str
    limit: str


class LimitsOut(ResponseBody):
    """Per-user limits (limits.py); a limit left out is not set."""

    requests_per_minute: int | None = None
    tokens_per_day: int | None = None
    spend_per_day: Formatted | None = None
    spend_per_month: Formatted | None = None


class LimitUsage(ResponseBody):
    """One limit in force: what is left of it and when it resets (money ones in micro-units)."""

    limit: int | Micros
    remaining: int | Micros
    limitFormatted: Formatted | None = None
    remainingFormatted: Formatted | None = None
    currency: str | None = None
    resets_at: str


class UserLimitsOut(ResponseBody):
    object: Literal["user_limits"]
    user: str
    environment: Environment
    defaults: LimitsOut
    override: LimitsOut | None
    effective: LimitsOut
    usage: dict[str, LimitUsage]


class StripeModeStatus(ResponseBody):
    configured: Literal[True]
    key_type: Literal["secret", "restricted"]
    webhook_endpoint_id: str
    webhook_url: str
    enabled_events: list[str]
    configured_at: str


class PaywallStripe(ResponseBody):
    test: StripeModeStatus | MISSING = MISSING
    live: StripeModeStatus | MISSING = MISSING
    topup_amounts: list[DecimalText]


class PaywallOut(ResponseBody):
    id: str
    object: Literal["paywall"]
    name: str
    mode: Mode
    description: str
    icon_url: str | None
    currency: str
    markup_percent: DecimalText
    trial_credits: Formatted
    platform_fee_percent: DecimalText
    pricing: dict[str, PriceOut]
    features: dict[str, PriceOut]
    provider: ProviderOut | None
    providers: list[NamedProviderOut]
    routes: list[RouteOut]
    templates: TemplatesOut
    stripe: PaywallStripe | None
    limits: LimitsOut
    created_at: str
    updated_at: str | None


class PaywallPage(ResponseBody):
    object: Literal["list"]
    data: list[PaywallOut]
    has_more: bool
    next_cursor: str | None


class KeyIssued(ResponseBody):
    id: str
    object: Literal["api_key"]
    environment: Environment
    key: str = Field(description="the secret key, shown only this once")
    created_at: str
    note: str


class KeyView(ResponseBody):
    id: str
    object: Literal["api_key"]
    environment: Environment
    revoked: bool
    preview: str
    created_at: str


class KeyList(ResponseBody):
    object: Literal["list"]
    data: list[KeyView]


class PricingOut(ResponseBody):
    object: Literal["pricing"]
    markup_percent: DecimalText
    models: dict[str, PriceOut]
    features: dict[str, PriceOut]


class StripeConfig(ResponseBody):
    object: Literal["stripe_config"]
    paywall_id: str
    mode: Environment
    test: StripeModeStatus | None
    live: StripeModeStatus | None
    topup_amounts: list[DecimalText]


class UserBalance(ResponseBody):
    user: str
    balance: Micros
    balanceFormatted: Formatted
    available: Micros
    total_spend: Formatted
    last_activity: str | None


class UsersPage(ResponseBody):
    object: Literal["list"]
    data: list[UserBalance]
    has_more: bool
    next_cursor: str | None


class UsageBucket(ResponseBody):
    revenue: Formatted
    provider_cost: Formatted
    profit: Formatted
    requests: int
    tokens_in: int
    tokens_out: int
    fees: Formatted
    deposits: Formatted
    trials: Formatted
    refunds: Formatted
    adjustments: Formatted


class UsageDay(UsageBucket):
    date: str


class UsageHour(UsageBucket):
    hour: str


class UsagePrevious(UsageBucket):
    from_: str = Field(alias="from")
    to: str


class UserSpend(ResponseBody):
    spend: Formatted


class Usage(UsageBucket):
    """Read from the roll-ups (whole UTC days): totals, by model, by day, by hour (periods of two days
    or less), the top spenders (by_user, biggest first) and the previous period of the same length."""

    object: Literal["usage"]
    from_: str = Field(alias="from")
    to: str
    currency_unit: Literal["micro"]
    by_model: dict[str, UsageBucket]
    by_provider: dict[str, UsageBucket]
    by_user: dict[str, UserSpend]
    by_day: list[UsageDay]
    by_hour: list[UsageHour] | None
    previous: UsagePrevious | None


class UserDay(ResponseBody):
    date: str
    spend: Formatted
    requests: int


class AppUser(ResponseBody):
    """One app user: balance (default mode) or authorization (shared mode), spend, last activity."""

    object: Literal["app_user"]
    user: str
    environment: Literal["live", "test"]
    mode: Literal["default", "shared"]
    status: Literal["active", "unknown", "connected", "not_connected"]
    balance: Formatted | None
    available: Formatted | None
    connected: bool | None
    spending_cap: Formatted | None
    cap_spent: Formatted | None
    total_spend: Formatted
    requests: int
    last_activity: str | None
    spend_by_day: list[UserDay]


class LedgerRow(LedgerEntry):
    user: str
    amountFormatted: Formatted


class AdminLedgerPage(ResponseBody):
    object: Literal["list"]
    data: list[LedgerRow]
    has_more: bool
    next_cursor: str | None


class UserLink(ResponseBody):
    object: Literal["link"]
    kind: Literal["topup", "authorize"]
    url: str


class Adjusted(ResponseBody):
    entry: LedgerEntry
    duplicate: bool


class PendingDay(ResponseBody):
    matures_at: str
    amount: Micros
    amountFormatted: Formatted


class PayoutSettings(ResponseBody):
    object: Literal["payout_settings"]
    paywall_id: str
    stripe_account: str | None
    updated_at: str | None


class Earnings(ResponseBody):
    object: Literal["earnings"]
    paywall_id: str
    environment: Environment
    available: Micros
    pending: Micros
    earned: Micros
    withdrawn: Micros
    reversed: Micros
    gross: Micros
    fees: Micros
    availableFormatted: Formatted
    pendingFormatted: Formatted
    earnedFormatted: Formatted
    withdrawnFormatted: Formatted
    reversedFormatted: Formatted
    grossFormatted: Formatted
    feesFormatted: Formatted
    pending_by_day: list[PendingDay]
    next_matures_at: str | None
    hold_days: int
    charges: int
    shards: int
    payout: PayoutSettings


class Withdrawal(ResponseBody):
    id: str
    object: Literal["withdrawal"]
    paywall_id: str
    environment: Environment
    amount: Micros
    amountFormatted: Formatted
    currency: str
    status: Literal["pending", "paid"]
    method: Literal["stripe_transfer", "manual"]
    destination: str | None
    transfer_id: str | None
    created_at: str
    paid_at: str | None
    last_error: str | None
    reference: str | None


class WithdrawalList(ResponseBody):
    object: Literal["list"]
    data: list[Withdrawal]


class LossTopup(ResponseBody):
    payment_intent: str | None
    checkout_session: str | None
    charge: str | None


class LossApp(ResponseBody):
    paywall_id: str
    environment: Environment
    charges: int
    attributed: Micros
    reversed: Micros
    not_reversed: Micros


class Loss(ResponseBody):
    id: str
    object: Literal["loss"]
    environment: Environment
    kind: str
    source_id: str
    amount: Micros
    amountFormatted: Formatted
    reversed: Micros
    reversedFormatted: Formatted
    unrecovered: Micros
    unrecoveredFormatted: Formatted
    debited: Micros
    topup: LossTopup
    person_id: str | None
    wallet_id: str | None
    wallet_balance_after: Micros
    apps: list[LossApp]
    created_at: str


class LossList(ResponseBody):
    object: Literal["list"]
    data: list[Loss]


class OperatorStripe(ResponseBody):
    object: Literal["operator_stripe"]
    test: StripeModeStatus | None
    live: StripeModeStatus | None
    topup_amounts: list[DecimalText]


class OperatorStripeConfigured(OperatorStripe):
    mode: Environment


class PersonWallet(ResponseBody):
    wallet_id: str
    balance: Micros
    balanceFormatted: Formatted
    available: Micros


class PersonWallets(ResponseBody):
    live: PersonWallet
    test: PersonWallet


class PersonConnection(ResponseBody):
    id: str
    paywall_id: str
    environment: Environment
    user: str
    status: str
    cap: Micros | None
    spent: Micros
    created_at: str
    revoked_at: str | None


class Person(ResponseBody):
    id: str
    object: Literal["person"]
    email: str
    wallets: PersonWallets
    created_at: str
    connections: list[PersonConnection]


# ---- what each operation answers (the OpenAPI document) ------------------------------------------

_ERRORS = {
    400: "Invalid request: a malformed body or parameter (`param` names it, `code` says what).",
    401: "Missing or invalid key.",
    402: "Insufficient balance: a debit would take the wallet below zero.",
    403: "The admin API in AWS: the request was not signed with IAM (SigV4).",
    404: "Not found.",
    409: "Conflict with the current state (`code` says which), e.g. an Idempotency-Key reused with other "
    "parameters, or a route of the other paywall mode.",
    413: "Request body too large.",
    502: "Stripe did not answer; retry.",
    503: "The store is busy; retry after Retry-After seconds.",
}

IDEMPOTENCY_KEY: dict[str, Any] = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": True,
    "description": "The same key never moves money twice: a replay answers the first result "
    "(Idempotent-Replayed: true); reused with other parameters it is a 409.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255},
}
USER_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "X-Paywall-User",
        "in": "header",
        "required": False,
        "description": "The app's user id (SPEC §1: body `user` > this header > ?user=).",
        "schema": {"type": "string", "pattern": USER_PATTERN},
    },
    {
        "name": "user",
        "in": "query",
        "required": False,
        "description": "The app's user id, when neither the body nor X-Paywall-User names one.",
        "schema": {"type": "string", "pattern": USER_PATTERN},
    },
]


# ---- outbound webhooks (events/, docs/webhooks.md) ------------------------------------------------------

WebhookUrl = Annotated[
    str, _checked_by(webhook_subscriptions.validate_url), _schema(maxLength=2048, pattern=r"^https?://")
]
WebhookEvents = Annotated[
    list[str], _checked_by(webhook_subscriptions.validate_events), _schema(minItems=1, maxItems=50)
]
WebhookHeaders = Annotated[
    dict[str, str] | None, _checked_by(webhook_subscriptions.validate_headers), _schema(maxProperties=10)
]
WebhookDescription = Annotated[str | None, _checked_by(webhook_subscriptions.validate_description)]
WebhookSecret = Annotated[
    str | None, _checked_by(webhook_subscriptions.validate_secret), _schema(minLength=16, maxLength=256)
]


class CreateWebhookSubscription(RequestBody):
    """POST /v1/webhooks/subscriptions. `events`: names or prefix wildcards (`paywall.balance.*`);
    `["*"]` alone means every event. `secret`: generated when absent (answered once)."""

    url: WebhookUrl
    events: WebhookEvents
    description: WebhookDescription | MISSING = MISSING
    customHeaders: WebhookHeaders | MISSING = MISSING  # noqa: N815 (Paywalls.ai's field names)
    secret: WebhookSecret | MISSING = MISSING


class UpdateWebhookSubscription(RequestBody):
    """PATCH /v1/webhooks/subscriptions/{id}: only the fields sent change; `isActive: true` re-enables
    (and resets the failure count)."""

    url: WebhookUrl | MISSING = MISSING
    events: WebhookEvents | MISSING = MISSING
    description: WebhookDescription | MISSING = MISSING
    customHeaders: WebhookHeaders | MISSING = MISSING  # noqa: N815
    isActive: bool | MISSING = MISSING  # noqa: N815


class RotateWebhookSecret(RequestBody):
    """POST /v1/webhooks/subscriptions/{id}/rotate-secret: a new secret (generated when absent)."""

    secret: WebhookSecret | MISSING = MISSING


class WebhookSubscription(ResponseBody):
    id: str
    paywallId: str  # noqa: N815
    url: str
    events: list[str]
    isActive: bool  # noqa: N815
    description: str
    customHeaders: dict[str, str]  # noqa: N815
    createdAt: str  # noqa: N815
    updatedAt: str  # noqa: N815
    secret: str | None = Field(default=None, description="only when created or rotated")
    secretSuffix: str  # noqa: N815
    consecutiveFailures: int  # noqa: N815
    lastDeliveredAt: str | None  # noqa: N815


class WebhookSubscriptionAnswer(ResponseBody):
    subscription: WebhookSubscription


class WebhookSubscriptionList(ResponseBody):
    object: Literal["list"]
    data: list[WebhookSubscription]


class WebhookAttempt(ResponseBody):
    """One attempt (fields without a value are left out)."""

    attempt: int
    at: str
    statusCode: int | None = None  # noqa: N815 (absent: no answer, e.g. refused or a timeout)
    durationMs: int | None = None  # noqa: N815
    error: str | None = None
    response: str | None = Field(default=None, description="the start of the receiver's answer")


class WebhookLog(ResponseBody):
    id: str
    subscriptionId: str  # noqa: N815
    eventId: str  # noqa: N815
    eventType: str  # noqa: N815
    status: Literal["pending", "success", "error"]
    attempts: int
    lastStatusCode: int | None  # noqa: N815
    attemptLog: list[WebhookAttempt]  # noqa: N815
    nextAttemptAt: int | None  # noqa: N815
    createdAt: str  # noqa: N815
    updatedAt: str | None  # noqa: N815
    event: dict[str, Any]


class WebhookLogPage(ResponseBody):
    object: Literal["list"]
    data: list[WebhookLog]
    hasMore: bool  # noqa: N815
    nextCursor: str | None  # noqa: N815


ANSWERS_KEY = "x-paywalls-answers"  # read (and removed) by openapi_doc.document


def answers(
    ok: Any,
    *errors: int,
    status: int = 200,
    also: dict[int, Any] | None = None,
    parameters: list[dict[str, Any]] | None = None,
    description: str = "Success.",
    media: str | None = None,
) -> dict[str, Any]:
    """A route decorator's keyword arguments: the success status and its model (`A | B`: either), the
    OpenAI-style errors the operation answers, extra parameters read from the request itself.

    `response_model=None`: the handler's dict is sent as it is (module doc). The models are named for
    openapi_doc only, not handed to FastAPI, which would build a validator for each when the app is
    imported (a Lambda cold start) for answers it never validates."""
    # `media`: a success that is not JSON (e.g. text/csv); `ok` is then None.
    success = (
        {"description": description, "media": media} if media else {"description": description, "models": _names(ok)}
    )
    named: dict[str, dict[str, Any]] = {str(status): success}
    for code, model in (also or {}).items():
        named[str(code)] = {"description": "Success.", "models": _names(model)}
    for code in sorted(errors):
        named[str(code)] = {"description": _ERRORS[code], "models": [ErrorResponse.__name__]}
    extra: dict[str, Any] = {ANSWERS_KEY: named}
    if parameters:
        extra["parameters"] = parameters
    return {"status_code": status, "response_model": None, "openapi_extra": extra}


def _names(models: Any) -> list[str]:
    return [model.__name__ for model in (get_args(models) or (models,))]
