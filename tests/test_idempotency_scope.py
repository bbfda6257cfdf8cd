"""An Idempotency-Key belongs to the app (paywall + environment), not to one user: reused for another
user it is refused and moves no money (found in review: it used to credit both users)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from devserver.router import load_function_app
from paywalls.billing import ledger
from paywalls.billing import paywall as paywalls


@pytest.fixture
def api(aws_mock: None) -> tuple[TestClient, str, str]:
    paywall = paywalls.create({"name": "Scope app"})
    _, live = paywalls.issue_key(paywall.id, "live")
    _, test = paywalls.issue_key(paywall.id, "test")
    return TestClient(load_function_app("functions/user_api", "UserApiFunction")), live, test


@pytest.mark.parametrize("path", ["/v1/user/balance/deposit", "/v1/user/charge"])
def test_same_key_for_another_user_is_refused(api: tuple[TestClient, str, str], path: str) -> None:
    client, live, _ = api
    headers = {"Authorization": f"Bearer {live}", "Idempotency-Key": "order-42"}
    if path.endswith("charge"):  # give both users money to be charged
        for user in ("ann", "ben"):
            seed = {"Authorization": f"Bearer {live}", "Idempotency-Key": f"seed-{user}"}
            client.post("/v1/user/balance/deposit", json={"user": user, "amount": "5"}, headers=seed)
    first = client.post(path, json={"user": "ann", "amount": "3"}, headers=headers)
    assert first.status_code == 200, first.text
    other = client.post(path, json={"user": "ben", "amount": "3"}, headers=headers)
    assert other.status_code == 409 and other.json()["error"]["code"] == "idempotency_key_reused"
    replay = client.post(path, json={"user": "ann", "amount": "3"}, headers=headers)
    assert replay.status_code == 200
    balances = {u: ledger.get_wallet(f"{_pid(client, live)}:live:{u}").balance for u in ("ann", "ben")}
    expected = {"ann": 3_000_000, "ben": 0} if path.endswith("deposit") else {"ann": 2_000_000, "ben": 5_000_000}
    assert balances == expected


def test_test_and_live_keys_have_separate_scopes(api: tuple[TestClient, str, str]) -> None:
    client, live, test = api
    for key in (live, test):
        response = client.post(
            "/v1/user/balance/deposit",
            json={"user": "ann", "amount": "1"},
            headers={"Authorization": f"Bearer {key}", "Idempotency-Key": "same"},
        )
        assert response.status_code == 200 and response.headers.get("Idempotent-Replayed") is None


def _pid(client: TestClient, key: str) -> str:
    return paywalls.lookup_key(key).paywall_id  # type: ignore[union-attr]
