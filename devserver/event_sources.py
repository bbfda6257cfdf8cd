"""Run the event sources `template.yaml` declares (DynamoDB Streams and SQS) against the local engine,
as Lambda's event source mappings do in AWS, so the same handler code runs locally and deployed.

Every function with an `Events` entry of `Type: DynamoDB` (a table's stream) or `Type: SQS` is loaded
the way devserver/router.py loads the API functions (its `app.py`, its `Handler` attribute) and fed
through the real APIs of the engine: dynamodbstreams DescribeStream / GetShardIterator / GetRecords and
SQS ReceiveMessage / DeleteMessage. What the mapping does in AWS is kept:

- FilterCriteria: the subset of the EventBridge pattern syntax Lambda filters use (exact values,
  `prefix`, `suffix`, `exists`, `anything-but`, nested objects; filters OR-ed). A stream record that
  matches no filter is skipped; an SQS message that matches none is deleted (as Lambda does).
- BatchSize; StartingPosition (TRIM_HORIZON / LATEST).
- FunctionResponseTypes: [ReportBatchItemFailures]: a stream batch restarts at the lowest failed
  sequence number; an SQS batch deletes the successes and leaves the failures to reappear when their
  visibility ends (the queue's VisibilityTimeout, or what the handler set with
  ChangeMessageVisibility). Without it, any failure retries the whole batch.
- Streams: a batch whose handler raises is retried (MaximumRetryAttempts, unbounded when absent), then
  reported to the OnFailure SQS destination and skipped, as Lambda does.
- SQS: DelaySeconds, visibility timeouts and the RedrivePolicy's dead-letter queue are the engine's
  own (moto implements them), so nothing here fakes time.

`provision()` creates the template's queues (named by logical id, dead-letter queues first) and puts
every function environment variable that refers to a queue (`!Ref Q`, `!GetAtt Q.QueueUrl`,
`!GetAtt Q.Arn`, `!GetAtt Q.QueueName`) into os.environ, since all the local functions share one
process. `drain()` makes tests deterministic; `run_forever()` is what `make run` starts."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import botocore.session
from botocore.config import Config

from devserver.template import functions, load_template, resources_of_type

log = logging.getLogger("paywalls.event_sources")

QUEUE_TYPE = "AWS::SQS::Queue"
REGION = "us-east-1"
IN_FLIGHT_MARGIN_S = 1.0  # past a left message's visibility timeout, before the runner stops expecting it
# Queue attributes a template may set that CreateQueue takes as strings.
_QUEUE_ATTRIBUTES = (
    "DelaySeconds",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "VisibilityTimeout",
)


current: EventSources | None = None  # the running stack's (devserver/stack.py), for /_dev/events/drain


# ---- filter patterns ---------------------------------------------------------------------------------


def matches(pattern: Any, value: Any, present: bool = True) -> bool:
    """Does `value` (a record, or one of its fields) match an EventBridge-style pattern?

    A dict pattern needs every key to match the same key of `value`; a list pattern is a set of
    alternatives for a leaf value (any element of a list value may match)."""
    if isinstance(pattern, dict):
        if not isinstance(value, dict):
            return False
        return all(matches(sub, value.get(key), key in value) for key, sub in pattern.items())
    if isinstance(pattern, list):
        return any(_leaf_matches(rule, value, present) for rule in pattern)
    raise ValueError(f"filter pattern values must be objects or lists, not {pattern!r}")


def _leaf_matches(rule: Any, value: Any, present: bool) -> bool:
    if isinstance(rule, dict):
        if "exists" in rule:
            return bool(rule["exists"]) == (present and value is not None)
        if not present:
            return False
        values = value if isinstance(value, list) else [value]
        if "prefix" in rule:
            return any(isinstance(v, str) and v.startswith(rule["prefix"]) for v in values)
        if "suffix" in rule:
            return any(isinstance(v, str) and v.endswith(rule["suffix"]) for v in values)
        if "anything-but" in rule:
            excluded = rule["anything-but"]
            excluded = excluded if isinstance(excluded, list) else [excluded]
            return all(v not in excluded for v in values)
        raise ValueError(f"unsupported filter rule {rule!r}")
    if not present:
        return False
    values = value if isinstance(value, list) else [value]
    return rule in values


def passes(filters: list[dict[str, Any]], record: dict[str, Any]) -> bool:
    """FilterCriteria.Filters: no filters pass everything; otherwise any filter's pattern."""
    return not filters or any(matches(f, record) for f in filters)


# ---- template ------------------------------------------------------------------------------------------


@dataclass
class Source:
    function: str
    event: str
    kind: str  # "DynamoDB" or "SQS"
    resource: str  # table or queue logical id
    handler: Callable[[dict[str, Any], Any], Any]
    batch_size: int
    filters: list[dict[str, Any]]
    report_failures: bool
    starting_position: str = "TRIM_HORIZON"
    max_retries: int | None = None  # streams: None = until it succeeds (Lambda's -1)
    on_failure: str | None = None  # streams: the OnFailure queue's logical id
    # stream state: shard id -> (iterator or None, last processed sequence number or None)
    shards: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)  # first sequence number of a failing batch -> tries


def _logical_id(ref: Any) -> str:
    """`!GetAtt X.StreamArn` / `!GetAtt X.Arn` / `!Ref X` -> X."""
    if isinstance(ref, dict):
        if "Fn::GetAtt" in ref:
            return str(ref["Fn::GetAtt"][0])
        if "Ref" in ref:
            return str(ref["Ref"])
    raise ValueError(f"cannot resolve {ref!r} to a resource of the template")


def _filters(props: dict[str, Any]) -> list[dict[str, Any]]:
    criteria = props.get("FilterCriteria") or {}
    return [
        json.loads(f["Pattern"]) if isinstance(f["Pattern"], str) else f["Pattern"]
        for f in criteria.get("Filters") or []
    ]


class LambdaContext:
    """What a handler may read from Lambda's context object (Powertools reads these)."""

    def __init__(self, function: str, timeout_s: int, memory_mb: int):
        self.function_name = function
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{REGION}:000000000000:function:{function}"
        self.memory_limit_in_mb = memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function}"
        self.log_stream_name = "local"
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def _load_handler(code_uri: str, logical_id: str, handler: str) -> Callable[[dict[str, Any], Any], Any]:
    import sys

    from devserver.router import load_function_module

    module_file, _, attribute = handler.rpartition(".")
    if module_file != "app":
        raise ValueError(f"{logical_id}: only app.<handler> handlers run locally, not {handler!r}")
    module = sys.modules.get(f"fn_{logical_id}") or load_function_module(code_uri, logical_id)
    return getattr(module, attribute)  # type: ignore[no-any-return]


# ---- the runner ----------------------------------------------------------------------------------------


class EventSources:
    def __init__(
        self,
        template_path: str | Path,
        endpoint_url: str | None,
        *,
        only: set[str] | None = None,
        environ: MutableMapping[str, str] | None = None,
    ):
        """`endpoint_url` None uses botocore's default (in-process moto under mock_aws); `only` limits
        the runner to some functions (tests)."""
        self.template = load_template(template_path)
        self.environ = os.environ if environ is None else environ
        session = botocore.session.get_session()
        # Account-based endpoints (<account>.streams-ddb...) are not moto's: plain regional ones.
        config = Config(retries={"mode": "standard", "max_attempts": 3}, account_id_endpoint_mode="disabled")

        def make(service: str) -> Any:
            return session.create_client(service, region_name=REGION, endpoint_url=endpoint_url, config=config)

        self.dynamodb, self.streams, self.sqs = make("dynamodb"), make("dynamodbstreams"), make("sqs")
        self.queue_urls: dict[str, str] = {}
        self.lock = threading.Lock()  # run_forever and a drain() from a dev route never poll together
        self.sources: list[Source] = []
        self._timeouts: dict[str, tuple[int, int]] = {}
        self._stream_arns: dict[str, str] = {}
        # Messages a handler left in flight (crashed, or listed as failed): queue URL -> message id ->
        # when it is visible again (monotonic). SQS's counts are "approximate" (moto's too, at times
        # 0 for a message in flight): what the runner itself left keeps drain() polling until then.
        self._in_flight: dict[str, dict[str, float]] = {}
        globals_ = ((self.template.get("Globals") or {}).get("Function")) or {}
        for logical_id, resource in functions(self.template).items():
            if only is not None and logical_id not in only:
                continue
            props = resource.get("Properties") or {}
            for event_name, event in (props.get("Events") or {}).items():
                kind = event.get("Type")
                if kind not in ("DynamoDB", "SQS"):
                    continue
                ep = event.get("Properties") or {}
                destination = ((ep.get("DestinationConfig") or {}).get("OnFailure") or {}).get("Destination")
                retries = ep.get("MaximumRetryAttempts")
                self.sources.append(
                    Source(
                        function=logical_id,
                        event=event_name,
                        kind=kind,
                        resource=_logical_id(ep["Stream"] if kind == "DynamoDB" else ep["Queue"]),
                        handler=_load_handler(props["CodeUri"], logical_id, props.get("Handler", "app.handler")),
                        batch_size=int(ep.get("BatchSize") or (100 if kind == "DynamoDB" else 10)),
                        filters=_filters(ep),
                        report_failures="ReportBatchItemFailures" in (ep.get("FunctionResponseTypes") or []),
                        starting_position=str(ep.get("StartingPosition") or "TRIM_HORIZON"),
                        max_retries=None if retries in (None, -1) else int(retries),
                        on_failure=_logical_id(destination) if destination else None,
                    )
                )
                self._timeouts[logical_id] = (
                    int(props.get("Timeout") or globals_.get("Timeout") or 3),
                    int(props.get("MemorySize") or globals_.get("MemorySize") or 128),
                )

    # ---- setup ---------------------------------------------------------------------------------------

    def provision(self) -> dict[str, str]:
        """Create the template's queues and export the queue references the functions read."""
        queues = resources_of_type(self.template, QUEUE_TYPE)
        pending = dict(queues)
        while pending:
            progressed = False
            for logical_id, resource in list(pending.items()):
                props = resource.get("Properties") or {}
                redrive = props.get("RedrivePolicy")
                target = _logical_id(redrive["deadLetterTargetArn"]) if redrive else None
                if target is not None and target not in self.queue_urls:
                    continue
                attributes = {k: str(props[k]) for k in _QUEUE_ATTRIBUTES if k in props}
                if redrive:
                    attributes["RedrivePolicy"] = json.dumps(
                        {
                            "deadLetterTargetArn": self.queue_arn(target),
                            "maxReceiveCount": int(redrive["maxReceiveCount"]),
                        }
                    )
                self.queue_urls[logical_id] = self.sqs.create_queue(QueueName=logical_id, Attributes=attributes)[
                    "QueueUrl"
                ]
                del pending[logical_id]
                progressed = True
            if not progressed:
                raise ValueError(f"dead-letter queues not in the template: {sorted(pending)}")
        exported: dict[str, str] = {}
        globals_env = ((((self.template.get("Globals") or {}).get("Function")) or {}).get("Environment") or {}).get(
            "Variables"
        ) or {}
        for resource in functions(self.template).values():
            env = (((resource.get("Properties") or {}).get("Environment")) or {}).get("Variables") or {}
            for name, value in {**globals_env, **env}.items():
                resolved = self._queue_reference(value)
                if resolved is not None:
                    exported[name] = resolved
        self.environ.update(exported)
        if exported:
            from paywalls.infra.config import settings

            settings.cache_clear()  # read once per process: the queue URLs exist only from now on
        return exported

    def queue_arn(self, logical_id: str | None) -> str:
        return f"arn:aws:sqs:{REGION}:123456789012:{logical_id}"

    def _queue_reference(self, value: Any) -> str | None:
        if isinstance(value, dict) and "Ref" in value and value["Ref"] in self.queue_urls:
            return self.queue_urls[value["Ref"]]
        if isinstance(value, dict) and "Fn::GetAtt" in value:
            queue, attribute = value["Fn::GetAtt"]
            if queue in self.queue_urls:
                return {
                    "QueueUrl": self.queue_urls[queue],
                    "Arn": self.queue_arn(queue),
                    "QueueName": queue,
                }.get(attribute)
        return None

    # ---- polling -------------------------------------------------------------------------------------

    def poll_once(self) -> tuple[int, bool]:
        """One batch from every source: (records handed to handlers, whether anything is pending)."""
        with self.lock:
            delivered, pending = 0, False
            for source in self.sources:
                if source.kind == "DynamoDB":
                    n, more = self._poll_stream(source)
                else:
                    n, more = self._poll_queue(source)
                delivered += n
                pending = pending or more
            return delivered, pending

    def drain(self, timeout_s: float = 10) -> int:
        """Poll every source until nothing is pending (stream records unread, messages visible,
        in flight or delayed); returns the records delivered. Stops at `timeout_s` regardless."""
        deadline = time.monotonic() + timeout_s
        total = 0
        while True:
            delivered, pending = self.poll_once()
            total += delivered
            if not pending or time.monotonic() > deadline:
                return total
            if not delivered:
                time.sleep(0.05)  # waiting for a visibility timeout or a delay to end

    async def run_forever(self, interval_s: float = 0.5) -> None:
        while True:
            try:
                _, pending = await asyncio.to_thread(self.poll_once)
            except Exception:  # a failed poll must not stop local deliveries, as a mapping keeps polling
                log.exception("event source poll failed")
                pending = False
            if not pending:
                await asyncio.sleep(interval_s)
            else:
                await asyncio.sleep(0.05)

    # ---- DynamoDB Streams ------------------------------------------------------------------------------

    def _stream_arn(self, table: str) -> str | None:
        # Read once per table: every poll would otherwise add a DescribeTable to the serialized engine.
        if table not in self._stream_arns:
            description = self.dynamodb.describe_table(TableName=table)["Table"]
            arn = description.get("LatestStreamArn")
            if arn is None:
                return None
            self._stream_arns[table] = arn
        return self._stream_arns[table]

    def _poll_stream(self, source: Source) -> tuple[int, bool]:
        arn = self._stream_arn(source.resource)
        if arn is None:
            raise ValueError(f"{source.function}.{source.event}: table {source.resource} has no stream")
        delivered, pending = 0, False
        for shard in self.streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
            shard_id = shard["ShardId"]
            iterator, last = source.shards.get(shard_id, (None, None))
            if iterator is None:
                kind = "AFTER_SEQUENCE_NUMBER" if last else source.starting_position
                extra = {"SequenceNumber": last} if last else {}
                iterator = self.streams.get_shard_iterator(
                    StreamArn=arn, ShardId=shard_id, ShardIteratorType=kind, **extra
                )["ShardIterator"]
            page = self.streams.get_records(ShardIterator=iterator, Limit=source.batch_size)
            records = page["Records"]
            if not records:
                source.shards[shard_id] = (page.get("NextShardIterator"), last)
                continue
            pending = True  # read something: there may be more behind it
            batch = [
                {**_plain_record(r), "eventSourceARN": arn} for r in records if passes(source.filters, _plain_record(r))
            ]
            failed_at = self._invoke_stream(source, batch) if batch else None
            delivered += len(batch)
            if failed_at is None:
                source.shards[shard_id] = (page.get("NextShardIterator"), records[-1]["dynamodb"]["SequenceNumber"])
                continue
            # Restart at the failed record: everything before it is checkpointed.
            before = [
                r["dynamodb"]["SequenceNumber"]
                for r in records
                if int(r["dynamodb"]["SequenceNumber"]) < int(failed_at)
            ]
            checkpoint = before[-1] if before else last
            tries = source.attempts.get(failed_at, 0) + 1
            if source.max_retries is not None and tries > source.max_retries:
                self._send_to_on_failure(source, arn, shard_id, failed_at, records)
                source.attempts.pop(failed_at, None)
                checkpoint = records[-1]["dynamodb"]["SequenceNumber"]  # skip the batch, as Lambda does
            else:
                source.attempts[failed_at] = tries
            source.shards[shard_id] = (None, checkpoint)
            if checkpoint is None:  # nothing processed yet on this shard: restart at the failed record
                source.shards[shard_id] = (
                    self.streams.get_shard_iterator(
                        StreamArn=arn,
                        ShardId=shard_id,
                        ShardIteratorType="AT_SEQUENCE_NUMBER",
                        SequenceNumber=failed_at,
                    )["ShardIterator"],
                    None,
                )
        return delivered, pending

    def _invoke_stream(self, source: Source, batch: list[dict[str, Any]]) -> str | None:
        """Hand a batch to the handler; the sequence number to restart from, or None when done."""
        try:
            response = source.handler({"Records": batch}, self._context(source.function))
        except Exception:
            log.exception("%s failed on a stream batch; it will be retried", source.function)
            return str(batch[0]["dynamodb"]["SequenceNumber"])
        failures = _failures(response) if source.report_failures else []
        if failures is None:
            return str(batch[0]["dynamodb"]["SequenceNumber"])
        if not failures:
            return None
        return min(failures, key=int)

    def _send_to_on_failure(
        self, source: Source, arn: str, shard: str, first: str, records: list[dict[str, Any]]
    ) -> None:
        log.error("%s: stream batch from %s failed %s times; skipped", source.function, first, source.max_retries)
        if source.on_failure is None or source.on_failure not in self.queue_urls:
            return
        body = {
            "requestContext": {
                "functionArn": self._context(source.function).invoked_function_arn,
                "condition": "RetryAttemptsExhausted",
            },
            "DDBStreamBatchInfo": {
                "shardId": shard,
                "startSequenceNumber": first,
                "endSequenceNumber": records[-1]["dynamodb"]["SequenceNumber"],
                "batchSize": len(records),
                "streamArn": arn,
            },
        }
        self.sqs.send_message(QueueUrl=self.queue_urls[source.on_failure], MessageBody=json.dumps(body))

    # ---- SQS -------------------------------------------------------------------------------------------

    def _poll_queue(self, source: Source) -> tuple[int, bool]:
        url = self.queue_urls.get(source.resource)
        if url is None:
            url = self.queue_urls[source.resource] = self.sqs.get_queue_url(QueueName=source.resource)["QueueUrl"]
        arn = self.queue_arn(source.resource)
        messages = self.sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=min(source.batch_size, 10),
            AttributeNames=["All"],
            MessageAttributeNames=["All"],
            WaitTimeSeconds=0,
        ).get("Messages", [])
        in_flight = self._in_flight.setdefault(url, {})
        batch, skipped = [], []
        for message in messages:
            in_flight.pop(message["MessageId"], None)
            record = _sqs_record(message, arn)
            (batch if passes(source.filters, _filterable_sqs(record)) else skipped).append(record)
        done = list(skipped)
        if batch:
            try:
                response = source.handler({"Records": batch}, self._context(source.function))
            except Exception:
                log.exception(
                    "%s failed on a queue batch; its messages reappear after their visibility timeout", source.function
                )
                failed: set[str] | None = None
            else:
                listed = _failures(response) if source.report_failures else []
                failed = None if listed is None else set(listed)
            if failed is not None:
                done += [r for r in batch if r["messageId"] not in failed]
        for record in done:
            self.sqs.delete_message(QueueUrl=url, ReceiptHandle=record["receiptHandle"])
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
                "VisibilityTimeout",
            ],
        )["Attributes"]
        visible_again = time.monotonic() + int(attributes.pop("VisibilityTimeout", "30")) + IN_FLIGHT_MARGIN_S
        kept = {r["messageId"] for r in done}
        in_flight.update({r["messageId"]: visible_again for r in batch if r["messageId"] not in kept})
        now = time.monotonic()
        for message_id in [m for m, at in in_flight.items() if at <= now]:
            del in_flight[message_id]  # visible again by now: the counts (or the next receive) show it
        pending = any(int(v) for v in attributes.values()) or bool(in_flight)
        return len(batch), pending

    def _context(self, function: str) -> LambdaContext:
        timeout, memory = self._timeouts.get(function, (3, 128))
        return LambdaContext(function, timeout, memory)


def _failures(response: Any) -> list[str] | None:
    """The item identifiers a ReportBatchItemFailures response lists; None = the whole batch failed
    (a malformed response counts as a failure of every item, as in Lambda)."""
    if response is None:
        return []
    if not isinstance(response, dict):
        return None
    items = response.get("batchItemFailures")
    if items is None:
        return []
    if not isinstance(items, list):
        return None
    ids = [i.get("itemIdentifier") if isinstance(i, dict) else None for i in items]
    if any(not isinstance(i, str) or not i for i in ids):
        return None
    return ids  # type: ignore[return-value]


def _plain_record(record: dict[str, Any]) -> dict[str, Any]:
    """A GetRecords record as Lambda hands it over: JSON types only (the creation time as epoch seconds)."""
    dynamodb = dict(record["dynamodb"])
    created = dynamodb.get("ApproximateCreationDateTime")
    if created is not None and not isinstance(created, int | float):
        dynamodb["ApproximateCreationDateTime"] = int(created.timestamp())
    return {**{k: v for k, v in record.items() if k != "dynamodb"}, "dynamodb": dynamodb}


def _sqs_record(message: dict[str, Any], arn: str) -> dict[str, Any]:
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": message.get("Attributes", {}),
        "messageAttributes": message.get("MessageAttributes", {}),
        "md5OfBody": message.get("MD5OfBody"),
        "eventSource": "aws:sqs",
        "eventSourceARN": arn,
        "awsRegion": REGION,
    }


def _filterable_sqs(record: dict[str, Any]) -> dict[str, Any]:
    """Lambda filters an SQS message's body as JSON when it is JSON, else as a plain string."""
    try:
        body: Any = json.loads(record["body"])
    except ValueError:
        body = record["body"]
    return {**record, "body": body}
