"""Cold-start cost of each function: the time to import its app module in a fresh interpreter (what
a new Lambda environment pays before the first request, on top of the runtime's own start).

Each function is imported REPEAT times in new processes; prints median and max in milliseconds.
Run: make bench (or .venv/bin/python benchmarks/cold_start.py)."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPEAT = 7
PROBE = """
import sys, time
sys.path.insert(0, {folder!r})
started = time.perf_counter()
import app  # noqa: F401  (the Lambda handler module, as the runtime imports it)
print((time.perf_counter() - started) * 1000)
"""


def measure(folder: Path) -> list[float]:
    env = {
        **os.environ,
        "AWS_DEFAULT_REGION": "us-east-1",
        "TABLE_NAME": "PaywallsTable",
        "PYTHONDONTWRITEBYTECODE": "0",
    }
    samples = []
    for _ in range(REPEAT):
        out = subprocess.run(
            [sys.executable, "-c", PROBE.format(folder=str(folder))],
            capture_output=True,
            text=True,
            env=env,
            cwd=ROOT,
            check=True,
        ).stdout
        samples.append(float(out.strip().splitlines()[-1]))
    return samples


def main() -> None:
    print(f"{'function':<16} {'median ms':>10} {'max ms':>10}   (import of app.py, {REPEAT} fresh processes)")
    for folder in sorted((ROOT / "functions").iterdir()):
        if (folder / "app.py").exists():
            samples = measure(folder)
            print(f"{folder.name:<16} {statistics.median(samples):>10.1f} {max(samples):>10.1f}")


if __name__ == "__main__":
    main()
