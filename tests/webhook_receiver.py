"""A real HTTP receiver for outbound webhook tests: verifies every delivery's signature with the
subscription's secret (as docs/webhooks.md tells an app to) and records it; answers each path with the
statuses queued for it (then 200)."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Delivery:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    verified: bool


@dataclass
class Receiver:
    port: int
    secrets: dict[str, str] = field(default_factory=dict)  # path -> signing secret
    answers: dict[str, list[int]] = field(default_factory=dict)  # path -> statuses to answer first
    deliveries: list[Delivery] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[Delivery]:
        with self.lock:
            return [d for d in self.deliveries if d.path == path]

    def events(self, path: str) -> list[dict[str, Any]]:
        return [d.body["event"] for d in self.at(path) if d.verified]


@contextlib.contextmanager
def receiver() -> Iterator[Receiver]:
    state = Receiver(0)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            raw = self.rfile.read(int(self.headers.get("content-length") or 0))
            secret = state.secrets.get(self.path, "")
            expected = hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
            verified = hmac.compare_digest(expected, self.headers.get("x-paywalls-signature", ""))
            with state.lock:
                queued = state.answers.get(self.path) or []
                status = queued.pop(0) if queued else 200
                state.deliveries.append(Delivery(self.path, dict(self.headers), json.loads(raw), verified))
            self.send_response(status)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
