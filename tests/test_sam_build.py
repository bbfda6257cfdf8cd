"""`sam build` (no container) produces deployable artifacts for python3.13 / arm64.

Uses the SAM CLI in .venv-sam (`make deps-dev` installs it) and PyPI for the dependency layer.
--cached keeps unchanged layers/functions between runs (cache in .aws-sam/cache, not committed).
"""

from __future__ import annotations

import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

from devserver import artifact
from devserver.template import functions, load_template

ROOT = Path(__file__).resolve().parent.parent
SAM = ROOT / ".venv-sam" / "bin" / "sam"
CACHE_DIR = ROOT / ".aws-sam" / "cache"
EM_AARCH64 = 183  # ELF e_machine of arm64

# The first build downloads the layer's wheels (about 10 s here); later ones reuse the cache.
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory) -> Path:
    if not SAM.exists():
        pytest.fail(
            f"{SAM} is missing: install the SAM CLI with `make deps-dev` (Makefile target .venv-sam/bin/sam)",
            pytrace=False,
        )
    out = tmp_path_factory.mktemp("sam-build") / "build"
    cmd = [
        str(SAM), "build",
        "--template", str(ROOT / "template.yaml"),
        "--build-dir", str(out),
        "--cached", "--cache-dir", str(CACHE_DIR),
        "--parallel",
    ]  # fmt: skip
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0"}
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        pytest.fail(
            f"sam build failed (rc={proc.returncode}, {elapsed:.0f} s)\n$ {' '.join(cmd)}\n"
            f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}",
            pytrace=False,
        )
    print(f"sam build took {elapsed:.1f} s")
    return out


def test_build_succeeds_and_writes_a_template(build_dir):
    built = load_template(build_dir / "template.yaml")
    for logical_id, resource in functions(built).items():
        code_uri = resource["Properties"]["CodeUri"]
        assert (build_dir / code_uri).is_dir(), f"{logical_id}: {code_uri}"


def test_shared_layer_holds_the_paywalls_package(build_dir):
    package = build_dir / "SharedLayer" / "python" / "paywalls"
    assert (package / "__init__.py").is_file()
    expected = {
        p.relative_to(ROOT / "shared").as_posix()
        for p in (ROOT / "shared" / "paywalls").rglob("*.py")
        if "__pycache__" not in p.parts
    }
    built = {p.relative_to(build_dir / "SharedLayer").as_posix().removeprefix("python/") for p in package.rglob("*.py")}
    assert built == expected
    # The hosted pages' Jinja2 templates ship in the package (pages.TEMPLATES), every one of them.
    templates = {p.name for p in (ROOT / "shared" / "paywalls" / "http" / "templates").glob("*.html")}
    assert templates and {p.name for p in (package / "http" / "templates").glob("*.html")} == templates
    assert not list(package.rglob("*.cpython-311.pyc")), "pyc files of the build machine's Python"
    assert_compiled_for_python313(package)
    assert not (build_dir / "SharedLayer" / "Makefile").exists()


def assert_compiled_for_python313(site: Path) -> None:
    """Every module has a python3.13 .pyc that the runtime uses without looking at the source:
    /opt is read-only in Lambda, so a missing or stale .pyc is recompiled on every cold start."""
    magic = python313_magic()
    missing = []
    for source in site.rglob("*.py"):
        compiled = source.parent / "__pycache__" / f"{source.stem}.cpython-313.pyc"
        if not compiled.is_file():
            missing.append(source.relative_to(site).as_posix())
            continue
        header = compiled.read_bytes()[:8]
        assert header[:4] == magic, f"{compiled}: not python3.13 bytecode"
        # PEP 552 flags: bit 0 = hash-based, bit 1 = check_source. Unchecked hash = 0b01.
        assert int.from_bytes(header[4:8], "little") == 0b01, f"{compiled}: not an unchecked-hash pyc"
    assert not missing, f"{len(missing)} modules without a python3.13 .pyc, e.g. {missing[:5]}"


def python313_magic() -> bytes:
    try:
        python = artifact.python313()
    except RuntimeError as missing:
        pytest.fail(f"{missing}: needed to check the layers' bytecode", pytrace=False)
    proc = subprocess.run(
        [python, "-c", "import importlib.util, sys; sys.stdout.write(importlib.util.MAGIC_NUMBER.hex())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return bytes.fromhex(proc.stdout)


def test_dependencies_layer_is_built_for_python313_arm64(build_dir):
    site = build_dir / "DependenciesLayer" / "python"
    for package in (
        "fastapi",
        "mangum",
        "uvicorn",
        "httpx",
        "stripe",
        "pydantic",
        "aws_lambda_powertools",
        "yaml",
        "aws_xray_sdk",
        "wrapt",
    ):
        assert (site / package).is_dir(), package
    # The runtime provides boto3/botocore; a copy in the layer would shadow (and mismatch) them.
    assert not (site / "botocore").exists() and not (site / "boto3").exists()
    extensions = list(site.rglob("*.so"))
    assert extensions, "no compiled extension at all (pydantic_core should be one)"
    for ext in extensions:
        assert "cpython-313-aarch64-linux-gnu" in ext.name or ext.name.endswith(".abi3.so"), ext.name
        with open(ext, "rb") as fh:
            header = fh.read(20)
        assert header[:4] == b"\x7fELF" and int.from_bytes(header[18:20], "little") == EM_AARCH64, ext
    assert (site / "pydantic_core").is_dir()
    assert not list(site.rglob("*.cpython-311.pyc")), "pyc files of the build machine's Python"
    assert_compiled_for_python313(site)


def test_chat_function_artifact(build_dir):
    run_sh = build_dir / "ChatFunction" / "run.sh"
    assert run_sh.is_file()
    assert run_sh.stat().st_mode & stat.S_IXUSR and run_sh.stat().st_mode & stat.S_IXOTH, "run.sh not executable"
    assert run_sh.read_text().startswith("#!/bin/bash")


def test_function_artifacts_hold_only_their_own_files(build_dir):
    for logical_id, resource in functions(load_template(ROOT / "template.yaml")).items():
        source = ROOT / resource["Properties"]["CodeUri"]
        built = build_dir / logical_id
        names = {p.name for p in built.iterdir()}
        wanted = {p.name for p in source.glob("*.py") if not p.name.startswith("test_") and p.name != "conftest.py"}
        if logical_id == "ChatFunction":
            wanted.add("run.sh")
        assert names == wanted, logical_id
        if (source / "app.py").exists():
            assert (built / "app.py").is_file(), logical_id
