"""Webhook subscriptions: where a paywall's events go (API shapes of Paywalls.ai).

Items `PAYWALL#{paywall}` / `WEBHOOK#{id}` (the paywall's own partition: written by operator and app
actions and by the delivery function's failure count, never per request). The signing secret lives
in Secrets Manager (`{prefix}/paywall/{paywall}/webhook/{id}`), never in the table: the table keeps
its last 4 characters (`secretSuffix`) only. After every change the paywall item's `webhook_events`
(the union of the active subscriptions' patterns: outbox.py's filter) is recomputed under an
optimistic `webhooks_version`, so two concurrent changes cannot leave a stale union."""

from __future__ import annotations

import ipaddress
import re
import secrets
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from paywalls.billing.paywall import InvalidRequest, NotFound
from paywalls.billing.paywall import get as get_paywall
from paywalls.events.catalog import is_pattern
from paywalls.infra import secrets as secrets_store
from paywalls.infra import store
from paywalls.infra.config import settings
from paywalls.infra.store import N, S

MAX_SUBSCRIPTIONS = 20
MAX_EVENTS = 50
MAX_HEADERS = 10
DESCRIPTION_MAX = 512
URL_MAX = 2048
HEADER_NAME_RE = re.compile(r"\A[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}\Z")
HEADER_VALUE_MAX = 1024
# Headers a subscription may not set: the transport's and our own (a receiver trusts these).
RESERVED_HEADERS = frozenset(
    {"host", "content-type", "content-length", "transfer-encoding", "connection", "user-agent"}
)
SECRET_MIN, SECRET_MAX = 16, 256
# DESIGN/docs: deactivated after this many deliveries in a row ended in error (all retries spent).
DEACTIVATE_AFTER = 10
SYNC_ATTEMPTS = 5


def deactivate_after() -> int:
    return settings().webhook_deactivate_after


def allow_local_receivers() -> bool:
    """`make run` only (devserver sets it; template.yaml never does): http://127.0.0.1 receivers."""
    return settings().local_dev and settings().webhook_allow_local


@dataclass(frozen=True)
class Subscription:
    id: str
    paywall_id: str
    url: str
    events: list[str]
    is_active: bool
    created_at: str
    updated_at: str
    secret_suffix: str
    description: str = ""
    custom_headers: dict[str, str] = field(default_factory=dict)
    consecutive_failures: int = 0
    last_delivered_at: str | None = None

    def as_api(self, secret: str | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "paywallId": self.paywall_id,
            "url": self.url,
            "events": self.events,
            "isActive": self.is_active,
            "description": self.description,
            "customHeaders": self.custom_headers,
            "createdAt": self.created_at,
            "updatedAt": self.updated_at,
            "secretSuffix": self.secret_suffix,
            "consecutiveFailures": self.consecutive_failures,
            "lastDeliveredAt": self.last_delivered_at,
        }
        if secret is not None:
            out["secret"] = secret
        return out


def _sk(subscription_id: str) -> str:
    return f"WEBHOOK#{subscription_id}"


def secret_name(paywall_id: str, subscription_id: str) -> str:
    return f"{settings().secret_prefix}/paywall/{paywall_id}/webhook/{subscription_id}"


def _from_item(item: dict[str, Any]) -> Subscription:
    return Subscription(
        id=item["id"],
        paywall_id=item["paywall_id"],
        url=item["url"],
        events=list(item.get("events") or []),
        is_active=bool(item.get("is_active")),
        created_at=item["created_at"],
        updated_at=item.get("updated_at") or item["created_at"],
        secret_suffix=item.get("secret_suffix") or "",
        description=item.get("description") or "",
        custom_headers=dict(item.get("custom_headers") or {}),
        consecutive_failures=int(item.get("consecutive_failures") or 0),
        last_delivered_at=item.get("last_delivered_at"),
    )


def _to_item(sub: Subscription) -> dict[str, Any]:
    return {
        "pk": f"PAYWALL#{sub.paywall_id}",
        "sk": _sk(sub.id),
        "id": sub.id,
        "paywall_id": sub.paywall_id,
        "url": sub.url,
        "events": sub.events,
        "is_active": sub.is_active,
        "created_at": sub.created_at,
        "updated_at": sub.updated_at,
        "secret_suffix": sub.secret_suffix,
        "description": sub.description,
        "custom_headers": sub.custom_headers or None,
        "consecutive_failures": sub.consecutive_failures,
        "last_delivered_at": sub.last_delivered_at,
    }


# ---- validation --------------------------------------------------------------------------------------


def validate_url(value: object) -> str:
    """https (or, under `make run`'s explicit setting, http://127.0.0.1); no credentials; a literal
    address must be public. Names are checked again, resolved, at every delivery (delivery.py)."""
    if not isinstance(value, str) or not value or len(value) > URL_MAX:
        raise InvalidRequest(f"url must be a URL of at most {URL_MAX} characters", "url")
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError:
        raise InvalidRequest("url is not a valid URL", "url") from None
    host = parts.hostname or ""
    if parts.username or parts.password:
        raise InvalidRequest("url must not contain credentials", "url")
    if not host or any(c.isspace() for c in value):
        raise InvalidRequest("url is not a valid URL", "url")
    local = allow_local_receivers() and host in ("127.0.0.1", "localhost")
    if parts.scheme != "https" and not (local and parts.scheme == "http"):
        raise InvalidRequest("url must use https", "url")
    if port == 0:
        raise InvalidRequest("url is not a valid URL", "url")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return value
    if not address.is_global and not local:
        raise InvalidRequest("url must not point to a private, loopback, link-local or metadata address", "url")
    return value


def validate_events(value: object) -> list[str]:
    if not isinstance(value, list) or not value or len(value) > MAX_EVENTS:
        raise InvalidRequest(f"events must be a list of 1 to {MAX_EVENTS} event names or patterns", "events")
    if not all(isinstance(v, str) and is_pattern(v) for v in value):
        raise InvalidRequest("events: unknown event name or pattern (see docs/webhooks.md)", "events")
    if "*" in value and len(value) > 1:
        raise InvalidRequest('events: "*" means every event and must be alone', "events")
    return list(dict.fromkeys(value))


def validate_headers(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > MAX_HEADERS:
        raise InvalidRequest(f"customHeaders must be an object of at most {MAX_HEADERS} headers", "customHeaders")
    out: dict[str, str] = {}
    for name, header in value.items():
        if not isinstance(name, str) or not HEADER_NAME_RE.fullmatch(name):
            raise InvalidRequest("customHeaders: invalid header name", "customHeaders")
        lowered = name.lower()
        if lowered in RESERVED_HEADERS or lowered.startswith("x-paywalls-"):
            raise InvalidRequest(f"customHeaders: {name} cannot be set", "customHeaders")
        if not isinstance(header, str) or len(header) > HEADER_VALUE_MAX or any(c in header for c in "\r\n\0"):
            raise InvalidRequest(f"customHeaders.{name} must be a single-line string", "customHeaders")
        out[name] = header
    return out


def validate_description(value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InvalidRequest("description must be a string", "description")
    return value.strip()[:DESCRIPTION_MAX]


def validate_secret(value: object) -> str:
    if value is None:
        return "whsec_" + secrets.token_urlsafe(32)
    if (
        not isinstance(value, str)
        or not SECRET_MIN <= len(value) <= SECRET_MAX
        or not value.isascii()
        or not value.isprintable()
        or " " in value
    ):
        raise InvalidRequest(f"secret must be {SECRET_MIN}-{SECRET_MAX} printable ASCII characters", "secret")
    return value


_FIELDS = {"url", "events", "description", "customHeaders", "secret", "isActive"}


def _reject_unknown(data: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise InvalidRequest(f"unknown field(s): {', '.join(unknown)}", unknown[0])


# ---- operations --------------------------------------------------------------------------------------


def _now() -> str:
    from paywalls.events.outbox import now_iso

    return now_iso()


def list_subscriptions(paywall_id: str, status: str | None = None) -> list[Subscription]:
    subs = [_from_item(i) for i in store.query_all(f"PAYWALL#{paywall_id}", sk_prefix="WEBHOOK#")]
    if status == "active":
        return [s for s in subs if s.is_active]
    if status == "inactive":
        return [s for s in subs if not s.is_active]
    if status is not None:
        raise InvalidRequest("status must be 'active' or 'inactive'", "status")
    return subs


def get(paywall_id: str, subscription_id: str) -> Subscription:
    item = store.get(f"PAYWALL#{paywall_id}", _sk(subscription_id)) if _valid_id(subscription_id) else None
    if not item:
        raise NotFound(f"webhook subscription {subscription_id!r} not found")
    return _from_item(item)


def _valid_id(value: str) -> bool:
    return bool(re.fullmatch(r"whsub_[a-f0-9]{24}", value))


def create(paywall_id: str, data: dict[str, Any]) -> tuple[Subscription, str]:
    _reject_unknown(data, _FIELDS - {"isActive"})
    get_paywall(paywall_id)
    url = validate_url(data.get("url"))
    events = validate_events(data.get("events"))
    headers = validate_headers(data.get("customHeaders"))
    description = validate_description(data.get("description"))
    secret = validate_secret(data.get("secret"))
    if len(list_subscriptions(paywall_id)) >= MAX_SUBSCRIPTIONS:
        raise InvalidRequest(f"a paywall can have at most {MAX_SUBSCRIPTIONS} webhook subscriptions", "url")
    now = _now()
    sub = Subscription(
        id="whsub_" + secrets.token_hex(12),
        paywall_id=paywall_id,
        url=url,
        events=events,
        is_active=True,
        created_at=now,
        updated_at=now,
        secret_suffix=secret[-4:],
        description=description,
        custom_headers=headers,
    )
    secrets_store.put_secret(secret_name(paywall_id, sub.id), secret)  # first: a subscription never lacks it
    store.put(_to_item(sub), condition="attribute_not_exists(pk)")
    sync_filter(paywall_id)
    return sub, secret


def update(paywall_id: str, subscription_id: str, data: dict[str, Any]) -> Subscription:
    _reject_unknown(data, _FIELDS - {"secret"})
    sub = get(paywall_id, subscription_id)
    changes: dict[str, Any] = {}
    if "url" in data:
        changes["url"] = validate_url(data["url"])
    if "events" in data:
        changes["events"] = validate_events(data["events"])
    if "customHeaders" in data:
        changes["custom_headers"] = validate_headers(data["customHeaders"])
    if "description" in data:
        changes["description"] = validate_description(data["description"])
    if "isActive" in data:
        if not isinstance(data["isActive"], bool):
            raise InvalidRequest("isActive must be true or false", "isActive")
        changes["is_active"] = data["isActive"]
        if data["isActive"]:
            changes["consecutive_failures"] = 0  # re-enabled: a fresh start
    sub = replace(sub, **changes, updated_at=_now())
    _save_fields(sub, changes)
    sync_filter(paywall_id)
    return sub


def deactivate(paywall_id: str, subscription_id: str) -> Subscription:
    """DELETE: soft (isActive false), so its logs and secret stay; PATCH isActive true re-enables."""
    return update(paywall_id, subscription_id, {"isActive": False})


def rotate_secret(
    paywall_id: str, subscription_id: str, data: dict[str, Any] | None = None
) -> tuple[Subscription, str]:
    data = data or {}
    _reject_unknown(data, {"secret"})
    sub = get(paywall_id, subscription_id)
    secret = validate_secret(data.get("secret"))
    secrets_store.put_secret(secret_name(paywall_id, sub.id), secret)
    sub = replace(sub, secret_suffix=secret[-4:], updated_at=_now())
    _save_fields(sub, {"secret_suffix": sub.secret_suffix})
    return sub, secret


def signing_secret(paywall_id: str, subscription_id: str) -> str:
    name = secret_name(paywall_id, subscription_id)
    return secrets_store.get_secret(name)


def _save_fields(sub: Subscription, changes: dict[str, Any]) -> None:
    names = {**changes, "updated_at": sub.updated_at}
    sets = ", ".join(f"#{k} = :{k}" for k in names)
    store.with_retries(
        lambda: store.ddb().update_item(
            TableName=store.table_name(),
            Key=store.key(f"PAYWALL#{sub.paywall_id}", _sk(sub.id)),
            UpdateExpression=f"SET {sets}",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeNames={f"#{k}": k for k in names},
            ExpressionAttributeValues={f":{k}": store.encode_value(v) for k, v in names.items()},
        )
    )


def sync_filter(paywall_id: str) -> list[str]:
    """Recompute the paywall's `webhook_events` from its active subscriptions (module doc)."""
    for attempt in range(SYNC_ATTEMPTS):
        meta = store.get(f"PAYWALL#{paywall_id}", "META")
        if meta is None:
            raise NotFound(f"paywall {paywall_id!r} not found")
        version = int(meta.get("webhooks_version") or 0)
        patterns: list[str] = []
        for sub in list_subscriptions(paywall_id, "active"):
            patterns += [p for p in sub.events if p not in patterns]
        if "*" in patterns:
            patterns = ["*"]
        values: dict[str, Any] = {":next": N(version + 1), ":events": store.encode_value(patterns)}
        condition = "attribute_not_exists(webhooks_version)" if version == 0 else "webhooks_version = :seen"
        if version:
            values[":seen"] = N(version)
        try:
            store.update(
                f"PAYWALL#{paywall_id}",
                "META",
                "SET webhook_events = :events, webhooks_version = :next",
                condition=condition,
                values=values,
            )
            return patterns
        except store.ConditionFailed:
            store.backoff(attempt)
    raise store.StoreUnavailable("webhook subscriptions changed concurrently, please retry")


def record_outcome(sub: Subscription, success: bool, at: str) -> Subscription | None:
    """After a delivery ended: success resets the failure count; an error adds one, and the
    DEACTIVATE_AFTER-th in a row deactivates the subscription (returned then, else None)."""
    key = store.key(f"PAYWALL#{sub.paywall_id}", _sk(sub.id))
    if success:
        store.with_retries(
            lambda: store.ddb().update_item(
                TableName=store.table_name(),
                Key=key,
                UpdateExpression="SET consecutive_failures = :zero, last_delivered_at = :at",
                ConditionExpression="attribute_exists(pk)",
                ExpressionAttributeValues={":zero": N(0), ":at": S(at)},
            )
        )
        return None
    response = store.with_retries(
        lambda: store.ddb().update_item(
            TableName=store.table_name(),
            Key=key,
            UpdateExpression="ADD consecutive_failures :one",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeValues={":one": N(1)},
            ReturnValues="ALL_NEW",
        )
    )
    after = _from_item(store.decode(response["Attributes"]))
    if after.consecutive_failures < deactivate_after() or not after.is_active:
        return None
    try:
        store.update(
            f"PAYWALL#{sub.paywall_id}",
            _sk(sub.id),
            "SET is_active = :no, updated_at = :at",
            condition="is_active = :yes",  # once: only the delivery that crossed N
            values={":no": {"BOOL": False}, ":yes": {"BOOL": True}, ":at": S(at)},
        )
    except store.ConditionFailed:
        return None
    sync_filter(sub.paywall_id)
    return replace(after, is_active=False, updated_at=at)
