"""What the proxy adds to a chat completion, a Responses-API call and an embedding: the same requests
straight to the demo provider (/_demo/v1/...) and through the proxy (/v1/...: key lookup, hold,
provider call, settlement), non-streaming and streaming (embeddings: JSON only), direct and proxied
samples interleaved, every endpoint in the same run.

Two stacks, measured in the same run:
- "in-process": DynamoDB answered inside the server process (devserver.inprocess): the added
  latency is our own work plus moto's, with no network hop to a database;
- "local engine": `make run` (the engine in its own process behind HTTP and one lock).
Then the DynamoDB round trips of every request kind, placed before the first byte, between the last
chunk and [DONE], and after the last byte (devserver.inprocess.measure_kinds).

Prints p50/p99 latency and time to first chunk (TTFC), and the differences. Bounded: by default 50
requests per case; all on 127.0.0.1.

    make bench            # or: .venv/bin/python benchmarks/proxy_overhead.py --requests 50"""

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
TEXT = "measure the overhead of a proxy hop"
# endpoint -> (path under /v1, body, streamed too)
ENDPOINTS: dict[str, tuple[str, dict, bool]] = {
    "chat": ("/chat/completions", {"model": "demo/echo", "messages": [{"role": "user", "content": TEXT}]}, True),
    "responses": ("/responses", {"model": "demo/echo", "input": TEXT}, True),
    "embeddings": ("/embeddings", {"model": "demo/echo", "input": [TEXT, TEXT]}, False),
}


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


@contextlib.contextmanager
def inprocess_server(*, replay: bool = False) -> Iterator[tuple[str, dict[str, str]]]:
    """devserver.inprocess served from its own process; yields (base URL, proxy headers). `replay`:
    DynamoDB answered from recorded answers (devserver.inprocess.ReplayedDynamoDB), no moto."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "devserver.inprocess", *(["--replay"] if replay else [])],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if not line.startswith("{"):
            raise RuntimeError(f"in-process stack failed to start: {line!r}")
        ready = json.loads(line)
        yield ready["url"], {"Authorization": f"Bearer {ready['key']}", "X-Paywall-User": ready["user"]}
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()


@contextlib.contextmanager
def engine_server() -> Iterator[tuple[str, dict[str, str]]]:
    with local_stack() as (base, local):
        user = "bench-" + uuid.uuid4().hex[:8]
        admin = {"Authorization": f"Bearer {local['admin_token']}", "Idempotency-Key": uuid.uuid4().hex}
        httpx.post(
            f"{base}/admin/paywalls/{local['paywall_id']}/users/{user}/adjustments",
            json={"amount": "100", "environment": "live"},
            headers=admin,
            timeout=30,
        ).raise_for_status()
        yield base, {"Authorization": f"Bearer {local['api_key']}", "X-Paywall-User": user}


Case = tuple[str, str, bool]  # (endpoint, "direct" or "proxy", streamed)


def measure_stack(base: str, proxy_headers: dict[str, str], count: int, *, bare: bool = False) -> dict[Case, list]:
    """Each case direct, through our proxy and (`bare`: the in-process stacks) through a bare proxy
    hop (devserver.inprocess.with_bare_proxy: Starlette + httpx, no billing), interleaved."""
    targets = {
        "direct": (f"{base}/_demo/v1", {"Authorization": f"Bearer {DEMO_KEY}"}),
        "proxy": (f"{base}/v1", proxy_headers),
    }
    if bare:
        targets["bare"] = (f"{base}/_bench/bare/v1", {})
    cases = [(e, s) for e, (_, _, streams) in ENDPOINTS.items() for s in ((False, True) if streams else (False,))]
    results: dict[Case, list[tuple[float, float]]] = {(e, n, s): [] for e, s in cases for n in targets}
    with httpx.Client(timeout=60) as client:
        for endpoint, stream in cases:
            path, body = ENDPOINTS[endpoint][:2]
            for root, headers in targets.values():
                for _ in range(5):  # warm-up: connections, caches, first imports
                    timed(client, root + path, headers, body, stream)
            for _ in range(count):  # interleaved, so both see the same machine
                for name, (root, headers) in targets.items():
                    results[(endpoint, name, stream)].append(timed(client, root + path, headers, body, stream))
    return results


def report(title: str, results: dict[Case, list]) -> dict[str, dict[str, float]]:
    """Prints the table and the added p50/p99; returns {"proxy"|"bare": {kind: added p50 ms}}."""
    print(f"\n{title} (ms)")
    print(f"{'case':<28}{'p50 total':>11}{'p99 total':>11}{'p50 TTFC':>11}{'p99 TTFC':>11}")
    for (endpoint, name, stream), samples in results.items():
        totals = [t * 1000 for _, t in samples]
        firsts = [f * 1000 for f, _ in samples]
        label = f"{endpoint} {name} {'stream' if stream else 'json'}"
        print(
            f"{label:<28}{percentile(totals, 50):>11.2f}{percentile(totals, 99):>11.2f}"
            f"{percentile(firsts, 50):>11.2f}{percentile(firsts, 99):>11.2f}"
        )
    added: dict[str, dict[str, float]] = {}
    for endpoint, name, stream in results:
        if name == "direct":
            continue
        direct, proxy = results[(endpoint, "direct", stream)], results[(endpoint, name, stream)]
        kind = f"{endpoint} {'stream' if stream else 'json'}"
        metric = 0 if stream else 1  # streams: time to first chunk; json: whole response
        d50 = statistics.median(x[metric] for x in direct) * 1000
        p50 = statistics.median(x[metric] for x in proxy) * 1000
        d99 = percentile([x[metric] for x in direct], 99) * 1000
        p99 = percentile([x[metric] for x in proxy], 99) * 1000
        what = "time to first chunk" if stream else "latency"
        who = "the proxy" if name == "proxy" else "a bare proxy hop (no billing)"
        print(f"added by {who} ({kind}, {what}): p50 +{p50 - d50:.2f} ms, p99 +{p99 - d99:.2f} ms")
        added.setdefault(name, {})[kind] = p50 - d50
    return added


def timed(client: httpx.Client, url: str, headers: dict[str, str], body: dict, stream: bool) -> tuple[float, float]:
    """(seconds to the first body bytes, seconds to the end) of one request."""
    started = time.perf_counter()
    first = None
    with client.stream("POST", url, json={**body, "stream": True} if stream else body, headers=headers) as response:
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
    parser.add_argument("--requests", type=int, default=50, help="requests per case")
    args = parser.parse_args()
    count = max(5, min(args.requests, 500))

    with inprocess_server(replay=True) as (base, headers):
        replayed = measure_stack(base, headers, count, bare=True)
    with inprocess_server() as (base, headers):
        inprocess = measure_stack(base, headers, count)
    with engine_server() as (base, headers):
        engine = measure_stack(base, headers, count)
    replayed_added = report(f"DynamoDB replayed, no database (our own cost), {count} requests per case", replayed)
    own, bare = replayed_added["proxy"], replayed_added["bare"]
    moto = report(f"in-process DynamoDB (ours + moto's work), {count} requests per case", inprocess)["proxy"]
    local = report(f"local engine (make run), {count} requests per case", engine)["proxy"]
    for kind in own:
        print(
            f"added p50, {kind}: own cost {own[kind]:.2f} ms (a bare proxy hop {bare[kind]:.2f} ms: billing"
            f" {own[kind] - bare[kind]:+.2f} ms, {own[kind] / bare[kind]:.2f}x the bare hop), with in-process moto"
            f" {moto[kind]:.2f} ms, with the local engine {local[kind]:.2f} ms"
        )

    sys.path.insert(0, str(ROOT))
    from devserver.inprocess import inprocess_stack, measure_kinds

    with inprocess_stack() as stack:
        placed = measure_kinds(stack)
    print("\nDynamoDB calls per request (warm instance)")
    width = max(len(kind) for kind in placed) + 2
    print(f"{'kind':<{width}}{'waited for before 1st byte':>27}{'last chunk..[DONE]':>20}{'total':>7}  overlapped")
    for kind, p in placed.items():
        print(
            f"{kind:<{width}}{len(p.critical_before_first_byte):>27}{len(p.before_done):>20}{p.total:>7}"
            f"  {', '.join(p.while_provider) or '-'}"
        )


if __name__ == "__main__":
    main()
