"""Tickets compared with what really happened: failures caught, lead times, false alarms.

The rules (pure functions, times in epoch ms of event time):

- A failure of a machine is **caught** when a ticket of that machine was opened at most
  ``max_lead_ms`` before it and not after it; its **lead time** is failure time minus the
  earliest such opening. Otherwise it is **missed**.
- A ticket is a **true alarm** when a failure of its machine follows its opening within
  ``max_lead_ms``; otherwise it is a **false alarm**, unless that span reaches past the
  end of the data (``end_ms``, per machine or one for all): then a failure may still
  follow, and the ticket is **unjudged**, counted apart. An unjudged ticket is in neither
  the tickets nor the precision; every ticket, judged or not, can catch a failure.

``max_lead_ms`` is the model's horizon plus a slack (by default the horizon again): an
alert a little earlier than the horizon still warned about that failure. A false alarm
whose machine fails later, beyond ``max_lead_ms``, stays false; how much earlier it was
is kept (:attr:`Comparison.false_then_failed_ms`), to tell alarms too early from alarms
with no failure behind them.

>>> fails = [Failure("p-1", 10_000), Failure("p-2", 10_000)]
>>> tickets = [Opened("p-1", 7_000), Opened("p-3", 5_000), Opened("p-2", 1_000)]
>>> r = compare(fails, tickets, max_lead_ms=5_000)
>>> r.caught, r.missed, r.lead_ms, r.true_alarms, r.false_alarms, r.false_then_failed_ms
(1, 1, [3000], 1, 2, [9000])
>>> compare(fails, tickets + [Opened("p-3", 9_000)], 5_000, end_ms=12_000).unjudged
1
"""

from __future__ import annotations

import bisect
import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Failure:
    """A failure of a machine (from ``maintenance.events``)."""

    equipment_id: str
    ts_ms: int


@dataclass(frozen=True)
class Opened:
    """A ticket's opening (the event time of the prediction that opened it)."""

    equipment_id: str
    ts_ms: int


@dataclass
class Comparison:
    """How the tickets compare with the failures."""

    failures: int = 0
    caught: int = 0
    missed: int = 0
    lead_ms: list[int] = field(default_factory=list)
    true_alarms: int = 0
    false_alarms: int = 0
    missed_failures: list[Failure] = field(default_factory=list)
    false_tickets: list[tuple[Opened, int | None]] = field(default_factory=list)
    """Each false ticket, with the ms until its machine's next failure (None if none)."""
    unjudged_tickets: list[Opened] = field(default_factory=list)

    @property
    def tickets(self) -> int:
        """The judged tickets: true and false alarms."""
        return self.true_alarms + self.false_alarms

    @property
    def unjudged(self) -> int:
        """Tickets too close to the end of the data to judge, with no failure yet."""
        return len(self.unjudged_tickets)

    @property
    def recall(self) -> float:
        """Caught / failures (0 without failures)."""
        return self.caught / self.failures if self.failures else 0.0

    @property
    def precision(self) -> float:
        """True alarms / judged tickets (0 without any)."""
        return self.true_alarms / self.tickets if self.tickets else 0.0

    @property
    def false_then_failed_ms(self) -> list[int]:
        """Per false ticket whose machine failed later: how long before that failure.

        Each is more than ``max_lead_ms``: a warning earlier than the rules count.
        """
        return [nxt for _, nxt in self.false_tickets if nxt is not None]

    def ticket_lists(self) -> dict[str, list[dict[str, Any]]]:
        """What to look at next, JSON-ready.

        Each false ticket (with its machine's next failure, or None), each missed failure
        and each unjudged ticket.
        """
        return {
            "false_tickets": [
                {
                    "equipment_id": t.equipment_id,
                    "opened_ms": t.ts_ms,
                    "next_failure_ms": None if nxt is None else t.ts_ms + nxt,
                }
                for t, nxt in self.false_tickets
            ],
            "missed_failures": [
                {"equipment_id": f.equipment_id, "ts_ms": f.ts_ms} for f in self.missed_failures
            ],
            "unjudged_tickets": [
                {"equipment_id": t.equipment_id, "opened_ms": t.ts_ms}
                for t in self.unjudged_tickets
            ],
        }

    @property
    def median_lead_ms(self) -> float | None:
        """The median lead time of the caught failures."""
        return float(statistics.median(self.lead_ms)) if self.lead_ms else None


def compare(
    failures: Iterable[Failure],
    tickets: Iterable[Opened],
    max_lead_ms: int,
    end_ms: int | Mapping[str, int] | None = None,
) -> Comparison:
    """Match tickets with failures per machine (rules in the module doc).

    ``end_ms``: where the data ends (one time, or per machine; the tickets of a machine
    not in the mapping are all judged). None: every ticket is judged.
    """
    if max_lead_ms <= 0:
        raise ValueError(f"max_lead_ms must be > 0. Received: max_lead_ms={max_lead_ms}")
    opened: dict[str, list[int]] = defaultdict(list)
    all_tickets = list(tickets)
    for t in all_tickets:
        opened[t.equipment_id].append(t.ts_ms)
    for times in opened.values():
        times.sort()
    failed: dict[str, list[int]] = defaultdict(list)
    all_failures = sorted(failures, key=lambda f: (f.equipment_id, f.ts_ms))
    for f in all_failures:
        failed[f.equipment_id].append(f.ts_ms)
    result = Comparison(failures=len(all_failures))
    for f in all_failures:
        times = opened.get(f.equipment_id, [])
        first = bisect.bisect_left(times, f.ts_ms - max_lead_ms)
        if first < len(times) and times[first] <= f.ts_ms:
            result.caught += 1
            result.lead_ms.append(f.ts_ms - times[first])
        else:
            result.missed += 1
            result.missed_failures.append(f)
    for t in all_tickets:
        times = failed.get(t.equipment_id, [])
        nxt = bisect.bisect_left(times, t.ts_ms)
        if nxt < len(times) and times[nxt] - t.ts_ms <= max_lead_ms:
            result.true_alarms += 1
        elif t.ts_ms + max_lead_ms > _end(end_ms, t.equipment_id):
            result.unjudged_tickets.append(t)
        else:
            result.false_alarms += 1
            result.false_tickets.append((t, times[nxt] - t.ts_ms if nxt < len(times) else None))
    return result


def spread(values: Iterable[float]) -> str:
    """``lo-hi (median m)`` of some values, rounded; one value alone if they are all equal.

    >>> spread([61.6, 135.0, 85.2]), spread([7.0, 7.2])
    ('62-135 (median 85)', '7')
    """
    vals = sorted(values)
    lo, hi, med = round(vals[0]), round(vals[-1]), round(statistics.median(vals))
    return f"{lo}" if lo == hi else f"{lo}-{hi} (median {med})"


def _end(end_ms: int | Mapping[str, int] | None, equipment_id: str) -> float:
    if end_ms is None:
        return float("inf")
    if isinstance(end_ms, int):
        return end_ms
    return end_ms.get(equipment_id, float("inf"))
