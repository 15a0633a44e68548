"""Tickets of a scored history against the failures (evaluation.tickets), on hand-made scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from alerting.rules import Rules
from evaluation.tickets import ticket_metrics

MIN = 60_000


def scored(machines: dict[str, list[float]]) -> tuple[pd.DataFrame, np.ndarray]:
    """One window per minute per machine, rows shuffled (the order must not matter)."""
    rows = [(eid, (i + 1) * MIN, p) for eid, probs in machines.items() for i, p in enumerate(probs)]
    frame = pd.DataFrame(rows, columns=["equipment_id", "step_end", "p"])
    frame = frame.sample(frac=1.0, random_state=0).reset_index(drop=True)
    return frame[["equipment_id", "step_end"]], frame["p"].to_numpy()


def test_caught_false_and_unjudged() -> None:
    hi, lo = [0.95] * 3, [0.1] * 3
    index, p = scored(
        {
            # ticket at minute 3 (3 steps >= 0.8), failure at minute 5: caught, lead 2
            "a": hi + lo * 4,
            # ticket at minute 3, no failure: false
            "b": hi + lo * 4,
            # never alerted, failure at minute 10: missed
            "c": lo * 5,
            # ticket at minute 15, its last: within max lead (5 min) of the end: unjudged
            "d": lo * 4 + hi,
            # ticket at minute 15, near the end too, but its failure (minute 16) is in the
            # data: a true alarm that catches it, lead 1
            "e": lo * 4 + hi + [0.1],
        }
    )
    events = pd.DataFrame(
        {
            "equipment_id": ["a", "c", "a", "e"],
            "ts": [5 * MIN, 10 * MIN, 14 * MIN, 16 * MIN],
            "kind": ["failure", "failure", "repair", "failure"],
        }
    )
    m = ticket_metrics(index, p, events, Rules(pending_steps=3), 5 * MIN, MIN)
    assert (m["tickets"], m["false_alarms"], m["unjudged"]) == (3, 1, 1)
    assert (m["failures"], m["caught"]) == (3, 2)
    assert m["ticket_precision"] == pytest.approx(2 / 3)
    assert m["ticket_recall"] == pytest.approx(2 / 3)
    assert m["ticket_f1"] == pytest.approx(2 / 3)
    assert m["ticket_lead_median"] == pytest.approx(1.5)
    assert m["max_lead_steps"] == pytest.approx(5.0)
    assert m["false_tickets"] == [
        {"equipment_id": "b", "opened_ms": 3 * MIN, "next_failure_ms": None}
    ]
    assert m["missed_failures"] == [{"equipment_id": "c", "ts_ms": 10 * MIN}]
    assert m["unjudged_tickets"] == [{"equipment_id": "d", "opened_ms": 15 * MIN}]
    assert m["false_then_failed_steps"] == []


def test_a_false_ticket_long_before_its_machine_fails_says_how_long() -> None:
    index, p = scored({"a": [0.95] * 3 + [0.1] * 17})  # ticket at minute 3
    events = pd.DataFrame({"equipment_id": ["a"], "ts": [12 * MIN], "kind": ["failure"]})
    m = ticket_metrics(index, p, events, Rules(pending_steps=3), 5 * MIN, MIN)
    assert (m["false_alarms"], m["caught"]) == (1, 0)  # 9 steps early: past the 5-step lead
    assert m["false_then_failed_steps"] == [9.0]
    assert m["false_tickets"][0]["next_failure_ms"] == 12 * MIN


def test_no_tickets_no_division_by_zero() -> None:
    index, p = scored({"a": [0.1] * 20})
    events = pd.DataFrame({"equipment_id": ["a"], "ts": [10 * MIN], "kind": ["failure"]})
    m = ticket_metrics(index, p, events, Rules(), 5 * MIN, MIN)
    assert (m["tickets"], m["caught"], m["ticket_f1"], m["ticket_lead_median"]) == (0, 0, 0.0, None)
