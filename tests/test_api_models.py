"""The request models of the user and admin APIs (paywalls.http.api_models), without HTTP: strict types, no
floats for money, unknown fields refused, and every refusal the same OpenAI-style error (code, param)
the domain raised before bodies were typed. A model never converts what it accepts: `sent()` is what
the client sent, which the domain functions still take."""

from __future__ import annotations

from typing import Any, get_args

import pytest
from pydantic import BaseModel

from paywalls.billing import paywall as paywalls
from paywalls.http import api_models as m
from paywalls.http import web


def refusal(model: type[m.RequestBody], body: dict[str, Any]) -> web.ApiError:
    with pytest.raises(Exception) as raised:
        m.parse(model, body)
    error = web.translate(raised.value)
    assert error is not None, f"{type(raised.value).__name__} would be a 500"
    return error


@pytest.mark.parametrize(
    "model, body, param, code, words",
    [
        # The money fields of the user API keep their own code.
        (m.MoneyRequest, {}, "amount", "invalid_amount", "amount is required"),
        (m.MoneyRequest, {"amount": 1.5}, "amount", "invalid_amount", "not a float"),
        (m.MoneyRequest, {"amount": True}, "amount", "invalid_amount", "decimal string"),
        (m.MoneyRequest, {"amount": "1e3"}, "amount", "invalid_amount", "decimal string"),
        (m.MoneyRequest, {"amount": "0"}, "amount", "invalid_amount", "greater than zero"),
        (m.MoneyRequest, {"amount": "1", "user": "bad user!"}, "user", "invalid_user", "invalid user id"),
        (m.MoneyRequest, {"amount": "1", "user": 7}, "user", "invalid_user", "invalid user id"),
        (m.MoneyRequest, {"amount": "1", "metadata": {"a": 1}}, "metadata", "invalid_request", "metadata.a"),
        (
            m.MoneyRequest,
            {"amount": "1", "currency": "eur", "b": 1},
            "b",
            "invalid_request",
            "unknown field(s): b, currency",
        ),
        # Other decimal fields are named, as paywall._decimal_field names them.
        (m.CreatePaywall, {"name": "x", "markup_percent": 1.5}, "markup_percent", "invalid_request", "markup_percent:"),
        (m.CreatePaywall, {"name": "x", "trial_credits": "-1"}, "trial_credits", "invalid_request", "positive"),
        (
            m.CreatePaywall,
            {"name": "x", "platform_fee_percent": "101"},
            "platform_fee_percent",
            "invalid_request",
            "too large",
        ),
        (m.CreatePaywall, {"mode": "default"}, "name", "invalid_request", "name is required"),
        (m.CreatePaywall, {"name": None}, "name", "invalid_request", "name is required"),
        (m.CreatePaywall, {"name": "   "}, "name", "invalid_request", "non-empty string"),
        (m.CreatePaywall, {"name": "x", "mode": "weird"}, "mode", "invalid_request", "'default' or 'shared'"),
        (m.CreatePaywall, {"name": "x", "icon_url": "javascript:alert(1)"}, "icon_url", "invalid_request", "http(s)"),
        (m.SetPricing, {"models": {}}, "models", "invalid_request", "models must be an object"),
        (
            m.SetPricing,
            {"models": {"m": {"prompt": "1"}}},
            "models",
            "invalid_request",
            "models.m.completion is required",
        ),
        (
            m.SetPricing,
            {"models": {"m": {"prompt": 0.1, "completion": "1"}}},
            "models",
            "invalid_request",
            "models.m.prompt:",
        ),
        (
            m.SetPricing,
            {"models": {"m": {"prompt": "1", "completion": "1", "per_call": "1"}}},
            "per_call",
            "invalid_request",
            "unknown",
        ),
        (
            m.SetPricing,
            {"models": {"m": {"prompt": "1", "completion": "1"}}, "features": {"teleport": {}}},
            "features",
            "invalid_request",
            "features.teleport",
        ),
        (
            m.SetPricing,
            {"models": {"m": {"prompt": "1", "completion": "1"}}, "features": {"audio": {}}},
            "features",
            "invalid_request",
            "at least one",
        ),
        (m.SetProvider, {"kind": ["openai"], "api_key": "k"}, "kind", "invalid_request", "kind:"),
        (m.SetStripe, {"secret_key": "pk_test_1"}, "secret_key", "invalid_request", "sk_test_"),
        (
            m.SetStripe,
            {"secret_key": "sk_test_1", "topup_amounts": [True]},
            "topup_amounts",
            "invalid_request",
            "topup_amounts:",
        ),
        (m.UserAdjustment, {"amount": "-1.0000001"}, "amount", "invalid_amount", "6 decimal"),
        (m.PersonAdjustment, {"amount": "1"}, "environment", "invalid_request", "environment is required"),
        (m.WithdrawalRequest, {"environment": "prod"}, "environment", "invalid_request", "'live' or 'test'"),
        (m.SetTemplates, {"topup": ["{{url}}"]}, "topup", "invalid_request", "topup must be"),
    ],
)
def test_refusals_are_the_domain_errors(
    model: type[m.RequestBody], body: dict[str, Any], param: str, code: str, words: str
) -> None:
    error = refusal(model, body)
    assert (error.status, error.param, error.code) == (400, param, code), error.body()
    assert words in error.message


@pytest.mark.parametrize(
    "model, body",
    [
        (m.MoneyRequest, {"amount": "10.5", "user": "alice", "metadata": {"order": "A-1"}}),
        (m.MoneyRequest, {"amount": 10, "user": ""}),
        (m.CreatePaywall, {"name": " App ", "icon_url": " https://x.example/i.png", "trial_credits": 5}),
        (m.PatchPaywall, {"icon_url": None, "description": None}),
        (
            m.SetPricing,
            {"models": {"m": {"prompt": "0.15", "completion": 2}}, "features": {"web_search": {"request": "0.02"}}},
        ),
        (m.SetStripe, {"secret_key": " sk_test_x "}),
        (m.SetTemplates, {"topup": None}),
        (m.SetPayout, {"stripe_account": None}),
        (m.UserAdjustment, {"amount": "-0.5"}),
        (m.IssueKey, {}),
    ],
)
def test_what_is_accepted_is_kept_exactly_as_sent(model: type[m.RequestBody], body: dict[str, Any]) -> None:
    assert m.parse(model, body).sent() == body


def test_typed_defaults_are_the_domains() -> None:
    assert m.parse(m.IssueKey, {}).environment == "live"
    assert m.parse(m.WithdrawalRequest, {}).amount is None  # everything available
    assert m.parse(m.UserAdjustment, {"amount": "1"}).environment == "live"


def test_the_enumerations_are_the_domains() -> None:
    assert get_args(m.Environment) == paywalls.ENVIRONMENTS
    assert get_args(m.Mode) == paywalls.MODES
    assert get_args(m.Feature) == paywalls.FEATURES
    assert get_args(m.ProviderKind) == tuple(paywalls.PROVIDER_BASE_URLS)


def test_every_request_model_is_strict_and_closed() -> None:
    models = [v for v in vars(m).values() if isinstance(v, type) and issubclass(v, m.RequestBody)]
    assert len(models) > 10
    for model in models:
        assert model.model_config.get("extra") == "forbid" and model.model_config.get("strict") is True, model


def test_every_response_model_forbids_undeclared_fields() -> None:
    models = [v for v in vars(m).values() if isinstance(v, type) and issubclass(v, BaseModel) and v is not BaseModel]
    for model in models:
        if not issubclass(model, m.RequestBody):
            assert issubclass(model, m.ResponseBody) and model.model_config.get("extra") == "forbid", model


def test_response_models_fit_what_the_domain_answers_beyond_the_schema_tests_seeds(
    aws_mock: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Answers tests/test_api_schema.py's seeded stack never gives (a connected app user, a person
    with connections, pending earnings, a withdrawal), checked against their documented models."""
    from paywalls.billing import earnings, withdrawals
    from paywalls.wallets import connections, shared_mode
    from tests.shared_support import Clock, app_secret, funded_person, shared_paywall

    clock = Clock(monkeypatch)
    app_secret()
    paywall = shared_paywall(fee="10")
    person = funded_person()
    connections.connect(paywall.id, "live", "u1", person.id, cap=5_000_000)
    connections.connect(paywall.id, "live", "u2", person.id, cap=None)
    assert shared_mode.charge(paywall, "live", "u1", "2", idempotency_key="c1").posting
    m.Connected.model_validate(shared_mode.connect_status(paywall, "live", "u1", "http://testserver"))
    m.Connected.model_validate(shared_mode.connect_status(paywall, "live", "u2", "http://testserver"))
    m.Allowance.model_validate(shared_mode.allowance(paywall, "live", "u1").as_api(paywall.currency))
    m.Person.model_validate(shared_mode.person_summary(person))
    payout = withdrawals.payout_settings(paywall.id)
    pending = m.Earnings.model_validate({**earnings.summary(paywall.id, "live"), "payout": payout})
    assert pending.pending_by_day and pending.next_matures_at
    clock.past_hold()
    withdrawal, _ = withdrawals.withdraw(paywall, "live", "1", idempotency_key="w1")
    m.Withdrawal.model_validate(withdrawal.as_api())
    m.WithdrawalList.model_validate(
        {"object": "list", "data": [w.as_api() for w in withdrawals.list_withdrawals(paywall.id, "live")]}
    )
    m.Disconnected.model_validate(shared_mode.disconnect(paywall, "live", "u1"))
