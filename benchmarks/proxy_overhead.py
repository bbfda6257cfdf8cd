"""What the proxy adds to a chat completion: the same requests straight to the demo provider
(/_demo/v1/chat/completions) and through the proxy (/v1/chat/completions: key lookup, hold,
provider call, settlement), non-streaming and streaming, on the local stack it starts itself.

Prints p50/p99 latency and time to first chunk (TTFC) for both, and the difference. Bounded: by
default 50 requests per case, 4 cases (200 requests) plus a short warm-up; all on 127.0.0.1.

    make bench            # or: .venv/bin/python benchmarks/proxy_overhead.py --requests 50

Locally the ledger lives in moto behind one lock (devserver/engine.py), so the proxy's DynamoDB
round trips cost more here than DynamoDB's single-digit milliseconds in AWS."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
DEMO_KEY = "demo-provider-key"  # devserver.demo_provider.DEMO_KEY, without importing the app
BODY = {"model": "demo/echo", "messages": [{"role": "user", "content": "measure the overhead of a proxy hop"}]}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def local_stack() -> Iterator[tuple[str, dict]]:
    """`make run` on a free port with its own state dir; yields (base URL, local.json)."""
    port = free_port()
    state = Path(tempfile.mkdtemp(prefix="paywalls-bench-"))
    log = open(state / "stack.log", "w")  # noqa: SIM115 - closed in finally, after the process
    proc = subprocess.Popen(
        [sys.executable, "-m", "devserver", "--port", str(port), "--state-dir", str(state)],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "AWS_ENDPOINT_URL"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError((state / "stack.log").read_text())
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("local stack not ready in 60 s")
            time.sleep(0.2)
        yield base, json.loads((state / "local.json").read_text())
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def timed(client: httpx.Client, url: str, headers: dict[str, str], stream: bool) -> tuple[float, float]:
    """(seconds to the first body bytes, seconds to the end) of one request."""
    started = time.perf_counter()
    first = None
    with client.stream("POST", url, json={**BODY, "stream": stream}, headers=headers) as response:
        response.raise_for_status()
        for _ in response.iter_raw():
            first = first or time.perf_counter()
    end = time.perf_counter()
    if response.headers.get("x-paywall-action"):
        raise RuntimeError("the benchmark user ran out of money")
    return (first or end) - started, end - started


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(pct / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=50, help="requests per case (4 cases)")
    args = parser.parse_args()
    count = max(5, min(args.requests, 500))

    with local_stack() as (base, local):
        user = "bench-" + uuid.uuid4().hex[:8]
        admin = {"Authorization": f"Bearer {local['admin_token']}", "Idempotency-Key": uuid.uuid4().hex}
        httpx.post(
            f"{base}/admin/paywalls/{local['paywall_id']}/users/{user}/adjustments",
            json={"amount": "100", "environment": "live"},
            headers=admin,
            timeout=30,
        ).raise_for_status()
        targets = {
            "direct": (f"{base}/_demo/v1/chat/completions", {"Authorization": f"Bearer {DEMO_KEY}"}),
            "proxy": (
                f"{base}/v1/chat/completions",
                {"Authorization": f"Bearer {local['api_key']}", "X-Paywall-User": user},
            ),
        }
        results: dict[tuple[str, bool], list[tuple[float, float]]] = {}
        with httpx.Client(timeout=60) as client:
            for name, (url, headers) in targets.items():
                for stream in (False, True):
                    for _ in range(5):  # warm-up: connections, caches, first imports
                        timed(client, url, headers, stream)
                    results[(name, stream)] = [timed(client, url, headers, stream) for _ in range(count)]

    print(f"\nproxy overhead, {count} sequential requests per case, local stack on 127.0.0.1 (ms)\n")
    print(f"{'case':<20}{'p50 total':>11}{'p99 total':>11}{'p50 TTFC':>11}{'p99 TTFC':>11}")
    for (name, stream), samples in results.items():
        totals = [t * 1000 for _, t in samples]
        firsts = [f * 1000 for f, _ in samples]
        label = f"{name} {'stream' if stream else 'json'}"
        print(
            f"{label:<20}{percentile(totals, 50):>11.2f}{percentile(totals, 99):>11.2f}"
            f"{percentile(firsts, 50):>11.2f}{percentile(firsts, 99):>11.2f}"
        )
    print()
    for stream in (False, True):
        direct, proxy = results[("direct", stream)], results[("proxy", stream)]
        kind = "stream" if stream else "json"
        metric = 0 if stream else 1  # streams: time to first chunk; json: whole response
        d50 = statistics.median(x[metric] for x in direct) * 1000
        p50 = statistics.median(x[metric] for x in proxy) * 1000
        d99 = percentile([x[metric] for x in direct], 99) * 1000
        p99 = percentile([x[metric] for x in proxy], 99) * 1000
        what = "time to first chunk" if stream else "latency"
        print(f"added by the proxy ({kind}, {what}): p50 +{p50 - d50:.2f} ms, p99 +{p99 - d99:.2f} ms")


if __name__ == "__main__":
    main()
