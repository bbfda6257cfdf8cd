"""`make sam-events`: the sample events of events/ made ready for `sam local invoke` against a running
`make run` (README "sam local invoke").

The samples carry placeholders (paywall `pw_demo`, an example key, a dummy Stripe signature, no
signed link). This fills them in from the running stack's .paywalls/local.json: the demo paywall,
its test key, a top-up link signed with the stack's key, and a Stripe event signed with a test-mode
webhook secret it stores for the demo paywall (in the local engine only). Output:
.paywalls/sam-events/<same name>.json.

usage: python -m devserver.sam_events [--state-dir .paywalls] [--out .paywalls/sam-events]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"
EXAMPLE_KEY = "sk-paywalls-test-EXAMPLEKEYEXAMPLEKEYEXAMPLEKEY"
EXAMPLE_PAYWALL = "pw_demo"
LOCAL_WEBHOOK_SECRET = "whsec_sam_local_events"  # the demo paywall's local test-mode signing secret
TOPUP_USER = "alice"


def _point_at(local: dict[str, Any]) -> None:
    """This process talks to the stack's engine, as the stack itself does."""
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": local["engine_url"],
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "TABLE_NAME": "PaywallsTable",
            "SECRET_PREFIX": "paywalls/local",
        }
    )
    from paywalls.infra import aws

    aws.reset_clients()


def sign_stripe(event: dict[str, Any], secret: str) -> None:
    """Stripe's scheme: v1 = HMAC-SHA256(secret, "{t}.{raw body}")."""
    timestamp = int(time.time())
    signature = hmac.new(secret.encode(), f"{timestamp}.{event['body']}".encode(), hashlib.sha256).hexdigest()
    header = f"t={timestamp},v1={signature}"
    event["headers"]["Stripe-Signature"] = header
    event["multiValueHeaders"]["Stripe-Signature"] = [header]


def prepare(local: dict[str, Any], out: Path, events: Path = EVENTS) -> list[Path]:
    """Write every events/*.json, ready to invoke, to `out`; returns the files written."""
    _point_at(local)
    from paywalls.billing import stripe_config
    from paywalls.infra import links

    paywall_id, key = local["paywall_id"], local["test_api_key"]
    if stripe_config.load_secrets(paywall_id, "test") is None:
        stripe_config.save_secrets(paywall_id, "test", stripe_config.StripeSecrets(None, LOCAL_WEBHOOK_SECRET))
    secret = stripe_config.load_secrets(paywall_id, "test")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for path in sorted(events.glob("*.json")):
        event = json.loads(path.read_text().replace(EXAMPLE_PAYWALL, paywall_id).replace(EXAMPLE_KEY, key))
        if path.name.startswith("stripe_webhook-") and secret and secret.webhook_secret:
            sign_stripe(event, secret.webhook_secret)
        if path.name.startswith("wallet-topup"):
            token = links.sign(links.LinkClaims("topup", paywall_id, "test", TOPUP_USER))
            event["path"] = f"/pay/{token}"
            event["pathParameters"] = {"proxy": token}
            event["requestContext"]["path"] = f"/{event['requestContext']['stage']}/pay/{token}"
        target = out / path.name
        target.write_text(json.dumps(event, indent=2) + "\n")
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--state-dir", default=str(ROOT / ".paywalls"))
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    state = Path(args.state_dir)
    local_json = state / "local.json"
    if not local_json.exists():
        raise SystemExit(f"{local_json} not found: start the local stack first (make run)")
    local = json.loads(local_json.read_text())
    if "engine_url" not in local:
        raise SystemExit("this local.json predates engine_url: restart make run")
    written = prepare(local, Path(args.out) if args.out else state / "sam-events")
    for path in written:
        print(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)


if __name__ == "__main__":
    main()
