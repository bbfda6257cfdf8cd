"""Move shared/paywalls' flat modules into their subpackages and rewrite every reference to them.

The map below is the layout of docs/DESIGN.md ("Layout"). Run from the repository root:

    python tools/relayout.py            # move the modules still flat, rewrite references everywhere
    python tools/relayout.py FILE...    # only rewrite references in these files (a branch merged later)

Idempotent: a module already moved is left alone, and a reference already in the new form no longer
matches. What it rewrites: `from paywalls import a, b as c` (regrouped by package), `from paywalls.x
import`, `import paywalls.x`, dotted names inside strings (`mock.patch("paywalls.x.y")`, `-m
paywalls.x`) and `shared/paywalls/x.py` paths in docs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "shared" / "paywalls"

# old flat module -> new dotted path below `paywalls`
MOVES: dict[str, str] = {
    # core: the vocabulary every layer speaks (no I/O)
    "errors": "core.errors",
    "money": "core.money",
    "currency": "core.currency",
    # infra: adapters to AWS, Stripe, mail, the process
    "config": "infra.config",
    "aws": "infra.aws",
    "store": "infra.store",
    "secrets_store": "infra.secrets",
    "stripe_gateway": "infra.stripe_gateway",
    "mailer": "infra.mailer",
    "logs": "infra.logs",
    "telemetry": "infra.telemetry",
    "app_keys": "infra.app_keys",
    "links": "infra.links",
    # billing: wallets' money rules, paywall settings, Stripe in, earnings and payouts
    "ledger": "billing.ledger",
    "identity": "billing.identity",
    "accounts": "billing.accounts",
    "paywall": "billing.paywall",
    "metering": "billing.metering",
    "limits": "billing.limits",
    "deposits": "billing.deposits",
    "adjustments": "billing.adjustments",
    "checkout": "billing.checkout",
    "topup": "billing.topup",
    "stripe_config": "billing.stripe_config",
    "operator_stripe": "billing.operator_stripe",
    "webhooks": "billing.stripe_webhooks",
    "earnings": "billing.earnings",
    "withdrawals": "billing.withdrawals",
    "payouts": "infra.payouts",
    "losses": "billing.losses",
    "admin_reports": "analytics.listings",
    # chat: the proxy's request, pricing, hold-then-settle, stream, providers
    "chat_request": "chat.request",
    "chat_pricing": "chat.pricing",
    "chat_billing": "chat.billing",
    "chat_stream": "http.chat_stream",
    "chat_replies": "chat.replies",
    "providers": "chat.providers",
    "sse": "chat.sse",
    # wallets: shared mode's people, sign-in and authorizations
    "persons": "wallets.persons",
    "connections": "wallets.connections",
    "sessions": "wallets.sessions",
    "devices": "wallets.devices",
    "otp": "wallets.otp",
    "ratelimit": "wallets.ratelimit",
    "shared_mode": "wallets.shared_mode",
    "wallet_topup": "wallets.topup",
    # http: the edge shared by the function apps (errors -> HTTP, auth, bodies, pages)
    "web": "http.web",
    "csrf": "http.csrf",
    "api_models": "http.api_models",
    "openapi_doc": "http.openapi_doc",
    "pages": "http.pages",
    "page_http": "http.page_http",
    "pay_routes": "http.pay_routes",
    "wallet_routes": "http.wallet_routes",
    "wallet_pages": "http.wallet_pages",
}
FOLDERS = {"templates": "http/templates"}
PACKAGE_DOCS = {
    "core": "The vocabulary every layer speaks: errors, money, currencies. No I/O.",
    "infra": "Adapters: DynamoDB, Secrets Manager, Stripe's API, SES, logs, metrics, settings, signing keys.",
    "billing": "Money rules: wallets' ledger, paywall settings, top-ups, Stripe events, earnings, payouts.",
    "chat": "The chat proxy: request rules, pricing, hold-then-settle, streams, providers.",
    "wallets": "Shared mode: people, sign-in, devices, authorizations (connections), wallet top-ups.",
    "http": "The HTTP edge shared by the function apps: errors -> HTTP, auth, typed bodies, hosted pages.",
}
SKIP_DIRS = {".git", ".venv", ".venv-sam", "node_modules", ".aws-sam", "site", "__pycache__", ".paywalls", ".artifacts"}
TEXT_SUFFIXES = {".py", ".md", ".toml", ".yaml", ".yml", ".cfg", ".ini", ".txt", ".sh", ".json"}
TEXT_NAMES = {"Makefile"}

_NAMES = "|".join(sorted(MOVES, key=len, reverse=True))
_DOTTED = re.compile(rf"\bpaywalls\.({_NAMES})\b(?!\.py)")
_PATH = re.compile(rf"\bshared/paywalls/({_NAMES})\.py\b")
# At a line's start, or inside a string of code (`"...\\nfrom paywalls import aws\\n"` for `python -c`).
_FROM_PACKAGE = re.compile(
    r"(?:^|(?<=\\n)|(?<=[\"']))(?P<indent>[ \t]*)from paywalls import (?P<names>\([^)]*\)|[^\n\\\"']*)", re.M
)


def _split_names(names: str) -> list[tuple[str, str | None]]:
    names = names.strip()
    if names.startswith("("):
        names = names[1:-1]
    names = re.sub(r"#[^\n]*", "", names)
    parsed = []
    for part in names.replace("\n", " ").split(","):
        part = part.strip()
        if not part:
            continue
        name, _, alias = part.partition(" as ")
        parsed.append((name.strip(), alias.strip() or None))
    return parsed


def _regroup(match: re.Match[str]) -> str:
    indent = match.group("indent")
    # A trailing comment (a noqa for E402, say) is kept on every line the import becomes.
    names_text = match.group("names")
    comment = ""
    if not names_text.startswith("(") and "#" in names_text:
        comment = "  " + names_text[names_text.index("#") :].strip()
    groups: dict[str, list[str]] = {}
    for name, alias in _split_names(match.group("names")):
        target = MOVES.get(name)
        package, leaf = target.rsplit(".", 1) if target else ("", name)
        spelled = leaf if alias is None and leaf == name else f"{leaf} as {alias or name}"
        groups.setdefault(package, []).append(spelled)
    lines = []
    for package in sorted(groups):
        source = f"paywalls.{package}" if package else "paywalls"
        lines.append(f"{indent}from {source} import {', '.join(groups[package])}{comment}")
    return "\n".join(lines)


def rewrite(text: str) -> str:
    text = _FROM_PACKAGE.sub(_regroup, text)
    text = _DOTTED.sub(lambda m: f"paywalls.{MOVES[m.group(1)]}", text)
    text = _PATH.sub(lambda m: f"shared/paywalls/{MOVES[m.group(1)].replace('.', '/')}.py", text)
    return text.replace("shared/paywalls/templates/", "shared/paywalls/http/templates/")


def text_files() -> list[Path]:
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    files = []
    for line in tracked.stdout.splitlines():
        path = ROOT / line
        if set(Path(line).parts) & SKIP_DIRS or not path.is_file():
            continue
        if path.suffix in TEXT_SUFFIXES or path.name in TEXT_NAMES:
            files.append(path)
    return files


def move_modules() -> None:
    for package, doc in PACKAGE_DOCS.items():
        init = PACKAGE / package / "__init__.py"
        if not init.exists():
            init.parent.mkdir(exist_ok=True)
            init.write_text(f'"""{doc}"""\n')
            subprocess.run(["git", "add", str(init)], cwd=ROOT, check=True)
    for old, new in MOVES.items():
        source = PACKAGE / f"{old}.py"
        if source.exists():
            target = PACKAGE / (new.replace(".", "/") + ".py")
            subprocess.run(["git", "mv", str(source), str(target)], cwd=ROOT, check=True)
    for old, new in FOLDERS.items():
        if (PACKAGE / old).exists():
            subprocess.run(["git", "mv", str(PACKAGE / old), str(PACKAGE / new)], cwd=ROOT, check=True)


def main(argv: list[str]) -> None:
    if argv:
        files = [Path(a).resolve() for a in argv]
    else:
        move_modules()
        files = text_files()
    for path in files:
        if path.resolve() == Path(__file__).resolve():
            continue
        before = path.read_text()
        after = rewrite(before)
        if after != before:
            path.write_text(after)
            print(f"rewrote {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main(sys.argv[1:])
