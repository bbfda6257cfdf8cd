"""Hold-then-settle for one proxied chat completion (SPEC §4), on the wallet ledger.

`reserve` sizes the hold with metering.plan_hold against the wallet's available balance and places
it before the provider is called; the `Reservation` it returns is then either settled to the
provider's usage or released, exactly once. The ledger calls are blocking (boto3), so they run in
worker threads and the event loop keeps streaming other requests meanwhile."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio

from paywalls import accounts, ledger, telemetry
from paywalls.chat_request import ChatRequest
from paywalls.limits import UserLimits
from paywalls.metering import NO_LIMIT_TOKENS, HoldPlan, Pricing, StreamTally, Usage, estimated_usage, plan_hold
from paywalls.paywall import Paywall

log = logging.getLogger(__name__)

HOLD_ATTEMPTS = 4  # a concurrent request may take the funds between our balance read and our hold

T = TypeVar("T")


async def blocking(call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await anyio.to_thread.run_sync(functools.partial(call, *args, **kwargs))


@dataclass(frozen=True)
class Funding:
    """Who pays when it is not the app user's own wallet (shared mode, see shared_mode.funding): the
    person's wallet, the connection's spending cap as the hold's ledger Budget, the paywall's earnings
    credited with the charge (`also`), and what to record on the person's entries."""

    wallet_id: str
    budget: ledger.Budget | None
    also: ledger.Also | None
    metadata: dict[str, str]
    spendable: Callable[[], int]  # fresh read: what the wallet and the cap allow now


@dataclass
class Reservation:
    wallet_id: str
    hold_id: str | None  # None: the request costs nothing at all, so nothing is held
    plan: HoldPlan
    pricing: Pricing
    prompt_bound: int
    n: int
    request_id: str
    model: str
    closed: bool = field(default=False)
    funding: Funding | None = None
    paywall_id: str = ""  # metrics only

    def estimate(self, generated: int) -> Usage:
        return estimated_usage(self.plan, prompt_bound=self.prompt_bound, n=self.n, generated=generated)

    async def settle(self, usage: Usage) -> int:
        """Charge the usage (at most the hold); returns the amount charged."""
        if self.closed or self.hold_id is None:
            return 0
        self.closed = True
        cost = self.pricing.cost(usage.prompt_tokens, usage.completion_tokens)
        if usage.estimated:
            cost = min(cost, self.plan.amount)
        metadata = {"usage": "estimated"} if usage.estimated else None
        if self.funding:
            metadata = {**self.funding.metadata, **(metadata or {})}
        with anyio.CancelScope(shield=True):  # a cancelled request must still be charged
            try:
                posting = await blocking(
                    ledger.settle,
                    self.hold_id,
                    cost,
                    request_id=self.request_id,
                    model=self.model,
                    prompt_tokens=usage.prompt_tokens,
                    completion_tokens=usage.completion_tokens,
                    provider_cost=usage.provider_cost,
                    metadata=metadata,
                    also=self.funding.also if self.funding else None,
                )
            except Exception:
                # The hold stays active; the sweeper releases it. Served but not charged: loud log.
                log.exception("settlement failed", extra={"request_id": self.request_id, "hold_id": self.hold_id})
                telemetry.emit({"SettlementFailures": 1})
                return 0
        if posting.duplicate:  # settled before (a retried settlement): counted then
            return cost
        telemetry.emit(
            {
                "Charges": 1,
                "RevenueMicros": -posting.entry.amount,  # what the ledger charged (never beyond the hold)
                "PromptTokens": usage.prompt_tokens,
                "CompletionTokens": usage.completion_tokens,
            },
            by={"paywall": self.paywall_id, "model": self.model},
        )
        return cost

    async def release(self) -> None:
        if self.closed or self.hold_id is None:
            return
        self.closed = True
        with anyio.CancelScope(shield=True):
            try:
                await blocking(ledger.release, self.hold_id)
            except Exception:
                log.exception("release failed; the sweeper will", extra={"hold_id": self.hold_id})

    async def finish_stream(self, tally: StreamTally) -> int:
        """Close the hold of a stream however it ended: the provider's usage when it came; else,
        if anything was generated or the answer completed, the conservative estimate; else (the
        provider broke before producing anything) nothing is charged."""
        if self.closed:
            return 0
        if tally.usage is not None:
            return await self.settle(tally.usage)
        if tally.generated > 0 or tally.finished:
            log.warning("stream without usage; charging the estimate", extra={"request_id": self.request_id})
            return await self.settle(self.estimate(tally.generated))
        await self.release()
        return 0


async def reserve(
    paywall: Paywall,
    environment: str,
    user: str,
    pricing: Pricing,
    chat: ChatRequest,
    *,
    prompt_bound: int,
    request_id: str,
    funding: Funding | None = None,
    limits: UserLimits | None = None,
) -> Reservation | None:
    """Hold the worst case of this request, lowered to what the balance covers; None when the
    balance cannot pay for a minimal answer (the caller shows the paywall, nothing is held).
    With `funding` (shared mode) the person's wallet pays, within the connection's cap.
    With `limits` the hold is also lowered to what the user's spend and token limits still allow
    and reserves from them in the same transaction (limits.py); raises limits.LimitReached."""
    if funding:
        wallet_id = funding.wallet_id
    else:
        wallet_id = accounts.wallet_id(paywall, environment, user)
        await blocking(accounts.ensure_trial, paywall, environment, user)
    refused: ledger.QuotaExceeded | None = None
    for attempt in range(HOLD_ATTEMPTS):
        if funding:
            available = await blocking(funding.spendable)
        else:
            available = (await blocking(ledger.get_wallet, wallet_id)).available
        requested_limit = chat.requested_limit
        room = None
        if limits is not None:
            room = await blocking(limits.room)
            requested_limit = room.cap_limit(requested_limit, NO_LIMIT_TOKENS, prompt_bound, chat.n)
        plan = plan_hold(
            pricing,
            prompt_bound=prompt_bound,
            requested_limit=requested_limit,
            n=chat.n,
            available=available if room is None else room.cap_available(available),
        )
        if plan is None:
            if room is not None and (reached := room.short_of(available)):
                raise reached
            return None
        reservation = Reservation(
            wallet_id,
            None,
            plan,
            pricing,
            prompt_bound,
            chat.n,
            request_id,
            chat.model,
            funding=funding,
            paywall_id=paywall.id,
        )
        if plan.amount == 0:
            return reservation
        # A fresh hold id per attempt: a retried transaction must not reuse another's request token.
        hold_id = request_id if attempt == 0 else f"{request_id}.{attempt}"
        quotas = limits.quotas(plan.amount, prompt_bound + chat.n * plan.tokens_per_choice) if limits else ()
        try:
            await blocking(
                ledger.hold,
                wallet_id,
                plan.amount,
                hold_id=hold_id,
                budget=funding.budget if funding else None,
                quotas=quotas,
            )
        except (ledger.InsufficientFunds, ledger.BudgetExceeded):
            # Another request (or a revocation, or a lowered cap) took the room since we read it.
            telemetry.emit({"HoldRetries": 1})
            continue
        except ledger.QuotaExceeded as exceeded:
            if limits is None:  # no quotas were asked for: cannot happen
                raise
            if exceeded.quota.measure == "requests":
                raise limits.reached(exceeded) from None  # a rate limit: retrying would not change it
            refused = exceeded  # concurrent requests used the limit's room: plan again on a fresh read
            telemetry.emit({"HoldRetries": 1})
            continue
        reservation.hold_id = hold_id
        return reservation
    if refused is not None and limits is not None:
        raise limits.reached(refused)
    return None
