"""The DynamoDB round trips of each request kind on a warm instance, placed against what the client
received (devserver.inprocess): a count that grows fails here. Counts, never timings.

Budget (DESIGN.md "Hot path"): a funded stream makes ONE call before its first byte (the hold) and
one between its last chunk and [DONE] (the settlement; its wallet read runs while chunks are relayed),
in default, trial and shared mode; a JSON answer is charged before it is sent, so the client waits for
two (hold, settlement; the wallet read runs while the provider answers); charges and deposits take a
wallet read and one transaction."""

from __future__ import annotations

import pytest

from devserver.inprocess import inprocess_stack, measure_kinds

BUDGET = {
    # kind: (waited for before the first byte, between the last chunk and [DONE], in all)
    "chat json": (2, 0, 3),
    "chat stream": (1, 1, 3),
    "chat json, trial paywall": (2, 0, 3),
    "chat stream, trial paywall": (1, 1, 3),
    "chat json, shared mode": (2, 0, 3),
    "chat stream, shared mode": (1, 1, 3),
    "chat json, 3 webhook subscriptions": (2, 0, 3),
    "chat stream, 3 webhook subscriptions": (1, 1, 3),
    # The Responses API and embeddings go through the same pipeline: the same budget as chat.
    "responses json": (2, 0, 3),
    "responses stream": (1, 1, 3),
    "responses stream, shared mode": (1, 1, 3),
    "embeddings": (2, 0, 3),
    "embeddings, shared mode": (2, 0, 3),
    "user charge": (2, 0, 2),
    "deposit": (2, 0, 2),
}


@pytest.fixture(scope="module")
def placements():
    with inprocess_stack() as stack:
        yield measure_kinds(stack)


@pytest.mark.parametrize("kind", sorted(BUDGET))
def test_round_trips_stay_within_budget(placements, kind: str) -> None:
    placed = placements[kind]
    before_first, before_done, total = BUDGET[kind]
    print(f"{kind}: {placed}")
    assert len(placed.critical_before_first_byte) <= before_first, placed
    assert len(placed.before_done) <= before_done, placed
    assert placed.total <= total, placed


def test_a_stream_waits_for_the_hold_only_and_a_json_answer_reads_the_wallet_while_the_provider_answers(
    placements,
) -> None:
    for kind in ("chat stream", "chat stream, shared mode", "responses stream", "responses stream, shared mode"):
        assert placements[kind].before_first_byte == ["TransactWriteItems"], kind
        assert placements[kind].before_done == ["TransactWriteItems"], kind
    for kind in ("chat json", "chat json, shared mode", "responses json", "embeddings", "embeddings, shared mode"):
        assert placements[kind].while_provider == ["GetItem"], kind
        assert placements[kind].critical_before_first_byte == ["TransactWriteItems", "TransactWriteItems"], kind


def test_webhook_events_ride_in_the_settlement_transaction(placements) -> None:
    """Issue 11: a paywall with subscriptions makes the same round trips as one without (the event is
    one more item of the settlement's TransactWriteItems, the filter comes with the cached paywall);
    a paywall without subscriptions writes nothing extra."""
    for shape in ("json", "stream"):
        plain, hooked = placements[f"chat {shape}"], placements[f"chat {shape}, 3 webhook subscriptions"]
        assert hooked.before_first_byte == plain.before_first_byte, shape
        assert hooked.before_done == plain.before_done and hooked.total == plain.total, shape
        hold, settle = plain.transaction_items
        assert hooked.transaction_items == [hold, settle + 1], shape  # one event item, whatever the subscriptions
