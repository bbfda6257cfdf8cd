"""Fixed-window rate limits kept in DynamoDB, so every Lambda instance counts against the same limit.

One item per (scope, subject, window): `RATE#{scope}#{hash(subject)}` / `W#{window start}`, counted
with an atomic ADD under the condition that the limit is not reached yet. The subject (an email, a
client address) is hashed so the table never holds it in clear. Items expire with the table's TTL
(`expires_at_ttl`) one window after their window ends."""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

from paywalls.core import errors
from paywalls.infra import store
from paywalls.infra.store import N


@dataclass(frozen=True)
class Limit:
    scope: str  # e.g. "otp-send-email"
    limit: int
    window_s: int


class RateLimited(errors.RateLimited):
    def __init__(self, retry_after: int):
        super().__init__(f"too many attempts; retry in {retry_after} s", retry_after)


def _pk(scope: str, subject: str) -> str:
    return f"RATE#{scope}#{hashlib.sha256(subject.encode()).hexdigest()[:32]}"


def hit(rule: Limit, subject: str, *, now: float | None = None) -> None:
    """Count one attempt; raises RateLimited (nothing counted) when the window is full."""
    now = time.time() if now is None else now
    start = int(now) // rule.window_s * rule.window_s
    end = start + rule.window_s
    try:
        store.update(
            _pk(rule.scope, subject),
            f"W#{start}",
            "ADD hits :one SET expires_at_ttl = :ttl",
            condition="attribute_not_exists(hits) OR hits < :limit",
            values={":one": N(1), ":limit": N(rule.limit), ":ttl": N(end + rule.window_s)},
        )
    except store.ConditionFailed:
        raise RateLimited(max(1, int(end - now))) from None


def hit_all(rules: Sequence[tuple[Limit, str]], *, now: float | None = None) -> None:
    """Count one attempt against each (rule, subject), all or none: when one is full, the ones already
    counted are given back before RateLimited is raised."""
    now = time.time() if now is None else now
    counted: list[tuple[Limit, str]] = []
    try:
        for rule, subject in rules:
            hit(rule, subject, now=now)
            counted.append((rule, subject))
    except RateLimited:
        for rule, subject in counted:
            give_back(rule, subject, now=now)
        raise


def give_back(rule: Limit, subject: str, *, now: float) -> None:
    """Undo one attempt counted at `now` (same window), e.g. a sign-in code that turned out right.
    Never below zero; a window already gone is left alone."""
    start = int(now) // rule.window_s * rule.window_s
    with contextlib.suppress(store.ConditionFailed):  # already at zero, or the window is gone
        store.update(
            _pk(rule.scope, subject),
            f"W#{start}",
            "ADD hits :minus_one",
            condition="hits > :zero",
            values={":minus_one": N(-1), ":zero": N(0)},
        )
