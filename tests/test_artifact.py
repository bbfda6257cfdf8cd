"""What ships is what was tested: the deployable artifact, run.

devserver.artifact builds the layers a second time, for this machine's architecture (same
requirements, same Makefiles `sam build` runs) and lays each function out as Lambda does: its own
code, then the layers' python/ folders (Lambda's /opt/python), then the runtime's boto3, run by a
python3.13 (the runtime's version). Against `make run`, with the environment `sam local invoke`
would give (SAM CLI's own computation, tests/sam_env.py):

- every events/*.json through each built handler;
- the chat function through its own run.sh (uvicorn, as the Web Adapter starts it), answering a
  streamed request through the OpenAI SDK, charged in the stack's ledger;
- a handler with tracing on: the X-Ray SDK is imported from the layer and a segment is sent.

So a module missing from a layer, or a dependency missing from layers/dependencies/requirements*.txt,
fails here rather than in AWS."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from devserver import artifact
from tests.chat_support import fund
from tests.conftest import LocalStack, free_port, run_local_stack
from tests.test_sam_local import (
    check_results,
    container_environment,
    prepared_events,
    run_events,
    sam_environments,
)

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.timeout(1200)  # the first build downloads the layer's wheels


@pytest.fixture(scope="module")
def built() -> artifact.Artifact:
    try:
        return artifact.build()
    except RuntimeError as missing:
        pytest.fail(f"cannot build the artifact: {missing}", pytrace=False)


@pytest.fixture(scope="module")
def sam_env() -> dict[str, dict[str, Any]]:
    return sam_environments()


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with run_local_stack() as running:
        yield running


def layers(built: artifact.Artifact) -> str:
    return os.pathsep.join(str(p) for p in built.layer_paths())


def test_the_artifact_holds_only_shipped_code(built: artifact.Artifact) -> None:
    site = built.root / "DependenciesLayer" / "python"
    for package in (
        "fastapi",
        "mangum",
        "uvicorn",
        "httpx",
        "stripe",
        "aws_lambda_powertools",
        "aws_xray_sdk",
        "wrapt",
    ):
        assert (site / package).is_dir(), package
    assert not (site / "botocore").exists(), "botocore comes with the runtime, never in the layer"
    assert (built.root / "SharedLayer" / "python" / "paywalls" / "infra" / "telemetry.py").is_file()
    for function in (built.root / "functions").iterdir():
        assert not (function / "paywalls").exists() and not (function / "tests").exists(), function.name


def test_every_event_through_the_built_handlers(
    built: artifact.Artifact, sam_env: dict[str, dict[str, Any]], stack: LocalStack, tmp_path: Path
) -> None:
    local = stack.config
    events = prepared_events(stack.state_dir, tmp_path / "events")
    results: dict[str, Any] = {}
    for logical_id, info in sam_env.items():
        folder = Path(info["codeuri"]).name
        mine = [e for e in events if e.name.split("-", 1)[0] == folder]
        environment = container_environment(info, local["engine_url"])
        function_dir = built.function_dir(logical_id)
        results |= run_events(environment, function_dir, info["handler"], mine, built.python, layers(built))
    check_results(results, stack.url, local)


def test_chat_run_sh_streams_a_charged_answer(
    built: artifact.Artifact, sam_env: dict[str, dict[str, Any]], stack: LocalStack, tmp_path: Path
) -> None:
    local = stack.config
    function_dir = built.function_dir("ChatFunction")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "python3").symlink_to(Path(built.python) if os.path.isabs(built.python) else _which(built.python))
    port = free_port()
    env = {
        **container_environment(sam_env["ChatFunction"], local["engine_url"]),
        "LAMBDA_TASK_ROOT": str(function_dir),
        "AWS_LWA_PORT": str(port),
        "PORT": str(port),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "PYTHONPATH": layers(built),  # run.sh puts the function and /opt/python first
        "PYTHONNOUSERSITE": "1",
    }
    log = (tmp_path / "chat.log").open("w")
    proc = subprocess.Popen([str(function_dir / "run.sh")], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}/health", proc, tmp_path / "chat.log")
        user = f"artifact-{uuid.uuid4().hex[:8]}"
        fund(stack, local["paywall_id"], user, "1")
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=local["api_key"], max_retries=0)
        chunks = list(
            client.chat.completions.create(
                model="demo/echo",
                messages=[{"role": "user", "content": "shipped as tested"}],
                user=user,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert text.split() == ["shipped", "as", "tested"]
        assert chunks[-1].usage is not None
        ledger = httpx.get(
            f"{stack.url}/v1/user/ledger",
            params={"user": user},
            headers={"Authorization": f"Bearer {local['api_key']}"},
            timeout=30,
        ).json()["data"]
        [charge] = [e for e in ledger if e["type"] == "charge"]
        assert charge["completion_tokens"] == chunks[-1].usage.completion_tokens
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_a_traced_handler_loads_xray_from_the_layer(built: artifact.Artifact, tmp_path: Path) -> None:
    daemon = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    daemon.bind(("127.0.0.1", 0))
    daemon.settimeout(5)
    event = json.loads((ROOT / "events" / "user_api-balance.json").read_text())
    event.update(resource="/health", path="/health", queryStringParameters=None, multiValueQueryStringParameters=None)
    event["requestContext"].update(resourcePath="/health", path="/prod/health")
    (tmp_path / "health.json").write_text(json.dumps(event))
    root = f"1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]}"
    environment = {
        "AWS_LAMBDA_FUNCTION_NAME": "UserApiFunction",
        "LAMBDA_TASK_ROOT": str(built.function_dir("UserApiFunction")),
        "_X_AMZN_TRACE_ID": f"Root={root};Parent={uuid.uuid4().hex[:16]};Sampled=1",
        "AWS_XRAY_DAEMON_ADDRESS": f"127.0.0.1:{daemon.getsockname()[1]}",
        "POWERTOOLS_TRACE_DISABLED": "false",
        "POWERTOOLS_SERVICE_NAME": "paywalls",
        "AWS_DEFAULT_REGION": "us-east-1",
        "TABLE_NAME": "PaywallsTable",
    }
    try:
        results = run_events(
            environment,
            built.function_dir("UserApiFunction"),
            "app.handler",
            [tmp_path / "health.json"],
            built.python,
            layers(built),
        )
        assert results["health.json"]["statusCode"] == 200
        packet, _ = daemon.recvfrom(65536)
    finally:
        daemon.close()
    document = json.loads(packet.decode().partition("\n")[2])
    assert document["name"] == "## handler" and document["trace_id"] == root


def _which(name: str) -> Path:
    import shutil

    found = shutil.which(name)
    assert found, name
    return Path(found)


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"run.sh exited early:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"run.sh not ready in 60 s:\n{log.read_text()[-4000:]}")
        time.sleep(0.2)
