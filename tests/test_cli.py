"""The `paywalls` CLI against the running local stack over HTTP (bearer token), and SigV4 signing
for a deployed stack (checked against a local server that records what it receives)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import httpx

from paywalls import cli
from tests.conftest import LocalStack

ROOT = Path(__file__).resolve().parent.parent


def paywalls(
    stack: LocalStack, *args: str, stdin: str | None = None, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    command = [
        sys.executable,
        "-m",
        "paywalls.cli",
        "--url",
        stack.config["admin_url"],
        "--token",
        stack.config["admin_token"],
        *args,
    ]
    proc = subprocess.run(
        command, input=stdin, capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})}
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def chat_as_new_user(stack: LocalStack, pid: str, user: str, model: str, content: str) -> httpx.Response:
    """Through the CLI, a new key of paywall `pid` and 1.00 for `user`; then one chat completion as
    `user` with that key (over HTTP, as an app would)."""
    key = json.loads(paywalls(stack, "--json", "keys", "create", pid).stdout)["key"]
    paywalls(stack, "adjust", pid, user, "1")
    return httpx.post(
        f"{stack.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": model, "user": user, "messages": [{"role": "user", "content": content}]},
        timeout=30,
    )


def test_cli_wraps_every_admin_call(stack: LocalStack) -> None:
    created = json.loads(paywalls(stack, "--json", "create", "--name", "CLI app", "--trial-credits", "0.5").stdout)
    pid = created["id"]
    assert created["mode"] == "default" and created["trial_credits"] == "0.500000"
    assert "name: CLI app" in paywalls(stack, "get", pid).stdout
    assert json.loads(paywalls(stack, "--json", "update", pid, "--description", "d").stdout)["description"] == "d"
    refused = paywalls(stack, "update", pid, "--mode", "shared", check=False)
    assert refused.returncode == 2 and "unrecognized arguments: --mode" in refused.stderr  # mode is immutable

    key = json.loads(paywalls(stack, "--json", "keys", "create", pid, "--environment", "test").stdout)
    assert key["key"].startswith("sk-paywalls-test-")
    listed = json.loads(paywalls(stack, "--json", "keys", "list", pid).stdout)["data"]
    assert [k["id"] for k in listed] == [key["id"]]

    # The same provider, its key read from stdin, then from the environment.
    set_demo = ("--json", "provider", pid, "--kind", "openai-compatible", "--base-url", f"{stack.url}/_demo/v1")
    provider = paywalls(stack, *set_demo, "--stdin", stdin="demo-provider-key\n")
    assert "demo-provider-key" not in provider.stdout
    from_env = paywalls(stack, *set_demo, env={"PAYWALLS_PROVIDER_API_KEY": "demo-provider-key"})
    assert json.loads(from_env.stdout)["api_key_set"] is True
    no_secret = paywalls(stack, "provider", pid, "--kind", "openai", check=False, env={"PAYWALLS_PROVIDER_API_KEY": ""})
    assert no_secret.returncode == 1 and "stdin" in no_secret.stderr

    pricing = json.loads(
        paywalls(
            stack,
            "--json",
            "pricing",
            pid,
            "--model",
            "demo/echo=1,2,0.0001",
            "--markup-percent",
            "10",
            "--feature",
            "web_search=0.02",
            "--feature",
            "audio=0,40,80",
        ).stdout
    )
    assert pricing["models"]["demo/echo"] == {"prompt": "1", "completion": "2", "request": "0.0001"}
    assert pricing["features"] == {
        "web_search": {"prompt": "0", "completion": "0", "request": "0.02"},
        "audio": {"prompt": "40", "completion": "80", "request": "0"},
    }
    bad_feature = paywalls(stack, "pricing", pid, "--model", "demo/echo=1,2", "--feature", "web_search", check=False)
    assert bad_feature.returncode != 0 and "NAME=REQUEST" in bad_feature.stderr
    templates = json.loads(paywalls(stack, "--json", "templates", pid, "--topup", "Top up: {{url}}").stdout)
    assert templates["topup"] == "Top up: {{url}}"

    adjusted = json.loads(
        paywalls(
            stack, "--json", "adjust", pid, "bob", "1.25", "--environment", "test", "--idempotency-key", "cli-1"
        ).stdout
    )
    assert adjusted["entry"]["amount"] == "1250000"
    users = json.loads(paywalls(stack, "--json", "users", pid, "--environment", "test").stdout)["data"]
    assert users[0]["user"] == "bob" and users[0]["balanceFormatted"] == "1.250000"
    balance = httpx.get(
        f"{stack.url}/v1/user/balance", params={"user": "bob"}, headers={"Authorization": f"Bearer {key['key']}"}
    ).json()
    assert balance["balance"] == "1250000"
    usage = json.loads(paywalls(stack, "--json", "usage", pid, "--environment", "test").stdout)
    assert usage["object"] == "usage"

    revoked = json.loads(paywalls(stack, "--json", "keys", "revoke", pid, key["id"]).stdout)
    assert revoked["revoked"] is True
    missing = paywalls(stack, "get", "pw_missing", check=False)
    assert missing.returncode == 1 and "404" in missing.stderr


def test_cli_reads_local_json_when_no_url_is_given(stack: LocalStack, tmp_path: Path) -> None:
    (tmp_path / ".paywalls").mkdir()
    (tmp_path / ".paywalls" / "local.json").write_text(json.dumps(stack.config))
    proc = subprocess.run(
        [sys.executable, "-m", "paywalls.cli", "--json", "get", stack.config["paywall_id"]],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.startswith("PAYWALLS_ADMIN")},
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["id"] == stack.config["paywall_id"]


class Recorder(BaseHTTPRequestHandler):
    seen: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        Recorder.seen.append({"path": self.path, "headers": dict(self.headers), "body": body})
        data = json.dumps({"id": "pw_x", "object": "paywall"}).encode()
        self.send_response(201)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        pass


def test_cli_signs_with_sigv4_when_no_token(monkeypatch: Any) -> None:
    server = HTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    monkeypatch.delenv("PAYWALLS_ADMIN_TOKEN", raising=False)
    try:
        url = f"http://127.0.0.1:{server.server_port}/prod/admin"
        assert cli.main(["--url", url, "--region", "eu-west-1", "create", "--name", "Signed"]) == 0
    finally:
        server.shutdown()
    request = Recorder.seen[-1]
    authorization = request["headers"]["Authorization"]
    assert authorization.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/eu-west-1/execute-api/aws4_request" in authorization and "Signature=" in authorization
    assert request["headers"]["X-Amz-Date"] and request["path"] == "/prod/admin/paywalls"
    assert json.loads(request["body"]) == {"mode": "default", "name": "Signed"}


class Recording:
    """An AdminClient stand-in that records calls and answers from a script (else `default`)."""

    def __init__(self, answers: dict[tuple[str, str], Any] | None = None, default: Any = None) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.answers = answers or {}
        self.default = {"ok": True} if default is None else default

    def request(self, method: str, path: str, body: Any = None, headers: Any = None) -> Any:
        self.calls.append((method, path, body))
        return self.answers.get((method, path), self.default)


def test_withdrawal_paid_posts_the_reference_to_the_withdrawal() -> None:
    client = Recording(default={"status": "paid"})
    parser = cli.build_parser()
    with_ref = parser.parse_args(["withdrawal-paid", "pw_1", "wd_1", "--reference", "bank-tx-9"])
    assert cli.run(with_ref, client) == {"status": "paid"}  # type: ignore[arg-type]
    cli.run(parser.parse_args(["withdrawal-paid", "pw_1", "wd_2"]), client)  # type: ignore[arg-type]
    assert client.calls == [
        ("POST", "/paywalls/pw_1/withdrawals/wd_1/paid", {"reference": "bank-tx-9"}),
        ("POST", "/paywalls/pw_1/withdrawals/wd_2/paid", {}),
    ]


def test_provider_commands_offer_every_provider_kind() -> None:
    from paywalls.chat.providers import KINDS

    assert cli.PROVIDER_KINDS == KINDS
    parser = cli.build_parser()
    for command in (["provider", "pw_1"], ["provider-add", "pw_1", "claude"]):
        for kind in KINDS:
            assert parser.parse_args([*command, "--kind", kind]).kind == kind


def test_losses_and_earnings_read_the_operator_reports() -> None:
    client = Recording(default={"object": "list", "data": []})
    parser = cli.build_parser()
    cli.run(parser.parse_args(["losses"]), client)  # type: ignore[arg-type]
    cli.run(parser.parse_args(["losses", "--environment", "test"]), client)  # type: ignore[arg-type]
    cli.run(parser.parse_args(["earnings", "pw_1", "--environment", "test"]), client)  # type: ignore[arg-type]
    assert client.calls == [
        ("GET", "/losses?environment=live", None),
        ("GET", "/losses?environment=test", None),
        ("GET", "/paywalls/pw_1/earnings?environment=test", None),
    ]


# ---- the rough edges a new user hit (issue: docs and developer experience) -----------------------


def test_every_option_and_argument_has_help_text() -> None:
    missing = []

    def walk(parser: Any, path: str) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {choice.dest: choice.help for choice in action._choices_actions}
                for name, sub in action.choices.items():
                    if not helps.get(name):
                        missing.append(f"{path} {name}")
                    walk(sub, f"{path} {name}")
            elif not isinstance(action, argparse._HelpAction) and not action.help:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")

    walk(cli.build_parser(), "paywalls")
    assert not missing, missing


def test_list_shows_every_paywall(stack: LocalStack) -> None:
    pid = json.loads(paywalls(stack, "--json", "create", "--name", "Listed app").stdout)["id"]
    listed = paywalls(stack, "list").stdout
    assert f"id={pid}  mode=default  name=Listed app  provider=none  models=0" in listed
    assert f"id={stack.config['paywall_id']}" in listed
    assert pid in {p["id"] for p in json.loads(paywalls(stack, "--json", "list").stdout)["data"]}
    first = paywalls(stack, "list", "--limit", "1").stdout.splitlines()
    assert len(first) == 2 and first[1].startswith("(more: --cursor ")
    second = json.loads(paywalls(stack, "--json", "list", "--limit", "1", "--cursor", first[1].split()[-1][:-1]).stdout)
    assert len(second["data"]) == 1 and second["data"][0]["id"] not in first[0]


def test_pricing_merges_unless_replace_and_removes(stack: LocalStack) -> None:
    pid = json.loads(paywalls(stack, "--json", "create", "--name", "Prices").stdout)["id"]

    def models(*args: str) -> dict[str, Any]:
        return json.loads(paywalls(stack, "--json", "pricing", pid, *args).stdout)["models"]

    assert set(models("--model", "demo/echo=1,2")) == {"demo/echo"}
    assert set(models("--model", "demo/slow=3,4")) == {"demo/echo", "demo/slow"}, "merged, not replaced"
    assert models("--model", "demo/echo=5,6")["demo/echo"]["prompt"] == "5"
    assert set(models("--remove", "demo/slow")) == {"demo/echo"}
    assert set(models("--replace", "--model", "demo/tools=1,1")) == {"demo/tools"}
    markup = json.loads(paywalls(stack, "--json", "pricing", pid, "--markup-percent", "7").stdout)
    assert markup["markup_percent"] == "7" and set(markup["models"]) == {"demo/tools"}, "markup alone keeps prices"
    unknown = paywalls(stack, "pricing", pid, "--remove", "nope", check=False)
    assert unknown.returncode == 1 and "not in the price table" in unknown.stderr
    empty = paywalls(stack, "pricing", pid, "--replace", check=False)
    assert empty.returncode == 1 and "--replace needs" in empty.stderr


def test_changes_say_when_instances_see_them(stack: LocalStack) -> None:
    pid = json.loads(paywalls(stack, "--json", "create", "--name", "Cached").stdout)["id"]
    assert "PAYWALLS_CACHE_TTL_S" not in paywalls(stack, "get", pid).stderr
    for args in (("update", pid, "--description", "d"), ("pricing", pid, "--model", "demo/echo=1,2")):
        assert "PAYWALLS_CACHE_TTL_S (30 s by default" in paywalls(stack, *args).stderr


def test_amounts_are_shown_in_currency(stack: LocalStack) -> None:
    pid = json.loads(paywalls(stack, "--json", "create", "--name", "Money").stdout)["id"]
    human = paywalls(stack, "adjust", pid, "carol", "1.25").stdout
    assert "amount: 1.250000" in human and "balance_after: 1.250000" in human and "1250000" not in human
    listed = paywalls(stack, "users", pid).stdout.strip()
    assert listed == "user=carol  balance=1.250000  available=1.250000  total_spend=0.000000"
    assert json.loads(paywalls(stack, "--json", "users", pid).stdout)["data"][0]["balance"] == "1250000"


def test_provider_demo_serves_a_new_paywall_and_only_locally(stack: LocalStack) -> None:
    from devserver.demo_provider import DEMO_KEY

    assert cli.DEMO_PROVIDER_KEY == DEMO_KEY
    pid = json.loads(paywalls(stack, "--json", "create", "--name", "Demo-backed").stdout)["id"]
    provider = json.loads(paywalls(stack, "--json", "provider", pid, "--demo").stdout)
    assert provider["base_url"] == f"{stack.url}/_demo/v1" and provider["kind"] == "openai-compatible"
    paywalls(stack, "pricing", pid, "--model", "demo/echo=1,2")
    reply = chat_as_new_user(stack, pid, "dave", "demo/echo", "served by the demo")
    assert reply.status_code == 200 and reply.json()["choices"][0]["message"]["content"] == "served by the demo"
    mixed = paywalls(stack, "provider", pid, "--demo", "--kind", "openai", check=False)
    assert mixed.returncode == 1 and "--demo" in mixed.stderr
    remote = cli.main(
        ["--url", "https://abc.execute-api.eu-west-1.amazonaws.com/prod/admin", "--token", "t"]
        + ["provider", pid, "--demo"]
    )
    assert remote == 1


def test_person_adjust_accepts_an_email_or_an_id() -> None:
    client = Recording({("GET", "/persons?email=ann%40example.com"): {"id": "per_1", "object": "person"}})
    parser = cli.build_parser()
    by_email = parser.parse_args(["person-adjust", "ann@example.com", "5", "--environment", "live"])
    cli.run(by_email, client)  # type: ignore[arg-type]
    cli.run(parser.parse_args(["person-adjust", "per_2", "-1", "--environment", "test"]), client)  # type: ignore[arg-type]
    assert client.calls == [
        ("GET", "/persons?email=ann%40example.com", None),
        ("POST", "/persons/per_1/adjustments", {"amount": "5", "environment": "live"}),
        ("POST", "/persons/per_2/adjustments", {"amount": "-1", "environment": "test"}),
    ]


def test_webhooks_commands_call_the_admin_mirror_of_the_webhook_api(monkeypatch: Any) -> None:
    client = Recording(default={})
    parser = cli.build_parser()
    monkeypatch.setattr(sys, "stdin", __import__("io").StringIO("whsec_my_own_secret_123\n"))
    base = "/paywalls/pw_1/webhooks"
    for argv in (
        ["webhooks", "create", "pw_1", "--url", "https://h.example.com/x", "--events",
         "paywall.balance.*, paywall.updated", "--header", "X-App: demo", "--secret-stdin"],
        ["webhooks", "list", "pw_1", "--status", "inactive"],
        ["webhooks", "get", "pw_1", "whsub_1"],
        ["webhooks", "update", "pw_1", "whsub_1", "--enable", "--events", "*"],
        ["webhooks", "delete", "pw_1", "whsub_1"],
        ["webhooks", "rotate-secret", "pw_1", "whsub_1"],
        ["webhooks", "logs", "pw_1", "--status", "error", "--limit", "5"],
    ):  # fmt: skip
        cli.run(parser.parse_args(argv), client)  # type: ignore[arg-type]
    assert client.calls == [
        (
            "POST",
            f"{base}/subscriptions",
            {
                "url": "https://h.example.com/x",
                "events": ["paywall.balance.*", "paywall.updated"],
                "customHeaders": {"X-App": "demo"},
                "secret": "whsec_my_own_secret_123",
            },
        ),
        ("GET", f"{base}/subscriptions?status=inactive", None),
        ("GET", f"{base}/subscriptions/whsub_1", None),
        ("PATCH", f"{base}/subscriptions/whsub_1", {"events": ["*"], "isActive": True}),
        ("DELETE", f"{base}/subscriptions/whsub_1", None),
        ("POST", f"{base}/subscriptions/whsub_1/rotate-secret", {}),
        ("GET", f"{base}/logs?status=error&limit=5", None),
    ]


def test_webhooks_over_the_local_stack(stack: LocalStack) -> None:
    pid = json.loads(paywalls(stack, "--json", "create", "--name", "Hooks").stdout)["id"]
    created = json.loads(
        paywalls(stack, "--json", "webhooks", "create", pid, "--url", "https://h.example.com/x", "--events", "*").stdout
    )["subscription"]
    assert created["secret"].startswith("whsec_")
    listed = paywalls(stack, "webhooks", "list", pid).stdout
    assert created["id"] in listed and "secret=" not in listed
    assert "(none)" in paywalls(stack, "webhooks", "logs", pid).stdout
    refused = paywalls(stack, "webhooks", "create", pid, "--url", "http://h.example.com", "--events", "*", check=False)
    assert refused.returncode == 1 and "https" in refused.stderr


def test_cli_sets_named_providers_routes_and_fallbacks(stack: LocalStack) -> None:
    pid = json.loads(paywalls(stack, "--json", "create", "--name", "Routed app").stdout)["id"]
    paywalls(stack, "provider", pid, "--demo")  # the default provider, as before
    paywalls(stack, "pricing", pid, "--model", "demo/echo=1,2")
    down = paywalls(
        stack,
        "--json",
        "provider-add",
        pid,
        "first",
        "--kind",
        "openai-compatible",
        "--base-url",
        f"{stack.url}/_demo/x/fail-500.cli/v1",
        "--price",
        "acme/echo=1,2",
        "--stdin",
        stdin="demo-provider-key\n",
    )
    assert "demo-provider-key" not in down.stdout and json.loads(down.stdout)["prices"]["acme/echo"]["prompt"] == "1"
    paywalls(
        stack,
        "provider-add",
        pid,
        "second",
        "--kind",
        "openai-compatible",
        "--base-url",
        f"{stack.url}/_demo/x/ok.cli/v1",
        "--price",
        "acme/echo=3,4",
        env={"PAYWALLS_PROVIDER_API_KEY": "demo-provider-key"},
    )
    routes = json.loads(paywalls(stack, "--json", "routes", pid, "--route", "acme/*=first:strip,second:strip").stdout)
    assert routes["routes"] == [
        {
            "match": "acme/*",
            "providers": [{"name": "first", "strip_prefix": True}, {"name": "second", "strip_prefix": True}],
        }
    ]
    listed = json.loads(paywalls(stack, "--json", "providers", pid).stdout)["data"]
    assert [p["name"] for p in listed] == ["default", "first", "second"]
    reply = chat_as_new_user(stack, pid, "erin", "acme/echo", "routed by the cli")
    assert reply.status_code == 200 and reply.headers["x-paywall-provider"] == "second"
    in_use = paywalls(stack, "provider-remove", pid, "first", check=False)
    assert in_use.returncode == 1
    paywalls(stack, "routes", pid)  # no --route: no routes
    removed = json.loads(paywalls(stack, "--json", "provider-remove", pid, "first").stdout)["data"]
    assert [p["name"] for p in removed] == ["default", "second"]
    bad = paywalls(stack, "routes", pid, "--route", "acme/*", check=False)
    assert bad.returncode == 1 and "MATCH=PROVIDER" in bad.stderr
