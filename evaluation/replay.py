"""The alert rules run offline over scored history: which tickets the service would open.

The alerting service feeds each machine's predictions, in time order, through
:func:`alerting.state.step` and opens one ticket per incident at the first unsilenced
event that reaches the ticket level (:func:`alerting.state.opens_ticket`). This module
does the same over a scored history (no Kafka, no store, no silences), so that a model
can be judged by the tickets it would open, not only by its windows
(``plantwatch evaluate``, ``bench/bench_plant_model.py``).

>>> from alerting.rules import Rules
>>> rules = Rules(pending_steps=2)
>>> series = [("p-1", [1, 2, 3, 4, 5, 6], [0.9, 0.9, 0.9, 0.1, 0.9, 0.9])]
>>> replay_tickets(series, rules)
[('p-1', 2), ('p-1', 6)]
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from alerting.rules import Rules
from alerting.state import MachineState, opens_ticket, step


def replay_tickets(
    machines: Iterable[tuple[str, Sequence[int], Sequence[float]]], rules: Rules
) -> list[tuple[str, int]]:
    """The tickets the rules open: ``(equipment_id, opened_ms)`` in machine, time order.

    Args:
        machines: per machine its id, prediction times (epoch ms, ascending) and
            failure probabilities, as the scorer would emit them.
        rules: the alert rules (thresholds, pending, hysteresis, flapping).

    Raises:
        ValueError: times of a machine not ascending, or lengths that differ.
    """
    opened: list[tuple[str, int]] = []
    for equipment_id, times, probabilities in machines:
        if len(times) != len(probabilities):
            raise ValueError(
                f"{equipment_id}: {len(times)} times but {len(probabilities)} probabilities"
            )
        state = MachineState(equipment_id)
        ticketed: set[str] = set()
        previous: int | None = None
        for t, p in zip(times, probabilities, strict=True):
            if previous is not None and t <= previous:
                raise ValueError(f"{equipment_id}: times not ascending ({previous} then {t})")
            previous = int(t)
            for event in step(state, int(t), float(p), rules):
                if opens_ticket(event, rules) and event.incident_key not in ticketed:
                    ticketed.add(event.incident_key)
                    opened.append((equipment_id, event.time_ms))
    return opened
