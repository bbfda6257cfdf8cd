"""`paywalls`: the operator's command-line tool, a thin client of the admin API (SPEC §7).

Where it talks to, in order: --url/--token, $PAYWALLS_ADMIN_URL/$PAYWALLS_ADMIN_TOKEN, then the local
stack's .paywalls/local.json. Without a token (a deployed stack) every request is signed with
SigV4 using the standard AWS credential chain, as API Gateway's AWS_IAM authorizer requires.
Secrets (provider and Stripe keys) are read from stdin or an environment variable, never argv, so
they stay out of shell history and process lists."""

from __future__ import annotations

import argparse
import json
import re
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx

from paywalls.config import cli_settings
from paywalls.errors import PaywallsError

LOCAL_JSON = Path(".paywalls") / "local.json"
_REGION_IN_HOST = re.compile(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com")


class CliError(PaywallsError):
    """What the CLI prints instead of a traceback (bad arguments, the admin API's refusal)."""


class AdminClient:
    def __init__(self, url: str, token: str | None, region: str | None = None, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self.token = token
        self.region = region
        self.http = httpx.Client(timeout=timeout)

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        url = f"{self.url}{path}"
        data = json.dumps(body).encode() if body is not None else b""
        all_headers = {"Content-Type": "application/json", "Accept": "application/json", **(headers or {})}
        if self.token:
            all_headers["Authorization"] = f"Bearer {self.token}"
        else:
            all_headers = sign_sigv4(method, url, data, all_headers, self.region)
        response = self.http.request(method, url, content=data or None, headers=all_headers)
        try:
            payload = response.json()
        except ValueError:
            payload = {"error": {"message": response.text[:500] or response.reason_phrase}}
        if response.status_code >= 400:
            message = (payload.get("error") or {}).get("message") if isinstance(payload, dict) else None
            raise CliError(f"HTTP {response.status_code}: {message or payload}")
        return payload


def sign_sigv4(method: str, url: str, body: bytes, headers: dict[str, str], region: str | None) -> dict[str, str]:
    """Sign for API Gateway (service `execute-api`) with the default AWS credential chain."""
    import boto3
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    session = boto3.Session()
    credentials = session.get_credentials()
    if credentials is None:
        raise CliError("no admin token and no AWS credentials: set PAYWALLS_ADMIN_TOKEN or configure AWS credentials")
    match = _REGION_IN_HOST.search(url)
    region = region or (match.group(1) if match else None) or session.region_name
    if not region:
        raise CliError("cannot tell the AWS region: pass --region")
    request = AWSRequest(method=method, url=url, data=body, headers=headers)
    SigV4Auth(credentials.get_frozen_credentials(), "execute-api", region).add_auth(request)
    return dict(request.headers.items())


def resolve_target(args: argparse.Namespace) -> tuple[str, str | None]:
    configured = cli_settings()
    url = args.url or configured.admin_url
    token = args.token or configured.admin_token
    if not url and LOCAL_JSON.exists():
        local = json.loads(LOCAL_JSON.read_text())
        url, token = local["admin_url"], token or local.get("admin_token")
    if not url:
        raise CliError("no admin URL: pass --url, set PAYWALLS_ADMIN_URL, or start the local stack (make run)")
    return url, token


def _secret(args: argparse.Namespace, env_name: str, what: str) -> str:
    """A secret from --*-stdin or an environment variable (CliSettings), never from the command line."""
    configured = cli_settings()
    from_env = {
        "PAYWALLS_STRIPE_SECRET_KEY": configured.stripe_secret_key,
        "PAYWALLS_PROVIDER_API_KEY": configured.provider_api_key,
    }
    value = sys.stdin.readline().strip() if getattr(args, "stdin", False) else from_env[env_name]
    if not value:
        raise CliError(f"give the {what} on stdin (--stdin) or in ${env_name}")
    return value


def _fields(args: argparse.Namespace, names: dict[str, str]) -> dict[str, Any]:
    return {api: getattr(args, attr) for attr, api in names.items() if getattr(args, attr, None) is not None}


PAYWALL_FIELDS = {
    "name": "name",
    "description": "description",
    "icon_url": "icon_url",
    "markup_percent": "markup_percent",
    "trial_credits": "trial_credits",
    "platform_fee_percent": "platform_fee_percent",
}


def _stripe_body(args: argparse.Namespace) -> dict[str, Any]:
    """PUT body of a Stripe key, a paywall's or the operator's: the key and, when given, the presets."""
    body: dict[str, Any] = {"secret_key": _secret(args, "PAYWALLS_STRIPE_SECRET_KEY", "Stripe secret key")}
    if args.topup_amounts:
        body["topup_amounts"] = [a.strip() for a in args.topup_amounts.split(",") if a.strip()]
    return body


def _idempotency(args: argparse.Namespace) -> dict[str, str]:
    """Money-moving commands: a retry with the same --idempotency-key never applies twice; without one,
    every run is a new operation."""
    return {"Idempotency-Key": args.idempotency_key or f"cli-{uuid.uuid4()}"}


def _parse_model(spec: str) -> tuple[str, dict[str, str]]:
    """ "gpt-4o-mini=0.15,0.60[,0.001]" -> ("gpt-4o-mini", {prompt, completion, request?})."""
    model, sep, prices = spec.rpartition("=")
    parts = prices.split(",")
    if not sep or not model or len(parts) not in (2, 3):
        raise CliError(f"--model {spec!r}: use MODEL=PROMPT,COMPLETION[,REQUEST] (prices per 1M tokens)")
    price = {"prompt": parts[0], "completion": parts[1]}
    if len(parts) == 3:
        price["request"] = parts[2]
    return model, price


def _parse_feature(spec: str) -> tuple[str, dict[str, str]]:
    """ "web_search=0.02[,PROMPT,COMPLETION]" -> ("web_search", {request, prompt?, completion?})."""
    name, sep, prices = spec.partition("=")
    parts = prices.split(",")
    if not sep or not name or len(parts) not in (1, 3):
        raise CliError(f"--feature {spec!r}: use NAME=REQUEST[,PROMPT,COMPLETION] (surcharges; tokens per 1M)")
    price = {"request": parts[0]}
    if len(parts) == 3:
        price.update(prompt=parts[1], completion=parts[2])
    return name, price


def run(args: argparse.Namespace, client: AdminClient) -> Any:
    p = f"/paywalls/{getattr(args, 'paywall_id', '')}"
    match args.command:
        case "create":
            return client.request("POST", "/paywalls", {"mode": args.mode, **_fields(args, PAYWALL_FIELDS)})
        case "get":
            return client.request("GET", p)
        case "update":
            body = _fields(args, PAYWALL_FIELDS)
            if args.mode:
                body["mode"] = args.mode
            return client.request("PATCH", p, body)
        case "keys":
            if args.keys_command == "create":
                return client.request("POST", f"{p}/keys", {"environment": args.environment})
            if args.keys_command == "list":
                return client.request("GET", f"{p}/keys")
            return client.request("DELETE", f"{p}/keys/{args.key_id}")
        case "provider":
            body = {"kind": args.kind, "api_key": _secret(args, "PAYWALLS_PROVIDER_API_KEY", "provider API key")}
            if args.base_url:
                body["base_url"] = args.base_url
            return client.request("PUT", f"{p}/provider", body)
        case "pricing":
            if args.file:
                body = json.loads(Path(args.file).read_text())
            else:
                if not args.model:
                    raise CliError("give --model MODEL=PROMPT,COMPLETION[,REQUEST] (repeatable) or --file")
                body = {"models": dict(_parse_model(m) for m in args.model)}
            if args.markup_percent is not None:
                body["markup_percent"] = args.markup_percent
            if args.feature:
                body["features"] = dict(_parse_feature(f) for f in args.feature)
            return client.request("PUT", f"{p}/pricing", body)
        case "templates":
            body = {
                k: v
                for k, v in {
                    "topup": args.topup,
                    "authorize": args.authorize,
                    "provider_error": args.provider_error,
                }.items()
                if v is not None
            }
            return client.request("PUT", f"{p}/templates", body)
        case "stripe":
            return client.request("PUT", f"{p}/stripe", _stripe_body(args))
        case "users":
            return client.request(
                "GET", f"{p}/users?{httpx.QueryParams(environment=args.environment, limit=args.limit)}"
            )
        case "usage":
            params = {
                k: v for k, v in {"environment": args.environment, "from": args.start, "to": args.end}.items() if v
            }
            return client.request("GET", f"{p}/usage?{httpx.QueryParams(params)}")
        case "adjust":
            body = {"amount": args.amount, "environment": args.environment}
            if args.reason:
                body["reason"] = args.reason
            return client.request("POST", f"{p}/users/{args.user}/adjustments", body, _idempotency(args))
        case "earnings":
            return client.request("GET", f"{p}/earnings?{httpx.QueryParams(environment=args.environment)}")
        case "withdraw":
            body = {"environment": args.environment}
            if args.amount:
                body["amount"] = args.amount
            # Retrying with the same --idempotency-key never withdraws twice (and retries the payout).
            return client.request("POST", f"{p}/withdrawals", body, _idempotency(args))
        case "withdrawals":
            return client.request("GET", f"{p}/withdrawals?{httpx.QueryParams(environment=args.environment)}")
        case "losses":
            return client.request("GET", f"/losses?{httpx.QueryParams(environment=args.environment)}")
        case "withdrawal-paid":
            body = {"reference": args.reference} if args.reference else {}
            return client.request("POST", f"{p}/withdrawals/{args.withdrawal_id}/paid", body)
        case "payout":
            account = None if args.manual else args.stripe_account
            return client.request("PUT", f"{p}/payout", {"stripe_account": account})
        case "operator-stripe":
            return client.request("PUT", "/operator/stripe", _stripe_body(args))
        case "person":
            return client.request("GET", f"/persons?{httpx.QueryParams(email=args.email)}")
        case "person-adjust":
            body = {"amount": args.amount, "environment": args.environment}
            if args.reason:
                body["reason"] = args.reason
            return client.request("POST", f"/persons/{args.person_id}/adjustments", body, _idempotency(args))
    raise CliError(f"unknown command {args.command}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="paywalls", description="Operate a Paywalls deployment (admin API).")
    parser.add_argument("--url", help="admin API URL, e.g. https://<api>.execute-api.<region>.amazonaws.com/prod/admin")
    parser.add_argument("--token", help="admin bearer token (local stack); omit to sign with AWS credentials")
    parser.add_argument("--region", help="AWS region for SigV4 (default: from the URL)")
    parser.add_argument("--json", action="store_true", help="print the raw JSON response")
    sub = parser.add_subparsers(dest="command", required=True)

    def paywall_cmd(name: str, help_text: str) -> argparse.ArgumentParser:
        cmd = sub.add_parser(name, help=help_text)
        cmd.add_argument("paywall_id")
        return cmd

    def add_profile(cmd: argparse.ArgumentParser, *, name_required: bool) -> None:
        cmd.add_argument("--name", required=name_required)
        cmd.add_argument("--description")
        cmd.add_argument("--icon-url", dest="icon_url")
        cmd.add_argument("--markup-percent", dest="markup_percent")
        cmd.add_argument("--trial-credits", dest="trial_credits", help="decimal amount, e.g. 0.50")
        cmd.add_argument("--platform-fee-percent", dest="platform_fee_percent")

    create = sub.add_parser("create", help="create a paywall")
    add_profile(create, name_required=True)
    create.add_argument("--mode", choices=["default", "shared"], default="default")

    paywall_cmd("get", "show a paywall")
    update = paywall_cmd("update", "change a paywall's profile (mode is immutable)")
    add_profile(update, name_required=False)
    update.add_argument("--mode", choices=["default", "shared"])

    keys = sub.add_parser("keys", help="API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    key_create = keys_sub.add_parser("create", help="issue a key (shown once)")
    key_create.add_argument("paywall_id")
    key_create.add_argument("--environment", choices=["live", "test"], default="live")
    keys_sub.add_parser("list", help="list keys").add_argument("paywall_id")
    revoke = keys_sub.add_parser("revoke", help="revoke a key")
    revoke.add_argument("paywall_id")
    revoke.add_argument("key_id")

    provider = paywall_cmd("provider", "set the LLM provider (key from stdin or $PAYWALLS_PROVIDER_API_KEY)")
    provider.add_argument(
        "--kind", required=True, choices=["openai", "openrouter", "together", "anthropic", "openai-compatible"]
    )
    provider.add_argument("--base-url", dest="base_url")
    provider.add_argument("--stdin", action="store_true", help="read the API key from stdin")

    pricing = paywall_cmd("pricing", "set the price table")
    pricing.add_argument("--model", action="append", help="MODEL=PROMPT,COMPLETION[,REQUEST] per 1M tokens")
    pricing.add_argument("--file", help="JSON file {models: {...}, markup_percent?, features?}")
    pricing.add_argument("--markup-percent", dest="markup_percent")
    pricing.add_argument(
        "--feature",
        action="append",
        help="NAME=REQUEST[,PROMPT,COMPLETION]: price a paid extra (web_search, audio, priority_tier, "
        "provider_routing) as a surcharge; unpriced ones are refused",
    )

    templates = paywall_cmd("templates", "set reply templates ({{url}}, {{name}})")
    templates.add_argument("--topup")
    templates.add_argument("--authorize")
    templates.add_argument("--provider-error", dest="provider_error")

    stripe = paywall_cmd("stripe", "connect Stripe (key from stdin or $PAYWALLS_STRIPE_SECRET_KEY)")
    stripe.add_argument("--stdin", action="store_true", help="read the secret key from stdin")
    stripe.add_argument("--topup-amounts", dest="topup_amounts", help="e.g. 5,10,20")

    users = paywall_cmd("users", "list users with balances")
    users.add_argument("--environment", choices=["live", "test"], default="live")
    users.add_argument("--limit", type=int, default=100)

    usage = paywall_cmd("usage", "revenue, provider cost and profit by model and user")
    usage.add_argument("--environment", choices=["live", "test"], default="live")
    usage.add_argument("--from", dest="start", help="ISO timestamp, inclusive")
    usage.add_argument("--to", dest="end", help="ISO timestamp, exclusive")

    adjust = paywall_cmd("adjust", "credit (positive) or debit (negative) a user's balance")
    adjust.add_argument("user")
    adjust.add_argument("amount", help='decimal, e.g. "5" or "-0.25"')
    adjust.add_argument("--environment", choices=["live", "test"], default="live")
    adjust.add_argument("--reason")
    adjust.add_argument("--idempotency-key", dest="idempotency_key")

    # Shared mode (SPEC §6).
    earn = paywall_cmd(
        "earnings", "a shared-mode paywall's earnings: gross, fees, earned, withdrawn, available, pending (and when)"
    )
    earn.add_argument("--environment", choices=["live", "test"], default="live")
    withdraw = paywall_cmd("withdraw", "withdraw available earnings (Stripe transfer if a payout account is set)")
    withdraw.add_argument("--amount", help='decimal, e.g. "25"; default: everything available (whole cents)')
    withdraw.add_argument("--environment", choices=["live", "test"], default="live")
    withdraw.add_argument("--idempotency-key", dest="idempotency_key", help="reuse to retry without paying twice")
    listing = paywall_cmd("withdrawals", "list withdrawals")
    listing.add_argument("--environment", choices=["live", "test"], default="live")
    paid = paywall_cmd("withdrawal-paid", "mark a pending withdrawal paid (after paying it by hand)")
    paid.add_argument("withdrawal_id")
    paid.add_argument("--reference", help="e.g. the bank transfer's id, kept with the withdrawal")
    payout = paywall_cmd("payout", "where withdrawals are paid")
    target = payout.add_mutually_exclusive_group(required=True)
    target.add_argument("--stripe-account", dest="stripe_account", help="Stripe Connect account id, acct_...")
    target.add_argument("--manual", action="store_true", help="no transfer: withdrawals stay pending for manual payout")
    lost = sub.add_parser("losses", help="refunded or disputed wallet top-ups that had been spent: who, which apps")
    lost.add_argument("--environment", choices=["live", "test"], default="live")
    operator = sub.add_parser("operator-stripe", help="the operator's Stripe key (wallet top-ups, payouts)")
    operator.add_argument("--stdin", action="store_true", help="read the secret key from stdin")
    operator.add_argument("--topup-amounts", dest="topup_amounts", help="wallet top-up presets, e.g. 5,10,20")
    person = sub.add_parser("person", help="a wallet owner by email: live and test balances, authorized apps")
    person.add_argument("email")
    person_adjust = sub.add_parser("person-adjust", help="credit (positive) or debit (negative) a person's wallet")
    person_adjust.add_argument("person_id")
    person_adjust.add_argument("amount", help='decimal, e.g. "5" or "-0.25"')
    # Required: a person's live wallet is real money, the test wallet test money; never guessed.
    person_adjust.add_argument("--environment", choices=["live", "test"], required=True)
    person_adjust.add_argument("--reason")
    person_adjust.add_argument("--idempotency-key", dest="idempotency_key")
    return parser


def render(result: Any) -> str:
    """Human output: `key: value` lines; lists as one line per item."""
    if isinstance(result, dict) and isinstance(result.get("data"), list):
        return "\n".join(render(item) for item in result["data"]) or "(none)"
    if isinstance(result, dict):
        return "\n".join(f"{k}: {json.dumps(v) if isinstance(v, dict | list) else v}" for k, v in result.items())
    return str(result)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        url, token = resolve_target(args)
        result = run(args, AdminClient(url, token, args.region))
    except CliError as exc:
        print(f"paywalls: {exc}", file=sys.stderr)
        return 1
    except httpx.HTTPError as exc:
        print(f"paywalls: cannot reach the admin API: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
