"""The error vocabulary: one base class and the kinds of failure every domain error is one of.

A domain module raises its own class (`money.InvalidAmount`, `ledger.InsufficientFunds`...), a subclass
of one kind here; what a kind means over HTTP (status, OpenAI error type and code, headers) is decided
in one place, the table in `web.py`. Nothing here knows HTTP: a rule names what went wrong, the edge
decides how to say it.

Each kind has a machine-readable `code` (OpenAI's `error.code`); a domain class may name its own, and
for an input that was wrong the `param` naming it (class attributes, overridable per instance).
The message (`str(error)`) of an error of a kind below is written to be shown to the client. A
`PaywallsError` of no kind (an invariant the caller must handle, such as
`store.ConditionFailed` or `ledger.HoldNotActive`) is a bug if it reaches a client: it is answered as a
generic 500 and logged, its text never shown.

Kept free of imports (the chat function imports it on its cold-start path)."""

from __future__ import annotations

from typing import TypeVar


class PaywallsError(Exception):
    """Base of every error this package raises on purpose."""

    # Class-level defaults of instance attributes: a subclass sets its own, an instance may override.
    code: str | None = None
    param: str | None = None
    # When waiting is the remedy: seconds (or an upstream's own Retry-After value, relayed as is).
    retry_after: int | str | None = None


class InvalidRequest(PaywallsError, ValueError):
    """The request (a field, a header, a form) is not acceptable as sent; `param` names what to fix.
    A ValueError too: callers that validate with `except ValueError` keep catching it."""

    code = "invalid_request"

    def __init__(self, message: str, param: str | None = None, code: str | None = None):
        super().__init__(message)
        # Instance values shadow the class defaults only when given.
        if param is not None:
            self.param = param
        if code is not None:
            self.code = code


class Unauthorized(PaywallsError):
    """Who is asking is not established (no credentials, or credentials we do not know)."""

    code = "unauthorized"


class PaymentRequired(PaywallsError):
    """The wallet (or spending cap) does not cover the amount; nothing was moved."""

    code = "insufficient_balance"


class Forbidden(PaywallsError):
    """The caller is known but may not do this (e.g. a form not issued for this page)."""

    code = "forbidden"


class NotFound(PaywallsError, LookupError):
    """What the request names does not exist (or is not the caller's to see)."""

    code = "not_found"


class Conflict(PaywallsError):
    """The request contradicts the current state (or an earlier request with the same key)."""

    code = "conflict"


class RateLimited(PaywallsError):
    """Too many attempts; `retry_after` seconds until the next one is counted."""

    code = "rate_limited"
    retry_after: int

    def __init__(self, message: str, retry_after: int):
        super().__init__(message)
        self.retry_after = retry_after


class UpstreamFailed(PaywallsError):
    """A service we depend on (Stripe, the AI provider) refused or failed in a way retrying now will not fix."""

    code = "upstream_error"


class Unavailable(PaywallsError, RuntimeError):
    """Not possible right now (storage busy, a service unreachable, a feature not set up); retrying
    later may work."""

    code = "unavailable"


KINDS: tuple[type[PaywallsError], ...] = (
    InvalidRequest,
    Unauthorized,
    PaymentRequired,
    Forbidden,
    NotFound,
    Conflict,
    RateLimited,
    UpstreamFailed,
    Unavailable,
)

V = TypeVar("V")


def nearest(table: dict[type[BaseException], V], error: BaseException) -> V | None:
    """The entry of `table` for the closest class of `error` (its own class first, then its bases in
    method resolution order), or None: a lookup by kind, not a chain of isinstance tests."""
    for cls in type(error).__mro__:
        if cls in table:
            return table[cls]
    return None
