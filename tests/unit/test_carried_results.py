"""CarriedResults: a build's results are its items' results, computed only for the items the latest builds did
not have, wherever the other items moved; and what the latest two builds did not use is dropped."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from reconciler.memo import CarriedResults, identity_changes


class Item:
    def __init__(self, name: str) -> None:
        self.name = name


class Table:
    """A CarriedResults whose results name their item, recording which items it computed."""

    def __init__(self) -> None:
        self.carried: CarriedResults[Item, str] = CarriedResults()
        self.computed: list[str] = []

    def build(self, items: list[Item]) -> list[str]:
        self.carried.update(items, self.refresh)
        assert self.carried.results == [f"result of {item.name}" for item in items]
        return self.computed

    def refresh(self, item: Item, kept: str | None) -> str:
        if kept is None:
            self.computed.append(item.name)
            return f"result of {item.name}"
        return kept


def items(count: int) -> list[Item]:
    return [Item(f"i{n}") for n in range(count)]


def test_only_a_changed_item_is_computed_and_the_change_is_told() -> None:
    table, first = Table(), items(20)
    assert table.build(first) == [f"i{n}" for n in range(20)]
    table.computed.clear()
    second = [*first[:5], Item("new"), *first[6:]]
    changes = table.carried.update(second, table.refresh)
    assert table.computed == ["new"]
    assert changes is not None and changes.positions == [5] and changes.replaced == ["result of i5"]


@pytest.mark.parametrize(
    "move",
    [
        lambda xs: [xs[3], *xs[1:3], xs[0], *xs[4:]],  # two items swap places
        lambda xs: [Item("new"), *xs],  # every item moves one place down
        lambda xs: xs[1:],  # or up
        lambda xs: xs[::-1],  # all of them
    ],
)
def test_items_that_move_keep_their_results(move: Callable[[list[Item]], list[Item]]) -> None:
    table, first = Table(), items(20)
    table.build(first)
    table.computed.clear()
    assert table.build(move(first)) in ([], ["new"])


EDITS = [
    lambda xs: [xs[0], Item("other"), *xs[2:]],  # in place
    lambda xs: [xs[0], *xs[2:]],  # the items after it move: matched by id
]


@pytest.mark.parametrize("edit", EDITS)
def test_a_revert_finds_the_results_the_build_before_had(edit: Callable[[list[Item]], list[Item]]) -> None:
    table, first = Table(), items(20)
    table.build(first)
    table.build(edit(first))
    table.computed.clear()
    assert table.build(first) == []


@pytest.mark.parametrize("edit", EDITS)
def test_results_no_build_of_the_latest_two_used_are_dropped(edit: Callable[[list[Item]], list[Item]]) -> None:
    table, first = Table(), items(20)
    table.build(first)
    edited = edit(first)
    table.build(edited)
    assert len(table.carried) == len(edited) + 1  # i1 may come back
    table.build(edited)
    assert len(table.carried) == len(edited)
    table.computed.clear()
    assert table.build(first) == ["i1"]


def test_refresh_at_renews_the_results_at_those_positions() -> None:
    table, first = Table(), items(4)
    table.build(first)
    table.carried.refresh_at([1, 3], lambda item, kept: f"renewed {item.name}")
    assert table.carried.results == ["result of i0", "renewed i1", "result of i2", "renewed i3"]


def test_a_refresh_that_raises_leaves_the_latest_results() -> None:
    table, first = Table(), items(20)
    table.build(first)

    def failing(item: Item, kept: str | None) -> str:
        if item.name == "new1":
            raise RuntimeError(item.name)
        return "result of new0"

    with pytest.raises(RuntimeError):
        table.carried.update([Item("new0"), Item("new1"), *first[2:]], failing)
    assert table.build(first) == [f"i{n}" for n in range(20)]  # nothing computed again, nothing lost


@pytest.mark.parametrize(
    "edit",
    [
        lambda xs: [*xs[:3], Item("new"), *xs[3:]],  # one added
        lambda xs: [*xs[:3], *xs[4:]],  # one removed
        lambda xs: [Item("first"), *xs[:5], Item("middle"), *xs[5:9], *xs[10:]],  # added and removed
        lambda xs: [*xs[:2], xs[7], *xs[2:7], *xs[8:]],  # one moved: neither added nor removed
        lambda xs: [Item(x.name) for x in xs],  # equal names, other objects: all replaced
    ],
)
def test_identity_changes_match_a_comparison_of_every_item(edit: Callable[[list[Item]], list[Item]]) -> None:
    latest = items(12)
    edited = edit(latest)
    added, removed = identity_changes(edited, latest)
    assert added == [x for x in edited if all(x is not y for y in latest)]
    assert removed == [x for x in latest if all(x is not y for y in edited)]
