"""Shared fixtures: an in-process moto table for unit tests, the local engine and the whole local
stack (a real server on a free port) for integration and end-to-end tests; the test tiers (markers
from the fixtures a test uses); settings that follow the tests' environment changes."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent

# In-process code (unit tests) talks to moto; never to a developer's real AWS account.
REAL_TABLE = os.environ.get("PAYWALLS_TEST_DYNAMODB_TABLE")  # `make test-aws`: opt-in, real DynamoDB
os.environ.update({"TABLE_NAME": "PaywallsTable", "SECRET_PREFIX": "paywalls/test", "PAYWALLS_CACHE_TTL_S": "0"})
if not REAL_TABLE:
    os.environ.update(
        {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            # moto's in-process mock patches botocore: unit tests call DynamoDB through it. Tests on
            # the local engine (engine_endpoint) use the http transport, as Lambda does.
            "PAYWALLS_AWS_TRANSPORT": "botocore",
        }
    )
    os.environ.pop("AWS_PROFILE", None)
os.environ.pop("AWS_ENDPOINT_URL", None)


# ---- test tiers -----------------------------------------------------------------------------------
#
# Every test gets one tier marker from what it uses: its fixtures (transitively), and the helpers its
# module holds to start things itself (a tier marker written in the test file wins):
#   deploy       the SAM CLI and cfn-lint: sam build, sam validate, the SAM transform, the template's rules
#   e2e          the whole local stack: `make run`'s process on a free port (`stack`, `run_local_stack`)
#   integration  the local engine as a process of its own, over HTTP (`engine`, `engine_endpoint`)
#   unit         the rest: pure code, moto in-process, the apps through TestClient, the in-process stack
# `make test-fast` runs `-m unit`; `make test` runs every tier.
TIERS = ("unit", "integration", "e2e", "deploy")
_TIER_USES = (
    ("deploy", {"build_dir", "translated", "sam_bin", "cfn_lint_bin"}),
    ("e2e", {"stack", "run_local_stack", "clone"}),  # clone: test_readme's fresh copy running `make run`
    ("integration", {"engine", "engine_endpoint"}),
)


def tier_of(item: pytest.Item) -> str:
    for tier in TIERS:
        if item.get_closest_marker(tier):
            return tier
    module = getattr(item, "module", None)
    used = set(getattr(item, "fixturenames", ())) | set(vars(module) if module else ())
    return next((tier for tier, names in _TIER_USES if used & names), "unit")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        item.add_marker(tier_of(item))


def pytest_collection_finish(session: pytest.Session) -> None:
    """Under pytest-xdist, schemathesis's generated tests (one per API operation) report as one: the
    rest would be lost without a failure. `make test` runs that module in a pytest of its own."""
    if os.environ.get("PYTEST_XDIST_WORKER") and any(item.path.name == "test_api_schema.py" for item in session.items):
        raise pytest.UsageError(
            "tests/test_api_schema.py cannot run under pytest-xdist (schemathesis reports one of its tests):"
            " run it with -p no:xdist, as `make test` does"
        )


# ---- settings: read once (paywalls.infra.config), so a test's change of the environment drops them --------


class SettingsMonkeyPatch(pytest.MonkeyPatch):  # type: ignore[misc]  # pytest marks it final for typing only
    """pytest's MonkeyPatch; changing the environment also drops the cached settings, so the code under
    test sees the change at once, and undoing it drops them again (nothing leaks into the next test)."""

    def setenv(self, name: str, value: str, prepend: str | None = None) -> None:
        super().setenv(name, value, prepend)
        _forget_settings()

    def delenv(self, name: str, raising: bool = True) -> None:
        super().delenv(name, raising)
        _forget_settings()

    def undo(self) -> None:
        super().undo()
        _forget_settings()


def _forget_settings() -> None:
    from paywalls.infra.config import settings

    settings.cache_clear()


@pytest.fixture
def monkeypatch() -> Iterator[pytest.MonkeyPatch]:
    """pytest's own fixture, with settings that follow setenv/delenv (SettingsMonkeyPatch)."""
    patch = SettingsMonkeyPatch()
    yield patch
    patch.undo()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def create_tables() -> None:
    from devserver.stack import create_tables as create

    create()


@pytest.fixture
def aws_mock() -> Iterator[None]:
    """A fresh in-process moto account with the template's tables, on the same patched engine as
    the local stack (devserver.moto_patches)."""
    from moto import mock_aws

    from devserver import moto_patches
    from paywalls.infra import secrets as secrets_store

    moto_patches.install()
    with mock_aws():
        _fresh_clients()
        secrets_store.reset()
        create_tables()
        yield
    _fresh_clients()
    secrets_store.reset()


def _fresh_clients() -> None:
    """New clients, as aws.reset_clients, but on the same botocore session: its loaded service models
    are what makes a client cost ~0.1 s of CPU, for every test that uses moto. (Nothing of the session
    differs between these tests: same credentials, region and endpoint.)"""
    from paywalls.infra import aws
    from paywalls.infra.config import settings

    aws.client.cache_clear()
    aws.botocore_client.cache_clear()
    settings.cache_clear()


@contextlib.contextmanager
def engine_endpoint() -> Iterator[str]:
    """The local engine (moto behind one lock) as a real HTTP server, with the tables created."""
    from devserver.stack import engine_process
    from paywalls.infra import aws
    from paywalls.infra import secrets as secrets_store

    with engine_process() as endpoint:
        os.environ["AWS_ENDPOINT_URL"] = endpoint
        transport = os.environ.get("PAYWALLS_AWS_TRANSPORT")
        os.environ["PAYWALLS_AWS_TRANSPORT"] = "http"  # as deployed: our own signed calls over HTTP
        aws.reset_clients()
        secrets_store.reset()
        try:
            create_tables()
            yield endpoint
        finally:
            os.environ.pop("AWS_ENDPOINT_URL", None)
            if transport is None:
                os.environ.pop("PAYWALLS_AWS_TRANSPORT", None)
            else:
                os.environ["PAYWALLS_AWS_TRANSPORT"] = transport
            aws.reset_clients()
            secrets_store.reset()


@pytest.fixture
def engine() -> Iterator[str]:
    """The local engine; or, with PAYWALLS_TEST_DYNAMODB_TABLE set (`make test-aws`), a real DynamoDB
    table of a deployed stack reached with the caller's AWS credentials, so the same concurrency
    tests check the real service."""
    if REAL_TABLE:
        yield from _real_dynamodb(REAL_TABLE)
        return
    with engine_endpoint() as endpoint:
        yield endpoint


def _real_dynamodb(table: str) -> Iterator[str]:
    from paywalls.infra import aws

    os.environ["TABLE_NAME"] = table
    aws.reset_clients()
    try:
        yield "aws"
    finally:
        os.environ["TABLE_NAME"] = "PaywallsTable"
        aws.reset_clients()


class LocalStack:
    """`make run`'s process, started on a free port with its own state dir."""

    def __init__(self, port: int, state_dir: Path, proc: subprocess.Popen[str], log_path: Path):
        self.port = port
        self.state_dir = state_dir
        self.proc = proc
        self.log_path = log_path
        self.config: dict[str, Any] = json.loads((state_dir / "local.json").read_text())

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def admin(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {self.config['admin_token']}"}, timeout=30
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


# ---- the user API of a running stack, as an app calls it ------------------------------------------


def api(stack: LocalStack, key: str) -> httpx.Client:
    return httpx.Client(base_url=f"{stack.url}/v1", headers={"Authorization": f"Bearer {key}"}, timeout=30)


def balance(client: httpx.Client, user: str) -> int:
    return int(client.get("/user/balance", params={"user": user}).json()["balance"])


def entries(client: httpx.Client, user: str) -> list[dict[str, Any]]:
    return client.get("/user/ledger", params={"user": user, "limit": 100}).json()["data"]


@contextlib.contextmanager
def run_local_stack(extra_env: dict[str, str] | None = None) -> Iterator[LocalStack]:
    port = free_port()
    state_dir = Path(tempfile.mkdtemp(prefix="paywalls-state-"))
    log_path = state_dir / "stack.log"
    env = {**os.environ, "PORT": str(port), "PAYWALLS_CACHE_TTL_S": "0", **(extra_env or {})}
    env.pop("AWS_ENDPOINT_URL", None)
    env.pop("PAYWALLS_AWS_TRANSPORT", None)  # the stack chooses its own (devserver.stack)
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "devserver", "--port", str(port), "--state-dir", str(state_dir)],
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"local stack exited early:\n{log_path.read_text()}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"local stack not ready in 60 s:\n{log_path.read_text()}")
            time.sleep(0.2)
        yield LocalStack(port, state_dir, proc, log_path)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="session")
def stack() -> Iterator[LocalStack]:
    """One local stack shared by the end-to-end tests (each test makes its own users/paywalls)."""
    with run_local_stack() as running:
        yield running


@pytest.fixture
def new_paywall(stack: LocalStack) -> Any:
    """Factory: a fresh paywall priced for the demo models, with a live key."""

    def make(**fields: Any) -> dict[str, Any]:
        with stack.admin() as admin:
            body = {"name": "Test app", "mode": "default", **fields}
            paywall = admin.post("/admin/paywalls", json=body).raise_for_status().json()
            pid = paywall["id"]
            admin.put(
                f"/admin/paywalls/{pid}/provider",
                json={
                    "kind": "openai-compatible",
                    "base_url": f"{stack.url}/_demo/v1",
                    "api_key": "demo-provider-key",
                },
            ).raise_for_status()
            admin.put(
                f"/admin/paywalls/{pid}/pricing",
                json={
                    "models": {
                        "demo/echo": {"prompt": "1", "completion": "2", "request": "0.0001"},
                        "demo/slow": {"prompt": "1", "completion": "2"},
                    }
                },
            ).raise_for_status()
            key = admin.post(f"/admin/paywalls/{pid}/keys", json={"environment": "live"}).raise_for_status().json()
            test_key = admin.post(f"/admin/paywalls/{pid}/keys", json={"environment": "test"}).raise_for_status().json()
        return {"id": pid, "key": key["key"], "test_key": test_key["key"], "paywall": paywall}

    return make


# ---- chat tests: one paywall per module, a freshly funded user per test ---------------------------


@pytest.fixture(scope="module")
def paywall(stack: LocalStack) -> dict[str, Any]:
    """Priced for the demo models; uses the module's own `stack` where a module overrides it."""
    from tests.chat_support import make_paywall

    return make_paywall(stack)


@pytest.fixture
def user(stack: LocalStack, paywall: dict[str, Any], request: pytest.FixtureRequest) -> str:
    """A new user funded with the module's USER_FUNDS (default "1")."""
    from tests.chat_support import fund, new_user

    name = new_user()
    fund(stack, paywall["id"], name, getattr(request.module, "USER_FUNDS", "1"))
    return name
