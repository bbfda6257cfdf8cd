"""`make verify-deploy STACK=<name>`: the post-deploy smoke test an operator runs after `sam deploy`.

With the operator's AWS credentials it reads the stack's outputs (AdminUrl, OpenAIBaseUrl), then,
through the deployed API only:

1. creates a throwaway paywall (test environment), with the operator's provider
   (--provider-kind/--provider-base-url, key from $PAYWALLS_PROVIDER_API_KEY) and one priced model;
2. issues a test key and deposits 1.00 for a fresh user through the Deposit API;
3. sends a non-streamed and a streamed chat completion through the official OpenAI SDK at
   OpenAIBaseUrl;
4. checks the money: two charges, each exactly the price of the usage the SDK received, the ledger's
   entries summing to the balance, no hold left behind;
5. cleans up whatever happened before: debits what is left, revokes the key, renames the paywall
   "verify-deploy (done ...)". A paywall cannot be deleted: its record and its provider secret remain.

Admin calls are SigV4-signed (paywalls CLI's client). Tested against `make run` by pointing it at the
local stack (--admin-url/--openai-base-url/--admin-token, the demo provider): tests/test_verify_deploy.py.

usage: python -m ops.verify_deploy --stack NAME [--region R] [--provider-kind K] [--provider-base-url U]
       [--model M] [--price PROMPT,COMPLETION]"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx

from paywalls.cli import AdminClient, CliError
from paywalls.core.money import format_micros, usage_cost_micros

DEPOSIT = "1"
DEPOSIT_MICROS = 1_000_000


class VerifyFailed(Exception):
    pass


@dataclass(frozen=True)
class Target:
    admin_url: str
    openai_base_url: str
    admin_token: str | None = None  # local stack; a deployed stack signs with AWS credentials
    region: str | None = None


@dataclass(frozen=True)
class Provider:
    kind: str
    base_url: str | None
    api_key: str
    model: str
    prompt_price: str = "1"
    completion_price: str = "2"


@dataclass
class Report:
    paywall_id: str | None = None
    user: str | None = None
    steps: list[str] = field(default_factory=list)
    cleanup: list[str] = field(default_factory=list)


def stack_target(stack: str, region: str | None) -> Target:
    """The stack's outputs, with the caller's AWS credentials."""
    import boto3

    client = boto3.client("cloudformation", region_name=region) if region else boto3.client("cloudformation")
    [described] = client.describe_stacks(StackName=stack)["Stacks"]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in described.get("Outputs", [])}
    missing = {"AdminUrl", "OpenAIBaseUrl"} - set(outputs)
    if missing:
        raise VerifyFailed(f"stack {stack} has no output(s) {', '.join(sorted(missing))}: is it a Paywalls stack?")
    return Target(outputs["AdminUrl"], outputs["OpenAIBaseUrl"], region=region or client.meta.region_name)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise VerifyFailed(message)


def verify(target: Target, provider: Provider, *, say: Callable[[str], None] = print) -> Report:
    """Run the whole check; raises VerifyFailed (after cleaning up) when something is wrong."""
    import openai

    admin = AdminClient(target.admin_url, target.admin_token, target.region)
    report = Report()
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())

    def step(text: str) -> None:
        report.steps.append(text)
        say(f"ok  {text}")

    key_id: str | None = None
    api: httpx.Client | None = None
    try:
        paywall = admin.request(
            "POST", "/paywalls", {"name": f"verify-deploy {stamp}", "description": "throwaway: make verify-deploy"}
        )
        report.paywall_id = pid = paywall["id"]
        step(f"created paywall {pid}")
        body: dict[str, Any] = {"kind": provider.kind, "api_key": provider.api_key}
        if provider.base_url:
            body["base_url"] = provider.base_url
        admin.request("PUT", f"/paywalls/{pid}/provider", body)
        price = {"prompt": provider.prompt_price, "completion": provider.completion_price}
        admin.request("PUT", f"/paywalls/{pid}/pricing", {"models": {provider.model: price}})
        issued = admin.request("POST", f"/paywalls/{pid}/keys", {"environment": "test"})
        key_id, key = issued["id"], issued["key"]
        api = httpx.Client(base_url=target.openai_base_url, headers={"Authorization": f"Bearer {key}"}, timeout=60)
        step(f"provider {provider.kind}, model {provider.model} priced, test key {key_id}")

        report.user = user = f"verify-{uuid.uuid4().hex[:12]}"
        deposit = api.post(
            "/user/balance/deposit",
            json={"amount": DEPOSIT, "user": user},
            headers={"Idempotency-Key": f"verify-deploy-{user}"},
        )
        _check(deposit.status_code == 200, f"deposit failed: HTTP {deposit.status_code} {deposit.text[:300]}")
        step(f"deposited {DEPOSIT} for {user}")

        client = openai.OpenAI(base_url=target.openai_base_url, api_key=key, max_retries=0, timeout=120)
        messages = [{"role": "user", "content": "Reply with one short sentence: is this deployment alive?"}]
        reply = client.chat.completions.create(model=provider.model, messages=messages, user=user, max_tokens=32)  # type: ignore[arg-type]
        _check(reply.usage is not None and bool(reply.choices), "the non-streamed answer has no usage or no choice")
        usages = [reply.usage]
        step(f"non-streamed chat answered ({reply.usage.total_tokens} tokens)")  # type: ignore[union-attr]
        chunks = list(
            client.chat.completions.create(
                model=provider.model,
                messages=messages,  # type: ignore[arg-type]
                user=user,
                max_tokens=32,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        _check(bool(streamed) and chunks[-1].usage is not None, "the streamed answer has no text or no usage chunk")
        usages.append(chunks[-1].usage)
        step(f"streamed chat answered ({len(chunks)} chunks, {chunks[-1].usage.total_tokens} tokens)")  # type: ignore[union-attr]

        _verify_money(api, admin, pid, user, usages, price, step)
        return report
    finally:
        _clean_up(admin, api, report, key_id, say)


def _verify_money(
    api: httpx.Client,
    admin: AdminClient,
    paywall_id: str,
    user: str,
    usages: list[Any],
    price: dict[str, str],
    step: Callable[[str], None],
) -> None:
    entries: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30
    while True:  # the streamed request's charge is written just before its last event
        entries = api.get("/user/ledger", params={"user": user, "limit": 100}).raise_for_status().json()["data"]
        charges = [e for e in entries if e["type"] == "charge"]
        if len(charges) >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    _check(len(charges) == 2, f"expected 2 charges in the ledger, found {len(charges)}")
    expected = sorted(
        usage_cost_micros(
            prompt_tokens=u.prompt_tokens,
            completion_tokens=u.completion_tokens,
            prompt_price=Decimal(price["prompt"]),
            completion_price=Decimal(price["completion"]),
        )
        for u in usages
    )
    charged = sorted(-int(c["amount"]) for c in charges)
    _check(charged == expected, f"charges {charged} differ from the price of the usage received {expected}")
    tokens = sorted((c["prompt_tokens"], c["completion_tokens"]) for c in charges)
    _check(tokens == sorted((u.prompt_tokens, u.completion_tokens) for u in usages), "charged tokens differ")
    balance = int(api.get("/user/balance", params={"user": user}).raise_for_status().json()["balance"])
    _check(balance == DEPOSIT_MICROS - sum(charged), f"balance {balance} != deposit - charges")
    _check(sum(int(e["amount"]) for e in entries) == balance, "the ledger's entries do not sum to the balance")
    users = admin.request("GET", f"/paywalls/{paywall_id}/users?environment=test&limit=100")["data"]
    row = next((u for u in users if u["user"] == user), None)
    _check(row is not None and int(row["available"]) == balance, "a hold is still open (available != balance)")
    step(f"charged {sum(charged)} micro-units for 2 requests, exactly their usage; ledger sums to the balance")


def _clean_up(
    admin: AdminClient, api: httpx.Client | None, report: Report, key_id: str | None, say: Callable[[str], None]
) -> None:
    """Best effort, every part tried: a failed check must still leave nothing usable behind."""
    pid, user = report.paywall_id, report.user
    if pid is None:
        return
    if api is not None and user is not None:
        try:
            balance = int(api.get("/user/balance", params={"user": user}).json()["balance"])
            if balance > 0:
                admin.request(
                    "POST",
                    f"/paywalls/{pid}/users/{user}/adjustments",
                    {"amount": f"-{format_micros(balance)}", "environment": "test", "reason": "verify-deploy cleanup"},
                    {"Idempotency-Key": f"verify-deploy-cleanup-{user}"},
                )
            report.cleanup.append(f"debited the remaining {balance} micro-units")
        except (CliError, httpx.HTTPError, ValueError, KeyError) as exc:
            report.cleanup.append(f"could not zero the balance: {exc}")
    if key_id:
        try:
            admin.request("DELETE", f"/paywalls/{pid}/keys/{key_id}")
            report.cleanup.append(f"revoked key {key_id}")
        except (CliError, httpx.HTTPError) as exc:
            report.cleanup.append(f"could not revoke key {key_id}: {exc}")
    try:
        done = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        admin.request("PATCH", f"/paywalls/{pid}", {"name": f"verify-deploy (done {done})"})
        report.cleanup.append(f"renamed paywall {pid} (a paywall cannot be deleted; its provider secret remains)")
    except (CliError, httpx.HTTPError) as exc:
        report.cleanup.append(f"could not rename paywall {pid}: {exc}")
    for line in report.cleanup:
        say(f"    cleanup: {line}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="verify-deploy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", help="the CloudFormation stack name (reads its outputs)")
    parser.add_argument("--region")
    parser.add_argument("--admin-url", help="instead of --stack: the admin API URL")
    parser.add_argument("--openai-base-url", help="instead of --stack: the OpenAI base URL")
    parser.add_argument("--admin-token", help="local stack only: bearer token instead of SigV4")
    parser.add_argument("--provider-kind", default=os.environ.get("PAYWALLS_VERIFY_PROVIDER_KIND", "openai"))
    parser.add_argument("--provider-base-url", default=os.environ.get("PAYWALLS_VERIFY_PROVIDER_BASE_URL"))
    parser.add_argument("--model", default=os.environ.get("PAYWALLS_VERIFY_MODEL", "gpt-4o-mini"))
    parser.add_argument("--price", default="1,2", help="PROMPT,COMPLETION per 1M tokens for the throwaway paywall")
    args = parser.parse_args(argv)
    api_key = os.environ.get("PAYWALLS_PROVIDER_API_KEY", "")
    try:
        if not api_key:
            raise VerifyFailed("set PAYWALLS_PROVIDER_API_KEY to the provider key the throwaway paywall should use")
        if args.stack:
            target = stack_target(args.stack, args.region)
            if args.admin_token:
                target = Target(target.admin_url, target.openai_base_url, args.admin_token, target.region)
        elif args.admin_url and args.openai_base_url:
            target = Target(args.admin_url, args.openai_base_url, args.admin_token, args.region)
        else:
            raise VerifyFailed("give --stack, or --admin-url and --openai-base-url")
        prompt, _, completion = args.price.partition(",")
        provider = Provider(args.provider_kind, args.provider_base_url, api_key, args.model, prompt, completion or "0")
        verify(target, provider)
    except Exception as exc:  # any failure is reported as such (the traceback would only repeat it)
        print(f"FAILED: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print("verify-deploy: the deployment serves, meters and charges correctly")
    return 0


if __name__ == "__main__":
    sys.exit(main())
