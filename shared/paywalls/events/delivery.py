"""Signed deliveries: the body, the signature, a client that cannot be pointed at our own network
(SSRF), the retry policy, and the delivery records the logs API lists.

Outbound safety (docs/webhooks.md): the URL's host is resolved at every attempt and every address it
resolves to must be public (not loopback, private, link-local, metadata, unspecified, multicast,
reserved); the connection goes to the address that was checked (no second resolution a DNS rebind
could change), TLS is verified against the URL's host name; no redirect is followed (3xx is a failed
attempt); 10 s per connect/read, at most MAX_RESPONSE_BYTES of the answer read. `make run` alone
may allow http://127.0.0.1 (subscriptions.allow_local_receivers)."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import ipaddress
import json
import random
import socket
import ssl
import time
import zlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from paywalls.core.errors import PaywallsError
from paywalls.events import subscriptions
from paywalls.events.catalog import VERSION
from paywalls.events.outbox import now_iso
from paywalls.infra import store
from paywalls.infra.config import settings
from paywalls.infra.store import N, S

TIMEOUT_S = 10.0
MAX_RESPONSE_BYTES = 64 * 1024
MAX_ATTEMPTS = 8
RETRY_BASE_S = 30
TERMINAL_STATUSES = frozenset({400, 401, 403, 404, 410, 422})
LEASE_S = 60  # an attempt in progress: a duplicate message waits instead of delivering twice
LOG_SHARDS = 64  # DESIGN.md "Hot keys": the logs index spreads one paywall's deliveries
LOG_TTL_S = 30 * 24 * 3600
USER_AGENT = "Paywalls-Webhooks/1.0"
# AWS instance metadata (IPv4 and the Nitro IPv6 endpoint): named for the refusal message.
METADATA_ADDRESSES = frozenset({ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")})


class Refused(PaywallsError):
    """The URL may not be called (a refused address, a bad URL): a failed attempt, never sent."""


def retry_base_s() -> float:
    return settings().webhook_retry_base_s


def retry_delay_s(attempts: int) -> int:
    """After `attempts` failed attempts: base x 2^(attempts-1), plus up to 20% jitter (so a receiver
    that comes back is not hit by every pending delivery at once). Whole seconds: SQS visibility."""
    delay = retry_base_s() * 2 ** (attempts - 1)
    return int(delay + random.uniform(0, delay * 0.2))


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


# ---- the SSRF-safe client ----------------------------------------------------------------------------


def refusal(address: ipaddress.IPv4Address | ipaddress.IPv6Address, *, allow_loopback: bool = False) -> str | None:
    """Why an address may not be called, or None when it may."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    if address.is_loopback:
        return None if allow_loopback else "a loopback address"
    if address.is_unspecified:
        return "the unspecified address"
    if address.is_multicast:
        return "a multicast address"
    if address.is_link_local:
        return "a link-local address"
    if address.is_private or not address.is_global:
        return "a private or reserved address"
    return None


def vetted_address(host: str, port: int, *, allow_loopback: bool = False) -> str:
    """Resolve `host` now; every address must be allowed (one bad address refuses the name: it could
    be the one a later resolution hands out). Returns the address to connect to."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise Refused(f"cannot resolve {host}") from exc
    addresses = [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in infos]
    if not addresses:
        raise Refused(f"cannot resolve {host}")
    for address in addresses:
        why = refusal(address, allow_loopback=allow_loopback)
        if why:
            raise Refused(f"{host} resolves to {why}")
    return str(addresses[0])


class _PinnedConnection(http.client.HTTPSConnection):
    """HTTP(S) to an address already checked, with the URL's host for Host, SNI and the certificate."""

    def __init__(self, host: str, port: int, address: str, *, tls: bool, timeout: float):
        super().__init__(host, port, timeout=timeout, context=ssl.create_default_context())
        self._address = address
        self._tls = tls

    def connect(self) -> None:
        sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host) if self._tls else sock  # type: ignore[attr-defined]


@dataclass(frozen=True)
class Attempt:
    status_code: int | None
    duration_ms: int
    error: str | None
    response: str | None  # the start of the answer (logs)

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def terminal(self) -> bool:
        return self.status_code in TERMINAL_STATUSES


def post(url: str, body: bytes, headers: dict[str, str], *, allow_loopback: bool = False) -> Attempt:
    """One POST, never following a redirect; a refusal or a network error is an attempt without a status."""
    started = time.monotonic()

    def elapsed() -> int:
        return int((time.monotonic() - started) * 1000)

    parts = urlsplit(url)
    tls = parts.scheme == "https"
    if not tls and not (allow_loopback and parts.scheme == "http"):
        return Attempt(None, elapsed(), "refused: url must use https", None)
    host = parts.hostname or ""
    port = parts.port or (443 if tls else 80)
    try:
        address = vetted_address(host, port, allow_loopback=allow_loopback)
        if not tls and not ipaddress.ip_address(address).is_loopback:
            raise Refused("plain http is only for local receivers")
        connection = _PinnedConnection(host, port, address, tls=tls, timeout=TIMEOUT_S)
        try:
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            connection.request("POST", path, body=body, headers={**headers, "Host": parts.netloc.rpartition("@")[2]})
            response = connection.getresponse()
            text = response.read(MAX_RESPONSE_BYTES).decode("utf-8", "replace")  # never more than this
            return Attempt(response.status, elapsed(), None, text[:500] or None)
        finally:
            connection.close()
    except Refused as exc:
        return Attempt(None, elapsed(), f"refused: {exc}", None)
    except (OSError, http.client.HTTPException) as exc:
        return Attempt(None, elapsed(), f"{type(exc).__name__}: {exc}"[:300], None)


# ---- delivery records ------------------------------------------------------------------------------


def delivery_id(event_id: str, subscription_id: str) -> str:
    return f"dlv_{event_id.removeprefix('evt_')}_{subscription_id.removeprefix('whsub_')}"


def _pk(event_id: str) -> str:
    return f"DLV#{event_id}"


def log_partition(paywall_id: str, event_id: str) -> str:
    return f"WHLOG#{paywall_id}#{zlib.crc32(event_id.encode()) % LOG_SHARDS:02d}"


def create_record(event: dict[str, Any], subscription_id: str) -> tuple[dict[str, Any], bool]:
    """The delivery of `event` to one subscription, created once (duplicate stream records meet the
    condition); returns (record, created now)."""
    now = now_iso()
    record = {
        "pk": _pk(event["id"]),
        "sk": f"SUB#{subscription_id}",
        "id": delivery_id(event["id"], subscription_id),
        "event_id": event["id"],
        "event_type": event["type"],
        "paywall_id": event["paywallId"],
        "subscription_id": subscription_id,
        "status": "pending",
        "attempts": 0,
        "attempt_log": [],
        "created_at": now,
        "updated_at": now,
        "payload": json.dumps(event, separators=(",", ":")),
        "gsi1pk": log_partition(event["paywallId"], event["id"]),
        "gsi1sk": f"{now}#{event['id']}#{subscription_id}",
        "expires_at_ttl": int(time.time()) + LOG_TTL_S,
    }
    try:
        store.put(record, condition="attribute_not_exists(pk)")
        return record, True
    except store.ConditionFailed:
        existing = store.get(_pk(event["id"]), f"SUB#{subscription_id}")
        return existing or record, False


def get_record(event_id: str, subscription_id: str) -> dict[str, Any] | None:
    return store.get(_pk(event_id), f"SUB#{subscription_id}")


def body_of(record: dict[str, Any], attempts: int) -> bytes:
    delivery = {
        "id": record["id"],
        "subscriptionId": record["subscription_id"],
        "attempts": attempts,
        "createdAt": record["created_at"],
        "updatedAt": now_iso(),
    }
    return json.dumps({"delivery": delivery, "event": json.loads(record["payload"])}, separators=(",", ":")).encode()


def headers_of(record: dict[str, Any], body: bytes, secret: str, custom: dict[str, str]) -> dict[str, str]:
    return {
        **custom,
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Paywalls-Event": f"{record['event_type']}@{VERSION}",
        "X-Paywalls-Signature": sign(secret, body),
        "X-Paywalls-Timestamp": now_iso(),
        "X-Paywalls-Delivery": record["id"],
    }


@dataclass(frozen=True)
class Outcome:
    done: bool  # nothing more to do for this message
    retry_in_s: int = 0
    # for the WebhookDeliveries metric: success, retry (failed, will try again), error (given up),
    # skipped (nothing attempted: already delivered, a duplicate message, an inactive subscription)
    result: str = "skipped"


def _take_lease(record: dict[str, Any], now: float) -> int | None:
    """Claim the next attempt (the attempt number), or None: finished, or another copy of the message
    is attempting or waiting its turn (duplicates deliver once)."""
    try:
        after = store.update(
            record["pk"],
            record["sk"],
            "SET lease_until = :until ADD attempts :one",
            condition=(
                "#status = :pending AND attempts < :max AND (attribute_not_exists(lease_until) OR lease_until < :now)"
                " AND (attribute_not_exists(next_attempt_at) OR next_attempt_at <= :now)"
            ),
            names={"#status": "status"},
            values={
                ":pending": S("pending"),
                ":max": N(MAX_ATTEMPTS),
                ":now": N(int(now)),
                ":until": N(int(now) + LEASE_S),
                ":one": N(1),
            },
            return_new=True,
        )
    except store.ConditionFailed:
        return None
    return int(after["attempts"]) if after else None


def attempt(event_id: str, subscription_id: str) -> Outcome:
    """One delivery attempt for a queue message: sign, POST, record; when to try again if at all."""
    record = get_record(event_id, subscription_id)
    if record is None or record.get("status") != "pending":
        return Outcome(True)
    now = time.time()
    due = int(record.get("next_attempt_at") or 0)
    if due > now and not record.get("lease_until"):
        return Outcome(False, due - int(now), "skipped")  # a duplicate message early: wait for the turn
    number = _take_lease(record, now)
    if number is None:
        return Outcome(True)
    try:
        sub = subscriptions.get(record["paywall_id"], subscription_id)
    except subscriptions.NotFound:
        sub = None
    if sub is None or not sub.is_active:
        _finish(record, number, "error", Attempt(None, 0, "subscription inactive", None), None)
        return Outcome(True)
    secret = subscriptions.signing_secret(sub.paywall_id, sub.id)
    body = body_of(record, number)
    result = post(
        sub.url,
        body,
        headers_of(record, body, secret, sub.custom_headers),
        allow_loopback=subscriptions.allow_local_receivers(),
    )
    if result.ok:
        _finish(record, number, "success", result, None)
        subscriptions.record_outcome(sub, True, now_iso())
        return Outcome(True, 0, "success")
    if result.terminal or number >= MAX_ATTEMPTS:
        _finish(record, number, "error", result, None)
        deactivated = subscriptions.record_outcome(sub, False, now_iso())
        if deactivated is not None:
            _announce_deactivation(deactivated)
        return Outcome(True, 0, "error")
    delay = retry_delay_s(number)
    _finish(record, number, "pending", result, int(time.time()) + delay)
    return Outcome(False, delay, "retry")


def _finish(record: dict[str, Any], number: int, status: str, result: Attempt, next_at: int | None) -> None:
    entry = {
        "attempt": number,
        "at": now_iso(),
        "statusCode": result.status_code,
        "durationMs": result.duration_ms,
        "error": result.error,
        "response": result.response,
    }
    values: dict[str, Any] = {
        ":status": S(status),
        ":entry": store.encode_value([{k: v for k, v in entry.items() if v is not None}]),
        ":now": S(entry["at"]),
        ":code": store.encode_value(result.status_code),
    }
    update = (
        "SET #status = :status, attempt_log = list_append(attempt_log, :entry), updated_at = :now,"
        " last_status_code = :code"
    )
    if next_at is not None:
        update += ", next_attempt_at = :next"
        values[":next"] = N(next_at)
    update += " REMOVE lease_until"
    store.with_retries(
        lambda: store.ddb().update_item(
            TableName=store.table_name(),
            Key=store.key(record["pk"], record["sk"]),
            UpdateExpression=update,
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues=values,
        )
    )


def _announce_deactivation(sub: subscriptions.Subscription) -> None:
    from paywalls.billing.paywall import get as get_paywall
    from paywalls.events import outbox

    outbox.emit(
        get_paywall(sub.paywall_id),
        "paywall.webhook.subscription.deactivated",
        {"subscriptionId": sub.id, "consecutiveFailures": sub.consecutive_failures, "url": sub.url},
    )


# ---- logs --------------------------------------------------------------------------------------------


def as_log(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": record["id"],
        "subscriptionId": record["subscription_id"],
        "eventId": record["event_id"],
        "eventType": record["event_type"],
        "status": record["status"],
        "attempts": int(record.get("attempts") or 0),
        "lastStatusCode": record.get("last_status_code"),
        "attemptLog": record.get("attempt_log") or [],
        "nextAttemptAt": record.get("next_attempt_at"),
        "createdAt": record["created_at"],
        "updatedAt": record.get("updated_at"),
        "event": json.loads(record["payload"]),
    }
