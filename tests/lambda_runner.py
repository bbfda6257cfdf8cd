"""Run events through one function's handler in this process, as Lambda's Python runtime would:
the function's directory first on sys.path, then whatever PYTHONPATH holds (the layers' python/
folders in an artifact, or the source tree). The chat function (Handler run.sh: the Web Adapter in
front of uvicorn) gets the API Gateway event through Mangum around the same ASGI app, which is what
the adapter's event-to-HTTP translation amounts to (the artifact test also runs run.sh itself).

usage: python tests/lambda_runner.py <function dir> <handler> <event.json> [<event.json> ...]
Prints one JSON line per event: {"event": name, "result": what the handler returned}."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

# Not this script's folder (tests/): only the function and the PYTHONPATH entries, as in Lambda.
sys.path[:1] = []


class LambdaContext:
    function_name = "local"
    memory_limit_in_mb = 512
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:local"
    aws_request_id = "00000000-0000-0000-0000-000000000000"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def main() -> None:
    function_dir, handler_name, *events = sys.argv[1:]
    sys.path.insert(0, function_dir)
    if handler_name == "run.sh":
        from mangum import Mangum

        handler = Mangum(importlib.import_module("app").app, lifespan="off")
    else:
        module_name, _, attr = handler_name.rpartition(".")
        handler = getattr(importlib.import_module(module_name), attr)
    for path in events:
        result = handler(json.loads(Path(path).read_text()), LambdaContext())
        print(json.dumps({"event": Path(path).name, "result": result}), flush=True)


if __name__ == "__main__":
    main()
