"""Per-machine duplicate and lateness checks on validated telemetry (pure, bounded memory).

A sample is a *duplicate* when the same machine already delivered a sample with the same
event time and the same set of sensors (a re-delivery; the first one wins). A sample is
*too late* when its event time lies more than ``lateness_ms`` before the newest event time
seen for its machine; within that grace, out-of-order samples pass on, and the feature
stage places them in their windows.

Memory per machine is bounded by the samples of the last ``lateness_ms`` of event time.

>>> from ingest.contract import Telemetry
>>> guard = OrderGuard(lateness_ms=5_000)
>>> [guard.check(Telemetry("p1", ts, {"t": 1.0})) for ts in (10_000, 12_000, 11_000, 12_000, 4_000)]
['ok', 'ok', 'ok', 'duplicate', 'too_late']
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

from ingest.contract import Telemetry

Verdict = Literal["ok", "duplicate", "too_late"]


@dataclass
class _Machine:
    newest: int
    seen: set[tuple[int, frozenset[str]]] = field(default_factory=set)
    order: deque[tuple[int, frozenset[str]]] = field(default_factory=deque)


class OrderGuard:
    """Duplicate and lateness verdicts per machine.

    Args:
        lateness_ms: how far behind a machine's newest event time a sample may arrive.
    """

    def __init__(self, lateness_ms: int) -> None:
        if lateness_ms < 0:
            raise ValueError(f"lateness_ms must be >= 0, got {lateness_ms}")
        self.lateness_ms = lateness_ms
        self._machines: dict[str, _Machine] = {}

    def check(self, record: Telemetry) -> Verdict:
        """Classify one sample and remember it when it passes."""
        key = (record.ts_ms, frozenset(record.readings))
        machine = self._machines.get(record.equipment_id)
        if machine is None:
            machine = _Machine(newest=record.ts_ms)
            self._machines[record.equipment_id] = machine
        elif record.ts_ms < machine.newest - self.lateness_ms:
            return "too_late"
        elif key in machine.seen:
            return "duplicate"
        machine.seen.add(key)
        machine.order.append(key)
        if record.ts_ms > machine.newest:
            machine.newest = record.ts_ms
            horizon = machine.newest - self.lateness_ms
            while machine.order and machine.order[0][0] < horizon:
                machine.seen.discard(machine.order.popleft())
        return "ok"

    def newest(self, equipment_id: str) -> int | None:
        """The newest event time accepted for a machine, if any."""
        machine = self._machines.get(equipment_id)
        return None if machine is None else machine.newest

    def forget(self, equipment_ids: Iterable[str]) -> None:
        """Drop the state of machines (e.g. whose partition was revoked)."""
        for eid in equipment_ids:
            self._machines.pop(eid, None)

    def __len__(self) -> int:
        return len(self._machines)
