"""devserver/event_sources.py: the local runner of the template's DynamoDB Streams and SQS event
sources, over in-process moto (the same patched engine as `make run`), with a test template whose two
functions are tests/fixtures/event_sources/app.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from devserver.event_sources import EventSources, matches, passes
from paywalls.infra.aws import ServiceError

FIXTURE = "tests/fixtures/event_sources/"

TEMPLATE = f"""
Resources:
  InQueue:
    Type: AWS::SQS::Queue
    Properties:
      VisibilityTimeout: 1
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt InDLQ.Arn
        maxReceiveCount: 5
  InDLQ:
    Type: AWS::SQS::Queue
  StreamFailures:
    Type: AWS::SQS::Queue
  StreamFn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: {FIXTURE}
      Handler: app.handler
      Environment:
        Variables:
          OUT_QUEUE_URL: !Ref InQueue
          OUT_QUEUE_ARN: !GetAtt InQueue.Arn
      Events:
        Outbox:
          Type: DynamoDB
          Properties:
            Stream: !GetAtt PaywallsTable.StreamArn
            StartingPosition: TRIM_HORIZON
            BatchSize: 2
            MaximumRetryAttempts: 2
            DestinationConfig:
              OnFailure:
                Destination: !GetAtt StreamFailures.Arn
            FunctionResponseTypes: [ReportBatchItemFailures]
            FilterCriteria:
              Filters:
                - Pattern: >-
                    {{"eventName": ["INSERT"],
                      "dynamodb": {{"NewImage": {{"pk": {{"S": [{{"prefix": "EVT#"}}]}}}}}}}}
  QueueFn:
    Type: AWS::Serverless::Function
    Properties:
      CodeUri: {FIXTURE}
      Handler: app.handler
      Events:
        Deliveries:
          Type: SQS
          Properties:
            Queue: !GetAtt InQueue.Arn
            BatchSize: 10
            FunctionResponseTypes: [ReportBatchItemFailures]
            FilterCriteria:
              Filters:
                - Pattern: '{{"body": {{"kind": ["keep"]}}}}'
"""


@pytest.fixture
def sources(aws_mock: None, tmp_path: Path) -> EventSources:
    path = tmp_path / "template.yaml"
    path.write_text(TEMPLATE)
    environ: dict[str, str] = {}
    runner = EventSources(path, None, environ=environ)
    runner.provision()
    runner.environ_seen = environ  # type: ignore[attr-defined]
    for name in ("fn_StreamFn", "fn_QueueFn"):
        module = sys.modules[name]
        module.batches.clear()
        module.answer = lambda records: None
    return runner


def fn(name: str) -> Any:
    return sys.modules[f"fn_{name}"]


def ddb() -> Any:
    from paywalls.infra import aws

    return aws.client("dynamodb")


def put(pk: str, sk: str = "X") -> dict[str, Any]:
    return {"Put": {"TableName": "PaywallsTable", "Item": {"pk": {"S": pk}, "sk": {"S": sk}}}}


def stream_pks(runner: EventSources) -> list[list[str]]:
    return [[r["dynamodb"]["NewImage"]["pk"]["S"] for r in batch] for batch in fn("StreamFn").batches]


# ---- filter patterns ---------------------------------------------------------------------------------


def test_filter_patterns_exact_prefix_exists_anything_but() -> None:
    record = {"eventName": "INSERT", "dynamodb": {"NewImage": {"pk": {"S": "EVT#1"}, "n": {"N": "3"}}}}
    assert matches({"eventName": ["INSERT", "MODIFY"]}, record)
    assert not matches({"eventName": ["REMOVE"]}, record)
    assert matches({"dynamodb": {"NewImage": {"pk": {"S": [{"prefix": "EVT#"}]}}}}, record)
    assert not matches({"dynamodb": {"NewImage": {"pk": {"S": [{"prefix": "WALLET#"}]}}}}, record)
    assert matches({"dynamodb": {"NewImage": {"pk": {"S": [{"suffix": "#1"}]}}}}, record)
    assert matches({"dynamodb": {"OldImage": [{"exists": False}]}}, record)
    assert not matches({"dynamodb": {"OldImage": [{"exists": True}]}}, record)
    assert matches({"dynamodb": {"NewImage": {"n": [{"exists": True}]}}}, record)
    assert matches({"eventName": [{"anything-but": ["REMOVE"]}]}, record)
    assert not matches({"eventName": [{"anything-but": "INSERT"}]}, record)
    # a missing field matches only `exists: false`; a list value matches when any element does
    assert not matches({"missing": ["x"]}, record)
    assert matches({"tags": ["b"]}, {"tags": ["a", "b"]})
    # filters are OR-ed; no filter passes everything
    assert passes([{"eventName": ["REMOVE"]}, {"eventName": ["INSERT"]}], record)
    assert not passes([{"eventName": ["REMOVE"]}], record)
    assert passes([], record)


# ---- the engine streams what transactions write ---------------------------------------------------------


def test_transactions_stream_every_item_and_cancelled_ones_nothing(sources: EventSources) -> None:
    client = ddb()
    client.transact_write_items(TransactItems=[put("EVT#a"), put("WALLET#a")])
    with pytest.raises(ServiceError):  # a failed condition: nothing written, nothing streamed
        client.transact_write_items(
            TransactItems=[
                put("EVT#b"),
                {
                    **put("WALLET#a"),
                    "Put": {**put("WALLET#a")["Put"], "ConditionExpression": "attribute_not_exists(pk)"},
                },
            ]
        )
    with pytest.raises(ServiceError):  # fails half-way (an invalid update after a put): rolled back
        client.transact_write_items(
            TransactItems=[
                put("EVT#c"),
                {
                    "Update": {
                        "TableName": "PaywallsTable",
                        "Key": {"pk": {"S": "WALLET#a"}, "sk": {"S": "X"}},
                        "UpdateExpression": "ADD sk :one",
                        "ExpressionAttributeValues": {":one": {"N": "1"}},
                    }
                },
            ]
        )
    arn = client.describe_table(TableName="PaywallsTable")["Table"]["LatestStreamArn"]
    streams = sources.streams
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]["ShardId"]
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")[
        "ShardIterator"
    ]
    records = streams.get_records(ShardIterator=iterator)["Records"]
    assert [(r["eventName"], r["dynamodb"]["Keys"]["pk"]["S"]) for r in records] == [
        ("INSERT", "EVT#a"),
        ("INSERT", "WALLET#a"),
    ]
    assert records[0]["dynamodb"]["NewImage"] == {"pk": {"S": "EVT#a"}, "sk": {"S": "X"}}


# ---- streams ---------------------------------------------------------------------------------------------


def test_stream_filter_batch_size_and_partial_failure_retry(sources: EventSources) -> None:
    client = ddb()
    for i in range(5):
        client.transact_write_items(TransactItems=[put(f"EVT#{i}"), put(f"WALLET#{i}")])
    failed_once: set[str] = set()

    def answer(records: list[dict[str, Any]]) -> Any:
        for r in records:
            pk = r["dynamodb"]["NewImage"]["pk"]["S"]
            if pk == "EVT#1" and pk not in failed_once:
                failed_once.add(pk)
                return {"batchItemFailures": [{"itemIdentifier": r["dynamodb"]["SequenceNumber"]}]}
        return {"batchItemFailures": []}

    fn("StreamFn").answer = answer
    assert sources.drain() > 0
    delivered = stream_pks(sources)
    # never a WALLET# item (filtered), never more than BatchSize, EVT#1 again after its failure
    assert all(len(b) <= 2 and all(pk.startswith("EVT#") for pk in b) for b in delivered)
    flat = [pk for b in delivered for pk in b]
    assert flat.count("EVT#1") == 2
    assert sorted(set(flat)) == [f"EVT#{i}" for i in range(5)]
    assert flat.count("EVT#0") == 1  # checkpointed before the failed record: not redelivered
    assert all("table/PaywallsTable/stream/" in r["eventSourceARN"] for b in fn("StreamFn").batches for r in b)
    # caught up: nothing more is delivered
    fn("StreamFn").batches.clear()
    assert sources.drain() == 0 and fn("StreamFn").batches == []


def test_stream_batch_that_keeps_failing_goes_to_on_failure_destination(sources: EventSources) -> None:
    ddb().transact_write_items(TransactItems=[put("EVT#bad")])

    def boom(records: list[dict[str, Any]]) -> Any:
        raise RuntimeError("handler crashed")

    fn("StreamFn").answer = boom
    sources.drain()
    assert len(fn("StreamFn").batches) == 3  # the first try + MaximumRetryAttempts 2
    url = sources.queue_urls["StreamFailures"]
    messages = sources.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"]
    info = json.loads(messages[0]["Body"])["DDBStreamBatchInfo"]
    assert info["batchSize"] == 1 and info["streamArn"].startswith("arn:aws:dynamodb:")
    # later records are delivered again once the batch is skipped
    fn("StreamFn").answer = lambda records: None
    ddb().transact_write_items(TransactItems=[put("EVT#good")])
    sources.drain()
    assert stream_pks(sources)[-1] == ["EVT#good"]


# ---- SQS --------------------------------------------------------------------------------------------------


def test_provision_creates_queues_with_redrive_and_exports_references(sources: EventSources) -> None:
    env = sources.environ_seen  # type: ignore[attr-defined]
    assert env["OUT_QUEUE_URL"] == sources.queue_urls["InQueue"]
    assert env["OUT_QUEUE_ARN"].endswith(":InQueue")
    attributes = sources.sqs.get_queue_attributes(QueueUrl=env["OUT_QUEUE_URL"], AttributeNames=["All"])["Attributes"]
    assert json.loads(attributes["RedrivePolicy"]) == {
        "deadLetterTargetArn": sources.queue_arn("InDLQ"),
        "maxReceiveCount": 5,
    }
    assert attributes["VisibilityTimeout"] == "1"


def test_queue_filter_and_partial_batch_failure_redelivers_only_the_failed(sources: EventSources) -> None:
    url = sources.queue_urls["InQueue"]
    for i in range(3):
        sources.sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"kind": "keep", "n": i}))
    sources.sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"kind": "drop"}))
    sources.sqs.send_message(QueueUrl=url, MessageBody="not json", DelaySeconds=1)
    failed: set[int] = set()

    def answer(records: list[dict[str, Any]]) -> Any:
        out = []
        for r in records:
            n = json.loads(r["body"])["n"]
            if n == 1 and n not in failed:
                failed.add(n)
                out.append({"itemIdentifier": r["messageId"]})
        return {"batchItemFailures": out}

    fn("QueueFn").answer = answer
    sources.drain(timeout_s=60)
    bodies = [json.loads(r["body"])["n"] for batch in fn("QueueFn").batches for r in batch]
    assert sorted(bodies) == [0, 1, 1, 2]  # the failed one again (after its visibility timeout), once
    second = fn("QueueFn").batches[-1][0]
    assert second["attributes"]["ApproximateReceiveCount"] == "2" and second["eventSource"] == "aws:sqs"
    attributes = sources.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "0"  # filtered-out messages were deleted
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_queue_handler_exception_leaves_the_whole_batch(sources: EventSources) -> None:
    url = sources.queue_urls["InQueue"]
    sources.sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"kind": "keep", "n": 7}))
    calls = []

    def answer(records: list[dict[str, Any]]) -> Any:
        calls.append(len(records))
        if len(calls) == 1:
            raise RuntimeError("crash")
        return {"batchItemFailures": [{"bad": "shape"}]} if len(calls) == 2 else None

    fn("QueueFn").answer = answer
    sources.drain(timeout_s=60)
    assert calls == [1, 1, 1]  # a crash and a malformed answer both retry the message
