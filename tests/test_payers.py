"""Who pays (paywalls.wallets.payers) is decided in one place: the user API's balance, top-up link and
manual charge ask `payer_for` and never branch on the paywall's mode themselves; operator corrections of
both kinds of wallet go through one rule (billing.adjustments.correct)."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import anyio
import pytest

from paywalls.billing import adjustments
from paywalls.billing.paywall import Paywall
from paywalls.wallets import payers, persons

ROOT = Path(__file__).resolve().parent.parent
USER_API = ROOT / "functions" / "user_api" / "app.py"


def _functions(path: Path) -> dict[str, ast.AST]:
    tree = ast.parse(path.read_text())
    return {n.name: n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}


def _reads_mode(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Attribute) and n.attr == "mode" for n in ast.walk(node))


def test_the_user_api_money_paths_do_not_branch_on_the_mode() -> None:
    functions = _functions(USER_API)
    for name in ("balance", "topup", "charge", "_charge"):
        assert name in functions, name
        assert not _reads_mode(functions[name]), f"{name} decides who pays itself: use payers.payer_for"
        assert "payer" in ast.unparse(functions[name]) or name == "charge", name


CHAT = ROOT / "functions" / "chat" / "app.py"


def test_the_chat_proxy_does_not_branch_on_the_mode() -> None:
    """The hold's funding and every paywall reply come from the payer, for chat, Responses and
    embeddings alike."""
    source = CHAT.read_text()
    assert "payers.payer_for(" in source and "payer.chat_funding()" in source
    assert not any(_reads_mode(node) for node in _functions(CHAT).values()), "chat decides who pays itself"


def test_payer_for_picks_by_mode() -> None:
    default = Paywall(id="pw_1", name="App", mode="default", created_at="2026-11-29T00:00:00Z")
    shared = Paywall(id="pw_2", name="App", mode="shared", created_at="2026-11-29T00:00:00Z")
    assert isinstance(payers.payer_for(default, "live", "u"), payers.OwnWallet)
    assert isinstance(payers.payer_for(shared, "live", "u"), payers.PersonWallet)


def test_both_corrections_share_one_rule() -> None:
    """The signed amount and the reason are parsed in adjustments.correct only."""
    for function in (adjustments.adjust, persons.adjust):
        source = inspect.getsource(function)
        assert "correct(" in source
        assert "parse_amount" not in source and 'startswith("-")' not in source


def test_a_warm_shared_mode_payer_is_found_without_a_read_or_a_worker_thread(
    aws_mock: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PersonWallet.chat_funding answers from this instance's cached connection pointer on the event
    loop; only a cold (or expired) pointer is read, in a worker thread. Counted, not timed."""
    from paywalls.chat import billing as chat_billing
    from paywalls.infra import aws
    from paywalls.wallets import connections

    monkeypatch.setattr(connections, "POINTER_TTL_S", 300.0)
    paywall = Paywall(id="pw_warm", name="App", mode="shared", created_at="2026-11-29T00:00:00Z")
    person = persons.get_or_create("warm@example.com")
    connections.connect(paywall.id, "live", "u1", person.id, None)
    connections._pointers.clear()
    hops: list[str] = []
    real_blocking = chat_billing.blocking

    async def counted(call, *args, **kwargs):  # type: ignore[no-untyped-def]
        hops.append(call.__name__)
        return await real_blocking(call, *args, **kwargs)

    monkeypatch.setattr(payers, "blocking", counted)
    reads: list[str] = []
    aws.client("dynamodb").hooks.append(lambda service, operation, params: reads.append(operation))
    payer = payers.payer_for(paywall, "live", "u1")
    try:
        cold = anyio.run(payer.chat_funding)
        assert (hops, reads) == (["funding"], ["GetItem"])  # the pointer read once, in a worker thread
        warm = anyio.run(payer.chat_funding)
        assert (hops, reads) == (["funding"], ["GetItem"]), "a warm pointer costs nothing more"
        assert isinstance(cold, chat_billing.Funding) and isinstance(warm, chat_billing.Funding)
        assert (
            (warm.wallet_id, warm.metadata)
            == (cold.wallet_id, cold.metadata)
            == (
                person.wallet_for("live"),
                {"paywall_id": "pw_warm", "environment": "live", "connection_id": warm.metadata["connection_id"]},
            )
        )
    finally:
        connections._pointers.clear()
