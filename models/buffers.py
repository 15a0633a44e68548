"""Per-machine windows of the last L normalized feature steps, for the scorer (no Kafka).

Each machine keeps an ``(L, F)`` float32 ring; its window is the ring in order, newest step
last and zeros in front of a short history, exactly as :func:`features.spec.sequences`
pads training windows; so memory is bounded by machines x L x F x 4 bytes whatever the
stream's length. A *segment* is a run of consecutive steps (as in training, a window never
spans a break): a step that does not follow the machine's newest one starts a new
segment, one at or before it is a re-delivery and ignored. A step's *age* is its
distance in steps from its segment's start (:func:`models.windows.step_age`).

For restarts, each machine remembers the source offsets of its newest ``max(L - 1, 1)``
records and of its segment's first record: replaying a partition from the smallest of
those (:meth:`MachineBuffers.rewind_offset`) rebuilds every window, and with
``segment=True`` every age, exactly.

>>> import numpy as np
>>> b = MachineBuffers(length=3, n_features=1, step_ms=10)
>>> [b.push("m", s, np.array([float(s)]), offset=s) for s in (0, 10, 20, 30, 30, 50)]
['ok', 'ok', 'ok', 'ok', 'duplicate', 'new_segment']
>>> w = b.window("m")
>>> w.x[:, 0].tolist(), w.mask.tolist(), w.steps, w.age
([0.0, 0.0, 50.0], [False, False, True], 1, 0)
>>> b.push("m", 60, np.array([6.0]), offset=61)
'ok'
>>> b.rewind_offset(["m"]), b.rewind_offset(["m"], segment=True)
(50, 50)
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray


@dataclass
class _Machine:
    x: NDArray[np.float32]  # a ring: row ``head`` is the oldest, ``head - 1`` the newest
    last_step: int
    seg_start: int
    seg_offset: int
    head: int = 0
    offsets: deque[int] = field(default_factory=deque)


@dataclass(frozen=True)
class Window:
    """One machine's window ending at its newest step.

    Attributes:
        x: (L, F) float32 normalized features, zero in front of a short history.
        mask: (L,) True for real steps.
        steps: real steps in the window (at most L).
        age: the newest step's age in steps (its distance from the segment start).
    """

    x: NDArray[np.float32]
    mask: NDArray[np.bool_]
    steps: int
    age: int


class MachineBuffers:
    """The last ``length`` steps of every machine seen.

    Args:
        length: L, steps per window.
        n_features: F, values per step.
        step_ms: the feature step, to turn ``step_start`` (ms) into step numbers.
    """

    def __init__(self, length: int, n_features: int, step_ms: int) -> None:
        if length < 1 or n_features < 1 or step_ms < 1:
            raise ValueError(
                f"length, n_features and step_ms must be >= 1. Received: length={length}, "
                f"n_features={n_features}, step_ms={step_ms}"
            )
        self.length = length
        self.n_features = n_features
        self.step_ms = step_ms
        self._keep = max(length - 1, 1)
        self._m: dict[str, _Machine] = {}

    def __len__(self) -> int:
        return len(self._m)

    def __contains__(self, equipment_id: object) -> bool:
        return equipment_id in self._m

    def push(self, equipment_id: str, step_start: int, z: NDArray[np.float32], offset: int) -> str:
        """Append one step's normalized vector; returns ``ok``, ``new_segment`` or ``duplicate``.

        Args:
            equipment_id: the machine.
            step_start: the step's start (ms, a multiple of ``step_ms``).
            z: the step's normalized features, (F,).
            offset: the source record's offset (for :meth:`rewind_offset`).
        """
        step = step_start // self.step_ms
        m = self._m.get(equipment_id)
        verdict = "ok"
        if m is None:
            m = _Machine(np.zeros((self.length, self.n_features), np.float32), step, step, offset)
            m.offsets = deque(maxlen=self._keep)
            self._m[equipment_id] = m
        elif step <= m.last_step:
            return "duplicate"
        elif step != m.last_step + 1:
            m.x[:] = 0.0
            m.offsets.clear()
            m.seg_start, m.seg_offset = step, offset
            verdict = "new_segment"
        m.x[m.head] = z
        m.head = (m.head + 1) % self.length
        m.last_step = step
        m.offsets.append(offset)
        return verdict

    def window(self, equipment_id: str) -> Window:
        """A copy of the machine's current window (KeyError for a machine never seen)."""
        x = np.empty((self.length, self.n_features), np.float32)
        steps, age = self.copy_window(equipment_id, x)
        return Window(x, window_mask(np.array([steps]), self.length)[0], steps, age)

    def history(self, equipment_id: str) -> tuple[int, int]:
        """``(steps, age)`` of the machine's current window (see :class:`Window`)."""
        m = self._m[equipment_id]
        age = m.last_step - m.seg_start
        return min(self.length, age + 1), age

    def copy_window(self, equipment_id: str, out: NDArray[np.float32]) -> tuple[int, int]:
        """Write the machine's current window into ``out`` (L, F); returns ``(steps, age)``.

        The scorer's hot path: no allocation, the window goes straight into its batch.
        """
        m = self._m[equipment_id]
        tail = self.length - m.head
        out[:tail] = m.x[m.head :]
        out[tail:] = m.x[: m.head]
        return self.history(equipment_id)

    def rewind_offset(self, equipment_ids: Iterable[str], segment: bool = False) -> int | None:
        """Where a replay must start to rebuild these machines' windows (None: none known).

        Args:
            equipment_ids: the machines of one partition.
            segment: also rebuild the ages, i.e. reach back to each segment's first record.
        """
        found: int | None = None
        for eid in equipment_ids:
            m = self._m.get(eid)
            if m is None:
                continue
            oldest = m.seg_offset if segment else m.offsets[0]  # offsets only grow
            found = oldest if found is None else min(found, oldest)
        return found

    def forget(self, equipment_ids: Iterable[str]) -> None:
        """Drop machines (their partition was revoked)."""
        for eid in equipment_ids:
            self._m.pop(eid, None)


def window_mask(steps: NDArray[np.int64], length: int) -> NDArray[np.bool_]:
    """(N, L) masks of windows with ``steps`` real steps each, at the end (newest last).

    >>> window_mask(np.array([1, 3]), 3).tolist()
    [[False, False, True], [True, True, True]]
    """
    return np.arange(length)[None, :] >= (length - np.asarray(steps))[:, None]


def age_column(
    ages: NDArray[np.int64], mask: NDArray[np.bool_], scale: float
) -> NDArray[np.float32]:
    """The step-age input column of windows: (N, L) float32, zero where masked.

    Computed as in training (:func:`models.windows.make_windows`): float64 age in steps
    divided by ``scale``, then float32.

    >>> age_column(np.array([1]), np.array([[False, True, True]]), 2.0).tolist()
    [[0.0, 0.0, 0.5]]
    """
    length = mask.shape[1]
    per_step = ages[:, None] - (length - 1 - np.arange(length))[None, :]
    col = np.where(mask, per_step.astype(np.float64) / scale, 0.0)
    return col.astype(np.float32)
