"""Serving the console on 127.0.0.1: `paywalls console` (against a deployed stack, SigV4) and
`make run` (against the local stack, admin token) both start it through `server`."""

from __future__ import annotations

import socket
from dataclasses import dataclass

import uvicorn

from paywalls.cli import AdminClient
from paywalls.console.app import build_app


@dataclass
class Running:
    server: uvicorn.Server
    listener: socket.socket
    url: str  # the login link: the console's address with this start's token


def server(client: AdminClient, port: int = 0) -> Running:
    """A console bound to 127.0.0.1:`port` (0: a free port), not yet serving: `await
    running.server.serve(sockets=[running.listener])`. Loopback only: never reachable from the network."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    base = f"http://127.0.0.1:{listener.getsockname()[1]}"
    app, console = build_app(client)
    config = uvicorn.Config(app, host="127.0.0.1", log_level="warning", lifespan="off", proxy_headers=False)
    return Running(uvicorn.Server(config), listener, console.login_url(base))
