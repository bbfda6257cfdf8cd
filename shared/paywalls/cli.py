"""`paywalls`: the operator's command-line tool, a thin client of the admin API (SPEC §7).

Where it talks to, in order: --url/--token, $PAYWALLS_ADMIN_URL/$PAYWALLS_ADMIN_TOKEN, then the local
stack's .paywalls/local.json. Without a token (a deployed stack) every request is signed with
SigV4 using the standard AWS credential chain, as API Gateway's AWS_IAM authorizer requires.
Secrets (provider and Stripe keys) are read from stdin or an environment variable, never argv, so
they stay out of shell history and process lists."""

from __future__ import annotations

import argparse
import contextlib
import json
import re
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx

from paywalls.core.errors import PaywallsError
from paywalls.core.money import format_micros
from paywalls.infra.config import cli_settings

LOCAL_JSON = Path(".paywalls") / "local.json"
_REGION_IN_HOST = re.compile(r"\.execute-api\.([a-z0-9-]+)\.amazonaws\.com")


class CliError(PaywallsError):
    """What the CLI prints instead of a traceback (bad arguments, the admin API's refusal)."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status  # the admin API's HTTP status, when it answered


class AdminClient:
    def __init__(self, url: str, token: str | None, region: str | None = None, timeout: float = 30.0):
        self.url = url.rstrip("/")
        self.token = token
        self.region = region
        self.http = httpx.Client(timeout=timeout)

    def send(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> httpx.Response:
        """One admin API call, authenticated (bearer token locally, else SigV4), its answer as it came."""
        url = f"{self.url}{path}"
        data = json.dumps(body).encode() if body is not None else b""
        all_headers = {"Content-Type": "application/json", "Accept": "application/json", **(headers or {})}
        if self.token:
            all_headers["Authorization"] = f"Bearer {self.token}"
        else:
            all_headers = sign_sigv4(method, url, data, all_headers, self.region)
        return self.http.request(method, url, content=data or None, headers=all_headers)

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        response = self.send(method, path, body, headers)
        try:
            payload = response.json()
        except ValueError:
            payload = {"error": {"message": response.text[:500] or response.reason_phrase}}
        if response.status_code >= 400:
            message = (payload.get("error") or {}).get("message") if isinstance(payload, dict) else None
            raise CliError(f"HTTP {response.status_code}: {message or payload}", response.status_code)
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


def _parse_route(spec: str) -> dict[str, Any]:
    """ "anthropic/*=claude:strip,router" -> {match, providers: [{name, strip_prefix?, model?}]}:
    providers in fallback order; `:strip` sends the id without the prefix, `:model=ID` names the
    upstream model (exact routes)."""
    match, sep, targets = spec.partition("=")
    if not sep or not match or not targets:
        raise CliError(f"--route {spec!r}: use MATCH=PROVIDER[:strip|:model=ID][,PROVIDER...]")
    providers = []
    for target in targets.split(","):
        name, _, option = target.partition(":")
        entry: dict[str, Any] = {"name": name}
        if option == "strip":
            entry["strip_prefix"] = True
        elif option.startswith("model="):
            entry["model"] = option.removeprefix("model=")
        elif option:
            raise CliError(f"--route {spec!r}: unknown option {option!r} (strip or model=ID)")
        providers.append(entry)
    return {"match": match, "providers": providers}


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


# The local stack's built-in demo provider (devserver.demo_provider.DEMO_KEY; a test keeps them equal).
DEMO_PROVIDER_KEY = "demo-provider-key"
LOCAL_HOSTS = ("127.0.0.1", "localhost")

# Commands whose change running instances see only once their cache expires: web.authenticate keeps
# an API key's paywall (settings, prices, provider) for PAYWALLS_CACHE_TTL_S.
CACHED_CHANGES = {
    "update",
    "provider",
    "provider-add",
    "provider-remove",
    "routes",
    "pricing",
    "templates",
    "stripe",
    "keys revoke",
}
CACHE_NOTE = (
    "note: instances cache API keys and paywall settings for PAYWALLS_CACHE_TTL_S (30 s by default, `make run` "
    "too): every request sees this change within that time"
)


def _demo_provider(client: AdminClient) -> dict[str, Any]:
    """The provider body for the local stack's demo provider, served beside its admin API."""
    if httpx.URL(client.url).host not in LOCAL_HOSTS or not client.url.endswith("/admin"):
        raise CliError("--demo is the local stack's built-in demo provider: it works only against `make run`")
    base = client.url.removesuffix("/admin")
    return {"kind": "openai-compatible", "base_url": f"{base}/_demo/v1", "api_key": DEMO_PROVIDER_KEY}


def _pricing_body(args: argparse.Namespace, client: AdminClient, path: str) -> dict[str, Any]:
    """PUT /pricing replaces the whole model table; the CLI merges into the current one unless
    --replace. (Read-modify-write: two operators changing one paywall's prices at the same moment may
    lose one change; the admin API is the operator's own tool, not a shared hot path.)"""
    given: dict[str, Any] = {}
    if args.file:
        try:
            given = json.loads(Path(args.file).read_text())
        except (OSError, ValueError) as exc:
            raise CliError(f"--file {args.file}: {exc}") from None
        if not isinstance(given, dict):
            raise CliError("--file must hold a JSON object {models: {...}, markup_percent?, features?}")
    models = {**(given.get("models") or {}), **dict(_parse_model(m) for m in args.model or [])}
    features = {**(given.get("features") or {}), **dict(_parse_feature(f) for f in args.feature or [])}
    if args.replace:
        if args.remove:
            raise CliError("--remove and --replace do not go together: --replace sets the whole table")
        if not models:
            raise CliError("--replace needs the whole table: --model MODEL=PROMPT,COMPLETION[,REQUEST] or --file")
        body: dict[str, Any] = {"models": models}
        if "features" in given or features:
            body["features"] = features
    else:
        current = client.request("GET", path)
        merged = {**(current.get("pricing") or {}), **models}
        for model in args.remove or []:
            if model not in merged:
                raise CliError(f"--remove {model}: not in the price table")
            del merged[model]
        if not merged:
            raise CliError("give at least one --model MODEL=PROMPT,COMPLETION[,REQUEST]: the price table is empty")
        body = {"models": merged}
        if features:
            body["features"] = {**(current.get("features") or {}), **features}
    markup = args.markup_percent if args.markup_percent is not None else given.get("markup_percent")
    if markup is not None:
        body["markup_percent"] = markup
    return body


def _person_id(client: AdminClient, person: str) -> str:
    """A person named by id, or by the email they signed in with."""
    if "@" not in person:
        return person
    return client.request("GET", f"/persons?{httpx.QueryParams(email=person)}")["id"]


def _page(args: argparse.Namespace, **params: str) -> httpx.QueryParams:
    """A listing page: --limit, and --cursor (the `next_cursor` of the page before)."""
    return httpx.QueryParams({**params, "limit": args.limit, **({"cursor": args.cursor} if args.cursor else {})})


LIMIT_FLAGS = {
    "requests_per_minute": "requests_per_minute",
    "tokens_per_day": "tokens_per_day",
    "spend_per_day": "spend_per_day",
    "spend_per_month": "spend_per_month",
}


def _limits_body(args: argparse.Namespace) -> dict[str, Any]:
    """Limit flags as the admin API takes them: counts as integers, spend as decimal strings, `none`
    as null (no limit). Flags not given are left out."""
    body: dict[str, Any] = {}
    for attr, name in LIMIT_FLAGS.items():
        value = getattr(args, attr, None)
        if value is None:
            continue
        if value.lower() == "none":
            body[name] = None
        elif name.startswith("spend_"):
            body[name] = value
        else:
            try:
                body[name] = int(value)
            except ValueError:
                raise CliError(f"--{name.replace('_', '-')} takes a whole number or `none`") from None
    return body


def _header(spec: str) -> tuple[str, str]:
    name, sep, value = spec.partition(":")
    if not sep or not name.strip():
        raise CliError(f"--header takes NAME:VALUE, not {spec!r}")
    return name.strip(), value.strip()


def _webhooks(args: argparse.Namespace, client: AdminClient, base: str) -> Any:
    """The paywall's outbound webhooks, as the app's /v1/webhooks API (docs/webhooks.md)."""
    action = args.webhooks_command
    one = f"{base}/subscriptions/{getattr(args, 'subscription_id', '')}"
    if action in ("create", "update"):
        body: dict[str, Any] = {}
        if args.hook_url:
            body["url"] = args.hook_url
        if args.events:
            body["events"] = [e.strip() for e in args.events.split(",") if e.strip()]
        if args.description is not None:
            body["description"] = args.description
        if args.header:
            body["customHeaders"] = dict(_header(h) for h in args.header)
        if action == "create":
            if args.secret_stdin:  # a secret never goes through argv (shell history, process lists)
                body["secret"] = sys.stdin.readline().strip()
            return client.request("POST", f"{base}/subscriptions", body)
        if args.enable or args.disable:
            body["isActive"] = bool(args.enable)
        return client.request("PATCH", one, body)
    if action == "list":
        query = f"?{httpx.QueryParams(status=args.status)}" if args.status else ""
        return client.request("GET", f"{base}/subscriptions{query}")
    if action == "get":
        return client.request("GET", one)
    if action == "delete":
        return client.request("DELETE", one)
    if action == "rotate-secret":
        return client.request("POST", f"{one}/rotate-secret", {})
    params = {
        k: v
        for k, v in {
            "subscriptionId": args.subscription,
            "status": args.status,
            "eventType": args.event_type,
            "limit": str(args.limit),
            "cursor": args.cursor,
        }.items()
        if v
    }
    return client.request("GET", f"{base}/logs?{httpx.QueryParams(params)}")


def run(args: argparse.Namespace, client: AdminClient) -> Any:
    p = f"/paywalls/{getattr(args, 'paywall_id', '')}"
    match args.command:
        case "create":
            return client.request("POST", "/paywalls", {"mode": args.mode, **_fields(args, PAYWALL_FIELDS)})
        case "list":
            return client.request("GET", f"/paywalls?{_page(args)}")
        case "get":
            return client.request("GET", p)
        case "update":
            return client.request("PATCH", p, _fields(args, PAYWALL_FIELDS))
        case "keys":
            if args.keys_command == "create":
                return client.request("POST", f"{p}/keys", {"environment": args.environment})
            if args.keys_command == "list":
                return client.request("GET", f"{p}/keys")
            return client.request("DELETE", f"{p}/keys/{args.key_id}")
        case "provider":
            if args.demo:
                if args.kind or args.base_url or args.stdin:
                    raise CliError("--demo sets kind, base URL and key itself: leave out --kind, --base-url, --stdin")
                return client.request("PUT", f"{p}/provider", _demo_provider(client))
            if not args.kind:
                raise CliError("give --kind (or --demo for the local stack's demo provider)")
            body = {"kind": args.kind, "api_key": _secret(args, "PAYWALLS_PROVIDER_API_KEY", "provider API key")}
            if args.base_url:
                body["base_url"] = args.base_url
            return client.request("PUT", f"{p}/provider", body)
        case "providers":
            return client.request("GET", f"{p}/providers")
        case "provider-add":
            body: dict[str, Any] = {"kind": args.kind}
            if args.base_url:
                body["base_url"] = args.base_url
            if args.stdin or cli_settings().provider_api_key:
                body["api_key"] = _secret(args, "PAYWALLS_PROVIDER_API_KEY", "provider API key")
            if args.price:
                body["prices"] = dict(_parse_model(spec) for spec in args.price)
            return client.request("PUT", f"{p}/providers/{args.name}", body)
        case "provider-remove":
            return client.request("DELETE", f"{p}/providers/{args.name}")
        case "routes":
            return client.request("PUT", f"{p}/routes", {"routes": [_parse_route(r) for r in args.route or []]})
        case "pricing":
            return client.request("PUT", f"{p}/pricing", _pricing_body(args, client, p))
        case "templates":
            body = {
                k: v
                for k, v in {
                    "topup": args.topup,
                    "authorize": args.authorize,
                    "provider_error": args.provider_error,
                    "limit": args.limit,
                }.items()
                if v is not None
            }
            return client.request("PUT", f"{p}/templates", body)
        case "stripe":
            return client.request("PUT", f"{p}/stripe", _stripe_body(args))
        case "limits":
            return client.request("PUT", f"{p}/limits", _limits_body(args))
        case "user-limits":
            path = f"{p}/users/{args.user}/limits"
            if args.delete:
                return client.request("DELETE", f"{path}?{httpx.QueryParams(environment=args.environment)}")
            body = _limits_body(args)
            if not body:
                return client.request("GET", f"{path}?{httpx.QueryParams(environment=args.environment)}")
            return client.request("PUT", path, {"environment": args.environment, **body})
        case "users":
            return client.request("GET", f"{p}/users?{_page(args, environment=args.environment)}")
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
        case "webhooks":
            return _webhooks(args, client, f"{p}/webhooks")
        case "person":
            return client.request("GET", f"/persons?{httpx.QueryParams(email=args.email)}")
        case "person-adjust":
            body = {"amount": args.amount, "environment": args.environment}
            if args.reason:
                body["reason"] = args.reason
            person_id = _person_id(client, args.person)
            return client.request("POST", f"/persons/{person_id}/adjustments", body, _idempotency(args))
    raise CliError(f"unknown command {args.command}")


PAYWALL_ID_HELP = "the paywall's id, pw_..."
RETRY_HELP = "reuse to retry without applying twice"
ENVIRONMENT_HELP = "live (live keys, real money) or test (test keys)"
# chat/providers.KINDS, spelled out: the CLI is an admin API client and imports no domain module (a test
# keeps the two equal).
PROVIDER_KINDS = ("openai", "openrouter", "together", "anthropic", "openai-compatible")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="paywalls",
        description="Operate a Paywalls deployment (admin API). Amounts are decimal currency units, e.g. 5 or 0.25.",
    )
    parser.add_argument("--url", help="admin API URL, e.g. https://<api>.execute-api.<region>.amazonaws.com/prod/admin")
    parser.add_argument("--token", help="admin bearer token (local stack); omit to sign with AWS credentials")
    parser.add_argument("--region", help="AWS region for SigV4 (default: from the URL)")
    parser.add_argument("--json", action="store_true", help="print the raw JSON response (amounts in micro-units)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=help_text)

    def paywall_cmd(name: str, help_text: str) -> argparse.ArgumentParser:
        cmd = command(name, help_text)
        cmd.add_argument("paywall_id", help=PAYWALL_ID_HELP)
        return cmd

    def environment(cmd: argparse.ArgumentParser, **kwargs: Any) -> None:
        cmd.add_argument("--environment", choices=["live", "test"], help=ENVIRONMENT_HELP, **kwargs)

    def add_profile(cmd: argparse.ArgumentParser, *, name_required: bool) -> None:
        cmd.add_argument("--name", required=name_required, help="the app's name, shown on the hosted pages")
        cmd.add_argument("--description", help="a line about the app, shown on the authorization page")
        cmd.add_argument("--icon-url", dest="icon_url", help="https URL of the app's icon")
        cmd.add_argument("--markup-percent", dest="markup_percent", help="added to every price, e.g. 20")
        cmd.add_argument("--trial-credits", dest="trial_credits", help="given once to every new user, e.g. 0.50")
        cmd.add_argument(
            "--platform-fee-percent",
            dest="platform_fee_percent",
            help="shared mode: the operator's share of every charge, e.g. 10",
        )

    create = command("create", "create a paywall")
    add_profile(create, name_required=True)
    create.add_argument(
        "--mode",
        choices=["default", "shared"],
        default="default",
        help="default: a wallet per app user; shared: one wallet per person across apps. Fixed at creation",
    )
    console = command(
        "console", "open the operator console: a web UI on 127.0.0.1 that calls the admin API as this CLI does"
    )
    console.add_argument("--port", type=int, default=8765, help="local port (0: any free port)")
    listing_all = command("list", "list the paywalls, oldest first")
    listing_all.add_argument("--limit", type=int, default=100, help="at most this many (1-100)")
    listing_all.add_argument("--cursor", help="the next_cursor of the page before")
    paywall_cmd("get", "show a paywall")
    # No --mode: a paywall's mode is fixed at creation (the API answers 409 to a change).
    update = paywall_cmd("update", "change a paywall's profile (the mode is fixed at creation)")
    add_profile(update, name_required=False)

    keys = command("keys", "API keys: create, list, revoke")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    key_create = keys_sub.add_parser("create", help="issue a key (shown once)")
    key_create.add_argument("paywall_id", help=PAYWALL_ID_HELP)
    environment(key_create, default="live")
    keys_sub.add_parser("list", help="list keys").add_argument("paywall_id", help=PAYWALL_ID_HELP)
    revoke = keys_sub.add_parser("revoke", help="revoke a key")
    revoke.add_argument("paywall_id", help=PAYWALL_ID_HELP)
    revoke.add_argument("key_id", help="the key's id (key_...), from `keys list`")

    provider = paywall_cmd("provider", "set the LLM provider (key from stdin or $PAYWALLS_PROVIDER_API_KEY)")
    provider.add_argument(
        "--kind",
        choices=PROVIDER_KINDS,
        help="the provider's API; openai-compatible needs --base-url",
    )
    provider.add_argument(
        "--base-url", dest="base_url", help="as the OpenAI SDK takes it, e.g. https://api.openai.com/v1"
    )
    provider.add_argument("--stdin", action="store_true", help="read the API key from stdin")
    provider.add_argument(
        "--demo", action="store_true", help="the local stack's built-in demo provider (demo/* models; make run only)"
    )

    paywall_cmd("providers", "list the paywall's providers (`default`: the one `provider` sets)")
    provider_add = paywall_cmd(
        "provider-add", "add or change a named provider (key from stdin or $PAYWALLS_PROVIDER_API_KEY; kept if neither)"
    )
    provider_add.add_argument("name", help="the provider's name in routes, e.g. claude (a-z, 0-9, -, _)")
    provider_add.add_argument(
        "--kind",
        required=True,
        choices=PROVIDER_KINDS,
        help="the provider's API (anthropic: chat only; together: no Responses API); openai-compatible: --base-url",
    )
    provider_add.add_argument("--base-url", dest="base_url", help="as the OpenAI SDK takes it")
    provider_add.add_argument("--stdin", action="store_true", help="read the API key from stdin")
    provider_add.add_argument(
        "--price",
        action="append",
        help="MODEL=PROMPT,COMPLETION[,REQUEST]: what this provider charges (the cost recorded per charge; repeatable)",
    )
    provider_remove = paywall_cmd("provider-remove", "remove a named provider no route uses")
    provider_remove.add_argument("name", help="the provider's name")
    routes = paywall_cmd("routes", "replace the routing rules (no --route: none, every model to the default)")
    routes.add_argument(
        "--route",
        action="append",
        help="MATCH=PROVIDER[:strip|:model=ID][,PROVIDER...]: a model id or prefix* to providers in fallback order",
    )

    pricing = paywall_cmd("pricing", "set prices, merged into the current table (--replace to replace it)")
    pricing.add_argument(
        "--model", action="append", help="MODEL=PROMPT,COMPLETION[,REQUEST]: per 1M tokens and per request (repeatable)"
    )
    pricing.add_argument("--file", help="JSON file {models: {...}, markup_percent?, features?}")
    pricing.add_argument("--markup-percent", dest="markup_percent", help="added to every price, e.g. 20")
    pricing.add_argument(
        "--feature",
        action="append",
        help="NAME=REQUEST[,PROMPT,COMPLETION]: price a paid extra (web_search, audio, priority_tier, "
        "provider_routing, file_search, code_interpreter) as a surcharge; unpriced ones are refused",
    )
    pricing.add_argument("--remove", action="append", metavar="MODEL", help="take a model off the table (repeatable)")
    pricing.add_argument("--replace", action="store_true", help="replace the whole model table instead of merging")

    templates = paywall_cmd("templates", "set reply templates ({{url}}, {{name}})")
    templates.add_argument("--topup", help="the reply when a balance is too low; {{url}} is the top-up link")
    templates.add_argument("--authorize", help="shared mode: the reply asking the person to authorize the app")
    templates.add_argument("--provider-error", dest="provider_error", help="the error text when the provider fails")
    templates.add_argument("--limit", help="spend limit reached ({{period}}, {{limit}}, {{resets}}, {{name}})")

    stripe = paywall_cmd("stripe", "connect Stripe (key from stdin or $PAYWALLS_STRIPE_SECRET_KEY)")
    stripe.add_argument("--stdin", action="store_true", help="read the secret key from stdin")
    stripe.add_argument("--topup-amounts", dest="topup_amounts", help="top-up page presets, e.g. 5,10,20")

    def add_limits(cmd: argparse.ArgumentParser, absent: str) -> None:
        note = f"`none`: no limit; not given: {absent}"
        cmd.add_argument("--requests-per-minute", dest="requests_per_minute", help=f"requests per minute ({note})")
        cmd.add_argument(
            "--tokens-per-day", dest="tokens_per_day", help=f"prompt + completion tokens per UTC day ({note})"
        )
        cmd.add_argument("--spend-per-day", dest="spend_per_day", help=f"decimal amount per UTC day ({note})")
        cmd.add_argument("--spend-per-month", dest="spend_per_month", help=f"decimal amount per UTC month ({note})")

    limits = paywall_cmd("limits", "set every user's default limits (replaces all four)")
    add_limits(limits, "no limit")
    user_limits = paywall_cmd("user-limits", "show, set or remove one user's own limits")
    user_limits.add_argument("user", help="the app's user id")
    environment(user_limits, default="live")
    add_limits(user_limits, "the paywall's limit")
    user_limits.add_argument("--delete", action="store_true", help="remove the user's own limits")

    users = paywall_cmd("users", "list users with balances")
    environment(users, default="live")
    users.add_argument("--limit", type=int, default=100, help="at most this many (1-1000)")
    users.add_argument("--cursor", help="the next_cursor of the page before")

    usage = paywall_cmd("usage", "revenue, provider cost and profit by model and user")
    environment(usage, default="live")
    usage.add_argument("--from", dest="start", help="ISO timestamp, inclusive")
    usage.add_argument("--to", dest="end", help="ISO timestamp, exclusive")

    adjust = paywall_cmd("adjust", "credit (positive) or debit (negative) a user's balance")
    adjust.add_argument("user", help="the app's user id")
    adjust.add_argument("amount", help='decimal, e.g. "5" or "-0.25"')
    environment(adjust, default="live")
    adjust.add_argument("--reason", help="kept with the ledger entry")
    adjust.add_argument("--idempotency-key", dest="idempotency_key", help=RETRY_HELP)

    # Shared mode (SPEC §6).
    earn = paywall_cmd(
        "earnings", "a shared-mode paywall's earnings: gross, fees, earned, withdrawn, available, pending (and when)"
    )
    environment(earn, default="live")
    withdraw = paywall_cmd("withdraw", "withdraw available earnings (Stripe transfer if a payout account is set)")
    withdraw.add_argument("--amount", help='decimal, e.g. "25"; default: everything available (whole cents)')
    environment(withdraw, default="live")
    withdraw.add_argument("--idempotency-key", dest="idempotency_key", help="reuse to retry without paying twice")
    environment(paywall_cmd("withdrawals", "list withdrawals"), default="live")
    paid = paywall_cmd("withdrawal-paid", "mark a pending withdrawal paid (after paying it by hand)")
    paid.add_argument("withdrawal_id", help="the withdrawal's id, from `withdrawals`")
    paid.add_argument("--reference", help="e.g. the bank transfer's id, kept with the withdrawal")
    payout = paywall_cmd("payout", "where withdrawals are paid")
    target = payout.add_mutually_exclusive_group(required=True)
    target.add_argument("--stripe-account", dest="stripe_account", help="Stripe Connect account id, acct_...")
    target.add_argument("--manual", action="store_true", help="no transfer: withdrawals stay pending for manual payout")
    lost = command("losses", "refunded or disputed wallet top-ups that had been spent: who, which apps")
    environment(lost, default="live")
    operator = command("operator-stripe", "the operator's Stripe key (wallet top-ups, payouts)")
    operator.add_argument("--stdin", action="store_true", help="read the secret key from stdin")
    operator.add_argument("--topup-amounts", dest="topup_amounts", help="wallet top-up presets, e.g. 5,10,20")
    hooks = command("webhooks", "outbound webhooks of a paywall: subscriptions and delivery logs")
    hooks_sub = hooks.add_subparsers(dest="webhooks_command", required=True, metavar="ACTION")

    def hook_cmd(name: str, help_text: str, *, one: bool = False) -> argparse.ArgumentParser:
        cmd = hooks_sub.add_parser(name, help=help_text, description=help_text)
        cmd.add_argument("paywall_id", help=PAYWALL_ID_HELP)
        if one:
            cmd.add_argument("subscription_id", help="the subscription's id, whsub_...")
        return cmd

    def hook_fields(cmd: argparse.ArgumentParser, *, required: bool) -> None:
        # dest: not `url`, which is the admin API's (the global --url)
        cmd.add_argument("--url", dest="hook_url", required=required, help="https URL that receives the POSTs")
        cmd.add_argument(
            "--events", required=required, help='comma-separated names or wildcards, e.g. "paywall.balance.*"; * = all'
        )
        cmd.add_argument("--description", help="a note for you (trimmed to 512 characters)")
        cmd.add_argument("--header", action="append", help="a custom header NAME:VALUE (repeat, at most 10)")

    hook_create = hook_cmd("create", "subscribe a URL (the signing secret is shown once)")
    hook_fields(hook_create, required=True)
    hook_create.add_argument("--secret-stdin", action="store_true", help="read your own signing secret from stdin")
    hook_list = hook_cmd("list", "list the subscriptions")
    hook_list.add_argument("--status", choices=["active", "inactive"], help="only active or only inactive ones")
    hook_cmd("get", "show a subscription", one=True)
    hook_update = hook_cmd("update", "edit a subscription, or re-enable it", one=True)
    hook_fields(hook_update, required=False)
    switch = hook_update.add_mutually_exclusive_group()
    switch.add_argument("--enable", action="store_true", help="re-enable (the failure count starts again)")
    switch.add_argument("--disable", action="store_true", help="stop deliveries")
    hook_cmd("delete", "deactivate a subscription (soft: its logs stay)", one=True)
    hook_cmd("rotate-secret", "a new signing secret (shown once)", one=True)
    hook_logs = hook_cmd("logs", "deliveries, newest first: attempts, status codes, the event")
    hook_logs.add_argument("--subscription", help="only this subscription's (whsub_...)")
    hook_logs.add_argument(
        "--status", choices=["pending", "success", "error"], help="pending (retrying), success or error (given up)"
    )
    hook_logs.add_argument("--event-type", dest="event_type", help="only this event type")
    hook_logs.add_argument("--limit", type=int, default=20, help="at most this many (1-100)")
    hook_logs.add_argument("--cursor", help="the nextCursor of the page before")

    command("person", "a wallet owner by email: live and test balances, authorized apps").add_argument(
        "email", help="the email the person signs in with"
    )
    person_adjust = command("person-adjust", "credit (positive) or debit (negative) a person's wallet")
    person_adjust.add_argument("person", help="the person's email, or their id (from `person`)")
    person_adjust.add_argument("amount", help='decimal, e.g. "5" or "-0.25"')
    # Required: a person's live wallet is real money, the test wallet test money; never guessed.
    environment(person_adjust, required=True)
    person_adjust.add_argument("--reason", help="kept with the ledger entry")
    person_adjust.add_argument("--idempotency-key", dest="idempotency_key", help=RETRY_HELP)
    return parser


# API fields that hold integer micro-units (10^-6 of the currency): `render` shows them in currency.
MICRO_FIELDS = frozenset(
    {"amount", "balance", "balance_after", "available", "earned", "withdrawn", "gross", "fees", "provider_cost"}
    | {"cap", "spent"}
)
_INTEGER = re.compile(r"-?[0-9]+")


def _scalar(name: str, value: Any) -> str:
    if name in MICRO_FIELDS and isinstance(value, str) and _INTEGER.fullmatch(value):
        return format_micros(int(value))
    if value is None:
        return "-"
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _shown(item: dict[str, Any]) -> dict[str, Any]:
    """Without duplicates: `balanceFormatted` beside `balance` (shown in currency anyway), and the
    usage report's `currency_unit` (its amounts are already decimal currency)."""
    return {
        k: v
        for k, v in item.items()
        if k != "currency_unit" and not (k.endswith("Formatted") and k.removesuffix("Formatted") in item)
    }


def _lines(result: dict[str, Any], indent: str = "") -> list[str]:
    lines: list[str] = []
    for name, value in _shown(result).items():
        if isinstance(value, dict) and value:
            lines += [f"{indent}{name}:", *_lines(value, indent + "  ")]
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            lines += [f"{indent}{name}:", *(f"{indent}  - {_one_line(v)}" for v in value)]
        else:
            lines.append(f"{indent}{name}: {_scalar(name, value)}")
    return lines


def _one_line(item: dict[str, Any]) -> str:
    return "  ".join(f"{k}={_scalar(k, v)}" for k, v in _shown(item).items() if k != "object" and v is not None)


def _paywall_summary(paywall: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": paywall.get("id"),
        "mode": paywall.get("mode"),
        "name": paywall.get("name"),
        "provider": (paywall.get("provider") or {}).get("kind") or "none",
        "models": len(paywall.get("pricing") or {}),
        "created_at": paywall.get("created_at"),
    }


def render(result: Any, command: str | None = None) -> str:
    """Human output: `key: value` lines (nested objects indented), lists one line per item, micro-unit
    amounts in currency (`--json` prints the API's own micro-unit strings)."""
    if isinstance(result, dict) and isinstance(result.get("data"), list):
        items = [_paywall_summary(p) for p in result["data"]] if command == "list" else result["data"]
        lines = [_one_line(i) if isinstance(i, dict) else str(i) for i in items] or ["(none)"]
        if result.get("has_more") or result.get("hasMore"):
            lines.append(f"(more: --cursor {result.get('next_cursor') or result.get('nextCursor')})")
        return "\n".join(lines)
    if isinstance(result, dict):
        return "\n".join(_lines(result))
    return str(result)


def _console(client: AdminClient, port: int) -> int:
    """Serve the console until Ctrl-C. Its link carries a random token of this start (like Jupyter)."""
    import asyncio

    from paywalls.console.serve import server

    try:
        running = server(client, port)
    except OSError as exc:
        raise CliError(f"cannot serve the console on 127.0.0.1:{port}: {exc.strerror or exc} (try --port 0)") from None
    print(f"Paywalls console: {running.url}\n(open it in your browser; Ctrl-C to stop)", flush=True)
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C is how it stops
        asyncio.run(running.server.serve(sockets=[running.listener]))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        url, token = resolve_target(args)
        if args.command == "console":
            return _console(AdminClient(url, token, args.region), args.port)
        result = run(args, AdminClient(url, token, args.region))
    except CliError as exc:
        print(f"paywalls: {exc}", file=sys.stderr)
        return 1
    except httpx.HTTPError as exc:
        print(f"paywalls: cannot reach the admin API: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2) if args.json else render(result, args.command))
    if f"{args.command} {getattr(args, 'keys_command', '')}".strip() in CACHED_CHANGES:
        print(CACHE_NOTE, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
