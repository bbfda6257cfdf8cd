"""The admin operations over the roll-ups and the ledger (in-process, moto): usage from roll-ups,
the per-user view, the operator's link, the paged and filtered ledger, its CSV pages."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fastapi.testclient import TestClient

from devserver.stack import create_app_secret
from paywalls.analytics import ledger_pages, rollups
from paywalls.billing import ledger
from paywalls.infra import store
from tests.test_admin_api import admin, create  # noqa: F401  (the fixture)


def fold_everything() -> int:
    """What the stream consumer would have done by now: every ledger item of the table, folded."""
    items = [store.decode(i) for i in store.ddb().scan(TableName=store.table_name())["Items"]]
    return rollups.fold_items(items)


@pytest.fixture
def seeded(admin: TestClient) -> Iterator[dict[str, Any]]:  # noqa: F811
    create_app_secret()
    paywall = create(admin)
    pid = paywall["id"]
    users = ["-dash", "alice", "bob"]  # "-dash": a CSV cell a spreadsheet would read as a formula
    for n, user in enumerate(users):
        wallet = f"{pid}:live:{user}"
        ledger.credit(wallet, 5_000_000, idempotency_key=f"seed-{n}", entry_type="deposit", listing=_listing(pid, user))
        for i in range(n + 2):  # a metered chat request: hold, then settle what it cost
            placed = ledger.hold(wallet, 100_000, hold_id=f"h-{pid}-{n}-{i}")
            ledger.settle(placed.id, 1_000 * (i + 1), model="m/x" if i % 2 else "m/y", prompt_tokens=5, placed=placed)
    fold_everything()
    yield {"id": pid, "users": users}


def _listing(pid: str, user: str) -> ledger.Listing:
    from paywalls.billing.identity import app_wallet_listing

    return app_wallet_listing(pid, "live", user)


def test_usage_reads_the_rollups(admin: TestClient, seeded: dict[str, Any]) -> None:  # noqa: F811
    today = datetime.now(UTC).date().isoformat()
    usage = admin.get(f"/admin/paywalls/{seeded['id']}/usage", params={"from": today}).json()
    charges = [e for e in admin.get(f"/admin/paywalls/{seeded['id']}/ledger", params={"type": "charge"}).json()["data"]]
    assert usage["requests"] == len(charges) == 2 + 3 + 4
    assert usage["revenue"] == f"0.{sum(-int(c['amount']) for c in charges):06d}"
    assert usage["deposits"] == "15.000000" and set(usage["by_model"]) == {"m/x", "m/y"}
    assert list(usage["by_user"]) == ["bob", "alice", "-dash"], "biggest spender first"
    assert usage["by_hour"] and sum(h["requests"] for h in usage["by_hour"]) == 9


def test_user_view_and_link(admin: TestClient, seeded: dict[str, Any]) -> None:  # noqa: F811
    view = admin.get(f"/admin/paywalls/{seeded['id']}/users/bob").json()
    assert view["status"] == "active" and view["requests"] == 4 and view["total_spend"] == "0.010000"
    assert view["balance"] == "4.990000" and view["last_activity"] and len(view["spend_by_day"]) == 30
    link = admin.get(f"/admin/paywalls/{seeded['id']}/users/bob/link").json()
    assert link["kind"] == "topup" and "/pay/" in link["url"]
    listed = admin.get(f"/admin/paywalls/{seeded['id']}/users").json()["data"]
    assert {u["user"]: u["total_spend"] for u in listed}["alice"] == "0.006000"


def test_ledger_pages_filters_and_cursor(admin: TestClient, seeded: dict[str, Any]) -> None:  # noqa: F811
    url = f"/admin/paywalls/{seeded['id']}/ledger"
    seen, cursor, pages = [], None, 0
    while True:
        page = admin.get(url, params={"limit": "4", **({"cursor": cursor} if cursor else {})}).json()
        seen += page["data"]
        pages += 1
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert len(seen) == 3 + 9 and len({e["id"] for e in seen}) == 12 and pages >= 3
    only = admin.get(url, params={"user": "alice", "type": "charge", "model": "m/x"}).json()["data"]
    assert [(e["user"], e["model"]) for e in only] == [("alice", "m/x")]
    future = admin.get(url, params={"from": "2999-01-01"}).json()
    assert future["data"] == [] and future["next_cursor"] is None
    for bad in ({"cursor": "!!"}, {"type": "nope"}, {"from": "yesterday"}, {"user": "a b"}):
        refused = admin.get(url, params=bad)
        assert refused.status_code == 400, bad
    other_user = admin.get(url, params={"user": "alice", "limit": "1"}).json()["next_cursor"]
    assert admin.get(url, params={"user": "bob", "cursor": other_user}).status_code == 400


def test_ledger_csv_pages(admin: TestClient, seeded: dict[str, Any]) -> None:  # noqa: F811
    url = f"/admin/paywalls/{seeded['id']}/ledger.csv"
    first = admin.get(url, params={"limit": "5"})
    assert first.headers["content-type"].startswith("text/csv") and first.headers["x-next-cursor"]
    rows = list(csv.reader(io.StringIO(first.text)))
    assert rows[0] == list(ledger_pages.CSV_COLUMNS) and len(rows) == 6
    assert rows[1][1] == "'-dash", "a cell starting with - is quoted for spreadsheets"
    second = admin.get(url, params={"limit": "5", "cursor": first.headers["x-next-cursor"]})
    assert not second.text.startswith("created_at"), "the header only on the first page"


def test_shared_mode_ledger_is_not_the_apps(admin: TestClient) -> None:  # noqa: F811
    shared = create(admin, mode="shared")
    refused = admin.get(f"/admin/paywalls/{shared['id']}/ledger")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "shared_mode"
    create_app_secret()
    view = admin.get(f"/admin/paywalls/{shared['id']}/users/carol").json()
    assert view["status"] == "not_connected" and view["balance"] is None
    link = admin.get(f"/admin/paywalls/{shared['id']}/users/carol/link").json()
    assert link["kind"] == "authorize" and "/wallet/authorize/" in link["url"]
