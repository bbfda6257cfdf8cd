"""Scheduled (EventBridge, every minute): releases holds that no invocation settled in time."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from paywalls import ledger

logger = Logger()


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    released = ledger.sweep_expired_holds()
    logger.info("sweep finished", extra={"released_holds": released})
    return {"released": released}
