"""The local AWS engine: moto's DynamoDB + Secrets Manager over HTTP, one request at a time.

moto's backends have no locks: served on several threads, 400 concurrent conditional debits of 1
against a balance of 100 let 102 through (ARCHITECTURE.md). DynamoDB guarantees each request is
atomic, so the engine serialises requests with one global lock around moto's WSGI app while still
accepting connections on many threads (a slow client never blocks the others' sockets).

Run: python -m devserver.engine [--port N]; prints "ENGINE_PORT=<port>" once it listens."""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from collections.abc import Iterable
from typing import Any

from moto.server import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import WSGIRequestHandler, make_server

from devserver import moto_patches


class SerializedApp:
    def __init__(self, app: Any):
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        with self.lock:
            # Drain the response inside the lock: moto may compute lazily while iterating.
            return [b"".join(self.app(environ, start_response))]


class QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:  # one line per call would drown the console
        pass


def make_engine(host: str = "127.0.0.1", port: int = 0) -> Any:
    moto_patches.install()
    app = SerializedApp(DomainDispatcherApplication(create_backend_app))
    return make_server(host, port, app, threaded=True, request_handler=QuietHandler)


def exit_with_parent() -> None:
    """The engine belongs to the stack that started it: if that process dies without stopping it
    (SIGKILL, a crashed test run), the engine exits too instead of holding memory and a port."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    exit_with_parent()
    server = make_engine(args.host, args.port)
    print(f"ENGINE_PORT={server.server_port}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        sys.exit(0)


if __name__ == "__main__":
    main()
