"""Scheduled (EventBridge, every minute): releases holds that no invocation settled in time.

Publishes its own health: HoldsReleased, and OverdueHolds / OldestOverdueHoldAge, the holds still
active more than OVERDUE_AFTER_S past their expiry after this sweep (one it keeps failing to
release). The OverdueHolds alarm treats missing data as breaching, so a sweeper that stopped
running alarms too."""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools import Logger

from paywalls.billing import ledger
from paywalls.infra import telemetry

OVERDUE_AFTER_S = 5 * 60  # five sweeps: one failed pass is not yet a problem

logger = Logger()


@telemetry.lambda_handler
@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, int]:
    released = ledger.sweep_expired_holds()
    now = int(time.time())
    overdue = ledger.overdue_hold_expiries(now - OVERDUE_AFTER_S)
    oldest = now - min(overdue) if overdue else 0
    telemetry.emit({"HoldsReleased": released, "OverdueHolds": len(overdue), "OldestOverdueHoldAge": oldest})
    logger.info("sweep finished", extra={"released_holds": released, "overdue_holds": len(overdue)})
    return {"released": released}
