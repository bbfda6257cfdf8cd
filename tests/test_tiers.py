"""Test tiers (tests/conftest.py): every test gets exactly one tier marker, from what it uses, so
`make test-fast` (`-m unit`) never starts a local stack, an engine process or the SAM CLI."""

from __future__ import annotations

import types
from typing import Any

import pytest

from tests.conftest import TIERS, tier_of


class FakeItem:
    def __init__(self, fixtures: set[str], module_names: dict[str, Any] | None = None, marker: str | None = None):
        self.fixturenames = sorted(fixtures)
        self.module = types.SimpleNamespace(**(module_names or {}))
        self.marker = marker

    def get_closest_marker(self, name: str) -> object | None:
        return object() if name == self.marker else None


@pytest.mark.parametrize(
    ("item", "tier"),
    [
        (FakeItem({"aws_mock", "monkeypatch"}), "unit"),
        (FakeItem(set()), "unit"),
        (FakeItem({"engine", "aws_mock"}), "integration"),
        (FakeItem({"user", "paywall", "stack"}), "e2e"),  # `user` needs `stack`: fixturenames are the closure
        (FakeItem({"stack", "engine"}), "e2e"),
        (FakeItem({"build_dir"}), "deploy"),
        (FakeItem({"template"}, {"sam_bin": lambda: "sam"}), "deploy"),  # a module that runs the SAM CLI
        (FakeItem(set(), {"run_local_stack": object()}), "e2e"),  # a module that starts its own stacks
        (FakeItem({"stack"}, marker="unit"), "unit"),  # a marker in the file wins
    ],
)
def test_the_tier_follows_what_a_test_uses(item: FakeItem, tier: str) -> None:
    assert tier_of(item) == tier  # type: ignore[arg-type]


def test_every_collected_test_has_exactly_one_tier(request: pytest.FixtureRequest) -> None:
    for item in request.session.items:
        assert [t for t in TIERS if item.get_closest_marker(t)] == [tier_of(item)], item.nodeid
    assert request.node.get_closest_marker("unit")
