"""SQS -> the apps' webhook URLs: one signed POST per message (events/delivery.py), partial batch
failures. A failed attempt that will be retried sets its message's visibility to the backoff delay
(exponential with jitter from 30 s) and reports the message as failed, so SQS hands it back then;
a success, a final answer (400/401/403/404/410/422) or the 8th attempt deletes it. A message whose
handling crashes reappears after the queue's visibility timeout; after maxReceiveCount receives it
lands in the dead-letter queue (alarm)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aws_lambda_powertools import Logger

from paywalls.events import delivery
from paywalls.infra import aws, telemetry
from paywalls.infra.config import settings

logger = Logger()
PARALLEL = 10  # one batch's deliveries at once: a slow receiver does not hold the others back


def _handle(record: dict[str, Any]) -> dict[str, str] | None:
    try:
        message = json.loads(record["body"])
        outcome = delivery.attempt(str(message["eventId"]), str(message["subscriptionId"]))
    except Exception:
        logger.exception("delivery failed; the message comes back after its visibility timeout")
        telemetry.emit({"WebhookDeliveries": 1}, by={"outcome": "crashed"})
        return {"itemIdentifier": record["messageId"]}
    telemetry.emit({"WebhookDeliveries": 1}, by={"outcome": outcome.result})
    if outcome.done:
        return None
    aws.client("sqs").change_message_visibility(
        QueueUrl=settings().event_queue_url,
        ReceiptHandle=record["receiptHandle"],
        VisibilityTimeout=max(0, min(outcome.retry_in_s, 43_200)),
    )
    return {"itemIdentifier": record["messageId"]}


@telemetry.lambda_handler
@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    records = event.get("Records", [])
    with ThreadPoolExecutor(max_workers=min(PARALLEL, max(1, len(records)))) as pool:
        results = list(pool.map(_handle, records))
    failures = [r for r in results if r is not None]
    logger.info("delivered", extra={"messages": len(records), "retrying": len(failures)})
    return {"batchItemFailures": failures}
