"""`sam local invoke` (README "sam local invoke"): events/sam-local/env.json points every function at
the `make run` engine, and every sample event, made ready by `make sam-events`, runs through its
function's handler with exactly the environment SAM CLI would give the container (computed by SAM
CLI's own code, tests/sam_env.py). Docker is not available here: the one thing not exercised is the
container reaching the host, so host.docker.internal is replaced by the engine's local address."""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from devserver.template import functions, load_template
from tests.conftest import run_local_stack

ROOT = Path(__file__).resolve().parent.parent
ENV_FILE = ROOT / "events" / "sam-local" / "env.json"
SAM_PYTHON = ROOT / ".venv-sam" / "bin" / "python"
TEMPLATE = load_template(ROOT / "template.yaml")
ENGINE_PORT = 4566  # README: PAYWALLS_ENGINE_PORT=4566 make run


def sam_environments() -> dict[str, dict[str, Any]]:
    if not SAM_PYTHON.exists():
        pytest.fail(f"{SAM_PYTHON} is missing: install the SAM CLI with `make deps-dev`", pytrace=False)
    proc = subprocess.run(
        [str(SAM_PYTHON), str(ROOT / "tests" / "sam_env.py"), str(ROOT / "template.yaml"), str(ENV_FILE)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def sam_env() -> dict[str, dict[str, Any]]:
    return sam_environments()


def test_env_file_sets_only_variables_the_template_declares(sam_env: dict[str, dict[str, Any]]) -> None:
    """SAM CLI silently ignores a variable the template does not declare: every name must land."""
    assert set(sam_env) == set(functions(TEMPLATE))
    for logical_id, info in sam_env.items():
        assert info["ignored"] == [], f"{logical_id}: SAM would ignore {info['ignored']}"
        env = info["environment"]
        assert env["AWS_SAM_LOCAL"] == "true"
        assert env["PAYWALLS_LOCAL_ENDPOINT_URL"] == f"http://host.docker.internal:{ENGINE_PORT}"
        # The names `make run` uses for its table and secrets (devserver.stack.configure_environment).
        assert env["TABLE_NAME"] == "PaywallsTable" and env["SECRET_PREFIX"] == "paywalls/local"
        assert env["POWERTOOLS_TRACE_DISABLED"] == "true" and env["POWERTOOLS_METRICS_NAMESPACE"] == ""
    # Deployed, the variable is empty and, outside SAM CLI's container, ignored anyway.
    glob = TEMPLATE["Globals"]["Function"]["Environment"]["Variables"]
    assert glob["PAYWALLS_LOCAL_ENDPOINT_URL"] == ""


def test_the_endpoint_is_only_honoured_inside_sam_local() -> None:
    script = (
        "from paywalls.infra.config import settings\n"
        "from paywalls.infra import aws\n"
        "print(settings().sam_local_endpoint, aws.client('dynamodb').endpoint_url)\n"
    )
    base = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": f"{ROOT / 'shared'}",
        "AWS_DEFAULT_REGION": "us-east-1",
        "PAYWALLS_LOCAL_ENDPOINT_URL": "http://host.docker.internal:4566",
    }
    outside = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=base, check=True)
    assert outside.stdout.split() == ["None", "https://dynamodb.us-east-1.amazonaws.com"]
    inside = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env={**base, "AWS_SAM_LOCAL": "true"},
        check=True,
    )
    assert inside.stdout.split() == ["http://host.docker.internal:4566"] * 2


def run_events(
    environment: dict[str, str], function_dir: Path, handler: str, events: list[Path], python: str, pythonpath: str
) -> dict[str, Any]:
    env = {**environment, "PATH": os.environ["PATH"], "PYTHONPATH": pythonpath, "PYTHONNOUSERSITE": "1"}
    proc = subprocess.run(
        [python, str(ROOT / "tests" / "lambda_runner.py"), str(function_dir), handler, *map(str, events)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=function_dir,
    )
    assert proc.returncode == 0, f"{function_dir.name}: {proc.stderr[-4000:]}"
    results = {}
    for line in proc.stdout.splitlines():
        if line.startswith('{"event"'):
            parsed = json.loads(line)
            results[parsed["event"]] = parsed["result"]
    return results


def body_of(result: dict[str, Any]) -> str:
    raw = result.get("body") or ""
    return base64.b64decode(raw).decode() if result.get("isBase64Encoded") else raw


def check_results(results: dict[str, Any], stack_url: str, local: dict[str, Any]) -> None:
    """What each sample does against the `make run` stack it was prepared for."""
    assert set(results) == {p.name for p in (ROOT / "events").glob("*.json")}
    for name, result in results.items():
        if name.startswith("sweeper-"):
            assert set(result) == {"released"}, result
            continue
        if name.startswith(("event_dispatcher-", "event_delivery-", "analytics-")):
            # Stream and queue consumers answer with the records to retry: none.
            assert result == {"batchItemFailures": []}, (name, result)
            continue
        headers = {k.lower(): v for k, v in (result.get("headers") or {}).items()}
        assert result["statusCode"] == 200, (name, result["statusCode"], body_of(result)[:500])
        text = body_of(result)
        if name.startswith("chat-"):
            assert headers.get("x-paywall-action") == "topup" and "/pay/" in text, name
        elif name.startswith("admin-"):
            assert json.loads(text)["id"] == local["paywall_id"]
        elif name.startswith("user_api-"):
            assert json.loads(text)["currency"] == "usd"
        elif name.startswith("wallet-"):
            assert "Demo app" in text
        elif name.startswith("stripe_webhook-"):
            assert json.loads(text)["result"] == "credited", text
    # The webhook's deposit landed in the make run engine: the stack itself sees it.
    [stripe] = [p for p in (ROOT / "events").glob("stripe_webhook-*.json")]
    session = json.loads(json.loads(stripe.read_text())["body"])["data"]["object"]
    user = session["metadata"]["user"]
    reply = httpx.get(
        f"{stack_url}/v1/user/balance",
        params={"user": user},
        headers={"Authorization": f"Bearer {local['test_api_key']}"},
        timeout=30,
    )
    assert int(reply.json()["balance"]) >= session["amount_total"] * 10_000


def prepared_events(state_dir: Path, out: Path) -> list[Path]:
    proc = subprocess.run(
        [sys.executable, "-m", "devserver.sam_events", "--state-dir", str(state_dir), "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        env={**os.environ, "PYTHONPATH": f"{ROOT / 'shared'}:{ROOT}"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return sorted(out.glob("*.json"))


def container_environment(info: dict[str, Any], engine_url: str) -> dict[str, str]:
    """SAM's environment for the container, with the host as this machine sees it."""
    env = dict(info["environment"])
    env["PAYWALLS_LOCAL_ENDPOINT_URL"] = re.sub(
        rf"^http://host\.docker\.internal:{ENGINE_PORT}$", engine_url, env["PAYWALLS_LOCAL_ENDPOINT_URL"]
    )
    assert env["PAYWALLS_LOCAL_ENDPOINT_URL"] == engine_url
    return env


def test_every_event_runs_against_make_run(sam_env: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    with run_local_stack() as stack:
        local = stack.config
        events = prepared_events(stack.state_dir, tmp_path / "events")
        results: dict[str, Any] = {}
        for info in sam_env.values():
            folder = Path(info["codeuri"]).name
            mine = [e for e in events if e.name.split("-", 1)[0] == folder]
            environment = container_environment(info, local["engine_url"])
            results |= run_events(
                environment, ROOT / info["codeuri"], info["handler"], mine, sys.executable, str(ROOT / "shared")
            )
        check_results(results, stack.url, local)
