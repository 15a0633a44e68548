"""Tickets against failures: the rules of evaluation.groundtruth."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from evaluation.groundtruth import Failure, Opened, compare

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


@pytest.mark.parametrize(
    ("failures", "ticket", "end_ms", "kind"),
    [
        ([], Opened("a", 4_500), 5_000, "unjudged"),  # a failure may still follow
        ([], Opened("a", 4_000), 5_000, "false"),  # its whole span is in the data
        ([Failure("a", 4_900)], Opened("a", 4_500), 5_000, "true"),  # followed already
        ([], Opened("a", 4_500), {"a": 5_000}, "unjudged"),  # the end per machine
        ([], Opened("a", 4_500), {"b": 5_000}, "false"),  # no end known for a: judged
        ([], Opened("a", 4_500), None, "false"),  # no end at all: judged
    ],
)
def test_tickets_near_the_end_of_the_data_are_not_judged(
    failures: list[Failure], ticket: Opened, end_ms: int | dict[str, int] | None, kind: str
) -> None:
    r = compare(failures, [ticket], max_lead_ms=H, end_ms=end_ms)
    assert (r.true_alarms, r.false_alarms, r.unjudged) == (
        kind == "true",
        kind == "false",
        kind == "unjudged",
    )
    assert r.tickets == r.true_alarms + r.false_alarms
    assert r.caught == len(failures)  # a ticket near the end still catches a failure


def test_max_lead_must_be_positive() -> None:
    with pytest.raises(ValueError, match="Received: max_lead_ms=0"):
        compare([], [], 0)


times = st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 20_000)), max_size=30)


@given(times, times, st.none() | st.integers(0, 21_000))
def test_counts_always_add_up(
    fails: list[tuple[str, int]], opens: list[tuple[str, int]], end_ms: int | None
) -> None:
    failures, tickets = [Failure(*f) for f in fails], [Opened(*o) for o in opens]
    r = compare(failures, tickets, max_lead_ms=H, end_ms=end_ms)
    assert r.caught + r.missed == len(fails)
    assert r.true_alarms + r.false_alarms + r.unjudged == len(opens)
    # the end only moves false alarms to unjudged: catching and true alarms stay
    everything = compare(failures, tickets, max_lead_ms=H)
    assert (r.caught, r.true_alarms) == (everything.caught, everything.true_alarms)
    assert r.false_alarms + r.unjudged == everything.false_alarms
    assert all(0 <= lead <= H for lead in r.lead_ms)
    assert 0.0 <= r.recall <= 1.0
    assert 0.0 <= r.precision <= 1.0
