"""In Lambda every log line is one JSON object carrying the request id of the request being served,
also when logged from a worker thread."""

from __future__ import annotations

import json
import os
import subprocess
import sys

SCRIPT = """
import logging, threading, contextvars
from paywalls.infra import logs
logs.configure()
logs.request_id.set("req_main")
logging.getLogger("paywalls.x").warning("settled", extra={"hold_id": "h1"})
ctx = contextvars.copy_context()
t = threading.Thread(target=ctx.run, args=(logging.getLogger("paywalls.y").error, "from a thread"))
t.start(); t.join()
"""


def test_lambda_logs_are_json_with_request_id() -> None:
    env = {**os.environ, "AWS_LAMBDA_FUNCTION_NAME": "paywalls-chat", "POWERTOOLS_SERVICE_NAME": "chat"}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=60)
    lines = [json.loads(line) for line in (proc.stdout + proc.stderr).splitlines() if line.startswith("{")]
    assert [line["message"] for line in lines] == ["settled", "from a thread"], proc.stderr
    assert all(line["request_id"] == "req_main" and line["service"] == "chat" for line in lines)
    assert lines[0]["hold_id"] == "h1" and lines[1]["level"] == "ERROR"
