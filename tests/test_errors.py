"""The error vocabulary (paywalls.core.errors) and its one table to HTTP (web.ERROR_TABLE): every domain
error has a kind, each kind one answer, the same for the JSON APIs and the hosted pages, and no module
above the DynamoDB adapter sees botocore's errors."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.routing import Route
from starlette.testclient import TestClient

import paywalls
from paywalls.billing import ledger, stripe_config
from paywalls.billing import paywall as paywalls_module
from paywalls.billing.identity import InvalidUser
from paywalls.core import errors
from paywalls.core.money import InvalidAmount
from paywalls.http import csrf, web
from paywalls.infra import links, mailer, store
from paywalls.wallets import connections, otp, ratelimit

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "shared" / "paywalls"

# Errors of no kind on purpose: an invariant their caller handles. Reaching a client, they are a bug
# (a generic 500, logged), never a message shown.
INTERNAL = {
    "paywalls.billing.ledger.LedgerError",
    "paywalls.billing.ledger.HoldNotActive",
    "paywalls.events.delivery.Refused",  # a receiver URL refused at delivery time: a failed attempt, never sent
    "paywalls.chat.routing.NotRoutable",  # the chat app answers it with its own status (404/400/503)
    "paywalls.console.app.Problem",  # the console's own page for an admin API refusal (its status kept)
    "paywalls.billing.ledger.QuotaExceeded",  # chat_billing turns it into limits.LimitReached (a paywall reply)
    "paywalls.infra.store.TransactionCancelled",
    "paywalls.infra.store.ConditionFailed",
    "paywalls.infra.store._Retryable",
    "paywalls.infra.aws_json.ServiceError",  # AWS refused a call: the store and secrets adapters map it
    "paywalls.infra.secrets.SecretUnavailable",
    "paywalls.infra.secrets.SecretMissing",
    "paywalls.cli.CliError",
}


def domain_exceptions() -> list[type[BaseException]]:
    """Every exception class defined in the paywalls package."""
    found: dict[str, type[BaseException]] = {}
    for module_info in pkgutil.walk_packages(paywalls.__path__, "paywalls."):
        module = importlib.import_module(module_info.name)
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, BaseException) and obj.__module__.startswith("paywalls."):
                found[f"{obj.__module__}.{obj.__qualname__}"] = obj
    return sorted(found.values(), key=lambda cls: f"{cls.__module__}.{cls.__qualname__}")


def qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def test_every_domain_error_shares_the_base_and_has_a_kind() -> None:
    exceptions = domain_exceptions()
    assert len(exceptions) >= 30  # the scan sees the package
    no_base = [qualified(cls) for cls in exceptions if not issubclass(cls, errors.PaywallsError)]
    assert no_base == []
    kindless = [
        qualified(cls)
        for cls in exceptions
        if cls is not errors.PaywallsError
        and cls not in errors.KINDS
        and not issubclass(cls, errors.KINDS)
        and not issubclass(cls, web.ApiError)
        and qualified(cls) not in INTERNAL
    ]
    assert kindless == [], "give each a kind in paywalls.core.errors (or list it as INTERNAL here, with a reason)"


def test_every_kind_has_one_answer_and_internal_errors_none() -> None:
    for kind in errors.KINDS:
        assert errors.nearest(web.ERROR_TABLE, kind("x") if kind is not errors.RateLimited else kind("x", 1))
    for name in INTERNAL:
        module, _, cls_name = name.rpartition(".")
        cls = getattr(importlib.import_module(module), cls_name)
        assert errors.nearest(web.ERROR_TABLE, cls.__new__(cls)) is None, name
    # A status always has one OpenAI error type, whoever raised it (an ApiError types by status).
    for answer in web.ERROR_TABLE.values():
        assert web.ApiError(answer.status, "m").error_type == answer.type


def answer_of(exc: BaseException) -> tuple[int, dict[str, Any], dict[str, str]]:
    error = web.translate(exc)
    assert error is not None, exc
    return error.status, error.body()["error"], error.headers


# What the APIs answered before the table (web.translate's isinstance chain), kept exactly.
@pytest.mark.parametrize(
    ("exc", "status", "body", "headers"),
    [
        (InvalidUser("bad user"), 400, ("invalid_request_error", "invalid_user", "user", "bad user"), {}),
        (InvalidAmount("bad amount"), 400, ("invalid_request_error", "invalid_amount", "amount", "bad amount"), {}),
        (
            paywalls_module.InvalidRequest("no", "field"),
            400,
            ("invalid_request_error", "invalid_request", "field", "no"),
            {},
        ),
        (
            paywalls_module.InvalidRequest("odd", "model", code="unsupported_parameter"),
            400,
            ("invalid_request_error", "unsupported_parameter", "model", "odd"),
            {},
        ),
        (
            ledger.InvalidCursor("bad cursor"),
            400,
            ("invalid_request_error", "invalid_cursor", "cursor", "bad cursor"),
            {},
        ),
        (paywalls_module.NotFound("gone"), 404, ("not_found_error", "not_found", None, "gone"), {}),
        (paywalls_module.Conflict("clash"), 409, ("conflict_error", "conflict", None, "clash"), {}),
        (ledger.IdempotencyMismatch("reused"), 409, ("conflict_error", "idempotency_key_reused", None, "reused"), {}),
        (ledger.InsufficientFunds(1, 2), 402, ("api_error", "insufficient_balance", None, "insufficient balance"), {}),
        (
            store.StoreUnavailable("the database is busy, please retry"),
            503,
            ("api_error", "busy", None, "the service is busy, please retry"),
            {"Retry-After": "1"},
        ),
    ],
)
def test_the_table_answers_what_the_apis_always_answered(
    exc: BaseException, status: int, body: tuple[str, str, str | None, str], headers: dict[str, str]
) -> None:
    got_status, got_body, got_headers = answer_of(exc)
    assert got_status == status
    assert (got_body["type"], got_body["code"], got_body["param"], got_body["message"]) == body
    assert got_headers == headers


# Statuses the hosted pages gave these before, now the table's.
@pytest.mark.parametrize(
    ("exc", "status", "headers"),
    [
        (links.InvalidLink("this link is not valid"), 400, {}),
        (stripe_config.StripeNotConfigured("no key"), 503, {}),
        (ratelimit.RateLimited(90), 429, {"Retry-After": "90"}),
        (mailer.MailUnavailable("no sender"), 503, {}),
        (connections.NotConnected("no such connection"), 404, {}),
        (csrf.Rejected(), 403, {}),
        (otp.CodeRejected("Wrong code."), 400, {}),
    ],
)
def test_the_page_errors_are_in_the_table(exc: BaseException, status: int, headers: dict[str, str]) -> None:
    got_status, _, got_headers = answer_of(exc)
    assert (got_status, got_headers) == (status, headers)


def test_an_error_of_no_kind_is_not_translated() -> None:
    assert web.translate(ledger.HoldNotActive("h1", "settled")) is None
    assert web.translate(store.ConditionFailed()) is None
    assert web.translate(RuntimeError("boom")) is None


def test_an_installed_app_answers_every_kind_from_the_table_and_hides_the_rest() -> None:
    raised: list[BaseException] = []

    async def fail(request: Request) -> Any:
        raise raised[-1]

    app = web.install(Starlette(routes=[Route("/fail", fail)]))
    client = TestClient(app, raise_server_exceptions=False)
    for exc in [
        InvalidAmount("amount must be positive"),
        ratelimit.RateLimited(7),
        stripe_config.StripeNotConfigured("card payments are not set up"),
        ledger.InsufficientFunds(5, 10),
    ]:
        raised.append(exc)
        reply = client.get("/fail")
        expected = web.translate(exc)
        assert expected is not None
        assert reply.status_code == expected.status
        assert reply.json() == expected.body()
        assert reply.headers.get("retry-after") == expected.headers.get("Retry-After")
    raised.append(store.ConditionFailed({"secret": "internal detail"}))
    reply = client.get("/fail")
    assert reply.status_code == 500 and reply.json()["error"]["code"] == "internal_error"
    assert "internal detail" not in reply.text and "condition" not in reply.text


# ---- botocore stops at the adapters ------------------------------------------------------------------

# The AWS adapters: DynamoDB (store), clients (aws), Secrets Manager (secrets_store), SES (mailer).
ADAPTERS = {"infra/store.py", "infra/aws.py", "infra/aws_json.py", "infra/secrets.py", "infra/mailer.py"}


def botocore_error_uses(source: str) -> list[str]:
    """Names of botocore's exceptions a module imports or refers to."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("botocore"):
            found += [f"import {a.name}" for a in node.names if a.name.endswith(("Error", "Exception"))]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.endswith("Exception"):
            found.append(repr(node.value))  # an error code compared by hand, e.g. "ConditionalCheckFailedException"
    return found


def test_no_module_above_the_adapters_handles_botocore_errors() -> None:
    offenders = {
        name: uses
        for path in sorted(PACKAGE.rglob("*.py"))
        if (name := path.relative_to(PACKAGE).as_posix()) not in ADAPTERS
        and (uses := botocore_error_uses(path.read_text()))
    }
    assert offenders == {}, "go through store (ConditionFailed, TransactionCancelled) or secrets_store"


def test_the_botocore_scan_sees_both_ways() -> None:
    assert botocore_error_uses("from botocore.exceptions import ClientError\n") == ["import ClientError"]
    assert botocore_error_uses('if code != "ConditionalCheckFailedException": pass\n')


@pytest.mark.usefixtures("aws_mock")
def test_a_failed_condition_is_condition_failed() -> None:
    store.put({"pk": "T#1", "sk": "T", "n": 1}, condition="attribute_not_exists(pk)")
    with pytest.raises(store.ConditionFailed):
        store.put({"pk": "T#1", "sk": "T", "n": 2}, condition="attribute_not_exists(pk)")
    updated = store.update(
        "T#1", "T", "ADD n :one", condition="n < :two", values={":one": store.N(1), ":two": store.N(2)}, return_new=True
    )
    assert updated is not None and updated["n"] == 2
    with pytest.raises(store.ConditionFailed):
        store.update("T#1", "T", "ADD n :one", condition="n < :two", values={":one": store.N(1), ":two": store.N(2)})
    assert store.get("T#1", "T")["n"] == 2  # type: ignore[index]
    assert not store.advance("T#1", "T", "n", 1) and store.advance("T#1", "T", "n", 3)
