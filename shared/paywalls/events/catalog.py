"""The events an app can subscribe to (docs/webhooks.md lists them with their `data` fields).

Names follow Paywalls.ai's. Every event about an app user carries `externalUserId` (the app's own
user id) in `data`; `subject` is "user:<id>" for those, "paywall:<id>" or "subscription:<id>" else."""

from __future__ import annotations

from dataclasses import dataclass

VERSION = "1.0"


@dataclass(frozen=True)
class EventType:
    name: str
    fires: str
    data: tuple[str, ...]
    user: bool = True  # about an app user: carries externalUserId
    money: bool = False  # written in the money movement's own transaction


_MONEY = (
    "externalUserId",
    "environment",
    "amount",
    "amountFormatted",
    "balance",
    "balanceFormatted",
    "currency",
    "entryId",
)

CATALOG: dict[str, EventType] = {
    t.name: t
    for t in (
        EventType(
            "paywall.balance.deposit.created",
            "the Deposit API credited a user's wallet",
            (*_MONEY, "idempotencyKey", "metadata"),
            money=True,
        ),
        EventType(
            "paywall.balance.trial.granted", "a new user received the paywall's trial credits", _MONEY, money=True
        ),
        EventType(
            "paywall.balance.topup.link.created",
            "a top-up link was created for a user (GET /v1/user/balance/topup)",
            ("externalUserId", "environment", "url", "expiresAt"),
        ),
        EventType(
            "paywall.stripe.checkout.session.completed",
            "a Stripe Checkout top-up was paid and credited",
            (*_MONEY, "checkoutSessionId", "paymentIntentId"),
            money=True,
        ),
        EventType(
            "paywall.usage.charge.created",
            "a chat completion was charged",
            (*_MONEY, "model", "promptTokens", "completionTokens", "requestId"),
            money=True,
        ),
        EventType(
            "paywall.balance.charge.created",
            "a manual charge (POST /v1/user/charge) was posted",
            (*_MONEY, "idempotencyKey", "metadata"),
            money=True,
        ),
        EventType(
            "paywall.balance.depleted",
            "a charge took a user's balance from above zero to zero or below",
            (*_MONEY, "cause"),
            money=True,
        ),
        EventType(
            "paywall.balance.refund.created",
            "a refunded Stripe top-up was taken back from the wallet",
            (*_MONEY, "paymentIntentId", "refundId"),
            money=True,
        ),
        EventType(
            "paywall.balance.dispute.lost",
            "a lost Stripe dispute was taken back from the wallet",
            (*_MONEY, "paymentIntentId", "disputeId"),
            money=True,
        ),
        EventType(
            "paywall.request.blocked",
            "a chat request got the paywall reply instead of an answer (no funds, not authorized, limit)",
            ("externalUserId", "environment", "reason", "model"),
        ),
        EventType(
            "paywall.authorization.requested",
            "a shared-mode app asked a user to connect their wallet (GET /v1/user/connect)",
            ("externalUserId", "environment", "url"),
        ),
        EventType(
            "paywall.authorization.completed",
            "a person approved the connection (consent page)",
            ("externalUserId", "environment", "connectionId", "spendingCap"),
            money=True,
        ),
        EventType(
            "paywall.authorization.revoked",
            "a connection was revoked (the person, or the app via /v1/user/disconnect)",
            ("externalUserId", "environment", "connectionId"),
        ),
        EventType(
            "paywall.authorization.declined",
            "a person declined the connection on the consent page",
            ("externalUserId", "environment"),
        ),
        EventType("paywall.updated", "the paywall's settings changed (admin API)", ("fields",), user=False),
        EventType(
            "paywall.secret.rotated",
            "an API key of the paywall was issued or revoked",
            ("keyId", "environment", "action"),
            user=False,
        ),
        EventType(
            "paywall.integration.stripe.webhook.rotated",
            "the paywall's Stripe webhook signing secret was set or replaced",
            ("environment",),
            user=False,
        ),
        EventType(
            "paywall.webhook.subscription.deactivated",
            "a subscription was deactivated after consecutive failed deliveries",
            ("subscriptionId", "consecutiveFailures", "url"),
            user=False,
        ),
    )
}


def is_pattern(value: str) -> bool:
    """A subscription's `events` entry: "*", an event name, or a prefix wildcard ("paywall.balance.*")."""
    if value == "*":
        return True
    if value.endswith(".*"):
        prefix = value[:-1]
        return any(name.startswith(prefix) for name in CATALOG)
    return value in CATALOG


def wanted(patterns: tuple[str, ...] | list[str], event_type: str) -> bool:
    for pattern in patterns:
        if pattern == "*" or pattern == event_type:
            return True
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False
