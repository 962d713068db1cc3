"""GlobSet (authz filters) and ToolPricing (most specific glob wins)."""

from __future__ import annotations

import pytest

from hub.governance.filters import GlobSet, glob_specificity
from hub.governance.pricing import ToolPricing


def test_an_empty_glob_set_matches_nothing():
    empty = GlobSet()
    assert not empty
    assert not empty.matches("tickets__create")
    assert not GlobSet([""]).matches("")


@pytest.mark.parametrize(
    ("patterns", "name", "expected"),
    [
        (["tickets__*"], "tickets__create", True),
        (["tickets__*"], "tickets", False),
        (["tickets__*"], "TICKETS__create", False),  # case-sensitive
        (["tickets__*"], "xtickets__create", False),  # anchored at both ends
        (["tickets__create"], "tickets__create", True),
        (["tickets__create"], "tickets__create2", False),
        (["*"], "anything__at_all", True),
        (["wiki__?et"], "wiki__get", True),
        (["wiki__[gs]et"], "wiki__set", True),
        (["wiki__[!gs]et"], "wiki__get", False),
        (["a__*", "b__x"], "b__x", True),
        (["gpt-4o*"], "gpt-4o-mini", True),
        (["gpt-4o*"], "gpt-4\nx", False),
    ],
)
def test_globs_match_whole_names(patterns: list[str], name: str, expected: bool):
    globs = GlobSet(patterns)
    assert globs.matches(name) is expected
    assert (name in globs) is expected


def test_glob_sets_are_values():
    assert GlobSet(["b", "a", "a"]) == GlobSet(["a", "b"])
    assert hash(GlobSet(["b", "a"])) == hash(GlobSet(["a", "b"]))
    assert GlobSet(["a"]) != ["a"]
    assert repr(GlobSet(["x*"])) == "GlobSet(['x*'])"
    assert 3 not in GlobSet(["*"])


def test_specificity_orders_exact_over_longer_literals_over_fewer_stars():
    ordered = ["tickets__create", "tickets__cr*", "tickets__*", "tick*__*", "*"]
    assert sorted(ordered, key=glob_specificity, reverse=True) == ordered


def test_the_most_specific_price_wins():
    pricing = ToolPricing({"*": 0.01, "tickets__*": 0.001, "tickets__create": 0.005, "tickets__c*": 0.002})
    assert pricing.cost("tickets__create") == 0.005
    assert pricing.cost("tickets__close") == 0.002
    assert pricing.cost("tickets__list") == 0.001
    assert pricing.cost("wiki__search") == 0.01
    assert pricing.cost("tickets__list") == 0.001  # memoised answer is the same


def test_ties_go_to_the_pattern_that_sorts_first_and_unmatched_tools_are_free():
    pricing = ToolPricing({"a*": 1.0, "*a": 2.0})  # equally specific: "*a" sorts before "a*"
    assert pricing.cost("aa") == 2.0
    assert pricing.cost("ab") == 1.0
    assert ToolPricing().cost("anything") == 0.0
    with pytest.raises(ValueError, match="negative"):
        ToolPricing({"x": -0.5})
