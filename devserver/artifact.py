"""The deployable artifact, built for *this* machine so it can be run here: every layer and function
built by its own Makefile (the recipe `sam build` runs), with the dependency layer's wheels for this
machine's architecture instead of arm64 (`PLATFORM`), laid out as Lambda lays it out: the function's
code first on sys.path, then each layer's `python/` folder (Lambda's /opt/python).

Used by the cold-start benchmark and the artifact smoke test: what they import is what ships, so a
module missing from a layer, or a dependency missing from layers/dependencies/requirements.txt,
shows up here rather than in AWS. The runtime's own boto3 (Lambda's python3.13 provides it) is
installed once beside it, precompiled like the runtime's."""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from devserver.template import functions, load_template

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / ".aws-sam" / "native"
LAYERS = {"DependenciesLayer": ROOT / "layers" / "dependencies", "SharedLayer": ROOT / "shared"}


def python313() -> str:
    """A python3.13 interpreter, the Lambda runtime's version (pyenv's is found too)."""
    candidates = ["python3.13", *sorted(str(p) for p in Path.home().glob(".pyenv/versions/3.13*/bin/python3.13"))]
    for candidate in candidates:
        if not (shutil.which(candidate) or Path(candidate).exists()):
            continue
        check = subprocess.run(
            [candidate, "-c", "import sys; assert sys.version_info[:2] == (3, 13)"], capture_output=True
        )
        if check.returncode == 0:
            return candidate
    raise RuntimeError("python3.13 not found (e.g. `pyenv install 3.13`): the artifact targets the python3.13 runtime")


@dataclass(frozen=True)
class Artifact:
    root: Path
    python: str

    def layer_paths(self) -> list[Path]:
        return [self.root / layer / "python" for layer in LAYERS] + [self.root / "runtime"]

    def function_dir(self, logical_id: str) -> Path:
        return self.root / "functions" / logical_id

    def env(self, logical_id: str, **extra: str) -> dict[str, str]:
        """Environment of a process that runs `logical_id` as Lambda would (imports only from the
        artifact: the local tree and its virtualenv are not on the path)."""
        path = [self.function_dir(logical_id), *self.layer_paths()]
        return {
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": os.pathsep.join(str(p) for p in path),
            "PYTHONNOUSERSITE": "1",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            **extra,
        }


def _fingerprint() -> str:
    """Changes when any input of the build does (sources, requirements, Makefiles, template)."""
    digest = hashlib.sha256()
    inputs = [ROOT / "template.yaml", *LAYERS.values(), ROOT / "functions"]
    for base in inputs:
        files = [base] if base.is_file() else sorted(p for p in base.rglob("*") if p.is_file())
        for path in files:
            if "__pycache__" in path.parts or path.suffix == ".pyc":
                continue
            digest.update(str(path.relative_to(ROOT)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _make(source: Path, target: str, artifacts: Path, **variables: str) -> None:
    artifacts.mkdir(parents=True, exist_ok=True)
    args = ["make", "--no-print-directory", "-C", str(source), target, f"ARTIFACTS_DIR={artifacts}"]
    args += [f"{name}={value}" for name, value in variables.items()]
    proc = subprocess.run(args, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")


def build(out: Path = OUT) -> Artifact:
    """Build (or reuse, when nothing changed) the native artifact under `out`."""
    python = python313()
    stamp = out / ".fingerprint"
    fingerprint = _fingerprint()
    if stamp.exists() and stamp.read_text() == fingerprint:
        return Artifact(out, python)
    runtime = out / "runtime"
    kept_runtime = runtime.is_dir() and (runtime / "boto3").is_dir()
    for child in out.iterdir() if out.exists() else []:
        if child != runtime or not kept_runtime:
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(platform.machine().lower(), platform.machine().lower())
    _make(LAYERS["DependenciesLayer"], "build-DependenciesLayer", out / "DependenciesLayer",
          PLATFORM=f"manylinux2014_{machine}", PYTHON=sys.executable)  # fmt: skip
    _make(LAYERS["SharedLayer"], "build-SharedLayer", out / "SharedLayer")
    for logical_id, resource in functions(load_template(ROOT / "template.yaml")).items():
        _make(ROOT / resource["Properties"]["CodeUri"], f"build-{logical_id}", out / "functions" / logical_id)
    if not kept_runtime:
        subprocess.run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--target",
                        str(runtime), "boto3"], check=True, capture_output=True)  # fmt: skip
        subprocess.run([python, "-m", "compileall", "-q", "-j", "0", str(runtime)], check=True, capture_output=True)
    stamp.write_text(fingerprint)
    return Artifact(out, python)


def without_bytecode(artifact: Artifact, out: Path) -> Artifact:
    """A copy of `artifact` whose layers carry no .pyc (what a --no-compile build shipped)."""
    shutil.rmtree(out, ignore_errors=True)
    for layer in LAYERS:
        shutil.copytree(artifact.root / layer, out / layer, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copytree(artifact.root / "functions", out / "functions")
    os.symlink(artifact.root / "runtime", out / "runtime")
    return Artifact(out, artifact.python)
