"""What a model's scores would do as tickets: the alert rules replayed, against the failures.

Window metrics (PR-AUC, F1) rank single windows; a maintenance team gets tickets, opened
by the alerting service's rules from the stream of one machine's predictions (a level
held for ``pending_steps``, hysteresis, one ticket per incident). Two models with the
same window metrics can open very different tickets (a score that flickers over the
critical level three steps in a row opens one, a lone spike does not), so the plant
model is also judged here: every window of the history is scored, as the scorer would
(:func:`models.windows.make_windows` without labels), the rules are replayed
(:func:`evaluation.replay.replay_tickets`) and the tickets are compared with the failures
by the rules of ``plantwatch report`` (:func:`evaluation.groundtruth.compare`).

A ticket opened less than ``max_lead`` before a machine's last window and followed by no
failure cannot be judged (a failure may follow after the data ends): it is counted as
``unjudged`` and left out of the tickets and the precision. It still catches a failure
that does follow before the data ends (a true alarm).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray


def ticket_metrics(
    index: pd.DataFrame,
    probabilities: NDArray[np.floating[Any]],
    events: pd.DataFrame,
    rules: Any,
    max_lead_ms: int,
    step_ms: int,
) -> dict[str, Any]:
    """Tickets the rules open from these scores, and how they meet the failures.

    Args:
        index: per scored window ``equipment_id`` and ``step_end`` (the prediction time).
        probabilities: the calibrated probability of each window.
        events: ``equipment_id``, ``ts``, ``kind`` (failures are the ground truth).
        rules: :class:`alerting.rules.Rules`.
        max_lead_ms: how long before a failure a ticket still counts as its warning.
        step_ms: the step, to give lead times in steps.

    Returns:
        ``tickets`` (judged), ``false_alarms``, ``ticket_precision``, ``failures``,
        ``caught``, ``ticket_recall``, ``ticket_f1``, ``ticket_lead_median`` (steps),
        ``unjudged``, ``max_lead_steps``, ``false_then_failed_steps`` (per false ticket
        whose machine failed later, how many steps later) and the lists of
        :meth:`evaluation.groundtruth.Comparison.ticket_lists`.
    """
    return ticket_metrics_each(index, probabilities, events, [rules], max_lead_ms, step_ms)[0]


def ticket_metrics_each(
    index: pd.DataFrame,
    probabilities: NDArray[np.floating[Any]],
    events: pd.DataFrame,
    rules_each: Sequence[Any],
    max_lead_ms: int,
    step_ms: int,
) -> list[dict[str, Any]]:
    """:func:`ticket_metrics` for each of several rules, the scores grouped once."""
    from evaluation.groundtruth import Failure
    from evaluation.replay import replay_tickets

    order = np.lexsort((index["step_end"].to_numpy(), index["equipment_id"].to_numpy()))
    ids = index["equipment_id"].to_numpy()[order]
    ends = index["step_end"].to_numpy(np.int64)[order]
    p = np.asarray(probabilities, dtype=np.float64)[order]
    cuts = np.flatnonzero(ids[1:] != ids[:-1]) + 1
    series = [
        (str(i[0]), t.tolist(), q.tolist())
        for i, t, q in zip(
            np.split(ids, cuts), np.split(ends, cuts), np.split(p, cuts), strict=True
        )
        if len(i)
    ]
    last = {eid: times[-1] for eid, times, _ in series}
    fails = events[events["kind"] == "failure"]
    failures = [
        Failure(str(e), int(t)) for e, t in zip(fails["equipment_id"], fails["ts"], strict=True)
    ]
    return [
        _judged(replay_tickets(series, rules), last, failures, max_lead_ms, step_ms)
        for rules in rules_each
    ]


def _judged(
    opened: list[tuple[str, int]],
    last: dict[str, int],
    failures: list[Any],
    max_lead_ms: int,
    step_ms: int,
) -> dict[str, Any]:
    """The opened tickets against the failures (those too close to the end unjudged)."""
    from evaluation.groundtruth import Opened, compare

    c = compare(failures, [Opened(e, t) for e, t in opened], max_lead_ms, end_ms=last)
    p_, r_ = c.precision, c.recall
    lead = c.median_lead_ms
    return {
        "tickets": c.tickets,
        "false_alarms": c.false_alarms,
        "ticket_precision": p_,
        "failures": c.failures,
        "caught": c.caught,
        "ticket_recall": r_,
        "ticket_f1": 2 * p_ * r_ / (p_ + r_) if p_ + r_ > 0 else 0.0,
        "ticket_lead_median": None if lead is None else lead / step_ms,
        "unjudged": c.unjudged,
        "max_lead_steps": max_lead_ms / step_ms,
        "false_then_failed_steps": [t / step_ms for t in c.false_then_failed_ms],
        **c.ticket_lists(),
    }
