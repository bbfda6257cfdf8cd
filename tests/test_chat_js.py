"""The official `openai` npm package as a second real client (tests/js/stream.test.mjs, node --test)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Any

from tests.chat_support import ECHO_PRICE, charges, expected_cost, fund, make_paywall, new_user
from tests.conftest import ROOT, LocalStack

JS_DIR = ROOT / "tests" / "js"


def _node_results(
    stack: LocalStack, node: str, user_name: str, *arguments: str
) -> tuple[dict[str, Any], str, dict[str, dict[str, Any]]]:
    """Runs `node --test *arguments` in tests/js against a new paywall, as a funded user (and a broke
    one): the paywall, the funded user, and each RESULT line the scripts print, by its test name."""
    paywall = make_paywall(stack)
    user = new_user(user_name)
    fund(stack, paywall["id"], user, "1")
    env = {
        **os.environ,
        "PAYWALLS_BASE_URL": f"{stack.url}/v1",
        "PAYWALLS_API_KEY": paywall["key"],
        "PAYWALLS_USER": user,
        "PAYWALLS_BROKE_USER": new_user(f"{user_name}-broke"),
    }
    run = subprocess.run([node, "--test", *arguments], cwd=JS_DIR, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    results: dict[str, dict[str, Any]] = {}
    for line in run.stdout.splitlines():
        _, marker, payload = line.partition("RESULT ")
        if marker:
            result = json.loads(payload)
            results[result["test"]] = result
    return paywall, user, results


def test_openai_npm_package_streams_through_the_proxy(stack: LocalStack) -> None:
    node = shutil.which("node")
    # A missing tool fails the test, never skips it (make test installs it).
    assert node is not None and (JS_DIR / "node_modules" / "openai").is_dir(), "`make deps-dev` runs npm install"
    _, _, results = _node_results(stack, node, "js", "stream.test.mjs")
    assert results["echo"]["text"] == "streamed from node js"
    assert results["echo"]["usage"]["completion_tokens"] == 4
    assert results["paywall"]["action"] == "topup"


def test_openai_npm_package_on_the_responses_api_and_embeddings_with_exact_charges(stack: LocalStack) -> None:
    node = shutil.which("node")
    assert node is not None and (JS_DIR / "node_modules" / "openai").is_dir(), "`make deps-dev` runs npm install"
    paywall, user, results = _node_results(stack, node, "jsr", "--test-concurrency=1", "responses.test.mjs")
    assert results["paywall"]["action"] == "topup"
    # The demo counts words: input = words + 1 per item, output = words echoed; embeddings: words.
    assert (results["create"]["usage"]["input_tokens"], results["create"]["usage"]["output_tokens"]) == (5, 4)
    assert (results["stream"]["usage"]["input_tokens"], results["stream"]["usage"]["output_tokens"]) == (5, 4)
    assert results["embeddings"]["usage"]["prompt_tokens"] == 5
    expected = sorted(
        [
            expected_cost(ECHO_PRICE, {"prompt_tokens": 5, "completion_tokens": 4}),
            expected_cost(ECHO_PRICE, {"prompt_tokens": 5, "completion_tokens": 4}),
            expected_cost(ECHO_PRICE, {"prompt_tokens": 5, "completion_tokens": 0}),
        ]
    )
    assert sorted(-int(c["amount"]) for c in charges(stack, paywall["key"], user)) == expected
