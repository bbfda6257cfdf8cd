"""The documentation site: `mkdocs build --strict` passes (no broken link, page, anchor or snippet),
every code sample under docs/samples/ runs against one local stack and prints what the docs say, no
page hides an untested inline sample, and the README's and DESIGN.md's references exist."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.chat_support import DEMO_PRICES
from tests.conftest import ROOT, LocalStack

DOCS = ROOT / "docs"
SAMPLES = DOCS / "samples"
BIN = Path(sys.executable).parent

# Every sample, in the order a reader meets them (later ones rely on alice being funded by fund.sh),
# with what its output must contain. A sample missing here fails test_every_sample_is_run.
RUNS: list[tuple[str, list[str]]] = [
    ("quickstart.py", ["Please top up here: http://127.0.0.1:"]),  # alice is new: the paywall reply
    ("fund.sh", ["amount: 1.000000"]),
    ("quickstart.py", ["Hello, paywall!"]),
    ("quickstart.mjs", ["Hello, paywall!"]),
    ("quickstart_fetch.mjs", ["Hello, paywall!"]),
    ("quickstart.sh", ['"content":"Hello, paywall!"']),
    ("balance.sh", ['"balanceFormatted"', '"url":"http://127.0.0.1:', '"type":"charge"']),
    ("stream.py", ["one word at a time"]),
    (
        "responses.py",
        ["hello from the Responses API 6 5", "streamed as events", "2 embeddings of 4 dimensions; 3 tokens"],
    ),
    ("user_id.sh", ['"content":"who pays?"', '"balance":']),
    ("deposit.py", ["5.000000 5.000000"]),
    ("charge_tool.py", ["run the tool: charged 0.020000 USD"]),
    ("topup_app.py", ["paywall (topup): Your balance is too low", "top-up button -> http://127.0.0.1:"]),
    ("errors.py", ["404 model_not_found", "401 invalid_api_key"]),
    ("openwebui_filter.py", ["owui-8d1c4e2a -> Your balance is too low"]),
    ("pricing_formula.py", ["1668 micro-units = 0.001668"]),
    ("pricing_table.sh", ["markup_percent: 20", "gpt-4o-mini:"]),
    ("new_paywall.sh", ['"content":"my own paywall"']),
    ("per_request.sh", ['"balance":"990000"']),
    ("trial_credits.sh", ['"balance":"50000"']),
    ("test_keys.sh", ['"balance":"5000000"', '"balance":"0"']),
    ("shared_setup.sh", ["connect your wallet and authorize it here: http://127.0.0.1:"]),
    ("shared_app.py", ["ask sam to authorize: http://127.0.0.1:"]),
    ("webhook_receiver.py", ["verified paywall.balance.deposit.created for the user: 2.000000"]),
]
SHARED_KEY_SAMPLES = {"shared_app.py"}  # run with a shared-mode paywall's key
SOURCED = {"env.sh"}  # sets variables: checked by test_env_sample_exports_what_the_others_read
INLINE_LANGUAGES = {"text", "json", "mermaid"}  # not code to run
NOT_EXECUTED = re.compile(r"<!-- not executed: [^>]+ -->\n$")
UNSCANNED_PAGES = {"spec.md", "DESIGN.md"}  # the contract and the design notes quote, they do not teach


def test_mkdocs_build_is_strict_clean(tmp_path: Path) -> None:
    proc = subprocess.run(
        [str(BIN / "mkdocs"), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    quickstart = (tmp_path / "site" / "quickstart" / "index.html").read_text()
    assert "PAYWALLS_BASE_URL" in quickstart and "--8&lt;--" not in quickstart, "snippets are included"


def _fences(page: Path) -> Iterator[tuple[str, str, str]]:
    """(language, code, the text before the fence) of each top-level or tab-indented fenced block."""
    text = page.read_text()
    for match in re.finditer(r"^( *)```(\w*)\n(.*?)^\1```", text, re.M | re.S):
        yield match.group(2), match.group(3), text[: match.start()]


def test_pages_show_only_executed_samples() -> None:
    """Code a reader may copy is a file under docs/samples/ (run below), or says why it cannot run."""
    offenders = []
    for page in sorted(DOCS.glob("*.md")):
        if page.name in UNSCANNED_PAGES:
            continue
        for language, code, before in _fences(page):
            included = all(line.strip().startswith('--8<-- "') for line in code.strip().splitlines())
            if language in INLINE_LANGUAGES or included or NOT_EXECUTED.search(before):
                continue
            offenders.append(f"{page.name}: {code.strip().splitlines()[0]}")
    assert not offenders, offenders


def test_every_sample_is_shown_and_run() -> None:
    shown = set()
    for page in DOCS.glob("*.md"):
        shown |= {name.split(":")[0] for name in re.findall(r'--8<-- "([^"]+)"', page.read_text())}
    samples = {p.name for p in SAMPLES.iterdir() if p.is_file()}
    assert samples <= shown, f"samples no page shows: {samples - shown}"
    assert samples == {name for name, _ in RUNS} | SOURCED, "every sample is run by test_samples_run"


def test_readme_links_and_design_paths_exist() -> None:
    readme = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme):
        if not target.startswith("http"):
            assert (ROOT / target).exists(), f"README links to a missing {target}"
    for anchor in re.findall(r"\]\(docs/spec\.md#([^)]+)\)", readme):
        headings = re.findall(r"^#+ (.+)$", (DOCS / "spec.md").read_text(), re.M)
        assert anchor in {re.sub(r"[^\w\s-]", "", h).strip().lower().replace(" ", "-") for h in headings}
    assert "SPEC.md" not in readme and "SPEC §" not in readme, "the contract is docs/spec.md"
    assert (ROOT / "LICENSE").exists() and (ROOT / "CONTRIBUTING.md").exists()

    design = (DOCS / "DESIGN.md").read_text()
    layout = design[design.index("## Layout") : design.index("## Functions and routes")]
    missing = []
    for row in re.findall(r"^\| (`[^|]+) \|", layout, re.M):
        names = re.findall(r"`([^`]+)`", row)
        folder = next((str(Path(n).parent) for n in names if "/" in n.rstrip("/")), "")
        for name in names:
            if "<" in name:  # a pattern, e.g. functions/<name>/app.py
                continue
            path = ROOT / name if "/" in name else ROOT / folder / name
            if not path.exists():
                missing.append(name)
    assert not missing, f"DESIGN.md names files that do not exist: {missing}"


# ---- the samples, run against one local stack ----------------------------------------------------


def _paywall(stack: LocalStack, mode: str) -> dict[str, Any]:
    """A paywall like `make run`'s demo one (every demo model priced), fresh for these samples."""
    with stack.admin() as admin:
        pid = admin.post("/admin/paywalls", json={"name": "Docs app", "mode": mode}).raise_for_status().json()["id"]
        provider = {"kind": "openai-compatible", "base_url": f"{stack.url}/_demo/v1", "api_key": "demo-provider-key"}
        admin.put(f"/admin/paywalls/{pid}/provider", json=provider).raise_for_status()
        admin.put(f"/admin/paywalls/{pid}/pricing", json={"models": DEMO_PRICES}).raise_for_status()
        keys = {
            env: admin.post(f"/admin/paywalls/{pid}/keys", json={"environment": env}).raise_for_status().json()["key"]
            for env in ("live", "test")
        }
    return {"id": pid, **keys}


@pytest.fixture(scope="module")
def workdir(stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder like a checkout after `make run`: .paywalls/local.json (of a fresh demo-like paywall)
    and node_modules with the `openai` package, where the samples run."""
    folder = tmp_path_factory.mktemp("docs-samples")
    demo = _paywall(stack, "default")
    local = {**stack.config, "paywall_id": demo["id"], "api_key": demo["live"], "test_api_key": demo["test"]}
    (folder / ".paywalls").mkdir()
    (folder / ".paywalls" / "local.json").write_text(json.dumps(local))
    node_modules = ROOT / "tests" / "js" / "node_modules"
    assert (node_modules / "openai").exists(), "make test installs tests/js's npm packages"
    (folder / "node_modules").symlink_to(node_modules)
    return folder


def _env(stack: LocalStack, workdir: Path, key: str | None = None) -> dict[str, str]:
    local = json.loads((workdir / ".paywalls" / "local.json").read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PAYWALLS_ADMIN", "AWS_ENDPOINT"))}
    return {
        **env,
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",  # `paywalls`, as after `make run`
        "PAYWALLS_BASE_URL": local["base_url"],
        "PAYWALLS_API_KEY": key or local["api_key"],
        "PAYWALLS_TEST_API_KEY": local["test_api_key"],
    }


def _run(sample: str, workdir: Path, env: dict[str, str]) -> str:
    source = SAMPLES / sample
    if sample.endswith(".py"):
        command = [sys.executable, str(source)]
    elif sample.endswith(".mjs"):  # ESM resolves `openai` from the script's folder: run a copy there
        shutil.copy(source, workdir / sample)
        command = ["node", str(workdir / sample)]
    else:
        command = ["bash", "-euo", "pipefail", str(source)]
    proc = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{sample} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_env_sample_exports_what_the_others_read(stack: LocalStack, workdir: Path) -> None:
    script = f'source {SAMPLES / "env.sh"} && echo "$PAYWALLS_BASE_URL $PAYWALLS_API_KEY $PAYWALLS_TEST_API_KEY"'
    proc = subprocess.run(["bash", "-c", script], cwd=workdir, capture_output=True, text=True, timeout=60)
    local = json.loads((workdir / ".paywalls" / "local.json").read_text())
    assert proc.stdout.split() == [local["base_url"], local["api_key"], local["test_api_key"]], proc.stderr


def test_samples_run(stack: LocalStack, workdir: Path) -> None:
    shared_key = _paywall(stack, "shared")["live"]
    for sample, expected in RUNS:
        key = shared_key if sample in SHARED_KEY_SAMPLES else None
        output = _run(sample, workdir, _env(stack, workdir, key))
        missing = [text for text in expected if text not in output]
        assert not missing, f"{sample} printed:\n{output}\nwithout {missing}"
