"""The http transport of DynamoDB and Secrets Manager (infra/aws_json.py, aws.py): its signature is
botocore's, its errors have botocore's shape, its retries are botocore's "standard" mode, and on the
local engine it answers exactly what botocore answers."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path
from typing import Any
from unittest import mock

import anyio
import httpx
import pytest

from paywalls.infra import aws, aws_json, store
from paywalls.infra.aws_json import Credentials, JsonTransport, ServiceError, Signer
from paywalls.infra.config import settings

ROOT = Path(__file__).resolve().parent.parent
NOW = dt.datetime(2026, 11, 29, 15, 4, 5, tzinfo=dt.UTC)


def botocore_authorization(endpoint: str, target: str, body: bytes, credentials: Credentials, service: str) -> dict:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials as BotocoreCredentials

    request = AWSRequest(
        method="POST",
        url=endpoint,
        data=body,
        headers={"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": target},
    )
    signer = SigV4Auth(
        BotocoreCredentials(credentials.access_key, credentials.secret_key, credentials.token), service, "eu-west-1"
    )
    with mock.patch("botocore.auth.get_current_datetime", return_value=NOW.replace(tzinfo=None)):
        signer.add_auth(request)
    return dict(request.headers.items())


@pytest.mark.parametrize("token", [None, "FwoGZXIvYXdzEBYaDH//session+token="])
@pytest.mark.parametrize("endpoint", ["https://dynamodb.eu-west-1.amazonaws.com/", "http://127.0.0.1:4566/"])
def test_the_signature_is_botocores(token: str | None, endpoint: str) -> None:
    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    body = json.dumps({"TableName": "T", "Key": {"pk": {"S": "WALLET#ü"}, "sk": {"S": "WALLET"}}}).encode()
    target = "DynamoDB_20120810.GetItem"
    host = httpx.URL(endpoint).netloc.decode()
    ours = Signer(credentials, "eu-west-1", "dynamodb").headers(
        host, {"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": target}, body, NOW
    )
    theirs = botocore_authorization(endpoint, target, body, credentials, "dynamodb")
    assert ours["Authorization"] == theirs["Authorization"]
    assert ours["X-Amz-Date"] == theirs["X-Amz-Date"] == "20261129T150405Z"
    assert ours.get("X-Amz-Security-Token") == theirs.get("X-Amz-Security-Token") == token


def test_the_signing_key_is_derived_once_a_day() -> None:
    signer = Signer(Credentials("AKID", "secret"), "us-east-1", "dynamodb")
    with mock.patch.object(aws_json, "_hmac", wraps=aws_json._hmac) as derive:
        for minute in range(5):
            signer.headers("h", {}, b"{}", NOW + dt.timedelta(minutes=minute))
        assert derive.call_count == 4  # date, region, service, "aws4_request": once for the day
        signer.headers("h", {}, b"{}", NOW + dt.timedelta(days=1))
        assert derive.call_count == 8


# ---- errors and retries, with the network answered here ----------------------------------------


def answering(*answers: httpx.Response | Exception) -> tuple[JsonTransport, list[httpx.Request]]:
    seen: list[httpx.Request] = []
    queue = list(answers)

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        next_answer = queue.pop(0)
        if isinstance(next_answer, Exception):
            raise next_answer
        return next_answer

    transport = JsonTransport(
        "dynamodb",
        endpoint="https://dynamodb.us-east-1.amazonaws.com",
        region="us-east-1",
        credentials=Credentials("AKID", "secret", "token"),
        transport=httpx.MockTransport(answer),
        async_transport=httpx.MockTransport(answer),
        sleep=lambda _: None,
    )
    return transport, seen


def error(status: int, kind: str, message: str = "m", **fields: Any) -> httpx.Response:
    return httpx.Response(
        status, json={"__type": f"com.amazonaws.dynamodb.v20120810#{kind}", "message": message, **fields}
    )


def both_ways(transport: JsonTransport, operation: str, params: dict[str, Any]) -> list[Any]:
    """The call made blocking, then awaited; each result or raised error."""
    results: list[Any] = []
    for call in (lambda: transport.call(operation, params), lambda: anyio.run(transport.acall, operation, params)):
        try:
            results.append(call())
        except Exception as exc:
            results.append(exc)
    return results


def test_a_request_is_the_json_protocol() -> None:
    transport, seen = answering(httpx.Response(200, json={"Item": {"pk": {"S": "a"}}}))
    assert transport.call("GetItem", {"TableName": "T"}) == {"Item": {"pk": {"S": "a"}}}
    (request,) = seen
    assert request.method == "POST" and request.url.path == "/"
    assert request.headers["x-amz-target"] == "DynamoDB_20120810.GetItem"
    assert request.headers["content-type"] == "application/x-amz-json-1.0"
    assert request.headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKID/")
    assert request.headers["x-amz-security-token"] == "token"
    assert json.loads(request.content) == {"TableName": "T"}


def test_a_refusal_has_botocores_shape_and_is_not_retried() -> None:
    reasons = [{"Code": "ConditionalCheckFailed", "Item": {"available": {"N": "5"}}}, {"Code": "None"}]
    transport, seen = answering(
        *[error(400, "TransactionCanceledException", "cancelled", CancellationReasons=reasons) for _ in range(2)]
    )
    for result in both_ways(transport, "TransactWriteItems", {"TransactItems": []}):
        assert isinstance(result, ServiceError)
        assert result.aws_code == "TransactionCanceledException"
        assert result.response["Error"] == {"Code": "TransactionCanceledException", "Message": "cancelled"}
        assert result.response["CancellationReasons"] == reasons
        assert result.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert len(seen) == 2  # once each way: a failed condition is final


@pytest.mark.parametrize(
    "transient",
    [
        lambda: error(400, "ThrottlingException"),
        lambda: error(400, "ProvisionedThroughputExceededException"),
        lambda: httpx.Response(500, content=b"<html>oops</html>"),
        lambda: httpx.Response(503, json={"__type": "ServiceUnavailable", "Message": "down"}),
        lambda: httpx.ConnectError("refused"),
        lambda: httpx.ReadTimeout("slow"),
    ],
)
def test_transient_failures_are_retried_as_botocore_standard_mode_does(transient: Any) -> None:
    transport, seen = answering(*[transient() if i % 3 < 2 else httpx.Response(200, json={}) for i in range(6)])
    assert both_ways(transport, "PutItem", {}) == [{}, {}]
    assert len(seen) == 6
    # Signed again at each attempt (X-Amz-Date moves on), and the same body.
    assert len({r.content for r in seen}) == 1


def test_retries_stop_after_four_attempts() -> None:
    transport, seen = answering(*[error(400, "ThrottlingException", "Rate exceeded") for _ in range(8)])
    for result in both_ways(transport, "GetItem", {}):
        assert isinstance(result, ServiceError) and result.aws_code == "ThrottlingException"
    assert len(seen) == 2 * aws_json.MAX_ATTEMPTS == 8


def test_an_unreadable_error_body_still_names_its_status() -> None:
    transport, _ = answering(httpx.Response(403, content=b"not json"))
    with pytest.raises(ServiceError) as raised:
        transport.call("GetItem", {})
    assert raised.value.aws_code == "HTTP403"


# ---- which transport ----------------------------------------------------------------------------


def test_the_transport_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PAYWALLS_AWS_TRANSPORT")
    assert settings().aws_transport == "http"  # the tests' credentials are in the environment
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    assert settings().aws_transport == "botocore"  # a profile, SSO, an instance role: botocore's chain
    monkeypatch.setenv("PAYWALLS_AWS_TRANSPORT", "http")
    with pytest.raises(ValueError, match="needs AWS_ACCESS_KEY_ID"):
        settings()
    monkeypatch.setenv("PAYWALLS_AWS_TRANSPORT", "grpc")
    with pytest.raises(ValueError, match="http or botocore"):
        settings()


def test_credentials_never_show_in_the_settings_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "very-secret-key")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "very-secret-token")
    text = repr(settings())
    assert "very-secret" not in text


def test_endpoints_resolve_per_service(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PAYWALLS_AWS_TRANSPORT", "http")
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    aws.reset_clients()
    try:
        assert aws.client("dynamodb").endpoint_url == "https://dynamodb.eu-central-1.amazonaws.com"
        monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", "http://127.0.0.1:8")
        aws.reset_clients()
        assert aws.client("dynamodb").endpoint_url == "http://127.0.0.1:9"
        assert aws.client("secretsmanager").endpoint_url == "http://127.0.0.1:8"
        assert aws.client("dynamodb").kind == "http"
    finally:
        aws.reset_clients()


# ---- the same answers as botocore, on the local engine -------------------------------------------


def test_on_the_local_engine_both_transports_answer_alike(engine: str) -> None:
    """Writes, reads, a failed condition and a cancelled transaction (with the refusing item), each
    through the store on the http transport, then read back through botocore."""
    assert aws.client("dynamodb").kind == "http"
    store.put({"pk": "AWSJSON#1", "sk": "WALLET", "available": 5, "name": "ü €"})
    with pytest.raises(store.ConditionFailed):
        store.put({"pk": "AWSJSON#1", "sk": "WALLET", "available": 6}, condition="attribute_not_exists(pk)")
    hold = {
        "Update": {
            "TableName": store.table_name(),
            "Key": store.key("AWSJSON#1", "WALLET"),
            "UpdateExpression": "ADD available :neg",
            "ConditionExpression": "available >= :amount",
            "ExpressionAttributeValues": {":neg": store.N(-9), ":amount": store.N(9)},
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
    }
    with pytest.raises(store.TransactionCancelled) as cancelled:
        anyio.run(lambda: store.atransact([hold]))
    assert cancelled.value.codes == ["ConditionalCheckFailed"]
    assert cancelled.value.items[0] == {"pk": "AWSJSON#1", "sk": "WALLET", "available": 5, "name": "ü €"}
    ours = store.get("AWSJSON#1", "WALLET")
    assert anyio.run(lambda: store.aget("AWSJSON#1", "WALLET")) == ours
    botocore = aws.botocore_client("dynamodb")
    theirs = botocore.get_item(TableName=store.table_name(), Key=store.key("AWSJSON#1", "WALLET"), ConsistentRead=True)
    assert store.decode(theirs["Item"]) == ours == {"pk": "AWSJSON#1", "sk": "WALLET", "available": 5, "name": "ü €"}


# ---- cold start: the chat function never loads botocore -------------------------------------------


def test_the_chat_function_imports_without_botocore() -> None:
    """As deployed (credentials in the environment), nothing on the chat function's import path loads
    botocore: its import is about half of the function's cold start (DESIGN.md "Cold start"). Only
    its top package, which Powertools' package init imports to register a user-agent hook (~1 ms)."""
    probe = (
        "import sys\n"
        "import app\n"
        "from paywalls.infra import aws\n"
        "client = aws.client('dynamodb')\n"
        "print(client.kind, sorted(m for m in sys.modules if m.split('.')[0] in ('botocore', 'boto3')))\n"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": f"{ROOT / 'functions' / 'chat'}:{ROOT / 'shared'}",
        "AWS_ACCESS_KEY_ID": "AKID",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_SESSION_TOKEN": "token",
        "AWS_REGION": "us-east-1",
        "TABLE_NAME": "PaywallsTable",
        "AWS_LAMBDA_FUNCTION_NAME": "ChatFunction",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=ROOT, check=True)
    assert done.stdout.split("\n")[-2] == "http ['botocore']", done.stdout + done.stderr
