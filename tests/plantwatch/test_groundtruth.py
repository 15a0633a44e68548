"""Tickets against failures: the rules of plantwatch.groundtruth."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from plantwatch.groundtruth import Failure, Opened, compare

H = 1_000


@pytest.mark.parametrize(
    ("failures", "tickets", "caught", "lead", "false_alarms"),
    [
        ([Failure("a", 5_000)], [Opened("a", 4_000)], 1, [1_000], 0),  # exactly max lead
        ([Failure("a", 5_000)], [Opened("a", 3_999)], 0, [], 1),  # one ms too early
        ([Failure("a", 5_000)], [Opened("a", 5_000)], 1, [0], 0),  # at the failure
        ([Failure("a", 5_000)], [Opened("a", 5_001)], 0, [], 1),  # after it: too late
        ([Failure("a", 5_000)], [Opened("b", 4_500)], 0, [], 1),  # other machine
        ([Failure("a", 5_000)], [Opened("a", 4_200), Opened("a", 4_900)], 1, [800], 0),
        ([Failure("a", 5_000), Failure("a", 9_000)], [Opened("a", 8_500)], 1, [500], 0),
        ([], [Opened("a", 1)], 0, [], 1),
        ([Failure("a", 5_000)], [], 0, [], 0),
    ],
)
def test_rules(
    failures: list[Failure],
    tickets: list[Opened],
    caught: int,
    lead: list[int],
    false_alarms: int,
) -> None:
    r = compare(failures, tickets, max_lead_ms=H)
    assert r.caught == caught
    assert r.missed == len(failures) - caught
    assert r.lead_ms == lead
    assert r.false_alarms == false_alarms
    assert r.true_alarms == len(tickets) - false_alarms


def test_max_lead_must_be_positive() -> None:
    with pytest.raises(ValueError, match="Received: max_lead_ms=0"):
        compare([], [], 0)


times = st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 20_000)), max_size=30)


@given(times, times)
def test_counts_always_add_up(fails: list[tuple[str, int]], opens: list[tuple[str, int]]) -> None:
    r = compare([Failure(*f) for f in fails], [Opened(*o) for o in opens], max_lead_ms=H)
    assert r.caught + r.missed == len(fails)
    assert r.true_alarms + r.false_alarms == len(opens)
    assert all(0 <= lead <= H for lead in r.lead_ms)
    assert 0.0 <= r.recall <= 1.0
    assert 0.0 <= r.precision <= 1.0
