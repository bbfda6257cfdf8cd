"""Hold-then-settle for one proxied chat completion (SPEC §4), on the wallet ledger.

`reserve` places the hold before the provider is called; the `Reservation` it returns is then either
settled to the provider's usage or released, exactly once. The hold, the wallet read, the settlement
and the release are awaited on the event loop (ledger.ahold, aget_wallet, asettle, arelease: no
worker thread per call on the http transport, infra/aws.py); the rarer calls (a trial grant, limits,
who pays after a refusal) are blocking ones run in worker threads (`blocking`).

Round trips (DESIGN.md "Hot path"): a funded request's hold is its only DynamoDB call before the
provider is called. The hold is tried at the request's worst case without reading the wallet first;
only a refused hold costs more, and the refusal carries the state that refused it (the wallet's
available balance, the cap's remaining), so the lowered hold needs no read either. Settling needs
the wallet's version (each entry records its exact balance_after): a stream reads it while relaying
(`prefetch`), so its settlement is one transaction; a JSON answer is settled after its last byte.

Shared mode never sizes a hold on the person's wallet: the completion limit sent to the provider
(which the app's owner controls) would reveal the wallet balance. A hold is lowered to the cap
remaining only; a wallet that cannot pay that is a `topup` refusal."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

import anyio

from paywalls.billing import accounts, ledger
from paywalls.billing.limits import UserLimits
from paywalls.billing.metering import NO_LIMIT_TOKENS, HoldPlan, Pricing, StreamTally, Usage, estimated_usage, plan_hold
from paywalls.billing.paywall import Paywall
from paywalls.events import outbox
from paywalls.infra import telemetry

log = logging.getLogger(__name__)

HOLD_ATTEMPTS = 4  # a concurrent request may take the funds between a refusal and the lowered hold
UNBOUNDED = 10**30  # "no known limit": plan the worst case

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
    # Reads afresh who pays (after a refusal that says the cached connection is gone): None when
    # the app user is no longer connected.
    refresh: Callable[[], Funding | None]


RefusalAction = Literal["topup", "cap", "authorize"]


class Metered(Protocol):
    """What the hold is sized from, whichever endpoint asked: chat_request.ChatRequest,
    chat.responses.ResponsesRequest, chat.embeddings.EmbeddingsRequest (`requested_limit` 0: no
    output tokens)."""

    @property
    def model(self) -> str: ...
    @property
    def n(self) -> int: ...
    @property
    def requested_limit(self) -> int | None: ...


@dataclass(frozen=True)
class Refused:
    """No hold: the paywall reply to give (`topup`, or in shared mode `cap` / `authorize`)."""

    action: RefusalAction


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
    events: ledger.Also | None = None  # the webhook outbox's usage events (events/outbox.py), if wanted
    placed: ledger.Hold | None = None  # the hold as placed: settled without reading it again
    snapshot: ledger.Wallet | None = None  # the wallet as read while streaming (prefetch)
    # The provider serving the request (chat/routing.py): its name and its cost of a usage (COGS,
    # None: not tracked). Set before each provider is tried; the last one tried is the one charged for.
    served_by: str | None = None
    cost_of: Callable[[Usage], int | None] | None = None

    prefetching: anyio.Event | None = None

    async def prefetch(self) -> None:
        """Read the wallet now, off the critical path (while a stream is relayed), so that the
        settlement is a single transaction. Best effort: without it, settle reads it itself."""
        if self.hold_id is None or self.closed or self.prefetching is not None:
            return
        self.prefetching = anyio.Event()
        try:
            with anyio.CancelScope(shield=True):  # the read is cheap; a half-done one helps no one
                self.snapshot = await ledger.aget_wallet(self.wallet_id)
        except Exception:
            log.debug("wallet prefetch failed; settle will read it", exc_info=True)
        finally:
            self.prefetching.set()

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
            if self.prefetching is not None:
                await self.prefetching.wait()  # sooner done than a read of our own
            try:
                posting = await ledger.asettle(
                    self.hold_id,
                    cost,
                    request_id=self.request_id,
                    model=self.model,
                    prompt_tokens=usage.prompt_tokens,
                    completion_tokens=usage.completion_tokens,
                    provider_cost=self.cost_of(usage) if self.cost_of else usage.provider_cost,
                    provider=self.served_by,
                    metadata=metadata,
                    also=outbox.combine(self.funding.also if self.funding else None, self.events),
                    placed=self.placed,
                    snapshot=self.snapshot,
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
                await ledger.arelease(self.hold_id)
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
    chat: Metered,
    *,
    prompt_bound: int,
    request_id: str,
    funding: Funding | None = None,
    limits: UserLimits | None = None,
) -> Reservation | Refused:
    """Hold the worst case of this request, lowered to what the balance (default mode) or the cap
    (shared mode) covers; `Refused` when not even a minimal answer is covered (the caller shows the
    paywall reply; nothing is held). With `funding` (shared mode) the person's wallet pays, within
    the connection's cap. Module doc: no read before the hold, none after a refusal.
    With `limits` the hold is also lowered to what the user's spend and token limits still allow
    and reserves from them in the same transaction (limits.py); raises limits.LimitReached."""
    wallet_id = funding.wallet_id if funding else accounts.wallet_id(paywall, environment, user)
    limit = UNBOUNDED  # what the last refusal said is left (the balance, or the cap)
    limited_by: RefusalAction = "topup"
    trial_checked = False
    refused_quota: ledger.QuotaExceeded | None = None
    for attempt in range(HOLD_ATTEMPTS + 1):
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
            available=limit if room is None else room.cap_available(limit),
        )
        if plan is None:
            if room is not None and (reached := room.short_of(limit)):
                raise reached
            return Refused(limited_by)
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
            events=outbox.posting_events(
                paywall,
                environment,
                user,
                "paywall.usage.charge.created",
                lambda entry: {
                    "model": entry.model,
                    "promptTokens": entry.prompt_tokens,
                    "completionTokens": entry.completion_tokens,
                    "requestId": entry.request_id,
                },
                depletes=True,
            ),
        )
        if plan.amount == 0:
            return reservation
        # A fresh hold id per attempt: a retried transaction must not reuse another's request token.
        hold_id = request_id if attempt == 0 else f"{request_id}.{attempt}"
        quotas = limits.quotas(plan.amount, prompt_bound + chat.n * plan.tokens_per_choice) if limits else ()
        try:
            placed = await ledger.ahold(
                wallet_id,
                plan.amount,
                hold_id=hold_id,
                budget=funding.budget if funding else None,
                quotas=quotas,
            )
        except ledger.BudgetExceeded as refused:
            assert funding is not None
            telemetry.emit({"HoldRetries": 1})
            if refused.remaining is None or refused.remaining < 0:
                # Revoked or replaced since the connection was cached (revoking makes `remaining`
                # negative in the same write): ask again who pays.
                funding = await blocking(funding.refresh)
                if funding is None:
                    return Refused("authorize")
                wallet_id, limit, limited_by = funding.wallet_id, UNBOUNDED, "topup"
                continue
            limit, limited_by = refused.remaining, "cap"
            continue
        except ledger.InsufficientFunds as refused:
            if funding is not None:
                return Refused("topup")  # module doc: a shared hold is never sized on the wallet
            telemetry.emit({"HoldRetries": 1})
            if not refused.wallet_exists and not trial_checked and paywall.trial_credits > 0:
                trial_checked = True  # a new user: grant the trial once, then try again
                await blocking(accounts.ensure_trial, paywall, environment, user)
                continue
            limit, limited_by = refused.available, "topup"
            continue
        except ledger.QuotaExceeded as exceeded:
            if limits is None:  # no quotas were asked for: cannot happen
                raise
            if exceeded.quota.measure == "requests":
                raise limits.reached(exceeded) from None  # a rate limit: retrying would not change it
            refused_quota = exceeded  # concurrent requests used the limit's room: plan again on a fresh read
            telemetry.emit({"HoldRetries": 1})
            continue
        reservation.hold_id = hold_id
        reservation.placed = placed
        return reservation
    if refused_quota is not None and limits is not None:
        raise limits.reached(refused_quota)
    return Refused(limited_by)
