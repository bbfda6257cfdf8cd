"""Logging: structured JSON (Powertools' formatter) in Lambda, with the request id of the request
being served on every line, also from worker threads (a ContextVar, which Starlette copies into its
thread pool). Locally the same records go to the console in plain text.

Never log a header, a key or a request body: the fields logged are ids, counts and amounts."""

from __future__ import annotations

import logging
from contextvars import ContextVar

from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

from paywalls.infra.config import settings

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)

_configured = False


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id.get()
        return True


def configure() -> None:
    """Idempotent; called when an app is built (cold start)."""
    global _configured
    if _configured:
        return
    _configured = True
    root = logging.getLogger()
    config = settings()
    if config.in_lambda:
        handler = logging.StreamHandler()
        handler.setFormatter(LambdaPowertoolsFormatter(service=config.service_name))
        root.handlers = [handler]  # replaces the runtime's plain-text handler
        root.setLevel(config.log_level)
    # httpx logs every request at INFO; DynamoDB and Secrets Manager calls go through it too
    # (infra/aws_json.py): three lines per chat request that say nothing our own lines do not.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    for handler in root.handlers or [logging.lastResort]:
        if handler is not None and not any(isinstance(f, RequestIdFilter) for f in handler.filters):
            handler.addFilter(RequestIdFilter())
