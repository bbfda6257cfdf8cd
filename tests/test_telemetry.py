"""Observability: the template's alarms and dashboard watch metrics the code really emits (derived from
the `telemetry.emit(...)` calls, like test_template derives IAM grants from the code), the emitted
EMF lines have the declared names, units and dimensions (read from a running stack's log), and the
API's access logs, throttling and tracing are configured as README "Operate" describes."""

from __future__ import annotations

import ast
import copy
import json
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devserver.template import functions, load_template, resources_of_type
from paywalls.infra import telemetry
from tests.chat_support import fund, make_paywall, new_user
from tests.conftest import LocalStack, run_local_stack

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = load_template(ROOT / "template.yaml")
SOURCES = [*sorted((ROOT / "shared" / "paywalls").rglob("*.py")), *sorted((ROOT / "functions").glob("*/app.py"))]
AWS_NAMESPACES = ("AWS/Lambda", "AWS/ApiGateway")
SUBSTITUTES = {"AWS::Region": "us-east-1", "AWS::StackName": "paywalls", "AWS::Partition": "aws"}

Metric = tuple[str, frozenset[str]]  # (name, dimension names)


# ---- what the code emits --------------------------------------------------------------------------


def _literal_keys(node: ast.AST, where: str) -> list[str]:
    assert isinstance(node, ast.Dict), f"{where}: telemetry.emit takes dict literals (the template test reads them)"
    keys = []
    for key in node.keys:
        assert isinstance(key, ast.Constant) and isinstance(key.value, str), f"{where}: non-literal key"
        keys.append(key.value)
    return keys


def emitted_metrics(sources: list[Path] = SOURCES) -> set[Metric]:
    """Every (metric, dimension set) some `telemetry.emit(...)` call produces: each metric with
    {service}, and with {service} + the keys of `by=` when given."""
    found: set[Metric] = set()
    for path in sources:
        if path.name == "telemetry.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if not (node.func.attr == "emit" and isinstance(node.func.value, ast.Name)):
                continue
            if node.func.value.id != "telemetry":
                continue
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            names = _literal_keys(node.args[0], where)
            by = next((k.value for k in node.keywords if k.arg == "by"), None)
            dims = [frozenset({"service"})]
            if by is not None:
                dims.append(frozenset({"service", *_literal_keys(by, where)}))
            found |= {(name, d) for name in names for d in dims}
    return found


def string_constants(sources: list[Path] = SOURCES) -> set[str]:
    return {
        node.value
        for path in sources
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }


# ---- what the template watches --------------------------------------------------------------------


def _sub(text: str, template: dict[str, Any]) -> str:
    """A Fn::Sub string with pseudo parameters and resource references filled in (checked to exist)."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name in SUBSTITUTES:
            return SUBSTITUTES[name]
        resource, _, attribute = name.partition(".")
        assert resource in template["Resources"], f"${{{name}}} names no resource"
        return f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{resource}" if attribute == "Arn" else resource

    return re.sub(r"\$\{([^}!]+)\}", value, text)


def namespace(template: dict[str, Any]) -> str:
    value = template["Globals"]["Function"]["Environment"]["Variables"]["POWERTOOLS_METRICS_NAMESPACE"]
    return _sub(value["Fn::Sub"], template) if isinstance(value, dict) else value


def _resolve(value: Any, template: dict[str, Any]) -> Any:
    if isinstance(value, dict) and "Fn::Sub" in value:
        return _sub(value["Fn::Sub"], template)
    if isinstance(value, dict) and "Ref" in value:
        return SUBSTITUTES.get(value["Ref"], value["Ref"])
    return value


def alarms(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return resources_of_type(template, "AWS::CloudWatch::Alarm")


def alarm_metrics(template: dict[str, Any]) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(alarm, namespace, metric, {dimension: value}) for every metric an alarm reads."""
    found = []
    for name, alarm in alarms(template).items():
        props = alarm["Properties"]
        specs = (
            [props]
            if "MetricName" in props
            else [m["MetricStat"]["Metric"] for m in props["Metrics"] if "MetricStat" in m]
        )
        for spec in specs:
            dims = {d["Name"]: _resolve(d["Value"], template) for d in spec.get("Dimensions") or []}
            found.append((name, _resolve(spec["Namespace"], template), spec["MetricName"], dims))
    return found


def dashboard(template: dict[str, Any]) -> dict[str, Any]:
    [board] = resources_of_type(template, "AWS::CloudWatch::Dashboard").values()
    return json.loads(_sub(board["Properties"]["DashboardBody"]["Fn::Sub"], template))


_SEARCH = re.compile(r"""SEARCH\('\{(?P<schema>[^}]*)\}\s+MetricName="(?P<name>\w+)"'""")


def dashboard_metrics(template: dict[str, Any]) -> list[tuple[str, str, str, dict[str, Any]]]:
    """(widget title, namespace, metric, {dimension: value or None for SEARCH}) of every metric shown."""
    found = []
    for widget in dashboard(template)["widgets"]:
        props = widget["properties"]
        for row in props.get("metrics") or []:
            if len(row) == 1 and isinstance(row[0], dict):
                match = _SEARCH.search(row[0]["expression"])
                assert match, row
                space, *dims = [part.strip().strip('"') for part in match.group("schema").split(",")]
                found.append((props["title"], space, match.group("name"), dict.fromkeys(dims)))
                continue
            spec = [part for part in row if not isinstance(part, dict)]
            space, metric, *pairs = spec
            found.append((props["title"], space, metric, dict(zip(pairs[::2], pairs[1::2], strict=True))))
    return found


def problems(template: dict[str, Any], emitted: set[Metric], constants: set[str]) -> list[str]:
    """Where the template's alarms and dashboard disagree with the code and the resources."""
    issues: list[str] = []
    ours = namespace(template)
    service = template["Globals"]["Function"]["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]
    api = template["Resources"]["PaywallsApi"]["Properties"]
    uses = [("alarm " + a, *rest) for a, *rest in alarm_metrics(template)]
    uses += [("dashboard " + w, *rest) for w, *rest in dashboard_metrics(template)]
    for where, space, metric, dims in uses:
        if space == ours:
            if (metric, frozenset(dims)) not in emitted:
                issues.append(f"{where}: {metric} {sorted(dims)} is not emitted by the code")
            if dims.get("service") not in (None, service):
                issues.append(f"{where}: service={dims['service']} (functions use {service})")
            for dim, value in dims.items():
                if dim != "service" and value is not None and value not in constants:
                    issues.append(f"{where}: {dim}={value} is no value the code uses")
        elif space == "AWS/Lambda":
            if dims.get("FunctionName") not in functions(template):
                issues.append(f"{where}: FunctionName {dims.get('FunctionName')} is not a function of the stack")
        elif space == "AWS/SQS":
            queue = dims.get("QueueName")
            if not (isinstance(queue, dict) and queue.get("Fn::GetAtt", [None])[0] in template["Resources"]):
                issues.append(f"{where}: QueueName {queue} is not a queue of the stack")
        elif space == "AWS/ApiGateway":
            if dims != {"ApiName": _resolve(api["Name"], template), "Stage": api["StageName"]}:
                issues.append(f"{where}: {dims} is not this stack's API stage")
        else:
            issues.append(f"{where}: unexpected namespace {space}")
    shown = {metric for _, space, metric, _ in dashboard_metrics(template) if space == ours}
    issues += [f"dashboard does not show {m}" for m in sorted({m for m, _ in emitted} - shown)]
    listed = next(w["properties"]["alarms"] for w in dashboard(template)["widgets"] if w["type"] == "alarm")
    missing = sorted(set(alarms(template)) - {arn.rsplit(":", 1)[1] for arn in listed})
    issues += [f"dashboard's alarm widget lacks {a}" for a in missing]
    for function in functions(template):
        for metric in ("Errors", "Throttles"):
            if not any(
                s == "AWS/Lambda" and m == metric and d.get("FunctionName") == function
                for _, s, m, d in alarm_metrics(template)
            ):
                issues.append(f"no {metric} alarm for {function}")
    for name, alarm in alarms(template).items():
        if alarm["Properties"].get("AlarmActions") != [{"Ref": "AlarmTopic"}]:
            issues.append(f"{name} does not notify AlarmTopic")
    return issues


# ---- the checks -----------------------------------------------------------------------------------


def test_alarms_and_dashboard_watch_what_the_code_emits() -> None:
    issues = problems(TEMPLATE, emitted_metrics(), string_constants())
    assert not issues, "\n".join(issues)


def test_the_check_catches_drift() -> None:
    """Not vacuous: a renamed metric, a dimension the code never sets, a value it never uses, a
    metric no widget shows and a function without alarms are all reported."""
    emitted, constants = emitted_metrics(), string_constants()
    changed = copy.deepcopy(TEMPLATE)
    changed["Resources"]["SettlementFailuresAlarm"]["Properties"]["MetricName"] = "SettlementFailure"
    stripe = changed["Resources"]["StripeSignatureFailuresAlarm"]["Properties"]["Dimensions"]
    stripe[1]["Value"] = "bad_signature"
    overdue = changed["Resources"]["OverdueHoldsAlarm"]["Properties"]["Dimensions"]
    overdue.append({"Name": "paywall", "Value": "pw_x"})
    sweeper = changed["Resources"]["SweeperThrottlesAlarm"]["Properties"]["Dimensions"]
    sweeper[0]["Value"] = {"Ref": "ChatFunction"}
    issues = problems(changed, emitted | {("BrandNewMetric", frozenset({"service"}))}, constants)
    assert any("SettlementFailure ['service'] is not emitted" in i for i in issues), issues
    assert any("outcome=bad_signature" in i for i in issues), issues
    assert any("OverdueHolds ['paywall', 'service'] is not emitted" in i for i in issues), issues
    assert "dashboard does not show BrandNewMetric" in issues
    assert "no Throttles alarm for SweeperFunction" in issues
    # A dashboard reference to a resource that is gone fails loudly.
    del changed["Resources"]["SweeperThrottlesAlarm"]
    with pytest.raises(AssertionError, match="SweeperThrottlesAlarm.Arn. names no resource"):
        problems(changed, emitted, constants)


def test_every_declared_metric_is_emitted_and_nothing_else() -> None:
    names = {m for m, _ in emitted_metrics()}
    assert names == set(telemetry.METRICS)
    with pytest.raises(ValueError, match="undeclared"):
        telemetry.emit({"Requestz": 1})
    allowed_dims = {"outcome", "action", "limit", "paywall", "model", "provider"}
    assert {d for _, dims in emitted_metrics() for d in dims} == allowed_dims | {"service"}


def test_access_logs_throttling_and_tracing() -> None:
    api = TEMPLATE["Resources"]["PaywallsApi"]
    props = api["Properties"]
    assert api["DependsOn"] == "ApiGatewayAccount"
    assert props["TracingEnabled"] is True
    assert TEMPLATE["Globals"]["Function"]["Tracing"] == "Active"
    assert TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]["POWERTOOLS_TRACE_DISABLED"] == "false"
    access = props["AccessLogSetting"]
    assert access["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    group = TEMPLATE["Resources"]["ApiAccessLogGroup"]["Properties"]
    assert group["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    line = json.loads(re.sub(r"\$context\.[\w.]+", "x", access["Format"]))
    for key in ("requestId", "status", "responseLatency", "integrationLatency", "resourcePath", "xrayTraceId"):
        assert key in line, key
    assert not {"authorization", "headers", "body"} & {k.lower() for k in line}
    [setting] = props["MethodSettings"]
    assert setting["ResourcePath"] == "/*" and setting["HttpMethod"] == "*"
    assert setting["ThrottlingRateLimit"] == {"Ref": "ApiThrottlingRateLimit"}
    assert setting["ThrottlingBurstLimit"] == {"Ref": "ApiThrottlingBurstLimit"}
    throttled = props["GatewayResponses"]["THROTTLED"]
    assert throttled["ResponseParameters"]["Headers"]["Retry-After"] == "'1'"
    body = json.loads(throttled["ResponseTemplates"]["application/json"])
    assert body["error"]["code"] == "rate_limit_exceeded" and body["error"]["type"] == "rate_limit_error"
    account = TEMPLATE["Resources"]["ApiGatewayAccount"]
    assert account["Properties"]["CloudWatchRoleArn"] == {"Fn::GetAtt": ["ApiGatewayCloudWatchRole", "Arn"]}
    subscription = TEMPLATE["Resources"]["AlarmEmailSubscription"]
    assert subscription["Condition"] == "HasAlarmEmail" and subscription["Properties"]["Endpoint"] == {
        "Ref": "AlarmEmail"
    }
    assert TEMPLATE["Parameters"]["AlarmEmail"]["Default"] == ""


def test_overdue_holds_alarm_fires_when_the_sweeper_stops() -> None:
    props = TEMPLATE["Resources"]["OverdueHoldsAlarm"]["Properties"]
    assert props["TreatMissingData"] == "breaching"
    schedule = functions(TEMPLATE)["SweeperFunction"]["Properties"]["Events"]["EveryMinute"]["Properties"]
    assert schedule["Schedule"] == "rate(1 minute)" and props["Period"] >= 120


# ---- EMF lines of real requests -------------------------------------------------------------------

NAMESPACE = "Paywalls/emf-test"


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with run_local_stack({"POWERTOOLS_METRICS_NAMESPACE": NAMESPACE}) as running:
        yield running


def emf_lines(stack: LocalStack) -> list[dict[str, Any]]:
    lines = []
    for line in stack.log().splitlines():
        if line.startswith("{") and '"_aws"' in line:
            lines.append(json.loads(line))
    return lines


def chat(stack: LocalStack, key: str, body: dict[str, Any]) -> httpx.Response:
    response = httpx.post(
        f"{stack.url}/v1/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=60
    )
    response.read()
    return response


def test_emitted_lines_have_declared_names_units_and_dimensions(stack: LocalStack) -> None:
    paywall = make_paywall(stack)
    rich, poor = new_user("emf-rich"), new_user("emf-poor")
    fund(stack, paywall["id"], rich, "1")
    hello = [{"role": "user", "content": "hello metrics"}]
    assert chat(stack, paywall["key"], {"model": "demo/echo", "messages": hello, "user": rich}).status_code == 200
    streamed = {"model": "demo/echo", "messages": hello, "user": rich, "stream": True}
    assert chat(stack, paywall["key"], streamed).status_code == 200
    reply = chat(stack, paywall["key"], {"model": "demo/echo", "messages": hello, "user": poor})
    assert reply.headers["x-paywall-action"] == "topup"
    assert chat(stack, paywall["key"], {"model": "demo/fail-500", "messages": hello, "user": rich}).status_code == 502
    assert chat(stack, paywall["key"], {"model": "demo/reject", "messages": hello, "user": rich}).status_code == 400
    assert chat(stack, paywall["key"], {"model": "nope", "messages": hello, "user": rich}).status_code == 404
    webhook = httpx.post(
        f"{stack.url}/webhooks/stripe/{paywall['id']}",
        content=b"{}",
        headers={"Stripe-Signature": "t=1,v1=00"},
        timeout=30,
    )
    assert webhook.status_code == 400  # no signing secret verifies it
    deadline = time.monotonic() + 30
    while True:  # the streamed request's charge and latency are written after its last byte
        lines = emf_lines(stack)
        if sum(1 for line in lines if "Charges" in line) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.2)

    seen: dict[str, set[str]] = {}
    for line in lines:
        [directive] = line["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == NAMESPACE
        assert isinstance(line["_aws"]["Timestamp"], int)
        sets = [frozenset(d) for d in directive["Dimensions"]]
        assert sets[0] == {"service"} and line["service"] == "paywalls-local"
        for metric in directive["Metrics"]:
            name = metric["Name"]
            assert metric["Unit"] == telemetry.METRICS[name], name
            assert all(isinstance(v, float) for v in line[name]), line
            assert {(name, s) for s in sets} <= emitted_metrics(), (name, sets)
        for dims in sets:
            for dim in dims:
                value = line[dim]
                assert rich not in value and poor not in value, "a user id in a dimension"
                seen.setdefault(dim, set()).add(value)
    assert {"served", "paywall_reply", "provider_error", "provider_rejected", "client_error"} <= seen["outcome"]
    assert seen["action"] == {"topup"}
    assert paywall["id"] in seen["paywall"] and "demo/echo" in seen["model"]
    assert seen["provider"] == {"openai-compatible"}

    mine = [line for line in lines if line.get("paywall") == paywall["id"]]
    charges = httpx.get(
        f"{stack.url}/v1/user/ledger",
        params={"user": rich, "limit": 100},
        headers={"Authorization": f"Bearer {paywall['key']}"},
        timeout=30,
    ).json()["data"]
    charged = [e for e in charges if e["type"] == "charge"]
    assert sum(line["Charges"][0] for line in mine) == len(charged) == 2
    assert sum(line["RevenueMicros"][0] for line in mine) == -sum(int(e["amount"]) for e in charged)
    assert sum(line["PromptTokens"][0] for line in mine) == sum(e["prompt_tokens"] for e in charged)
    assert sum(line["CompletionTokens"][0] for line in mine) == sum(e["completion_tokens"] for e in charged)
    latencies = [line for line in lines if "ProviderLatency" in line and "provider" in line]
    assert len(latencies) >= 2 and any("ProviderTimeToFirstByte" in line for line in lines)
    webhooks = [line for line in lines if "StripeWebhookEvents" in line]
    assert [line["outcome"] for line in webhooks] == ["invalid_signature"]


def test_metrics_are_off_without_a_namespace(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("POWERTOOLS_METRICS_NAMESPACE", raising=False)
    telemetry.emit({"Requests": 1}, by={"outcome": "served"})
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "Paywalls/x")
    monkeypatch.setenv("POWERTOOLS_METRICS_DISABLED", "true")
    telemetry.emit({"Requests": 1}, by={"outcome": "served"})
    assert capsys.readouterr().out == ""
    monkeypatch.delenv("POWERTOOLS_METRICS_DISABLED")
    telemetry.emit({"Requests": 1}, by={"outcome": "served"})
    [line] = capsys.readouterr().out.splitlines()
    assert json.loads(line)["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["service"], ["service", "outcome"]]


# ---- the sweeper's health metrics -----------------------------------------------------------------


def test_sweeper_reports_released_and_overdue_holds(
    aws_mock: None, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A hold it releases counts in HoldsReleased; one it cannot release (its wallet item is gone)
    stays active past its expiry: OverdueHolds and its age, what OverdueHoldsAlarm watches."""
    from devserver.router import load_function_module
    from paywalls.billing import ledger
    from paywalls.infra import store
    from tests.test_events import LambdaContext

    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", NAMESPACE)
    ledger.credit("pw_a:live:ok", 100, idempotency_key="seed")
    ledger.hold("pw_a:live:ok", 10, hold_id="stale-ok", ttl_s=-30)
    ledger.credit("pw_a:live:gone", 100, idempotency_key="seed")
    ledger.hold("pw_a:live:gone", 10, hold_id="stale-stuck", ttl_s=-900)
    store.ddb().delete_item(TableName=store.table_name(), Key=store.key("WALLET#pw_a:live:gone", "WALLET"))
    sweeper = load_function_module("functions/sweeper", "SweeperFunction")
    capsys.readouterr()
    assert sweeper.handler({"detail-type": "Scheduled Event"}, LambdaContext()) == {"released": 1}
    [line] = [json.loads(x) for x in capsys.readouterr().out.splitlines() if '"_aws"' in x]
    assert line["HoldsReleased"] == [1.0] and line["OverdueHolds"] == [1.0]
    assert 900 <= line["OldestOverdueHoldAge"][0] < 1000
    units = {m["Name"]: m["Unit"] for m in line["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    assert units == {"HoldsReleased": "Count", "OverdueHolds": "Count", "OldestOverdueHoldAge": "Seconds"}


# ---- tracing --------------------------------------------------------------------------------------

TRACE_SCRIPT = r"""
import json, logging, os, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMPLETION = {"id": "c1", "object": "chat.completion", "created": 1, "model": "m",
              "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
              "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}

class Provider(BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers["content-length"]))
        data = json.dumps(COMPLETION).encode()
        self.send_response(200); self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data))); self.end_headers(); self.wfile.write(data)
    def log_message(self, *args): pass

server = ThreadingHTTPServer(("127.0.0.1", 0), Provider)
threading.Thread(target=server.serve_forever, daemon=True).start()

# The local engine, served from this process: DynamoDB and Secrets Manager on the http transport,
# as deployed (their subsegments are ours: aws.JsonClient).
from devserver.engine import make_engine
engine = make_engine()
threading.Thread(target=engine.serve_forever, daemon=True).start()
os.environ["AWS_ENDPOINT_URL"] = f"http://127.0.0.1:{engine.server_port}"
if True:
    import httpx, anyio
    from devserver.stack import create_tables
    from devserver.router import load_function_module
    from paywalls.billing import ledger
    from paywalls.infra import aws, secrets as secrets_store, stripe_gateway, telemetry
    from paywalls.billing import paywall as paywalls
    aws.reset_clients()
    create_tables()
    paywall = paywalls.create({"name": "Traced"})
    paywalls.set_pricing(paywall.id, {"models": {"m": {"prompt": "1", "completion": "1"}}})
    secrets_store.put_secret("paywalls/trace/paywall/x/provider", "provider-key")
    paywalls.set_provider(paywall.id, "openai-compatible", f"http://127.0.0.1:{server.server_port}/v1",
                          "paywalls/trace/paywall/x/provider")
    _, key = paywalls.issue_key(paywall.id, "live")
    ledger.credit(f"{paywall.id}:live:alice", 1_000_000, idempotency_key="seed")
    assert telemetry.tracer() is not None
    chat = load_function_module("functions/chat", "ChatFunction")

    async def call():
        transport = httpx.ASGITransport(app=chat.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://chat") as client:
            context = json.dumps({"request_id": "r1", "xray_trace_id": os.environ["TRACE"]})
            reply = await client.post("/v1/chat/completions", headers={
                "authorization": f"Bearer {key}", "x-amzn-lambda-context": context},
                json={"model": "m", "user": "alice", "messages": [{"role": "user", "content": "hi"}]})
            assert reply.status_code == 200, reply.text
    anyio.run(call)
    user_api = load_function_module("functions/user_api", "UserApiFunction")
    event = json.load(open("events/user_api-balance.json"))
    event.update(resource="/health", path="/health", queryStringParameters=None, multiValueQueryStringParameters=None)
    event["requestContext"].update(resourcePath="/health", path="/prod/health")

    class Context:
        function_name, memory_limit_in_mb, aws_request_id = "f", 512, "r2"
        invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:f"

    assert user_api.handler(event, Context())["statusCode"] == 200
    try:
        stripe_gateway.list_refunds("sk_test_x", "ch_1")
    except Exception:
        pass
    logging.getLogger("paywalls.trace").warning("done")
"""


def test_subsegments_reach_xray_and_the_trace_id_is_in_the_logs(tmp_path: Path) -> None:
    """With tracing on (in Lambda), a chat request sends X-Ray subsegments for DynamoDB, Secrets
    Manager (the http transport, as deployed) and the provider, a Stripe call its own, a buffered
    function's handler `## handler`, to the daemon address; the trace id of the invocation (from the
    adapter's Lambda context header) is on the log lines."""
    daemon = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    daemon.bind(("127.0.0.1", 0))
    daemon.settimeout(0.5)
    trace = f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Parent={uuid.uuid4().hex[:16]};Sampled=1"
    env = {
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": f"{ROOT / 'shared'}:{ROOT}",
        "AWS_LAMBDA_FUNCTION_NAME": "paywalls-ChatFunction",
        "LAMBDA_TASK_ROOT": str(tmp_path),
        "AWS_XRAY_DAEMON_ADDRESS": f"127.0.0.1:{daemon.getsockname()[1]}",
        "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
        "POWERTOOLS_SERVICE_NAME": "paywalls",
        "TRACE": trace,
        "TABLE_NAME": "PaywallsTable",
        "SECRET_PREFIX": "paywalls/trace",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "STRIPE_API_BASE": "http://127.0.0.1:9",
        "PAYWALLS_CACHE_TTL_S": "0",
    }
    proc = subprocess.run(
        [sys.executable, "-c", TRACE_SCRIPT], capture_output=True, text=True, env=env, timeout=180, cwd=ROOT
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    documents = []
    while True:
        try:
            packet, _ = daemon.recvfrom(65536)
        except TimeoutError:
            break
        header, _, body = packet.decode().partition("\n")
        assert json.loads(header) == {"format": "json", "version": 1}
        documents.append(json.loads(body))
    daemon.close()
    names = {d["name"] for d in documents}
    assert {"## provider", "dynamodb", "secretsmanager", "## stripe list_refunds", "## handler"} <= names, names
    root = trace.split(";")[0].removeprefix("Root=")
    assert {d["trace_id"] for d in documents} == {root}
    logged = [json.loads(line) for line in proc.stdout.splitlines() + proc.stderr.splitlines() if line.startswith("{")]
    done = [line for line in logged if line.get("message") == "done"]
    assert done and done[0]["xray_trace_id"] == root


def test_tracing_is_off_outside_lambda_and_costs_no_import() -> None:
    """Locally (make run, tests) and when disabled there is no Tracer, and importing every function's
    app never loads the X-Ray SDK (cold start: it costs 200-400 ms)."""
    script = (
        "import sys\n"
        "from devserver.router import load_function_module\n"
        "from devserver.template import functions, load_template\n"
        "for name, r in functions(load_template('template.yaml')).items():\n"
        "    load_function_module(r['Properties']['CodeUri'].rstrip('/'), name)\n"
        "from paywalls.infra import telemetry\n"
        "assert telemetry.tracer() is None\n"
        "assert not [m for m in sys.modules if m.startswith('aws_xray_sdk')], 'X-Ray SDK imported'\n"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{ROOT / 'shared'}:{ROOT}", "AWS_DEFAULT_REGION": "us-east-1"}
    for extra in ({}, {"AWS_LAMBDA_FUNCTION_NAME": "f", "POWERTOOLS_TRACE_DISABLED": "true"}):
        proc = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, env={**env, **extra}, cwd=ROOT, timeout=120
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
