"""One ASGI app that serves every function's app on the routes `template.yaml` declares, so local
routing and deployed routing cannot drift. API Gateway's precedence is kept: literal paths before
`{param}` paths before greedy `{proxy+}` paths."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from devserver.template import api_routes, load_template

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Route:
    method: str  # "ANY" or an HTTP method
    path: str
    function: str
    pattern: re.Pattern[str]

    @property
    def precedence(self) -> tuple[int, int, int]:
        segments = self.path.strip("/").split("/")
        literal = sum(1 for s in segments if not s.startswith("{"))
        greedy = any(s.endswith("+}") for s in segments)
        return (int(greedy), -literal, -len(segments))


def _compile(path: str) -> re.Pattern[str]:
    parts = []
    for segment in path.strip("/").split("/"):
        if segment.startswith("{") and segment.endswith("+}"):
            parts.append(".+")
        elif segment.startswith("{"):
            parts.append("[^/]+")
        else:
            parts.append(re.escape(segment))
    # Used with fullmatch: `$` would let "/health\n" (a %0A in the URL) match "/health".
    return re.compile("/" + "/".join(parts) + "/?")


def load_function_app(code_uri: str, logical_id: str) -> ASGIApp:
    return load_function_module(code_uri, logical_id).app


def load_function_module(code_uri: str, logical_id: str) -> ModuleType:
    """Import functions/<name>/app.py under a unique module name, as its own Lambda would."""
    path = ROOT / code_uri / "app.py"
    name = f"fn_{logical_id}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


class TemplateRouter:
    def __init__(self, template_path: Path, extra: dict[str, ASGIApp] | None = None):
        template = load_template(template_path)
        resources = template["Resources"]
        self.routes = sorted(
            (Route(m.upper(), p, fn, _compile(p)) for m, p, fn in api_routes(template)),
            key=lambda r: r.precedence,
        )
        self.apps: dict[str, ASGIApp] = {}
        for function in {r.function for r in self.routes}:
            code_uri = resources[function]["Properties"]["CodeUri"]
            self.apps[function] = load_function_app(code_uri, function)
        # Dev-only apps by path prefix (demo provider, simulated payments): never in template.yaml.
        self.extra = extra or {}

    def match(self, method: str, path: str) -> str | None:
        allowed = False
        for route in self.routes:
            if route.pattern.fullmatch(path):
                allowed = True
                if route.method in ("ANY", method):
                    return route.function
        return "__method_not_allowed__" if allowed else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _answer_lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path = scope["path"]
        for prefix, app in self.extra.items():
            if path == prefix or path.startswith(prefix + "/"):
                await app(scope, receive, send)
                return
        function = self.match(scope["method"], path)
        if function is None or function == "__method_not_allowed__":
            status = 404 if function is None else 405
            message = "no route" if status == 404 else "method not allowed"
            await _json(
                send,
                status,
                {
                    "error": {
                        "message": f"{message}: {scope['method']} {path}",
                        "type": "invalid_request_error",
                        "param": None,
                        "code": None,
                    }
                },
            )
            return
        await self.apps[function](scope, receive, send)


async def _answer_lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _json(send: Send, status: int, body: Any) -> None:
    data = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": data})
