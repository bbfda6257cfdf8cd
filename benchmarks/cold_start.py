"""Cold start of the built artifact, per function: the time a fresh python3.13 takes to import each
function's handler module, laid out as Lambda lays it out (devserver.artifact: the same Makefiles
`sam build` runs, wheels for this machine), with the layers' .pyc and without them.

Why "without": Lambda's /opt is read-only, so a layer shipped without .pyc is compiled again on every
cold start (PYTHONDONTWRITEBYTECODE=1 reproduces that: nothing compiled is kept between runs). The
runtime's own boto3 is precompiled in both cases (it is not in our layers). Both variants are
measured in the same run, interleaved, so the ratio is meaningful on a noisy machine.
Run: make bench (or .venv/bin/python benchmarks/cold_start.py)."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devserver import artifact  # noqa: E402

REPEAT = int(os.environ.get("COLD_START_REPEAT", "7"))
PROBE = """
import sys, time
started = time.perf_counter()
import app  # noqa: F401  (the handler module, as the runtime imports it)
print((time.perf_counter() - started) * 1000)
"""


def once(built: artifact.Artifact, logical_id: str, *, keep_bytecode: bool) -> float:
    env = built.env(logical_id, TABLE_NAME="PaywallsTable", SECRET_PREFIX="paywalls/bench")
    if not keep_bytecode:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    proc = subprocess.run(
        [built.python, "-c", PROBE], capture_output=True, text=True, env=env, cwd=built.function_dir(logical_id)
    )
    if proc.returncode != 0:
        raise SystemExit(f"{logical_id}: import failed\n{proc.stderr[-3000:]}")
    return float(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    built = artifact.build()
    stripped_root = built.root.parent / "native-nopyc"
    stripped = artifact.without_bytecode(built, stripped_root)
    print(f"cold start: import of the handler module, fresh {built.python} per sample, {REPEAT} samples each")
    print(f"{'function':<24} {'.pyc p50':>9} {'max':>7}   {'no .pyc p50':>11} {'max':>7}   {'ratio':>6}")
    for logical_id in sorted(p.name for p in (built.root / "functions").iterdir() if (p / "app.py").is_file()):
        with_pyc, without = [], []
        for _ in range(REPEAT):
            with_pyc.append(once(built, logical_id, keep_bytecode=True))
            without.append(once(stripped, logical_id, keep_bytecode=False))
        a, b = statistics.median(with_pyc), statistics.median(without)
        print(f"{logical_id:<24} {a:>9.1f} {max(with_pyc):>7.1f}   {b:>11.1f} {max(without):>7.1f}   {a / b:>6.2f}")
    shutil.rmtree(stripped_root, ignore_errors=True)


if __name__ == "__main__":
    main()
