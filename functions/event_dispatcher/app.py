"""DynamoDB Streams -> SQS: fans each outbox event (an `EVT#` item, events/outbox.py; the mapping's
FilterCriteria passes only those) out to the paywall's active subscriptions that want it.

Per (event, subscription) a delivery record is created once (a duplicate stream record meets its
condition) and a message naming it is queued. A record whose message may not have been sent (it
exists but no attempt was made yet) is queued again: a crash between the two steps loses nothing,
and the delivery function lets one copy deliver (events/delivery.py). A record that fails is
reported (ReportBatchItemFailures): Lambda retries from it, and after MaximumRetryAttempts it goes
to the dispatcher's dead-letter queue (alarm)."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools import Logger

from paywalls.events import delivery, subscriptions
from paywalls.events.catalog import wanted
from paywalls.infra import aws, telemetry
from paywalls.infra.config import settings

logger = Logger()


def _queue_url() -> str:
    return settings().event_queue_url


def dispatch(event: dict[str, Any], active: dict[str, list[subscriptions.Subscription]]) -> int:
    paywall_id = event["paywallId"]
    if paywall_id not in active:
        active[paywall_id] = subscriptions.list_subscriptions(paywall_id, "active")
    messages = []
    for sub in active[paywall_id]:
        if not wanted(sub.events, event["type"]):
            continue
        record, created = delivery.create_record(event, sub.id)
        if created or (record.get("status") == "pending" and not int(record.get("attempts") or 0)):
            messages.append(
                {"Id": sub.id[-40:], "MessageBody": json.dumps({"eventId": event["id"], "subscriptionId": sub.id})}
            )
    for start in range(0, len(messages), 10):
        response = aws.client("sqs").send_message_batch(QueueUrl=_queue_url(), Entries=messages[start : start + 10])
        if response.get("Failed"):
            raise RuntimeError(f"{len(response['Failed'])} delivery messages not queued")
    return len(messages)


@telemetry.lambda_handler
@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    failures: list[dict[str, str]] = []
    active: dict[str, list[subscriptions.Subscription]] = {}  # per batch: one read per paywall
    queued = 0
    for record in event.get("Records", []):
        sequence = record["dynamodb"]["SequenceNumber"]
        if failures:  # Lambda restarts at the first failure: later records come again anyway
            break
        try:
            image = record["dynamodb"].get("NewImage") or {}
            payload = image.get("payload", {}).get("S")
            if record.get("eventName") != "INSERT" or payload is None:
                continue
            queued += dispatch(json.loads(payload), active)
        except Exception:
            logger.exception("dispatch failed; retried from this record", extra={"sequence": sequence})
            failures.append({"itemIdentifier": sequence})
    telemetry.emit({"WebhookEventsQueued": queued})
    logger.info("dispatched", extra={"records": len(event.get("Records", [])), "queued": queued})
    return {"batchItemFailures": failures}
