"""`make run`: the whole product on this machine (SPEC §8). No AWS, no Docker, no network.

Starts the local engine (a child process), creates the table(s) declared in template.yaml, seeds a
demo paywall priced for `demo/echo`, writes .paywalls/local.json and serves every function's app on
the template's routes at 127.0.0.1:$PORT. Ctrl-C / SIGTERM stops everything it started."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import copy
import functools
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from devserver import demo_provider

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
SWEEP_INTERVAL_S = 30
# Prices per 1M tokens: with word-count "tokens", one short question costs a few micro-units. Every
# demo model is priced, so each failure path the README lists can be tried right away.
DEMO_PRICE = {"prompt": "1", "completion": "2", "request": "0.0001"}
DEMO_MODELS = dict.fromkeys(demo_provider.MODELS, DEMO_PRICE)


class PortBusy(Exception):
    pass


def bind_port(port: int) -> socket.socket:
    """Bind the server's port before anything else starts or is written, so a busy port fails at once
    with a clear message (and a running stack's .paywalls/local.json is left alone). The socket is
    handed to uvicorn, so nothing can take the port in between."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # As uvicorn does: a restart may rebind at once while the last run's connections are in TIME_WAIT.
    # A port another process listens on still refuses the bind.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        sock.close()
        raise PortBusy(
            f"cannot serve on 127.0.0.1:{port}: {exc.strerror or exc}. Is another `make run` (or another "
            f"server) using it? Stop it, or choose another port: PORT={port + 1} make run"
        ) from None
    return sock


def write_private(path: Path, text: str) -> None:
    """Write a file readable by its owner only (local.json holds the admin token): created 0600 under a
    temporary name, then renamed over the old one, so it is never readable by others, not even briefly."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # O_CREAT's mode is masked by the umask; a leftover tmp keeps its mode
        with os.fdopen(fd, "w") as f:
            fd = -1
            f.write(text)
        os.replace(tmp, path)
    finally:
        if fd != -1:
            os.close(fd)
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def engine_process() -> Iterator[str]:
    """The local engine in its own process (its own GIL); yields its endpoint URL. A free port on
    127.0.0.1 unless PAYWALLS_ENGINE_PORT / PAYWALLS_ENGINE_HOST say otherwise (`sam local invoke`
    containers reach a fixed port on the host: README "sam local invoke")."""
    port = os.environ.get("PAYWALLS_ENGINE_PORT") or "0"
    host = os.environ.get("PAYWALLS_ENGINE_HOST") or "127.0.0.1"
    proc = subprocess.Popen(
        [sys.executable, "-m", "devserver.engine", "--host", host, "--port", port],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        line = proc.stdout.readline() if proc.stdout else ""
        if not line.startswith("ENGINE_PORT="):
            raise RuntimeError(f"local engine failed to start: {line!r}")
        yield f"http://127.0.0.1:{int(line.split('=', 1)[1])}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()


def configure_environment(endpoint: str, port: int, admin_token: str) -> None:
    """What Lambda's environment would hold, pointed at the local engine."""
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "TABLE_NAME": "PaywallsTable",
            "SECRET_PREFIX": "paywalls/local",
            "ADMIN_AUTH": "token",
            "ADMIN_TOKEN": admin_token,
            "PUBLIC_BASE_URL": f"http://127.0.0.1:{port}",
            "PAYWALLS_LOCAL_DEV": "1",
            # Webhook receivers on http://127.0.0.1 (events/subscriptions.py); never set in AWS.
            "PAYWALLS_WEBHOOK_ALLOW_LOCAL": "1",
            "POWERTOOLS_SERVICE_NAME": "paywalls-local",
            # As in Lambda (credentials in the environment): DynamoDB and Secrets Manager over our
            # own signed JSON calls, not botocore (paywalls/infra/aws.py).
            "PAYWALLS_AWS_TRANSPORT": "http",
        }
    )
    # Never let a developer's real AWS profile leak into the local stack.
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(name, None)
    from paywalls.infra import aws

    aws.reset_clients()  # settings and clients read from now on see the environment above


@functools.cache
def _tables() -> tuple[tuple[dict[str, Any], str | None], ...]:
    """The template's tables with their TTL attributes, read once per process: parsing template.yaml
    costs more than creating the tables, which every in-process (moto) test does."""
    from devserver.template import load_template, table_definitions, ttl_attribute

    template = load_template(TEMPLATE)
    return tuple((d, ttl_attribute(d["TableName"], template)) for d in table_definitions(template))


def create_tables() -> None:
    from paywalls.infra import aws

    client = aws.client("dynamodb")
    for cached, attribute in _tables():
        definition = copy.deepcopy(cached)  # the cached copy stays as the template says
        client.create_table(**definition)
        if attribute:
            client.update_time_to_live(
                TableName=definition["TableName"],
                TimeToLiveSpecification={"Enabled": True, "AttributeName": attribute},
            )


def create_app_secret() -> None:
    """The template creates `<prefix>/app` (link signing key); locally we create it at start."""
    from paywalls.infra import secrets as secrets_store
    from paywalls.infra.config import settings

    secrets_store.put_secret(
        f"{settings().secret_prefix}/app", json.dumps({"link_signing_key": secrets.token_urlsafe(32)})
    )


def seed_demo(port: int) -> dict[str, Any]:
    from devserver.demo_provider import DEMO_KEY
    from paywalls.billing import paywall as paywalls
    from paywalls.infra import secrets as secrets_store
    from paywalls.infra.config import settings

    demo = paywalls.create({"name": "Demo app", "mode": "default", "description": "Seeded by make run"})
    secret_name = paywalls.provider_secret_name(settings().secret_prefix, demo.id)
    secrets_store.put_secret(secret_name, DEMO_KEY)
    paywalls.set_provider(demo.id, "openai-compatible", f"http://127.0.0.1:{port}/_demo/v1", secret_name)
    paywalls.set_pricing(demo.id, {"models": DEMO_MODELS})
    _, live_key = paywalls.issue_key(demo.id, "live")
    _, test_key = paywalls.issue_key(demo.id, "test")
    return {"paywall_id": demo.id, "api_key": live_key, "test_api_key": test_key}


def start_event_sources(endpoint: str) -> Any:
    """The template's stream and queue consumers over the engine (devserver/event_sources.py); POST
    /_dev/events/drain runs them until nothing is pending."""
    from devserver import event_sources

    sources = event_sources.EventSources(TEMPLATE, endpoint)
    sources.provision()
    event_sources.current = sources
    return sources


def start_console(local: dict[str, Any]) -> Any:
    """The operator console (paywalls.console) on a free loopback port, over this stack's admin API
    with the local admin token, as `paywalls console` runs it against a deployed stack."""
    from paywalls.cli import AdminClient
    from paywalls.console.serve import server

    return server(AdminClient(local["admin_url"], local["admin_token"]))


def build_app() -> Any:
    from devserver import dev_routes, router
    from devserver.demo_provider import app as demo_app

    return router.TemplateRouter(TEMPLATE, extra={"/_demo": demo_app, "/_dev": dev_routes.app})


async def sweep_forever() -> None:
    from paywalls.billing import ledger

    while True:
        await asyncio.sleep(SWEEP_INTERVAL_S)
        try:
            released = await asyncio.to_thread(ledger.sweep_expired_holds)
            if released:
                logging.getLogger("paywalls.sweeper").info("released %d expired holds", released)
        except Exception:  # the sweeper must outlive a failed pass, as the scheduled Lambda would
            logging.getLogger("paywalls.sweeper").exception("sweep failed")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run the Paywalls stack locally.")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))
    parser.add_argument("--state-dir", default=str(ROOT / ".paywalls"), help="where local.json is written")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per DynamoDB call otherwise (infra/logs.py)

    import uvicorn

    try:
        listener = bind_port(args.port)
    except PortBusy as exc:
        print(f"make run: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    admin_token = "adm_" + secrets.token_urlsafe(24)
    with contextlib.closing(listener), engine_process() as endpoint:
        configure_environment(endpoint, args.port, admin_token)
        create_tables()
        sources = start_event_sources(endpoint)
        create_app_secret()
        seeded = seed_demo(args.port)
        base = f"http://127.0.0.1:{args.port}"
        local = {
            "base_url": f"{base}/v1",
            "api_key": seeded["api_key"],
            "test_api_key": seeded["test_api_key"],
            "paywall_id": seeded["paywall_id"],
            "admin_url": f"{base}/admin",
            "admin_token": admin_token,
            "engine_url": endpoint,
        }
        console = start_console(local)
        local["console_url"] = console.url
        state_dir = Path(args.state_dir)
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_private(state_dir / "local.json", json.dumps(local, indent=2) + "\n")

        config = uvicorn.Config(
            build_app(),
            host="127.0.0.1",
            port=args.port,
            log_level="warning",
            lifespan="off",
            timeout_graceful_shutdown=5,
            # The client address is the socket's, never an X-Forwarded-For header: uvicorn trusts that
            # header from 127.0.0.1 by default, and every local client connects from 127.0.0.1, so
            # anyone could pick their own rate-limit key (sign-in codes are limited per client).
            proxy_headers=False,
        )
        server = uvicorn.Server(config)

        async def serve() -> None:
            sweeper = asyncio.create_task(sweep_forever())
            events = asyncio.create_task(sources.run_forever())
            operator_console = asyncio.create_task(console.server.serve(sockets=[console.listener]))
            try:
                await server.serve(sockets=[listener])
            finally:
                sweeper.cancel()
                events.cancel()
                console.server.should_exit = True
                await operator_console

        _print_banner(local, state_dir / "local.json")
        # uvicorn shuts down gracefully on SIGINT/SIGTERM, then re-raises the signal; these turn
        # that into a normal exit so the engine (and everything else started here) is stopped.
        signal.signal(signal.SIGTERM, _exit_cleanly)
        try:
            asyncio.run(serve())
        except KeyboardInterrupt:
            pass
        finally:
            print("Paywalls local stack stopped.", flush=True)


def _exit_cleanly(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def _print_banner(local: dict[str, Any], path: Path) -> None:
    print(
        f"""
Paywalls is running at {local["base_url"].removesuffix("/v1")}  (Ctrl-C to stop)
  OpenAI base_url : {local["base_url"]}
  API key         : {local["api_key"]}
  admin           : {local["admin_url"]}  (Bearer {local["admin_token"]})
  console         : {local["console_url"]}
  settings        : {path}  (readable by you only: it holds the admin token)
  models          : demo/echo and {len(DEMO_MODELS) - 1} more demo/* models, all priced on this paywall
  your paywalls   : .venv/bin/paywalls provider <paywall id> --demo  uses this demo provider

Try it:
  curl -s {local["base_url"]}/chat/completions -H "Authorization: Bearer {local["api_key"]}" \\
    -H "Content-Type: application/json" -H "X-Paywall-User: alice" \\
    -d '{{"model": "demo/echo", "messages": [{{"role": "user", "content": "hello"}}]}}'
""",
        flush=True,
    )


if __name__ == "__main__":
    main()
