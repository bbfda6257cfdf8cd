"""The README, run as written: its quickstart and its shared-mode walkthrough, block by block, in a
fresh copy of the repository (the files a clone has, as they are in this checkout) whose `make run`
serves on a free port. Only the port is substituted; the browser steps the README describes in prose
(open the link, sign in, approve) are done over HTTP with the pages' own forms.

The copy's `.venv` links to the running virtualenv (what `make run` would have installed there), with a
fresh dependency stamp so `make run` starts at once instead of reinstalling."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT, free_port
from tests.shared_support import WalletBrowser

BLOCK = re.compile(
    r"<!-- readme-test: (?P<name>[\w-]+)(?: file=(?P<file>\S+))? -->\n```(?P<lang>\w+)\n(?P<code>.*?)^```",
    re.S | re.M,
)


@dataclass(frozen=True)
class Block:
    lang: str
    code: str
    file: str | None


def blocks(name: str) -> list[Block]:
    found = [
        Block(m["lang"], m["code"], m["file"])
        for m in BLOCK.finditer((ROOT / "README.md").read_text())
        if m["name"] == name
    ]
    assert found, f"README has no blocks marked <!-- readme-test: {name} -->"
    return found


@dataclass
class Clone:
    root: Path
    port: int
    log: Path

    def env(self) -> dict[str, str]:
        """A user's shell: nothing of the test run's own settings (conftest sets some for in-process
        tests), the copy's code first on the path as its editable install would put it."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("PAYWALLS_", "AWS_", "TABLE_NAME", "SECRET_PREFIX", "PYTHONPATH"))
        }
        return {**env, "PORT": str(self.port), "PYTHONPATH": f"{self.root / 'shared'}{os.pathsep}{self.root}"}

    def as_written(self, code: str) -> str:
        return code.replace("127.0.0.1:8000", f"127.0.0.1:{self.port}")

    def sh(self, code: str, *, after: str = "") -> str:
        proc = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", self.as_written(code) + after],
            cwd=self.root,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, f"README block failed:\n{code}\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout


def fresh_copy(target: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file() and not source.is_symlink():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    venv = target / ".venv"
    venv.mkdir()
    for entry in Path(sys.prefix).iterdir():
        if not entry.name.startswith(".deps"):
            (venv / entry.name).symlink_to(entry)
    (venv / ".deps-local").touch()  # newer than the copy's pyproject.toml: make sees nothing to install


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Clone]:
    root = tmp_path_factory.mktemp("clone")
    fresh_copy(root)
    copy = Clone(root, free_port(), root / "make-run.log")
    (start,) = [b for b in blocks("quickstart") if "make run" in b.code]
    with open(copy.log, "w") as log:
        proc = subprocess.Popen(
            ["bash", "-c", copy.as_written(start.code)],
            cwd=root,
            env=copy.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: make, the stack and its engine
        )
    try:
        deadline = time.monotonic() + 120
        while not _healthy(copy.port):
            assert proc.poll() is None, f"make run exited:\n{copy.log.read_text()}"
            assert time.monotonic() < deadline, f"make run not ready:\n{copy.log.read_text()}"
            time.sleep(0.3)
        yield copy
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _healthy(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def test_make_run_installs_what_the_quickstart_imports() -> None:
    """The copy above borrows the test virtualenv, which has everything: this holds `make run`'s own
    install (`pip install -e '.[local]'`) to what the README's Python imports, as on a fresh machine."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    installed = {re.split(r"[<>=\[ ;]", d, maxsplit=1)[0].lower() for d in project["dependencies"]}
    installed |= {re.split(r"[<>=\[ ;]", d, maxsplit=1)[0].lower() for d in project["optional-dependencies"]["local"]}
    for block in blocks("quickstart"):
        if block.lang == "python":
            imported = set(re.findall(r"^(?:from|import) (\w+)", block.code, re.M)) - set(sys.stdlib_module_names)
            assert imported and imported <= installed, f"make run does not install {imported - installed}"


def test_quickstart_as_written(clone: Clone) -> None:
    local = clone.root / ".paywalls" / "local.json"
    assert local.stat().st_mode & 0o777 == 0o600 and json.loads(local.read_text())["base_url"].endswith("/v1")
    steps = [b for b in blocks("quickstart") if "make run" not in b.code]
    outputs = []
    for block in steps:
        if block.file:  # "save this as hello.py"
            (clone.root / block.file).write_text(block.code)
        else:
            outputs.append(clone.sh(block.code))
    assert len(outputs) == 2, "run hello.py; credit alice and run it again"
    assert "Please top up here: http://127.0.0.1:" in outputs[0], outputs[0]
    assert outputs[1].strip().endswith("Hello, paywall!"), outputs[1]


def test_shared_mode_walkthrough_as_written(clone: Clone) -> None:
    setup, ask_again = blocks("shared-walkthrough")
    out = clone.sh(setup.code, after='\necho "README_VARS $PAYWALL $KEY"')
    reply, variables = out.rsplit("README_VARS ", 1)
    paywall, key = variables.split()
    text = json.loads(reply.strip().splitlines()[-1])["choices"][0]["message"]["content"]  # curl: the last line
    link = re.search(r"http://127\.0\.0\.1:\d+/wallet/authorize/\S+", text)
    assert link, text

    # The prose: open the link, sign in with you@example.com (the code from the local inbox), approve.
    base = f"http://127.0.0.1:{clone.port}"

    def inbox(email: str) -> str:
        return httpx.get(f"{base}/_dev/mail", params={"to": email}, timeout=10).json()["data"][-1]["subject"]

    with httpx.Client(timeout=30) as client:
        browser = WalletBrowser(client, base, inbox)
        url = link.group(0).rstrip(".")
        assert browser.get(url).status_code == 303, "the link asks to sign in first"
        browser.sign_in("you@example.com", next_path=url.removeprefix(base))
        page = browser.get(url)
        approve = next(f for f in _forms(page.text) if f.get("decision") == "approve")
        assert browser.submit(approve).status_code == 200, "approved with the prefilled spending limit"
    assert "you@example.com" in (clone.root / "make-run.log").read_text(), "the code is on the console"

    # The same terminal: $PAYWALL and $KEY are still set from the first block.
    out = clone.sh(f"PAYWALL={paywall}\nKEY={key}\n" + ask_again.code)
    assert '"content":"Hi from shared mode"' in out, out
    # 5 prompt tokens x 1 + 4 completion tokens x 2 = 13 micro-units, 10% platform fee rounded down.
    assert "gross: 0.000013" in out and "fees: 0.000001" in out and "charges: 1" in out, out


def _forms(html: str) -> list[dict[str, str]]:
    from tests.shared_support import forms

    return forms(html)
