"""DynamoDB Streams consumer: folds every new ledger entry into the analytics roll-ups
(paywalls.analytics.rollups), off the hot path.

The event source mapping's FilterCriteria lets only INSERTs of ledger entries through
(`WALLET#...`/`EARN#...` items whose sk starts with `ENTRY#`), so the function is not invoked for the
wallets, holds and counters the same transactions write. Each entry is counted once whatever the
delivery: a retried batch meets the entry's marker (rollups.fold). A record that fails is reported
(ReportBatchItemFailures): Lambda retries from it, and after the retries the batch's position goes to
the on-failure destination (an SQS queue) while the iterator-age alarm says the roll-ups lag."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord

from paywalls.analytics import rollups
from paywalls.infra import telemetry

logger = Logger()
processor = BatchProcessor(event_type=EventType.DynamoDBStreams)


def fold_record(record: DynamoDBRecord) -> bool:
    """One stream record: True when its entry was counted now, False when it adds nothing (not a
    ledger entry, or counted before). Raises when the store refused: the record is then retried."""
    item = rollups.stream_image(record.raw_event)
    fact = rollups.fact_of(item) if item else None
    return rollups.fold(fact) if fact else False


@telemetry.lambda_handler
@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return process_partial_response(event=event, record_handler=fold_record, processor=processor, context=context)
