"""The alert rules replayed offline open the tickets the service would (one per incident)."""

from __future__ import annotations

import pytest

from alerting.rules import Rules
from evaluation.replay import replay_tickets

MIN = 60_000


def tickets(probs: list[float], rules: Rules) -> list[int]:
    """Minutes at which tickets open for one machine scored once per minute."""
    times = [i * MIN for i in range(len(probs))]
    return [t // MIN for _, t in replay_tickets([("pump-1", times, probs)], rules)]


def test_pending_steps_hold_a_lone_spike_back() -> None:
    rules = Rules(pending_steps=3)
    assert tickets([0.1, 0.95, 0.1, 0.95, 0.95, 0.1], rules) == []
    assert tickets([0.1, 0.95, 0.9, 0.85, 0.1], rules) == [3]


def test_one_ticket_per_incident_and_a_new_one_after_ok() -> None:
    rules = Rules(pending_steps=1, repeat_ms=2 * MIN, critical=0.8, critical_reset=0.7)
    # WARNING then CRITICAL is one incident: the ticket opens at CRITICAL; reminders
    # (repeat) while it stays raised open nothing more; below the reset it ends
    probs = [0.6, 0.9, 0.9, 0.9, 0.9, 0.75, 0.3, 0.9]
    assert tickets(probs, rules) == [1, 7]


def test_ticket_level_warning() -> None:
    rules = Rules(pending_steps=1, ticket_level="WARNING")
    assert tickets([0.1, 0.6, 0.9, 0.1], rules) == [1]


def test_machines_are_independent_and_in_input_order() -> None:
    rules = Rules(pending_steps=1)
    got = replay_tickets([("b", [0, MIN], [0.9, 0.9]), ("a", [0, MIN], [0.1, 0.95])], rules)
    assert got == [("b", 0), ("a", MIN)]


def test_bad_series_are_refused() -> None:
    with pytest.raises(ValueError, match="not ascending"):
        replay_tickets([("m", [MIN, MIN], [0.1, 0.2])], Rules())
    with pytest.raises(ValueError, match="2 times but 1 probabilities"):
        replay_tickets([("m", [0, MIN], [0.1])], Rules())
