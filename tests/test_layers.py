"""The package's layers (docs/DESIGN.md "Layout", pyproject.toml [tool.importlinter]) hold, cover every
subpackage, and the contracts really fail on a wrong-way import (checked on a copy of the package)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "shared" / "paywalls"
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def contracts() -> list[dict]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]


def run_lint_imports(package_parent: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(package_parent)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_subpackage_and_top_module_is_in_the_layers() -> None:
    layers = next(c for c in contracts() if c["type"] == "layers")["layers"]
    # "a : b" (siblings that may use each other) and "a | b" (independent siblings) share a level.
    layers = [name.strip() for level in layers for name in level.replace("|", ":").split(":")]
    present = {f"paywalls.{p.name}" for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    present |= {f"paywalls.{p.stem}" for p in PACKAGE.glob("*.py") if p.name != "__init__.py"}
    assert present == set(layers), "give each subpackage (and top-level module) its place in the layers"


def test_the_package_keeps_its_contracts() -> None:
    result = run_lint_imports(ROOT / "shared")
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_wrong_way_import_breaks_the_build(tmp_path: Path) -> None:
    copy = tmp_path / "shared"
    shutil.copytree(PACKAGE, copy / "paywalls", ignore=shutil.ignore_patterns("__pycache__"))
    money = copy / "paywalls" / "core" / "money.py"
    money.write_text(money.read_text() + "\nfrom paywalls.http import web  # noqa: E402\n")
    ledger = copy / "paywalls" / "billing" / "ledger.py"
    ledger.write_text(ledger.read_text() + "\nimport botocore  # noqa: E402\n")
    result = run_lint_imports(copy)
    assert result.returncode != 0
    assert "paywalls.core.money -> paywalls.http.web" in result.stdout
    assert "paywalls.billing.ledger -> botocore" in result.stdout
