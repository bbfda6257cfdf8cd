"""What outbound webhooks add to a chat completion (issue 11): the same requests through the proxy to
two paywalls of one in-process stack (devserver.inprocess: DynamoDB answered in this process, so the
figures are our own work plus moto's), one without webhook subscriptions and one with three active
subscriptions that want every usage charge, samples interleaved; then each kind's DynamoDB round
trips and the items of its transactions (the event rides in the settlement's TransactWriteItems:
no extra round trip).

    .venv/bin/python benchmarks/webhooks_overhead.py --requests 50"""

from __future__ import annotations

import argparse
import statistics
import time

import httpx

from devserver.inprocess import inprocess_stack

BODY = {"model": "demo/echo", "messages": [{"role": "user", "content": "measure what a webhook costs"}]}


def timed(client: httpx.Client, url: str, key: str, stream: bool) -> float:
    started = time.perf_counter()
    with client.stream(
        "POST", url, json={**BODY, "user": "bench", "stream": stream}, headers={"Authorization": f"Bearer {key}"}
    ) as reply:
        reply.raise_for_status()
        for _ in reply.iter_bytes():
            pass
    return (time.perf_counter() - started) * 1000


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=50)
    count = parser.parse_args().requests
    with inprocess_stack() as stack:
        plain = stack.paywall()
        hooked = stack.paywall()
        for paywall in (plain, hooked):
            stack.fund(paywall["id"], "bench", "1000")
        stack.subscribe(hooked["id"], 3, ["paywall.usage.charge.created", "paywall.balance.*"])
        url = f"{stack.url}/v1/chat/completions"
        samples: dict[tuple[str, bool], list[float]] = {}
        with httpx.Client(timeout=30) as client:
            for stream in (False, True):
                for paywall in (plain, hooked):
                    timed(client, url, paywall["key"], stream)  # warm the caches
            for _ in range(count):
                for stream in (False, True):
                    for name, paywall in (("0 subscriptions", plain), ("3 subscriptions", hooked)):
                        samples.setdefault((name, stream), []).append(timed(client, url, paywall["key"], stream))
        print(f"chat latency through the proxy, in-process DynamoDB, {count} requests per case (ms)")
        print(f"{'case':<34}{'p50':>9}{'p99':>9}{'mean':>9}")
        for stream in (False, True):
            for name in ("0 subscriptions", "3 subscriptions"):
                values = samples[(name, stream)]
                label = f"{'stream' if stream else 'json'}, {name}"
                p50, p99, mean = percentile(values, 50), percentile(values, 99), statistics.mean(values)
                print(f"{label:<34}{p50:>9.2f}{p99:>9.2f}{mean:>9.2f}")
            base, hook = samples[("0 subscriptions", stream)], samples[("3 subscriptions", stream)]
            diff = percentile(hook, 50) - percentile(base, 50)
            print(f"{'  difference (p50)':<34}{diff:>9.2f}")
        print("\nDynamoDB per request (warm instance): round trips, items of each TransactWriteItems")
        for stream in (False, True):
            for name, paywall in (("0 subscriptions", plain), ("3 subscriptions", hooked)):

                def request(key: str = paywall["key"], s: bool = stream) -> None:
                    with httpx.Client(timeout=30) as client:
                        timed(client, url, key, s)

                placed = stack.measure(request)
                label = f"{'stream' if stream else 'json'}, {name}"
                print(f"{label:<34} calls={placed.total} transaction items={placed.transaction_items}")


if __name__ == "__main__":
    main()
