"""template.yaml: linters, the SAM transform's real output, and the structural rules of DESIGN.md.

Needs .venv/bin/cfn-lint (pip install -e '.[dev]') and the SAM CLI in .venv-sam (`make deps-dev`
installs both). Everything here runs offline.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from devserver.template import (
    api_route_details,
    api_routes,
    functions,
    load_template,
    table_definitions,
    ttl_attribute,
)
from tests.code_reach import CodeGraph

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
EVENTS = ROOT / "events"
SAM_VENV_BIN = ROOT / ".venv-sam" / "bin"
INSTALL_SAM = "install the SAM CLI with `make deps-dev` (Makefile target .venv-sam/bin/sam)"

# DESIGN.md "Functions and routes": logical id -> (CodeUri, Handler, {(METHOD, path)}).
EXPECTED_FUNCTIONS: dict[str, tuple[str, str, set[tuple[str, str]]]] = {
    "ChatFunction": (
        "functions/chat/",
        "run.sh",
        {
            ("POST", "/v1/chat/completions"),
            ("POST", "/v1/{user}/chat/completions"),
            ("POST", "/v1/responses"),
            ("POST", "/v1/{user}/responses"),
            ("POST", "/v1/embeddings"),
            ("POST", "/v1/{user}/embeddings"),
        },
    ),
    "UserApiFunction": (
        "functions/user_api/",
        "app.handler",
        {("GET", "/health"), ("GET", "/v1/models"), ("ANY", "/v1/user/{proxy+}"), ("ANY", "/v1/webhooks/{proxy+}")},
    ),
    "StripeWebhookFunction": (
        "functions/stripe_webhook/",
        "app.handler",
        {("POST", "/webhooks/stripe/{paywall_id}")},
    ),
    "WalletFunction": (
        "functions/wallet/",
        "app.handler",
        {("ANY", "/pay/{proxy+}"), ("ANY", "/wallet/{proxy+}"), ("GET", "/wallet"), ("GET", "/")},
    ),
    "AdminFunction": ("functions/admin/", "app.handler", {("ANY", "/admin/{proxy+}")}),
    "SweeperFunction": ("functions/sweeper/", "app.handler", set()),
    "EventDispatcherFunction": ("functions/event_dispatcher/", "app.handler", set()),
    "EventDeliveryFunction": ("functions/event_delivery/", "app.handler", set()),
    "AnalyticsFunction": ("functions/analytics/", "app.handler", set()),
}
# Table-stream consumers: SAM adds the managed stream-reading policy to their roles (the event source
# mapping reads the stream with the function's role), and each may send to its own OnFailure queue.
STREAM_CONSUMERS = {"AnalyticsFunction": "AnalyticsFailureQueue"}
STREAMING_FUNCTIONS = {"ChatFunction"}
# Every secret grant is inside this stack's prefix, and none is the whole prefix.
SECRET_PREFIX_ARN = (
    "arn:${AWS::Partition}:secretsmanager:${AWS::Region}:${AWS::AccountId}:secret:paywalls/${AWS::StackName}/"
)
TABLE_RESOURCES = [{"Fn::GetAtt": ["PaywallsTable", "Arn"]}, {"Fn::Sub": "${PaywallsTable.Arn}/index/*"}]


# ---- tools ----------------------------------------------------------------------------------------


def _tool(path: Path, how: str) -> str:
    if not path.exists():
        pytest.fail(f"{path} is missing: {how}", pytrace=False)
    return str(path)


def cfn_lint_bin() -> str:
    for candidate in (ROOT / ".venv" / "bin" / "cfn-lint", Path(sys.executable).parent / "cfn-lint"):
        if candidate.exists():
            return str(candidate)
    return _tool(ROOT / ".venv" / "bin" / "cfn-lint", "install the dev extras: .venv/bin/pip install -e '.[dev]'")


def sam_bin() -> str:
    return _tool(SAM_VENV_BIN / "sam", INSTALL_SAM)


def run(cmd: list[str], timeout: int = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": "us-east-1"}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        print(f"$ {' '.join(cmd)}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(TEMPLATE)


@pytest.fixture(scope="module")
def translated() -> dict[str, Any]:
    """What the SAM transform makes of template.yaml (the CloudFormation that really gets deployed)."""
    python = _tool(SAM_VENV_BIN / "python", INSTALL_SAM)
    proc = run([python, str(ROOT / "tests" / "sam_translate.py"), str(TEMPLATE)])
    assert proc.returncode == 0, "the SAM transform failed (output above)"
    return json.loads(proc.stdout)


def _api_paths(translated: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return translated["Resources"]["PaywallsApi"]["Properties"]["Body"]["paths"]


def _function_for_uri(uri: Any) -> str:
    text = json.dumps(uri)
    match = re.search(r"\$\{(\w+)\.Arn\}", text)
    assert match, f"no function in integration uri {text}"
    return match.group(1)


# ---- linters --------------------------------------------------------------------------------------


def test_cfn_lint_passes():
    proc = run([cfn_lint_bin(), str(TEMPLATE)])
    assert proc.returncode == 0, "cfn-lint found problems (output above)"


def test_sam_validate_lint_passes():
    proc = run([sam_bin(), "validate", "--lint", "--template", str(TEMPLATE)])
    assert proc.returncode == 0, "sam validate --lint failed (output above)"


def test_sam_validate_transform_passes():
    # Without --lint, `sam validate` runs the SAM transform itself (offline; a region name is enough).
    proc = run([sam_bin(), "validate", "--region", "us-east-1", "--template", str(TEMPLATE)])
    assert proc.returncode == 0, "sam validate (transform) failed (output above)"


def test_transformed_template_passes_cfn_lint(translated, tmp_path):
    out = tmp_path / "translated.json"
    out.write_text(json.dumps(translated))
    proc = run([cfn_lint_bin(), str(out)])
    assert proc.returncode == 0, "cfn-lint found problems in the transformed template (output above)"


# ---- functions, runtime, layers -------------------------------------------------------------------


def test_globals_runtime_and_environment(template):
    glob = template["Globals"]["Function"]
    assert glob["Runtime"] == "python3.13"
    assert glob["Architectures"] == ["arm64"]
    env = glob["Environment"]["Variables"]
    assert env["TABLE_NAME"] == {"Ref": "PaywallsTable"}
    assert env["SECRET_PREFIX"] == {"Fn::Sub": "paywalls/${AWS::StackName}"}
    assert env["ADMIN_AUTH"] == "iam"
    # Shared mode's settlement delay of earnings: a template parameter every function reads.
    assert env["EARNINGS_HOLD_DAYS"] == {"Ref": "EarningsHoldDays"}
    hold = template["Parameters"]["EarningsHoldDays"]
    assert (hold["Type"], hold["Default"], hold["MinValue"]) == ("Number", 7, 0)
    assert env["POWERTOOLS_SERVICE_NAME"]
    for logical_id, resource in functions(template).items():
        props = resource["Properties"]
        assert props.get("Runtime", "python3.13") == "python3.13", logical_id
        assert props.get("Architectures", ["arm64"]) == ["arm64"], logical_id
        # Dev-only switches must never be deployed.
        variables = (props.get("Environment") or {}).get("Variables") or {}
        assert not {"PAYWALLS_LOCAL_DEV", "ADMIN_TOKEN", "AWS_ENDPOINT_URL"} & set(variables), logical_id
    assert not {"PAYWALLS_LOCAL_DEV", "ADMIN_TOKEN", "AWS_ENDPOINT_URL"} & set(env)


def test_functions_match_design(template):
    found = functions(template)
    assert set(found) == set(EXPECTED_FUNCTIONS)
    routes_by_function: dict[str, set[tuple[str, str]]] = {name: set() for name in found}
    for method, path, function in api_routes(template):
        routes_by_function[function].add((method, path))
    for logical_id, (code_uri, handler, routes) in EXPECTED_FUNCTIONS.items():
        props = found[logical_id]["Properties"]
        assert props["CodeUri"] == code_uri, logical_id
        assert props["Handler"] == handler, logical_id
        assert routes_by_function[logical_id] == routes, logical_id
        assert found[logical_id].get("Metadata", {}).get("BuildMethod") == "makefile", logical_id
        assert props["Layers"][-2:] == [{"Ref": "DependenciesLayer"}, {"Ref": "SharedLayer"}], logical_id
        makefile = ROOT / code_uri / "Makefile"
        assert makefile.exists(), makefile
        assert re.search(rf"^build-{logical_id}:", makefile.read_text(), re.M), f"{makefile}: build-{logical_id}"
    sweeper_events = found["SweeperFunction"]["Properties"]["Events"]
    schedules = [e["Properties"]["Schedule"] for e in sweeper_events.values() if e["Type"] == "Schedule"]
    assert schedules == ["rate(1 minute)"]


def test_every_api_event_uses_the_regional_rest_api(template):
    api = template["Resources"]["PaywallsApi"]["Properties"]
    assert api["EndpointConfiguration"] == {"Type": "REGIONAL"}
    for logical_id, resource in functions(template).items():
        for name, event in (resource["Properties"].get("Events") or {}).items():
            assert event["Type"] in ("Api", "Schedule", "DynamoDB", "SQS"), f"{logical_id}.{name}"
            if event["Type"] == "DynamoDB":  # the table's own stream, nothing else
                assert event["Properties"]["Stream"] == {"Fn::GetAtt": ["PaywallsTable", "StreamArn"]}
                assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
                assert event["Properties"]["FilterCriteria"]["Filters"], f"{logical_id}.{name}: unfiltered"
            if event["Type"] == "SQS":
                assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
            if event["Type"] == "Api":
                assert event["Properties"]["RestApiId"] == {"Ref": "PaywallsApi"}, f"{logical_id}.{name}"


def test_layers(template):
    resources = template["Resources"]
    for logical_id, content_uri in (
        ("DependenciesLayer", "layers/dependencies/"),
        ("SharedLayer", "shared/"),
    ):
        layer = resources[logical_id]
        assert layer["Type"] == "AWS::Serverless::LayerVersion"
        assert layer["Metadata"]["BuildMethod"] == "makefile"
        assert layer["Properties"]["ContentUri"] == content_uri
        assert layer["Properties"]["CompatibleRuntimes"] == ["python3.13"]
        assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]
        makefile = ROOT / content_uri / "Makefile"
        assert re.search(rf"^build-{logical_id}:", makefile.read_text(), re.M), makefile
    deps_makefile = (ROOT / "layers" / "dependencies" / "Makefile").read_text()
    assert re.search(r"^PLATFORM \?= manylinux2014_aarch64$", deps_makefile, re.M), "arm64 wheels by default"
    for flag in (
        "--platform $(PLATFORM)",
        "--implementation cp",
        "--python-version 3.13",
        "--only-binary=:all:",
    ):
        assert flag in deps_makefile


def test_dependency_layer_pins_the_project_dependencies():
    """The layer pins exactly the runtime dependencies of pyproject.toml (boto3 comes with Lambda)."""
    pins: dict[str, str] = {}
    for requirements in ("requirements.txt", "requirements-nodeps.txt"):
        for line in (ROOT / "layers" / "dependencies" / requirements).read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                name, sep, version = line.partition("==")
                assert sep and version, f"not pinned exactly: {line!r}"
                pins[_norm(name)] = version
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = {_norm(re.split(r"[<>=!~\[; ]", dep, maxsplit=1)[0]) for dep in project["dependencies"]}
    assert set(pins) == wanted - {"boto3", "botocore"}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower().strip()


# ---- streaming chat (Lambda Web Adapter) ----------------------------------------------------------


def test_chat_function_runs_under_lambda_web_adapter(template):
    props = functions(template)["ChatFunction"]["Properties"]
    assert props["Handler"] == "run.sh"
    assert props["Layers"][0] == {
        "Fn::Sub": "arn:aws:lambda:${AWS::Region}:753240598075:layer:LambdaAdapterLayerArm64:26"
    }
    env = props["Environment"]["Variables"]
    assert env["AWS_LAMBDA_EXEC_WRAPPER"] == "/opt/bootstrap"
    assert env["AWS_LWA_INVOKE_MODE"] == "response_stream"
    assert env["PORT"] == "8080"
    assert env["AWS_LWA_READINESS_CHECK_PATH"] == "/health"
    assert 60 <= props["Timeout"] <= 900
    run_sh = ROOT / "functions" / "chat" / "run.sh"
    assert run_sh.read_text().startswith("#!/bin/bash\n")
    assert os.access(run_sh, os.X_OK), "functions/chat/run.sh must be executable"
    text = run_sh.read_text()
    assert "/opt/python" in text and "-m uvicorn" in text and "app:app" in text and "127.0.0.1" in text


def test_chat_routes_stream_and_only_they_do(template, translated):
    for route in api_route_details(template):
        assert route["streaming"] == (route["function"] in STREAMING_FUNCTIONS), route
    # What API Gateway really gets: STREAM transfer mode and the InvokeWithResponseStream URI.
    streamed = set()
    for path, methods in _api_paths(translated).items():
        for method, op in methods.items():
            integration = op["x-amazon-apigateway-integration"]
            function = _function_for_uri(integration["uri"])
            uri = json.dumps(integration["uri"])
            if function in STREAMING_FUNCTIONS:
                streamed.add((method, path))
                assert integration.get("responseTransferMode") == "STREAM", path
                assert "/2021-11-15/functions/" in uri and uri.endswith('/response-streaming-invocations"}'), uri
                assert integration.get("timeoutInMillis") == 900000, path
            else:
                assert "responseTransferMode" not in integration, path
                assert "/2015-03-31/functions/" in uri and "response-streaming" not in uri, uri
    assert streamed == {
        ("post", path)
        for path in (
            "/v1/chat/completions",
            "/v1/{user}/chat/completions",
            "/v1/responses",
            "/v1/{user}/responses",
            "/v1/embeddings",
            "/v1/{user}/embeddings",
        )
    }


# ---- routes and auth ------------------------------------------------------------------------------


def test_admin_routes_use_iam_and_others_do_not(template, translated):
    for route in api_route_details(template):
        if route["path"].startswith("/admin"):
            assert route["auth"] == "AWS_IAM", route
        else:
            assert route["auth"] is None, route
    for path, methods in _api_paths(translated).items():
        for op in methods.values():
            integration = op["x-amazon-apigateway-integration"]
            if path.startswith("/admin"):
                assert op.get("security") == [{"AWS_IAM": []}], path
                # No caller-credentials pass-through: API Gateway invokes with the resource policy.
                assert "credentials" not in integration, path
            else:
                assert "security" not in op, path


def test_no_dev_only_route_is_deployed(template):
    for method, path, _function in api_routes(template):
        lowered = path.lower()
        for forbidden in ("/_dev", "/_demo", "simulate"):
            assert forbidden not in lowered, (method, path)


# ---- least privilege ------------------------------------------------------------------------------


def _statements(resource: dict[str, Any]) -> list[dict[str, Any]]:
    statements = []
    for policy in resource["Properties"].get("Policies") or []:
        # Inline documents only: no managed policies, no SAM policy templates (they grant table "*" or
        # more than needed, e.g. DynamoDBCrudPolicy includes Scan and DeleteTable-adjacent actions).
        assert isinstance(policy, dict) and "Statement" in policy, f"not an inline policy: {policy}"
        statements.extend(policy["Statement"])
    return statements


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_policies_reference_only_the_table_and_the_secret_prefix(template):
    for logical_id, resource in functions(template).items():
        for statement in _statements(resource):
            assert statement["Effect"] == "Allow", logical_id
            actions = _as_list(statement["Action"])
            resources = _as_list(statement["Resource"])
            assert all("*" not in action for action in actions), (logical_id, actions)
            services = {action.split(":", 1)[0] for action in actions}
            assert len(services) == 1, (logical_id, actions)
            service = services.pop()
            if service == "dynamodb":
                assert resources == TABLE_RESOURCES, (logical_id, resources)
            elif service == "secretsmanager":
                for arn in resources:
                    if arn == {"Ref": "AppSecret"}:
                        continue
                    pattern = arn["Fn::Sub"]
                    assert pattern.startswith(SECRET_PREFIX_ARN), (logical_id, pattern)
                    assert pattern != SECRET_PREFIX_ARN + "*", f"{logical_id}: every secret of the stack"
            elif service == "ses":
                assert logical_id == "WalletFunction" and actions == ["ses:SendEmail"], logical_id
            elif service == "sqs":  # the pipelines' own queues, by exact ARN
                allowed = {
                    "EventDispatcherFunction": (
                        ["sqs:SendMessage"],
                        ["EventDeliveryQueue", "EventDispatchDeadLetterQueue"],
                    ),
                    "EventDeliveryFunction": (["sqs:ChangeMessageVisibility"], ["EventDeliveryQueue"]),
                    **{name: (["sqs:SendMessage"], [queue]) for name, queue in STREAM_CONSUMERS.items()},
                }[logical_id]
                assert actions == allowed[0], logical_id
                assert resources == [{"Fn::GetAtt": [q, "Arn"]} for q in allowed[1]], logical_id
            else:
                pytest.fail(f"{logical_id}: unexpected service {service}")
            assert "*" not in resources, (logical_id, resources)


def _actions(template: dict[str, Any], logical_id: str, service: str) -> set[str]:
    return {
        action
        for statement in _statements(functions(template)[logical_id])
        for action in _as_list(statement["Action"])
        if action.startswith(service + ":")
    }


def test_policy_actions_per_function(template):
    """Fixed rules; the exact sets come from the code (test_policies_match_the_code_each_function_runs)."""
    for logical_id in EXPECTED_FUNCTIONS:
        ddb = _actions(template, logical_id, "dynamodb")
        # The webhook dispatcher only creates delivery records: it never updates an item.
        needed = (
            {"dynamodb:GetItem"}
            if logical_id == "EventDispatcherFunction"
            else {"dynamodb:GetItem", "dynamodb:UpdateItem"}
        )
        assert needed <= ddb, logical_id
        assert "dynamodb:Scan" not in ddb and not any("Table" in a for a in ddb), logical_id
        assert "dynamodb:BatchWriteItem" not in ddb, logical_id
    assert "dynamodb:DeleteItem" not in _actions(template, "ChatFunction", "dynamodb")
    assert _actions(template, "SweeperFunction", "secretsmanager") == set()
    for logical_id in ("ChatFunction", "StripeWebhookFunction", "WalletFunction", "EventDeliveryFunction"):
        assert _actions(template, logical_id, "secretsmanager") == {"secretsmanager:GetSecretValue"}, logical_id
    # An app creates and rotates its webhook subscriptions' secrets (only those: the family check below).
    assert _actions(template, "UserApiFunction", "secretsmanager") == {
        "secretsmanager:GetSecretValue",
        "secretsmanager:CreateSecret",
        "secretsmanager:PutSecretValue",
    }
    assert _actions(template, "AdminFunction", "secretsmanager") == {
        "secretsmanager:GetSecretValue",
        "secretsmanager:CreateSecret",
        "secretsmanager:PutSecretValue",
    }


def test_transformed_roles_add_only_basic_logging_and_xray(translated):
    """Each function's role gets logging and X-Ray writes (Tracing: Active) beside its inline policy;
    the only other role is API Gateway's account-level CloudWatch role (access logs)."""
    basic = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
    xray = "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess"
    streams = "arn:aws:iam::aws:policy/service-role/AWSLambdaDynamoDBExecutionRole"
    roles = {k: v for k, v in translated["Resources"].items() if v["Type"] == "AWS::IAM::Role"}
    assert set(roles) == {f"{name}Role" for name in EXPECTED_FUNCTIONS} | {"ApiGatewayCloudWatchRole"}
    for name, role in roles.items():
        if name == "ApiGatewayCloudWatchRole":
            assert role["Properties"]["ManagedPolicyArns"] == [
                {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"}
            ]
            [statement] = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
            assert statement["Principal"] == {"Service": "apigateway.amazonaws.com"}
            continue
        # SAM adds its execution policy for an event source mapping (the stream's or the queue's reads).
        mapping = {
            "EventDispatcherFunctionRole": [streams],
            "EventDeliveryFunctionRole": ["arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole"],
            **{f"{consumer}Role": [streams] for consumer in STREAM_CONSUMERS},
        }.get(name, [])
        assert sorted(role["Properties"]["ManagedPolicyArns"]) == sorted([basic, xray, *mapping]), name


# ---- table, secret, outputs -----------------------------------------------------------------------


def test_table(template):
    table = template["Resources"]["PaywallsTable"]
    assert table["Type"] == "AWS::DynamoDB::Table"
    assert table["DeletionPolicy"] == "Retain" and table["UpdateReplacePolicy"] == "Retain"
    props = table["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at_ttl", "Enabled": True}
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert "TableName" not in props  # CloudFormation names it; functions read TABLE_NAME
    assert ttl_attribute(table) == "expires_at_ttl"
    [definition] = table_definitions(template)
    assert definition["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert {(a["AttributeName"], a["AttributeType"]) for a in definition["AttributeDefinitions"]} == {
        ("pk", "S"),
        ("sk", "S"),
        ("gsi1pk", "S"),
        ("gsi1sk", "S"),
    }
    [gsi] = definition["GlobalSecondaryIndexes"]
    assert gsi["IndexName"] == "gsi1"
    assert gsi["KeySchema"] == [
        {"AttributeName": "gsi1pk", "KeyType": "HASH"},
        {"AttributeName": "gsi1sk", "KeyType": "RANGE"},
    ]
    assert gsi["Projection"]["ProjectionType"] in ("KEYS_ONLY", "INCLUDE")


def test_app_secret(template):
    secret = template["Resources"]["AppSecret"]
    assert secret["Type"] == "AWS::SecretsManager::Secret"
    assert secret["Properties"]["Name"] == {"Fn::Sub": "paywalls/${AWS::StackName}/app"}
    generate = secret["Properties"]["GenerateSecretString"]
    assert json.loads(generate["SecretStringTemplate"]) == {}
    assert generate["GenerateStringKey"] == "link_signing_key"


def test_outputs(template):
    outputs = template["Outputs"]
    assert set(outputs) >= {"ApiUrl", "OpenAIBaseUrl", "WebhookUrl", "TableName", "AdminUrl"}
    api_url = outputs["ApiUrl"]["Value"]["Fn::Sub"]
    stage = template["Resources"]["PaywallsApi"]["Properties"]["StageName"]
    assert api_url == f"https://${{PaywallsApi}}.execute-api.${{AWS::Region}}.${{AWS::URLSuffix}}/{stage}"
    assert outputs["OpenAIBaseUrl"]["Value"]["Fn::Sub"] == api_url + "/v1"
    assert outputs["WebhookUrl"]["Value"]["Fn::Sub"] == api_url + "/webhooks/stripe/"
    assert outputs["AdminUrl"]["Value"]["Fn::Sub"] == api_url + "/admin"
    assert outputs["TableName"]["Value"] == {"Ref": "PaywallsTable"}


# ---- sample events --------------------------------------------------------------------------------


def _route_regex(path: str) -> re.Pattern[str]:
    pattern = re.sub(r"\\\{[^/]+?\\\+\\\}", ".+", re.escape(path))
    pattern = re.sub(r"\\\{[^/]+?\\\}", "[^/]+", pattern)
    return re.compile(f"^{pattern}$")


def test_every_function_has_sample_events(template):
    event_files = sorted(EVENTS.glob("*.json"))
    by_folder: dict[str, list[Path]] = {}
    for path in event_files:
        by_folder.setdefault(path.name.split("-", 1)[0], []).append(path)
    folder_of = {
        logical_id: Path(resource["Properties"]["CodeUri"]).name for logical_id, resource in functions(template).items()
    }
    for logical_id, folder in folder_of.items():
        assert by_folder.get(folder), f"{logical_id}: no events/{folder}-<case>.json"
    assert set(by_folder) <= set(folder_of.values()), f"events named after no function: {set(by_folder)}"


def test_api_events_match_the_routes_they_claim(template):
    details = api_route_details(template)
    folder_of = {
        logical_id: Path(resource["Properties"]["CodeUri"]).name for logical_id, resource in functions(template).items()
    }
    for path in sorted(EVENTS.glob("*.json")):
        event = json.loads(path.read_text())
        folder = path.name.split("-", 1)[0]
        if "httpMethod" not in event:
            sources = {r.get("eventSource") for r in event.get("Records") or [{}]}
            assert event.get("detail-type") == "Scheduled Event" or sources <= {"aws:dynamodb", "aws:sqs"}, path.name
            continue
        context = event["requestContext"]
        for key in ("resourcePath", "path", "httpMethod", "stage", "requestId", "identity", "apiId"):
            assert key in context, f"{path.name}: requestContext.{key}"
        for key in (
            "resource",
            "path",
            "isBase64Encoded",
            "pathParameters",
            "multiValueHeaders",
            "headers",
            "queryStringParameters",
            "multiValueQueryStringParameters",
            "body",
        ):
            assert key in event, f"{path.name}: {key}"
        assert event["resource"] == context["resourcePath"]
        assert context["path"] == f"/{context['stage']}{event['path']}"
        assert event["httpMethod"] == context["httpMethod"]
        matching = [
            r for r in details if r["path"] == event["resource"] and r["method"] in ("ANY", event["httpMethod"])
        ]
        assert matching, f"{path.name}: no route {event['httpMethod']} {event['resource']}"
        assert folder_of[matching[0]["function"]] == folder, path.name
        assert _route_regex(event["resource"]).match(event["path"]), path.name
        for name, values in event["multiValueHeaders"].items():
            assert event["headers"][name] == values[-1], f"{path.name}: header {name}"


def test_webhook_event_carries_a_stripe_checkout_session():
    event = json.loads((EVENTS / "stripe_webhook-checkout-completed.json").read_text())
    assert "Stripe-Signature" in event["headers"]
    body = json.loads(event["body"])
    assert body["object"] == "event" and body["type"] == "checkout.session.completed"
    session = body["data"]["object"]
    assert session["object"] == "checkout.session" and session["id"].startswith("cs_")
    assert session["payment_status"] == "paid" and session["mode"] == "payment"
    assert event["pathParameters"] == {"paywall_id": event["path"].rsplit("/", 1)[-1]}


# ---- devserver.template (the loader the local stack uses) -----------------------------------------


def test_loader_understands_cloudformation_tags(tmp_path):
    source = tmp_path / "t.yaml"
    source.write_text(
        """
Conditions:
  IsProd: !Equals [!Ref Stage, prod]
  NotProd: !Not [!Condition IsProd]
Resources:
  Thing:
    Type: AWS::Test::Thing
    Properties:
      A: !Ref Table
      B: !Sub "arn:${AWS::Partition}:x:${Table}"
      C: !Sub ["${X}-y", {X: !GetAtt Table.Arn}]
      D: !GetAtt Table.StreamSpecification.StreamArn
      E: !If [IsProd, !Join ["", [a, b]], !Select [0, !Split [",", "x,y"]]]
      F: !GetAtt [Table, Arn]
      G: !FindInMap [M, !Ref "AWS::Region", k]
      H: !Base64 hello
      I: !ImportValue other-export
      J: !GetAZs ""
"""
    )
    props = load_template(source)["Resources"]["Thing"]["Properties"]
    assert props["A"] == {"Ref": "Table"}
    assert props["B"] == {"Fn::Sub": "arn:${AWS::Partition}:x:${Table}"}
    assert props["C"] == {"Fn::Sub": ["${X}-y", {"X": {"Fn::GetAtt": ["Table", "Arn"]}}]}
    assert props["D"] == {"Fn::GetAtt": ["Table", "StreamSpecification.StreamArn"]}
    assert props["E"] == {
        "Fn::If": ["IsProd", {"Fn::Join": ["", ["a", "b"]]}, {"Fn::Select": [0, {"Fn::Split": [",", "x,y"]}]}]
    }
    assert props["F"] == {"Fn::GetAtt": ["Table", "Arn"]}
    assert props["G"] == {"Fn::FindInMap": ["M", {"Ref": "AWS::Region"}, "k"]}
    assert props["H"] == {"Fn::Base64": "hello"}
    assert props["I"] == {"Fn::ImportValue": "other-export"}
    assert props["J"] == {"Fn::GetAZs": ""}
    conditions = load_template(source)["Conditions"]
    assert conditions["NotProd"] == {"Fn::Not": [{"Condition": "IsProd"}]}


def test_loader_rejects_a_non_template(tmp_path):
    source = tmp_path / "t.yaml"
    source.write_text("just: a mapping\n")
    with pytest.raises(ValueError):
        load_template(source)


def test_api_routes_of_the_real_template(template):
    routes = api_routes(template)
    assert ("POST", "/v1/chat/completions", "ChatFunction") in routes
    assert ("ANY", "/admin/{proxy+}", "AdminFunction") in routes
    assert ("GET", "/health", "UserApiFunction") in routes
    assert len(routes) == len(set(routes)) == sum(len(r) for _, _, r in EXPECTED_FUNCTIONS.values())
    assert all(method == method.upper() for method, _, _ in routes)


def test_ttl_attribute_forms(template):
    table = template["Resources"]["PaywallsTable"]
    assert ttl_attribute(table) == "expires_at_ttl"
    assert ttl_attribute(table["Properties"]) == "expires_at_ttl"
    assert ttl_attribute("PaywallsTable", template) == "expires_at_ttl"
    assert ttl_attribute({"Type": "AWS::DynamoDB::Table", "Properties": {}}) is None
    disabled = {"TimeToLiveSpecification": {"AttributeName": "x", "Enabled": False}}
    assert ttl_attribute(disabled) is None


def test_table_definitions_create_real_tables(template):
    """The kwargs are what create_table accepts: create them in moto and use the TTL and the index."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        for definition in table_definitions(template):
            client.create_table(**definition)
            attribute = ttl_attribute(definition["TableName"], template)
            if attribute:
                client.update_time_to_live(
                    TableName=definition["TableName"],
                    TimeToLiveSpecification={"Enabled": True, "AttributeName": attribute},
                )
        described = client.describe_table(TableName="PaywallsTable")["Table"]
        assert described["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        assert [ix["IndexName"] for ix in described["GlobalSecondaryIndexes"]] == ["gsi1"]
        ttl = client.describe_time_to_live(TableName="PaywallsTable")["TimeToLiveDescription"]
        assert ttl == {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at_ttl"}
        client.put_item(
            TableName="PaywallsTable",
            Item={
                "pk": {"S": "HOLD#h1"},
                "sk": {"S": "HOLD"},
                "gsi1pk": {"S": "HOLDEXP#00"},
                "gsi1sk": {"S": "000000000100#h1"},
                "amount": {"N": "5"},
            },
        )
        items = client.query(
            TableName="PaywallsTable",
            IndexName="gsi1",
            KeyConditionExpression="gsi1pk = :p",
            ExpressionAttributeValues={":p": {"S": "HOLDEXP#00"}},
        )["Items"]
        assert [i["pk"]["S"] for i in items] == ["HOLD#h1"]


def test_samconfig_deploy_defaults():
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    assert config["default"]["global"]["parameters"]["stack_name"] == "paywalls"
    deploy = config["default"]["deploy"]["parameters"]
    assert deploy["capabilities"] == "CAPABILITY_IAM"
    assert deploy["resolve_s3"] is True
    assert deploy["confirm_changeset"] is True


# DynamoDB client methods / transaction item kinds -> the IAM action each needs.
_DDB_CALLS = {
    r"\.get_item\(": "dynamodb:GetItem",
    r"\.put_item\(": "dynamodb:PutItem",
    r"\.update_item\(": "dynamodb:UpdateItem",
    r"\.delete_item\(": "dynamodb:DeleteItem",
    r"\.query\(": "dynamodb:Query",
    r"\.scan\(": "dynamodb:Scan",
    r"\.batch_get_item\(": "dynamodb:BatchGetItem",
    r"\.batch_write_item\(": "dynamodb:BatchWriteItem",
    r"\.transact_get_items\(": "dynamodb:GetItem",
    # aws.JsonClient.call / acall (store.py) name the operation as DynamoDB does.
    r"\.a?call\(\s*[\"']GetItem[\"']": "dynamodb:GetItem",
    r"\.a?call\(\s*[\"']PutItem[\"']": "dynamodb:PutItem",
    r"\.a?call\(\s*[\"']UpdateItem[\"']": "dynamodb:UpdateItem",
    r"\.a?call\(\s*[\"']DeleteItem[\"']": "dynamodb:DeleteItem",
    r"\.a?call\(\s*[\"']Query[\"']": "dynamodb:Query",
    r"\.a?call\(\s*[\"']BatchGetItem[\"']": "dynamodb:BatchGetItem",
    r"[\"']Put[\"']\s*:": "dynamodb:PutItem",
    r"[\"']Update[\"']\s*:": "dynamodb:UpdateItem",
    r"[\"']Delete[\"']\s*:": "dynamodb:DeleteItem",
    r"[\"']ConditionCheck[\"']\s*:": "dynamodb:ConditionCheckItem",
}
_SECRET_CALLS = {
    r"\.get_secret_value\(|_provider\(\)\.get\(": "secretsmanager:GetSecretValue",  # or Powertools' provider
    r"\.put_secret_value\(": "secretsmanager:PutSecretValue",
    r"\.create_secret\(": "secretsmanager:CreateSecret",
    r"\.describe_secret\(": "secretsmanager:DescribeSecret",
}

# The secrets the code names, by family: the pattern of the code that builds (or reads) such a name,
# example names (under SECRET_PREFIX `paywalls/<stack>`), and whether the code reads them when they may
# not exist yet (it relies on ResourceNotFoundException, which IAM reaches only if the bare name, without
# the random suffix of a stored secret's ARN, is allowed too).
SECRET_FAMILIES: dict[str, tuple[str, list[str], bool]] = {
    "app": (r"secret_prefix\}/app[\"']", ["app"], False),
    "webhook": (
        r"/webhook/\{subscription_id\}",
        ["paywall/pw_0123456789abcdef/webhook/whsub_0123456789abcdef01234567"],
        False,
    ),
    "provider": (
        r"/provider[\"']|/providers/\{name\}|get_secret\b[^\n]*\bsecret_name\b",
        ["paywall/pw_0123456789abcdef/provider", "paywall/pw_0123456789abcdef/providers/backup"],
        False,
    ),
    "stripe": (
        r"/stripe/\{mode\}",
        ["paywall/pw_0123456789abcdef/stripe/live", "paywall/operator/stripe/test"],
        True,
    ),
}
READ_ONLY_FAMILIES = {"app"}
READ_ONLY = {"secretsmanager:GetSecretValue"}
_ARN_VALUES = {"AWS::Partition": "aws", "AWS::Region": "us-east-1", "AWS::AccountId": "123456789012"}
_STACK = "paywalls"
_SUFFIX = "-AbC123"  # what Secrets Manager appends to a secret's name in its ARN


def _secret_arn(name: str, *, stored: bool = True) -> str:
    return f"arn:aws:secretsmanager:us-east-1:123456789012:secret:paywalls/{_STACK}/{name}{_SUFFIX if stored else ''}"


def _arn_pattern(resource: Any) -> re.Pattern[str]:
    """A policy Resource (Fn::Sub or a Ref to the app secret) as a regex with IAM's wildcards."""
    if resource == {"Ref": "AppSecret"}:
        return re.compile(re.escape(_secret_arn("app")))
    text = resource["Fn::Sub"]
    for name, value in {**_ARN_VALUES, "AWS::StackName": _STACK}.items():
        text = text.replace("${" + name + "}", value)
    assert "${" not in text, text
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in text))


def _allows(template: dict[str, Any], logical_id: str, action: str, arn: str) -> bool:
    return any(
        action in _as_list(statement["Action"])
        and any(_arn_pattern(r).fullmatch(arn) for r in _as_list(statement["Resource"]))
        for statement in _statements(functions(template)[logical_id])
        if statement["Action"] and str(_as_list(statement["Action"])[0]).startswith("secretsmanager:")
    )


def _code_of(logical_id: str, template: dict[str, Any]) -> dict[tuple[str, str], str]:
    code_uri = functions(template)[logical_id]["Properties"]["CodeUri"]
    return CodeGraph().reachable_sources(ROOT / code_uri / "app.py")


def _matching(code: dict[tuple[str, str], str], pattern: str) -> list[str]:
    return sorted(f"{module}.{name}" for (module, name), text in code.items() if re.search(pattern, text))


def policy_problems(template: dict[str, Any]) -> list[str]:
    """Where a function's grants and the code it can run disagree: a DynamoDB action or a secret it
    uses but may not, or one it may but never uses."""
    problems = []
    for logical_id in functions(template):
        code = _code_of(logical_id, template)
        used = {action for pattern, action in _DDB_CALLS.items() if _matching(code, pattern)}
        granted = _actions(template, logical_id, "dynamodb")
        problems += [
            f"{logical_id} lacks {a} ({_matching(code, p)})" for p, a in _DDB_CALLS.items() if a in used - granted
        ]
        problems += [f"{logical_id} is granted {a} but never uses it" for a in sorted(granted - used)]

        secret_actions = {action for pattern, action in _SECRET_CALLS.items() if _matching(code, pattern)}
        granted = _actions(template, logical_id, "secretsmanager")
        problems += [f"{logical_id} lacks {a}" for a in sorted(secret_actions - granted)]
        problems += [f"{logical_id} is granted {a} but never uses it" for a in sorted(granted - secret_actions)]
        for family, (pattern, names, may_be_missing) in SECRET_FAMILIES.items():
            where = _matching(code, pattern)
            for name in names:
                arn = _secret_arn(name)
                # The app secret is created by the template and only ever read by the functions.
                actions = sorted(secret_actions & READ_ONLY if family in READ_ONLY_FAMILIES else secret_actions)
                if family == "webhook" and not _matching(code, r"\bsigning_secret\("):
                    # Subscriptions' secrets are read only to sign a delivery: writing them is not reading.
                    actions = [a for a in actions if a != "secretsmanager:GetSecretValue"]
                for action in actions:
                    allowed = _allows(template, logical_id, action, arn)
                    if where and not allowed:
                        problems.append(f"{logical_id} may not {action} {name} ({family}: {where})")
                    if not where and allowed:
                        problems.append(f"{logical_id} may {action} {name} but its code never names {family}")
                bare = _secret_arn(name, stored=False)
                if (
                    where
                    and may_be_missing
                    and not _allows(template, logical_id, "secretsmanager:GetSecretValue", bare)
                ):
                    problems.append(f"{logical_id}: a missing {name} would be AccessDenied, not ResourceNotFound")
    return problems


def test_policies_match_the_code_each_function_runs(template):
    """A static guard (moto does not enforce IAM): from each function's app.py, the code it can run
    (tests/code_reach.py) decides exactly which DynamoDB actions and which secrets it is granted:
    nothing it uses is missing, nothing it never uses is granted."""
    problems = policy_problems(template)
    assert not problems, "\n".join(problems)


def _with_statement(template: dict[str, Any], logical_id: str, sid: str, **changes: Any) -> dict[str, Any]:
    import copy

    changed = copy.deepcopy(template)
    [statement] = [s for s in _statements(functions(changed)[logical_id]) if s.get("Sid") == sid]
    statement.update(changes)
    return changed


def test_policy_check_catches_grants_that_disagree_with_the_code(template):
    """The check above is not vacuous: a grant of every secret of the stack, a secret pattern that
    misses what the code reads, and DynamoDB actions granted or missing are all reported."""
    everything = {"Fn::Sub": SECRET_PREFIX_ARN + "*"}
    problems = policy_problems(_with_statement(template, "ChatFunction", "ReadSecrets", Resource=everything))
    assert any(
        p.startswith("ChatFunction may secretsmanager:GetSecretValue paywall/operator/stripe/") for p in problems
    )

    suffixed = [{"Fn::Sub": SECRET_PREFIX_ARN + "paywall/*/stripe/*-??????"}]
    problems = policy_problems(_with_statement(template, "StripeWebhookFunction", "ReadSecrets", Resource=suffixed))
    assert any(p.startswith("StripeWebhookFunction: a missing paywall/") for p in problems), problems

    app_only = [{"Ref": "AppSecret"}]
    problems = policy_problems(_with_statement(template, "StripeWebhookFunction", "ReadSecrets", Resource=app_only))
    assert any(p.startswith("StripeWebhookFunction may not secretsmanager:GetSecretValue paywall/") for p in problems)

    chat_actions = sorted(_actions(template, "ChatFunction", "dynamodb") | {"dynamodb:DeleteItem"})
    problems = policy_problems(_with_statement(template, "ChatFunction", "PaywallsTable", Action=chat_actions))
    assert "ChatFunction is granted dynamodb:DeleteItem but never uses it" in problems
    webhook_actions = sorted(_actions(template, "StripeWebhookFunction", "dynamodb") - {"dynamodb:Query"})
    problems = policy_problems(
        _with_statement(template, "StripeWebhookFunction", "PaywallsTable", Action=webhook_actions)
    )
    assert any(p.startswith("StripeWebhookFunction lacks dynamodb:Query") for p in problems)
