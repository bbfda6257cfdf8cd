"""Cold start of the built artifact, per function: the time a fresh python3.13 takes to import each
function's handler module, laid out as Lambda lays it out (devserver.artifact: the same Makefiles
`sam build` runs, wheels for this machine), with the layers' .pyc and without them.

Why "without": Lambda's /opt is read-only, so a layer shipped without .pyc is compiled again on every
cold start (PYTHONDONTWRITEBYTECODE=1 reproduces that: nothing compiled is kept between runs). The
runtime's own boto3 is precompiled in both cases (it is not in our layers). Both variants are
measured in the same run, interleaved, so the ratio is meaningful on a noisy machine.

The environment is a deployed function's (credentials in the environment, AWS_LAMBDA_FUNCTION_NAME
and LAMBDA_TASK_ROOT set: JSON logs, the http transport). The chat function runs behind the Lambda
Web Adapter, whose server (uvicorn) is imported before the app: its column "+ uvicorn" is both
imports, the app's column the app's alone (what our code costs), and "+ tracer" adds what its startup
hook does in the init phase when X-Ray tracing is on (the template's default: the X-Ray SDK).
"botocore" says whether the import loaded botocore's client machinery (the chat function must not:
infra/aws.py).
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
if WEB_ADAPTER:
    import uvicorn.main  # noqa: F401  (run.sh: python -m uvicorn ... app:app)
server = time.perf_counter()
import app  # noqa: F401  (the handler module, as the runtime imports it)
done = time.perf_counter()
botocore = "botocore.client" in sys.modules
if WEB_ADAPTER:
    from paywalls.infra import telemetry
    assert telemetry.tracer() is not None  # the chat app's startup hook, tracing on
traced = time.perf_counter()
print((done - server) * 1000, (done - started) * 1000, (traced - started) * 1000, botocore)
"""
DEPLOYED = {
    "AWS_ACCESS_KEY_ID": "ASIABENCHMARK",
    "AWS_SECRET_ACCESS_KEY": "benchmark",
    "AWS_SESSION_TOKEN": "benchmark",
    "AWS_LAMBDA_FUNCTION_NAME": "bench",
    "POWERTOOLS_TRACE_DISABLED": "false",
    "TABLE_NAME": "PaywallsTable",
    "SECRET_PREFIX": "paywalls/bench",
}


def once(built: artifact.Artifact, logical_id: str, *, keep_bytecode: bool) -> tuple[float, float, float, bool]:
    """(ms to import the app, ms with its server's import before it, ms with the tracer's start after
    it, whether botocore.client was loaded by the import)."""
    env = built.env(logical_id, **DEPLOYED, LAMBDA_TASK_ROOT=str(built.function_dir(logical_id)))
    if not keep_bytecode:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    web_adapter = (built.function_dir(logical_id) / "run.sh").is_file()
    proc = subprocess.run(
        [built.python, "-c", f"WEB_ADAPTER = {web_adapter}\n" + PROBE],
        capture_output=True,
        text=True,
        env=env,
        cwd=built.function_dir(logical_id),
    )
    if proc.returncode != 0:
        raise SystemExit(f"{logical_id}: import failed\n{proc.stderr[-3000:]}")
    app_ms, total_ms, traced_ms, botocore = proc.stdout.strip().splitlines()[-1].split()
    return float(app_ms), float(total_ms), float(traced_ms), botocore == "True"


def main() -> None:
    built = artifact.build()
    stripped_root = built.root.parent / "native-nopyc"
    stripped = artifact.without_bytecode(built, stripped_root)
    print(f"cold start: import of the handler module, fresh {built.python} per sample, {REPEAT} samples each")
    print(
        f"{'function':<24} {'.pyc p50':>9} {'max':>7} {'+ uvicorn':>10} {'+ tracer':>9}   {'no .pyc p50':>11}"
        f" {'max':>7}   {'ratio':>6}  botocore"
    )
    for logical_id in sorted(p.name for p in (built.root / "functions").iterdir() if (p / "app.py").is_file()):
        with_pyc, without = [], []
        for _ in range(REPEAT):
            with_pyc.append(once(built, logical_id, keep_bytecode=True))
            without.append(once(stripped, logical_id, keep_bytecode=False))
        a, b = statistics.median(x[0] for x in with_pyc), statistics.median(x[0] for x in without)
        served = statistics.median(x[1] for x in with_pyc)
        traced = statistics.median(x[2] for x in with_pyc)
        web_adapter = (built.function_dir(logical_id) / "run.sh").is_file()
        print(
            f"{logical_id:<24} {a:>9.1f} {max(x[0] for x in with_pyc):>7.1f}"
            f" {(f'{served:.1f}' if web_adapter else '-'):>10} {(f'{traced:.1f}' if web_adapter else '-'):>9}"
            f"   {b:>11.1f} {max(x[0] for x in without):>7.1f}   {a / b:>6.2f}  {'yes' if with_pyc[0][3] else 'no'}"
        )
    shutil.rmtree(stripped_root, ignore_errors=True)


if __name__ == "__main__":
    main()
