"""`make run`'s contract (SPEC §8): serves /health and the template's routes, writes local.json,
stops everything it started on SIGTERM, and can be started again on the same port at once."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import httpx

from tests.conftest import ROOT, LocalStack, run_local_stack


def child_pids(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def pid_alive(pid: int) -> bool:
    return subprocess.run(["kill", "-0", str(pid)], capture_output=True).returncode == 0


def test_local_stack_serves_health_routes_and_local_json(stack: LocalStack) -> None:
    local = stack.config
    assert set(local) >= {"base_url", "api_key", "paywall_id", "admin_url", "admin_token"}
    assert local["base_url"] == f"{stack.url}/v1" and local["admin_url"] == f"{stack.url}/admin"
    assert local["api_key"].startswith("sk-paywalls-")
    assert httpx.get(f"{stack.url}/health").json() == {"status": "ok"}
    models = httpx.get(f"{local['base_url']}/models", headers={"Authorization": f"Bearer {local['api_key']}"})
    assert "demo/echo" in {m["id"] for m in models.json()["data"]}
    paywall = httpx.get(
        f"{local['admin_url']}/paywalls/{local['paywall_id']}",
        headers={"Authorization": f"Bearer {local['admin_token']}"},
    )
    assert paywall.status_code == 200 and paywall.json()["provider"]["api_key_set"] is True
    unknown = httpx.get(f"{stack.url}/nope")
    assert unknown.status_code == 404 and unknown.json()["error"]["message"]
    assert httpx.get(f"{local['admin_url']}/paywalls/x").status_code == 401


def test_sigterm_stops_everything_and_a_rerun_starts_clean() -> None:
    with run_local_stack() as first:
        children = child_pids(first.proc.pid)
        assert children, "the local engine runs as a child process"
        port, first_key = first.port, first.config["api_key"]
        first.proc.terminate()
        assert first.proc.wait(timeout=20) == 0, first.log()
        assert "stopped" in first.log()
    assert not any(pid_alive(pid) for pid in children), "the engine outlived the stack"
    assert port_is_free(port)
    with run_local_stack() as second:
        assert second.config["api_key"] != first_key, "a rerun starts from fresh state"
        old = httpx.get(f"{second.url}/v1/models", headers={"Authorization": f"Bearer {first_key}"})
        assert old.status_code == 401


def test_x_forwarded_for_does_not_change_the_client_a_rate_limit_counts() -> None:
    """Over real HTTP: uvicorn would trust X-Forwarded-For from 127.0.0.1 (where every local client
    connects from), letting anyone pick a fresh rate-limit key per request. Each request here claims
    another address and names another email, so only the per-client limit on sending sign-in codes can
    stop them: it must, within two windows' worth (a window may turn over once while this runs)."""
    from paywalls.wallets import otp
    from tests.shared_support import form_with

    limit = otp.SEND_PER_CLIENT.limit
    with run_local_stack() as own, httpx.Client(timeout=30) as browser:  # its own stack: this uses up a quota
        form = form_with(browser.get(f"{own.url}/wallet/signin").text)
        statuses = []
        for n in range(2 * limit + 1):
            data = {k: v for k, v in form.items() if k != "action"} | {"email": f"xff{n}@example.com"}
            reply = browser.post(form["action"], data=data, headers={"X-Forwarded-For": f"203.0.113.{n}"})
            statuses.append(reply.status_code)
            if reply.status_code != 200:
                break
    assert statuses[-1] == 429 and set(statuses[:-1]) == {200}, statuses


def test_every_demo_model_is_priced_out_of_the_box(stack: LocalStack) -> None:
    from devserver import demo_provider

    listed = {line.split()[1] for line in demo_provider.__doc__.splitlines() if line.startswith("- demo/")}
    assert listed == set(demo_provider.MODELS), "MODELS names every model the module documents"
    models = httpx.get(
        f"{stack.config['base_url']}/models", headers={"Authorization": f"Bearer {stack.config['api_key']}"}
    )
    assert {m["id"] for m in models.json()["data"]} == set(demo_provider.MODELS)


def test_local_json_is_readable_by_its_owner_only(stack: LocalStack) -> None:
    assert (stack.state_dir / "local.json").stat().st_mode & 0o777 == 0o600


def test_a_busy_port_fails_at_once_without_touching_local_json(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        (tmp_path / "local.json").write_text('{"from": "the stack already running"}')
        proc = subprocess.run(
            [sys.executable, "-m", "devserver", "--port", str(port), "--state-dir", str(tmp_path)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 1
    assert f"127.0.0.1:{port}" in proc.stderr and "PORT=" in proc.stderr and "Traceback" not in proc.stderr
    assert (tmp_path / "local.json").read_text() == '{"from": "the stack already running"}'
