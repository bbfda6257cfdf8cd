"""Paywalls (SPEC §1, §7): profile, mode, price table, provider, templates, API keys."""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Set as AbstractSet
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from decimal import Context, Decimal
from typing import Any

# The generic kinds of the error vocabulary, still importable from here (paywall.NotFound...).
from paywalls.core.errors import Conflict as Conflict
from paywalls.core.errors import InvalidRequest as InvalidRequest
from paywalls.core.errors import NotFound as NotFound
from paywalls.core.money import (
    InvalidAmount,
    decimal_str,
    format_micros,
    parse_amount,
    parse_percent,
    parse_price,
    usage_cost_micros,
)
from paywalls.infra import store
from paywalls.infra.store import TransactionCancelled

MODES = ("default", "shared")
DEFAULT_PROVIDER = "default"  # the name of the provider PUT /admin/paywalls/{id}/provider sets
PAYWALLS_INDEX_PK = "PAYWALLS"
ENVIRONMENTS = ("live", "test")
KEY_PREFIX = "sk-paywalls-"
TEST_KEY_PREFIX = "sk-paywalls-test-"

PROVIDER_BASE_URLS = {
    "openai": "https://api.openai.com/v1",
    "openrouter": "https://openrouter.ai/api/v1",
    "together": "https://api.together.xyz/v1",
    "anthropic": "https://api.anthropic.com/v1",
    "openai-compatible": None,  # the operator gives the base URL
}

# Paid extras a chat request can ask for beyond its tokens (chat_request, chat_pricing). A request
# that uses one is served only when the paywall prices it: its surcharge is added to the model's
# price, markup included (docs/DESIGN.md "Pass-through fields").
FEATURES = ("web_search", "audio", "priority_tier", "provider_routing", "file_search", "code_interpreter")
# The fields create and patch accept (a patch may repeat the mode, not change it).
PROFILE_FIELDS = frozenset(
    {"name", "mode", "description", "icon_url", "markup_percent", "trial_credits", "platform_fee_percent"}
)

DEFAULT_TEMPLATES = {
    "topup": "Your balance is too low to continue. Please top up here: {{url}}",
    "authorize": "To use {{name}}, connect your wallet and authorize it here: {{url}}",
    "provider_error": "The AI provider is not answering right now. Please try again in a moment.",
    # A per-user spending limit (limits.py) is reached: {{period}} daily/monthly, {{limit}} the amount,
    # {{resets}} when the window ends (UTC).
    "limit": "You have reached your {{period}} spending limit of {{limit}} for {{name}}. It resets {{resets}}.",
}


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class ModelPrice:
    prompt: Decimal  # currency units per 1M prompt tokens
    completion: Decimal  # per 1M completion tokens
    request: Decimal = Decimal(0)  # per request, in currency units

    def as_api(self) -> dict[str, str]:
        return {
            "prompt": decimal_str(self.prompt),
            "completion": decimal_str(self.completion),
            "request": decimal_str(self.request),
        }

    def plus(self, other: ModelPrice) -> ModelPrice:
        """This price with `other` (a feature's surcharge) added to each component."""
        return ModelPrice(self.prompt + other.prompt, self.completion + other.completion, self.request + other.request)

    def with_markup(self, markup_percent: Decimal) -> ModelPrice:
        """Each component x (1 + markup/100), exactly: what a user pays per 1M tokens / per request
        before the one rounding up of a request's total (money.usage_cost_micros)."""
        return ModelPrice(*(_exact_markup(v, markup_percent) for v in (self.prompt, self.completion, self.request)))


def _exact_markup(value: Decimal, markup_percent: Decimal) -> Decimal:
    # A context wide enough for every digit of both operands: the product is exact, never rounded.
    digits = len(value.as_tuple().digits) + len(markup_percent.as_tuple().digits) + 8
    context = Context(prec=digits)
    return context.divide(context.multiply(value, context.add(100, markup_percent)), 100)


@dataclass(frozen=True)
class Provider:
    kind: str
    base_url: str
    secret_name: str
    updated_at: str
    # What this provider charges us per model (client-facing model id -> price per 1M tokens / per
    # request): the cost of goods recorded on each ledger entry. None: not tracked (a provider set
    # before provider prices existed); a dict: every model it serves must be in it (chat/routing.py).
    prices: dict[str, ModelPrice] | None = None

    def as_api(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "base_url": self.base_url,
            "api_key_set": True,
            "updated_at": self.updated_at,
        }

    def as_named_api(self, name: str) -> dict[str, Any]:
        return {
            "name": name,
            **self.as_api(),
            "prices": None if self.prices is None else {m: p.as_api() for m, p in self.prices.items()},
        }


@dataclass(frozen=True)
class Paywall:
    id: str
    name: str
    mode: str
    created_at: str
    description: str = ""
    icon_url: str | None = None
    markup_percent: Decimal = Decimal(0)
    trial_credits: int = 0
    platform_fee_percent: Decimal = Decimal(0)
    currency: str = "usd"
    pricing: dict[str, ModelPrice] = field(default_factory=dict)
    features: dict[str, ModelPrice] = field(default_factory=dict)  # FEATURES name -> surcharge
    provider: Provider | None = None
    templates: dict[str, str] = field(default_factory=dict)
    stripe: dict[str, Any] | None = None
    updated_at: str | None = None
    # Per-user usage limits (limits.py): the paywall's defaults {name: int}, and whether any user has
    # an override (only then does a request read its override item).
    limits: dict[str, int] = field(default_factory=dict)
    user_limits: bool = False
    # Outbound webhooks (events/subscriptions.py keeps it): the union of the active subscriptions'
    # event patterns, so a request knows from the cached paywall whether to write an event at all.
    webhook_events: list[str] = field(default_factory=list)
    # Named providers beside the default one (`provider`), and the routing rules that send model ids
    # to them with ordered fallbacks (validated and resolved by chat/routing.py).
    providers: dict[str, Provider] = field(default_factory=dict)
    routes: list[dict[str, Any]] = field(default_factory=list)

    def template(self, name: str) -> str:
        return self.templates.get(name) or DEFAULT_TEMPLATES[name]

    def render(self, name: str, url: str = "") -> str:
        return render_template(self.template(name), self.name, url)

    def price_of(self, model: str) -> ModelPrice | None:
        return self.pricing.get(model)

    def named_providers(self) -> dict[str, Provider]:
        """Every provider by name; the default one (set by PUT .../provider) is `default`."""
        named = {DEFAULT_PROVIDER: self.provider} if self.provider else {}
        return {**named, **self.providers}

    def cost(self, model_price: ModelPrice, prompt_tokens: int, completion_tokens: int) -> int:
        return usage_cost_micros(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            prompt_price=model_price.prompt,
            completion_price=model_price.completion,
            request_price=model_price.request,
            markup_percent=self.markup_percent,
        )

    def as_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "paywall",
            "name": self.name,
            "mode": self.mode,
            "description": self.description,
            "icon_url": self.icon_url,
            "currency": self.currency,
            "markup_percent": decimal_str(self.markup_percent),
            "trial_credits": format_micros(self.trial_credits),
            "platform_fee_percent": decimal_str(self.platform_fee_percent),
            "pricing": {m: p.as_api() for m, p in self.pricing.items()},
            "features": {f: p.as_api() for f, p in self.features.items()},
            "provider": self.provider.as_api() if self.provider else None,
            "providers": [p.as_named_api(n) for n, p in self.named_providers().items()],
            "routes": self.routes,
            "templates": {k: self.template(k) for k in DEFAULT_TEMPLATES},
            "stripe": _public_stripe(self.stripe),
            "limits": limits_as_api(self.limits),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


def render_template(text: str, name: str, url: str) -> str:
    """A reply template as the user reads it (also the operator console's preview)."""
    return text.replace("{{url}}", url).replace("{{name}}", name)


# Per-user limits (limits.py): money ones in micro-units, shown as decimal strings.
LIMIT_NAMES = ("requests_per_minute", "tokens_per_day", "spend_per_day", "spend_per_month")
MONEY_LIMITS = ("spend_per_day", "spend_per_month")


def limits_as_api(limits: dict[str, int | None]) -> dict[str, Any]:
    return {
        name: (format_micros(limits[name]) if name in MONEY_LIMITS and limits[name] is not None else limits[name])
        for name in LIMIT_NAMES
        if name in limits
    }


def _public_stripe(stripe: dict[str, Any] | None) -> dict[str, Any] | None:
    if not stripe:
        return None
    return {k: v for k, v in stripe.items() if k != "secret_name"}


# ---- persistence --------------------------------------------------------------------------------


def _to_item(p: Paywall) -> dict[str, Any]:
    data = asdict(p)
    data["markup_percent"] = str(p.markup_percent)
    data["platform_fee_percent"] = str(p.platform_fee_percent)
    data["pricing"] = {m: {k: str(v) for k, v in asdict(mp).items()} for m, mp in p.pricing.items()}
    data["features"] = {f: {k: str(v) for k, v in asdict(fp).items()} for f, fp in p.features.items()}
    data["provider"] = _provider_item(p.provider)
    data["providers"] = {n: _provider_item(v) for n, v in p.providers.items()}
    # gsi1 `PAYWALLS` lists every paywall, oldest first (admin `GET /admin/paywalls`, `paywalls list`).
    # Written by every save (admin changes only, never on a request path), so it costs no hot partition.
    index = {"gsi1pk": PAYWALLS_INDEX_PK, "gsi1sk": f"{p.created_at}#{p.id}"}
    return {"pk": f"PAYWALL#{p.id}", "sk": "META", **data, **index}


def _prices_item(prices: dict[str, ModelPrice]) -> dict[str, Any]:
    return {m: {k: str(v) for k, v in asdict(mp).items()} for m, mp in prices.items()}


def _provider_item(provider: Provider | None) -> dict[str, Any] | None:
    if provider is None:
        return None
    data = asdict(provider)
    data["prices"] = None if provider.prices is None else _prices_item(provider.prices)
    return data


def _stored_provider(item: dict[str, Any]) -> Provider:
    prices = item.get("prices")
    return Provider(
        item["kind"],
        item["base_url"],
        item["secret_name"],
        item["updated_at"],
        None if prices is None else {m: _stored_price(p) for m, p in prices.items()},
    )


def _from_item(item: dict[str, Any]) -> Paywall:
    provider = item.get("provider")
    return Paywall(
        id=item["id"],
        name=item["name"],
        mode=item["mode"],
        created_at=item["created_at"],
        description=item.get("description") or "",
        icon_url=item.get("icon_url"),
        markup_percent=Decimal(item.get("markup_percent") or "0"),
        trial_credits=item.get("trial_credits") or 0,
        platform_fee_percent=Decimal(item.get("platform_fee_percent") or "0"),
        currency=item.get("currency") or "usd",
        pricing={m: _stored_price(p) for m, p in (item.get("pricing") or {}).items()},
        features={f: _stored_price(p) for f, p in (item.get("features") or {}).items()},
        provider=_stored_provider(provider) if provider else None,
        providers={n: _stored_provider(v) for n, v in (item.get("providers") or {}).items()},
        routes=item.get("routes") or [],
        templates=item.get("templates") or {},
        stripe=item.get("stripe"),
        updated_at=item.get("updated_at"),
        limits=item.get("limits") or {},
        user_limits=bool(item.get("user_limits")),
        webhook_events=list(item.get("webhook_events") or []),
    )


def _stored_price(p: dict[str, Any]) -> ModelPrice:
    return ModelPrice(Decimal(p["prompt"]), Decimal(p["completion"]), Decimal(p.get("request") or "0"))


def get(paywall_id: str) -> Paywall:
    item = store.get(f"PAYWALL#{paywall_id}", "META", consistent=False) if _valid_id(paywall_id) else None
    if not item:
        raise NotFound(f"paywall {paywall_id!r} not found")
    return _from_item(item)


def get_many(paywall_ids: list[str]) -> list[Paywall]:
    """The paywalls that exist among `paywall_ids`, in that order (one BatchGetItem per 100)."""
    items = store.batch_get([(f"PAYWALL#{i}", "META") for i in paywall_ids if _valid_id(i)])
    by_id = {item["id"]: _from_item(item) for item in items}
    return [by_id[i] for i in paywall_ids if i in by_id]


_ID_RE = re.compile(r"\A[A-Za-z0-9_]{1,64}\Z")


def _valid_id(paywall_id: str) -> bool:
    # ASCII only: str.isalnum() would also accept "pw_١٢" and other Unicode letters and digits.
    return isinstance(paywall_id, str) and _ID_RE.fullmatch(paywall_id) is not None


def save(p: Paywall, changed: list[str] | None = None) -> Paywall:
    """Write the whole record; `changed` (the fields an operator changed) also sends `paywall.updated`
    to the app's webhooks (events/outbox.py)."""
    p = replace(p, updated_at=_now())
    item = _to_item(p)
    # `webhook_events` (and its `webhooks_version`) belong to events/subscriptions.py: a save from an
    # earlier read must not undo a subscription change made since, so every other attribute is set
    # (absent ones removed) and those two are left as they are.
    del item["webhook_events"]
    key = {"pk": item.pop("pk"), "sk": item.pop("sk")}
    present = {k: v for k, v in item.items() if v is not None}
    absent = [k for k, v in item.items() if v is None]
    names = {f"#a{i}": k for i, k in enumerate([*present, *absent])}
    by_name = {k: n for n, k in names.items()}
    update = "SET " + ", ".join(f"{by_name[k]} = :v{i}" for i, k in enumerate(present))
    if absent:
        update += " REMOVE " + ", ".join(by_name[k] for k in absent)
    values = {f":v{i}": store.encode_value(v) for i, v in enumerate(present.values())}
    store.with_retries(
        lambda: store.ddb().update_item(
            TableName=store.table_name(),
            Key=store.key(key["pk"], key["sk"]),
            UpdateExpression=update,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
        )
    )
    if changed:
        from paywalls.events import outbox  # noqa: PLC0415 (the outbox builds on this module)

        outbox.emit(p, "paywall.updated", {"fields": sorted(changed)})
    return p


# ---- validation of operator input (rules live here, the admin app only parses JSON) --------------


def _decimal_field(data: dict[str, Any], name: str, parser: Any) -> Any:
    try:
        return parser(data[name])
    except InvalidAmount as exc:
        raise InvalidRequest(f"{name}: {exc}", name) from None


def _text(data: dict[str, Any], name: str, limit: int, *, required: bool = False) -> str | None:
    value = data.get(name)
    if value is None:
        if required:
            raise InvalidRequest(f"{name} is required", name)
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise InvalidRequest(f"{name} must be a non-empty string of at most {limit} characters", name)
    return value.strip()


def _url(data: dict[str, Any], name: str) -> str | None:
    value = _text(data, name, 2048)
    if value is not None and not value.startswith(("https://", "http://")):
        raise InvalidRequest(f"{name} must be an http(s) URL", name)
    return value


def create(data: dict[str, Any]) -> Paywall:
    _reject_unknown(data, PROFILE_FIELDS)
    mode = data.get("mode", "default")
    if mode not in MODES:
        raise InvalidRequest("mode must be 'default' or 'shared'", "mode")
    paywall = Paywall(
        id="pw_" + secrets.token_hex(8),
        name=_text(data, "name", 200, required=True) or "",
        mode=mode,
        created_at=_now(),
    )
    paywall = _apply_changes(paywall, {k: v for k, v in data.items() if k not in ("name", "mode")})
    return save(paywall)


def patch(paywall_id: str, data: dict[str, Any]) -> Paywall:
    current = get(paywall_id)
    if "mode" in data and data["mode"] not in MODES:
        raise InvalidRequest("mode must be 'default' or 'shared'", "mode")  # bad input: 400, not a 409
    if "mode" in data and data["mode"] != current.mode:
        raise Conflict("a paywall's mode cannot be changed after creation")
    _reject_unknown(data, PROFILE_FIELDS)
    changes = {k: v for k, v in data.items() if k != "mode"}
    return save(_apply_changes(current, changes), sorted(changes))


def _reject_unknown(data: dict[str, Any], allowed: AbstractSet[str]) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise InvalidRequest(f"unknown field(s): {', '.join(unknown)}", unknown[0])


def _apply_changes(p: Paywall, data: dict[str, Any]) -> Paywall:
    changes: dict[str, Any] = {}
    if "name" in data:
        changes["name"] = _text(data, "name", 200, required=True)
    if "description" in data:
        changes["description"] = _text(data, "description", 2000) or ""
    if "icon_url" in data:
        changes["icon_url"] = _url(data, "icon_url")
    if "markup_percent" in data:
        changes["markup_percent"] = _decimal_field(data, "markup_percent", parse_percent)
    if "platform_fee_percent" in data:
        changes["platform_fee_percent"] = _decimal_field(
            data, "platform_fee_percent", lambda v: parse_percent(v, maximum=100)
        )
    if "trial_credits" in data:
        changes["trial_credits"] = _decimal_field(data, "trial_credits", lambda v: parse_amount(v, allow_zero=True))
    return replace(p, **changes)


def set_pricing(paywall_id: str, data: dict[str, Any]) -> Paywall:
    """Replace the price table; `markup_percent` and `features` change only when given."""
    current = get(paywall_id)
    _reject_unknown(data, {"models", "markup_percent", "features"})
    models = data.get("models")
    if not isinstance(models, dict) or not models:
        raise InvalidRequest("models must be an object of model id -> {prompt, completion, request?}", "models")
    pricing: dict[str, ModelPrice] = {}
    for model, price in models.items():
        if not isinstance(model, str) or not 0 < len(model) <= 200:
            raise InvalidRequest("model ids must be 1-200 character strings", "models")
        if not isinstance(price, dict) or "prompt" not in price or "completion" not in price:
            raise InvalidRequest(f"models.{model} needs prompt and completion prices", "models")
        pricing[model] = _price(price, f"models.{model}", "models")
    changes: dict[str, Any] = {"pricing": pricing}
    if "markup_percent" in data:
        changes["markup_percent"] = _decimal_field(data, "markup_percent", parse_percent)
    if "features" in data:
        changes["features"] = _features(data["features"])
    return save(replace(current, **changes), sorted(changes))


def _features(features: Any) -> dict[str, ModelPrice]:
    """Surcharges for paid extras (FEATURES): each `{request?, prompt?, completion?}`, missing parts 0.
    `{}` prices none, so every request that asks for one is refused again."""
    if not isinstance(features, dict):
        raise InvalidRequest(
            "features must be an object of feature -> {request?, prompt?, completion?}; "
            f"features: {', '.join(FEATURES)}",
            "features",
        )
    priced: dict[str, ModelPrice] = {}
    for name, price in features.items():
        if name not in FEATURES:
            raise InvalidRequest(f"unknown feature {str(name)[:50]!r}; features: {', '.join(FEATURES)}", "features")
        if not isinstance(price, dict) or not price:
            raise InvalidRequest(f"features.{name} needs at least one of request, prompt, completion", "features")
        priced[name] = _price(price, f"features.{name}", "features")
    return priced


def _price(price: dict[str, Any], where: str, param: str) -> ModelPrice:
    _reject_unknown(price, {"prompt", "completion", "request"})
    try:
        return ModelPrice(
            parse_price(price.get("prompt", "0")),
            parse_price(price.get("completion", "0")),
            parse_price(price.get("request", "0")),
        )
    except InvalidAmount as exc:
        raise InvalidRequest(f"{where}: {exc}", param) from None


def set_templates(paywall_id: str, data: dict[str, Any]) -> Paywall:
    current = get(paywall_id)
    _reject_unknown(data, set(DEFAULT_TEMPLATES))
    templates = dict(current.templates)
    for name in DEFAULT_TEMPLATES:
        if name in data:
            value = data[name]
            if value is None:
                templates.pop(name, None)
                continue
            text = _text(data, name, 4000)
            if name in ("topup", "authorize") and "{{url}}" not in (text or ""):
                raise InvalidRequest(f"the {name} template must contain {{{{url}}}}", name)
            templates[name] = text or ""
    return save(replace(current, templates=templates), ["templates"])


def provider_secret_name(prefix: str, paywall_id: str) -> str:
    return f"{prefix}/paywall/{paywall_id}/provider"


def validated_provider(data: dict[str, Any], *, key_required: bool = True) -> tuple[str, str, str]:
    """(kind, base_url, api_key) from operator input; api_key "" when not required and not sent
    (a named provider's update keeps its key; chat/routing.py also takes `prices`)."""
    _reject_unknown(
        data, {"kind", "base_url", "api_key"} if key_required else {"kind", "base_url", "api_key", "prices"}
    )
    kind = data.get("kind")
    # A str first: a list or an object is unhashable and the dict lookup would raise TypeError (a 500).
    if not isinstance(kind, str) or kind not in PROVIDER_BASE_URLS:
        raise InvalidRequest(f"kind must be one of {', '.join(PROVIDER_BASE_URLS)}", "kind")
    base_url = _url(data, "base_url") or PROVIDER_BASE_URLS[kind]
    if not base_url:
        raise InvalidRequest("base_url is required for openai-compatible providers", "base_url")
    api_key = data.get("api_key")
    if api_key is None and not key_required:
        return kind, base_url.rstrip("/"), ""
    if not isinstance(api_key, str) or not api_key.strip() or len(api_key) > 4096:
        raise InvalidRequest("api_key is required", "api_key")
    return kind, base_url.rstrip("/"), api_key.strip()


def set_provider(paywall_id: str, kind: str, base_url: str, secret_name: str) -> Paywall:
    """The default provider; its provider prices (if any were set) are kept."""
    current = get(paywall_id)
    prices = current.provider.prices if current.provider else None
    return save(replace(current, provider=Provider(kind, base_url, secret_name, _now(), prices)), ["provider"])


def set_stripe(paywall_id: str, stripe: dict[str, Any]) -> Paywall:
    return save(replace(get(paywall_id), stripe=stripe))


# ---- API keys -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiKey:
    id: str
    paywall_id: str
    environment: str
    revoked: bool
    created_at: str
    preview: str


def hash_key(raw: str) -> str:
    # Keys are 256-bit random secrets, so a plain SHA-256 is a safe lookup hash (no salt/KDF needed).
    return hashlib.sha256(raw.encode()).hexdigest()


def issue_key(paywall_id: str, environment: str) -> tuple[ApiKey, str]:
    if environment not in ENVIRONMENTS:
        raise InvalidRequest("environment must be 'live' or 'test'", "environment")
    get(paywall_id)
    raw = (TEST_KEY_PREFIX if environment == "test" else KEY_PREFIX) + secrets.token_urlsafe(32)
    key = ApiKey("key_" + secrets.token_hex(8), paywall_id, environment, False, _now(), raw[:20] + "...")
    digest = hash_key(raw)
    common = {
        "key_id": key.id,
        "paywall_id": paywall_id,
        "environment": environment,
        "revoked": False,
        "created_at": key.created_at,
        "preview": key.preview,
        "key_hash": digest,
    }
    store.transact(
        [
            {
                "Put": {
                    "TableName": store.table_name(),
                    "Item": store.encode({"pk": f"APIKEY#{digest}", "sk": "APIKEY", **common}),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
            {
                "Put": {
                    "TableName": store.table_name(),
                    "Item": store.encode({"pk": f"PAYWALL#{paywall_id}", "sk": f"KEY#{key.id}", **common}),
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
        ]
    )
    _key_event(paywall_id, key, "issued")
    return key, raw


def revoke_key(paywall_id: str, key_id: str) -> ApiKey:
    item = store.get(f"PAYWALL#{paywall_id}", f"KEY#{key_id}")
    if not item:
        raise NotFound(f"key {key_id!r} not found")
    update = "SET revoked = :t, revoked_at = :now"
    values = {":t": {"BOOL": True}, ":now": store.S(_now())}
    try:
        store.transact(
            [
                {
                    "Update": {
                        "TableName": store.table_name(),
                        "Key": store.key(f"APIKEY#{item['key_hash']}", "APIKEY"),
                        "UpdateExpression": update,
                        "ExpressionAttributeValues": values,
                    }
                },
                {
                    "Update": {
                        "TableName": store.table_name(),
                        "Key": store.key(f"PAYWALL#{paywall_id}", f"KEY#{key_id}"),
                        "UpdateExpression": update,
                        "ExpressionAttributeValues": values,
                    }
                },
            ]
        )
    except TransactionCancelled:
        raise Conflict("key could not be revoked, retry") from None
    revoked = _key_from_item({**item, "revoked": True})
    _key_event(paywall_id, revoked, "revoked")
    return revoked


def _key_event(paywall_id: str, key: ApiKey, action: str) -> None:
    """`paywall.secret.rotated` for the app's webhooks: a key issued or revoked (never the key itself)."""
    from paywalls.events import outbox  # noqa: PLC0415 (the outbox builds on this module)

    outbox.emit(
        get(paywall_id), "paywall.secret.rotated", {"keyId": key.id, "environment": key.environment, "action": action}
    )


def list_keys(paywall_id: str) -> list[ApiKey]:
    return [_key_from_item(i) for i in store.query_all(f"PAYWALL#{paywall_id}", sk_prefix="KEY#")]


def _key_from_item(item: dict[str, Any]) -> ApiKey:
    return ApiKey(
        item["key_id"],
        item["paywall_id"],
        item["environment"],
        bool(item.get("revoked")),
        item["created_at"],
        item.get("preview", ""),
    )


def lookup_key(raw: str) -> ApiKey | None:
    """The key record for a presented secret, or None (unknown or revoked)."""
    if not raw.startswith(KEY_PREFIX) or len(raw) > 200:
        return None
    item = store.get(f"APIKEY#{hash_key(raw)}", "APIKEY", consistent=False)
    if not item or item.get("revoked"):
        return None
    return _key_from_item(item)
