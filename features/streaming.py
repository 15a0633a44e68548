"""Streaming path: readings in (any batch size), one feature vector per closed step out.

State per machine is a fixed-size ring of step partials plus the carried state, so memory
is bounded by machines x ring length x sensors, whatever the length of the stream. A
step closes once its machine's newest reading is ``grace_ms`` past the step's end; it is
then finished by :func:`features.core.step_features`, exactly as the offline path does.

Readings for an already closed step are *late*: :meth:`StreamingWindows.update` returns
their positions so that the caller can dead-letter them. Steps more than
``max_gap_steps`` after a machine's last reading are not emitted (a long silence breaks
the sequence instead of producing thousands of empty steps), as offline.

A step's features depend only on the readings of the machine's last
:attr:`StreamingWindows.lookback` steps, so replaying a machine's readings from
``lookback`` steps before its oldest open step rebuilds its state exactly (see
:meth:`StreamingWindows.rewind_offset`).

>>> from features.config import WindowConfig
>>> from types import SimpleNamespace as R
>>> cfg = WindowConfig(sensors=("t",), step_ms=1000, grace_ms=0, aggregates=("mean",), derived=())
>>> w = StreamingWindows(cfg)
>>> out = w.update([R(equipment_id="m1", ts_ms=ts, readings={"t": v})
...                 for ts, v in ((0, 1.0), (500, 3.0), (1200, 5.0), (2100, 7.0))])
>>> [(s.equipment_id, s.step_start, float(s.vector[0])) for s in out.steps]
[('m1', 0, 2.0), ('m1', 1000, 5.0)]
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from features.config import WindowConfig
from features.core import (
    C_TY,
    LAST,
    LAST_N,
    LAST_T,
    M2,
    M2_T,
    MAX,
    MEAN,
    MEAN_T,
    MIN,
    WIDTH,
    Carry,
    N,
    empty_partials,
    merge_moments,
    step_features,
    window_partials,
)

F64 = NDArray[np.float64]
_NO_STEP = np.iinfo(np.int64).min
_NO_OFFSET = np.iinfo(np.int64).max


class Reading(Protocol):
    """What the windows need of a telemetry sample."""

    @property
    def equipment_id(self) -> str:
        """The machine."""

    @property
    def ts_ms(self) -> int:
        """Event time, epoch ms."""

    @property
    def readings(self) -> Mapping[str, float]:
        """Sensor name -> value."""


@dataclass(frozen=True)
class ClosedStep:
    """The feature vector of one closed step of one machine."""

    equipment_id: str
    step_start: int
    vector: F64
    source_offset: int | None = None


@dataclass
class Update:
    """What one :meth:`StreamingWindows.update` call produced."""

    steps: list[ClosedStep] = field(default_factory=list)
    late: list[int] = field(default_factory=list)


class StreamingWindows:
    """Event-time windows of many machines, updated in batches.

    Args:
        config: the feature rules (the same object the offline path gets).
        capacity: machines to allocate room for at first (grows by doubling).
    """

    def __init__(self, config: WindowConfig, capacity: int = 1024) -> None:
        self.config = config
        s = len(config.sensors)
        self._sensor = {name: i for i, name in enumerate(config.sensors)}
        self.grace_steps = -(-config.grace_ms // config.step_ms)
        self.lookback = config.window_steps + config.max_fill_steps + 1
        self.ring = self.lookback + self.grace_steps + 2
        self._cap = 0
        self._slots: dict[str, int] = {}
        self._ids: list[str] = []
        self._p = np.empty((0, self.ring, s, WIDTH))
        self._ring_step = np.empty((0, self.ring), dtype=np.int64)
        self._ring_off = np.empty((0, self.ring), dtype=np.int64)
        self._carry = Carry.fresh((0, s))
        self._next_close = np.empty(0, dtype=np.int64)  # first step not closed yet
        self._newest = np.empty(0, dtype=np.int64)  # newest event time (ms)
        self._seg_start = np.empty(0, dtype=np.int64)  # first step with a reading
        self._last_read = np.empty(0, dtype=np.int64)  # last closed step with a reading
        self._last_done = np.empty(0, dtype=np.int64)  # last step emitted
        self._grow(capacity)
        self._rec: list[tuple[int, int, float, int, int]] = []
        self._ks: list[int] = []
        self._ys: list[float] = []
        self._closes: list[tuple[int, int, int, int]] = []
        self._close_floor: dict[int, int] = {}

    # --- state management ------------------------------------------------------------
    def _grow(self, capacity: int) -> None:
        old, s = self._cap, len(self.config.sensors)
        if capacity <= old:
            return
        p = empty_partials((capacity, self.ring, s))
        p[:old] = self._p
        self._p = p
        for name, fill in (("_ring_step", _NO_STEP), ("_ring_off", _NO_OFFSET)):
            table = np.full((capacity, self.ring), fill, dtype=np.int64)
            table[:old] = getattr(self, name)
            setattr(self, name, table)
        carry = Carry.fresh((capacity, s))
        carry.put(np.arange(old), self._carry)
        self._carry = carry
        for name in ("_next_close", "_newest", "_seg_start", "_last_read", "_last_done"):
            arr = np.zeros(capacity, dtype=np.int64)
            arr[:old] = getattr(self, name)
            setattr(self, name, arr)
        self._cap = capacity

    def _slot(self, equipment_id: str, step: int, ts_ms: int) -> int:
        slot = self._slots.get(equipment_id)
        if slot is not None:
            return slot
        slot = len(self._ids)
        if slot >= self._cap:
            self._grow(2 * self._cap)
        self._slots[equipment_id] = slot
        self._ids.append(equipment_id)
        self._start(slot, step, ts_ms)
        return slot

    def _start(self, slot: int, step: int, ts_ms: int) -> None:
        self._p[slot] = empty_partials((self.ring, len(self.config.sensors)))
        self._ring_step[slot] = _NO_STEP
        self._ring_off[slot] = _NO_OFFSET
        self._carry.put(np.array([slot]), Carry.fresh((1, len(self.config.sensors))))
        # Steps within the grace before the first reading may still receive readings.
        self._next_close[slot] = min(step, (ts_ms - self.config.grace_ms) // self.config.step_ms)
        self._newest[slot] = ts_ms
        self._seg_start[slot] = step
        self._last_read[slot] = step
        self._last_done[slot] = step - 1

    def __len__(self) -> int:
        return len(self._ids)

    def state_bytes(self) -> int:
        """Bytes of state held (all machines)."""
        arrays = [self._p, self._ring_step, self._ring_off, self._next_close, self._newest]
        arrays += [self._seg_start, self._last_read, self._last_done]
        arrays += [self._carry.last_value, self._carry.last_ts_ms]
        arrays += [self._carry.gap_run, self._carry.prev_mean]
        return sum(a.nbytes for a in arrays)

    def forget(self, equipment_ids: Sequence[str]) -> None:
        """Drop machines (e.g. whose partition was revoked); their slots are reused lazily."""
        for eid in equipment_ids:
            slot = self._slots.pop(eid, None)
            if slot is not None:
                self._ids[slot] = ""

    # --- the update ------------------------------------------------------------------
    def update(self, records: Sequence[Reading], offsets: Sequence[int] | None = None) -> Update:
        """Add readings (in arrival order); return closed steps and late record positions.

        A record without a reading of any configured sensor is ignored (it neither fills
        nor closes a step), as offline.

        Args:
            records: samples of any machines, in the order they arrived.
            offsets: optional source offsets of the records (same length). They are kept
                per step for :meth:`rewind_offset`, and each closed step reports the offset
                of the record whose arrival closed it.
        """
        out = Update()
        step_ms, grace = self.config.step_ms, self.config.grace_ms
        sensor = self._sensor
        isfinite = math.isfinite
        for i, rec in enumerate(records):
            ks: list[int] = []
            ys: list[float] = []
            for name, value in rec.readings.items():
                k = sensor.get(name)
                if k is not None and isfinite(value):
                    ks.append(k)
                    ys.append(value)
            if not ks:
                continue
            ts = rec.ts_ms
            step = ts // step_ms
            offset = offsets[i] if offsets is not None else -1
            slot = self._slots.get(rec.equipment_id)
            if slot is None:
                slot = self._slot(rec.equipment_id, step, ts)
            elif step < self._next_close[slot]:
                out.late.append(i)
                continue
            if step < self._seg_start[slot]:
                self._seg_start[slot] = step  # an early reading of a new machine
            if ts > self._newest[slot]:
                self._newest[slot] = ts
                upto = (ts - grace) // step_ms - 1
                first = int(self._next_close[slot])
                if upto >= first:
                    self._closes.append((slot, first, int(upto), offset))
                    self._close_floor.setdefault(slot, first)
                    self._next_close[slot] = upto + 1
            applied = self._close_floor.get(slot, int(self._next_close[slot]))
            if step >= applied - self.lookback + self.ring:
                self._flush(out)
            self._rec.append((slot, step, (ts - step * step_ms) / 1000.0, offset, len(ks)))
            self._ks.extend(ks)
            self._ys.extend(ys)
        self._flush(out)
        return out

    def _flush(self, out: Update) -> None:
        if self._rec:
            self._apply()
        if self._closes:
            self._close(self._closes, out)
            self._closes = []
            self._close_floor.clear()

    def _apply(self) -> None:
        rec = np.array(self._rec, dtype=np.float64)
        counts = rec[:, 4].astype(np.intp)
        slot = np.repeat(rec[:, 0].astype(np.intp), counts)
        step = np.repeat(rec[:, 1].astype(np.int64), counts)
        t = np.repeat(rec[:, 2], counts)
        rec_slot = rec[:, 0].astype(np.intp)
        rec_step = rec[:, 1].astype(np.int64)
        rec_off = np.array([r[3] for r in self._rec], dtype=np.int64)
        sensor = np.array(self._ks, dtype=np.intp)
        y = np.array(self._ys, dtype=np.float64)
        self._rec, self._ks, self._ys = [], [], []
        # (Re)open ring positions that still hold an older step.
        rec_pos = rec_step % self.ring
        stale = self._ring_step[rec_slot, rec_pos] != rec_step
        if stale.any():
            s_slot, s_pos = rec_slot[stale], rec_pos[stale]
            self._p[s_slot, s_pos] = empty_partials((len(self.config.sensors),))
            self._ring_step[s_slot, s_pos] = rec_step[stale]
            self._ring_off[s_slot, s_pos] = _NO_OFFSET
        np.minimum.at(
            self._ring_off, (rec_slot, rec_pos), np.where(rec_off >= 0, rec_off, _NO_OFFSET)
        )
        pos = step % self.ring
        flat = self._p.reshape(-1, WIDTH)
        key = (slot * self.ring + pos) * len(self.config.sensors) + sensor
        uniq, inv = np.unique(key, return_inverse=True)
        # The batch's own moments (two passes), then merged into the stored ones.
        n_b = np.bincount(inv).astype(np.float64)
        mean_b = np.bincount(inv, weights=y) / n_b
        mean_tb = np.bincount(inv, weights=t) / n_b
        dy, dt = y - mean_b[inv], t - mean_tb[inv]
        batch = np.zeros((len(uniq), WIDTH))
        batch[:, N] = n_b
        batch[:, MEAN] = mean_b
        batch[:, M2] = np.bincount(inv, weights=dy * dy)
        batch[:, MEAN_T] = mean_tb
        batch[:, M2_T] = np.bincount(inv, weights=dt * dt)
        batch[:, C_TY] = np.bincount(inv, weights=dt * dy)
        stored = flat[uniq]
        merge_moments(stored, batch)
        flat[uniq, N] = stored[:, N]
        flat[uniq, MEAN] = stored[:, MEAN]
        flat[uniq, M2] = stored[:, M2]
        flat[uniq, MEAN_T] = stored[:, MEAN_T]
        flat[uniq, M2_T] = stored[:, M2_T]
        flat[uniq, C_TY] = stored[:, C_TY]
        low = np.full(len(uniq), np.inf)
        high = np.full(len(uniq), -np.inf)
        np.minimum.at(low, inv, y)
        np.maximum.at(high, inv, y)
        flat[uniq, MIN] = np.minimum(flat[uniq, MIN], low)
        flat[uniq, MAX] = np.maximum(flat[uniq, MAX], high)
        # LAST: the mean of the readings at the latest time (ties do not depend on order).
        batch_t = np.full(len(uniq), -np.inf)
        np.maximum.at(batch_t, inv, t)
        old_t = flat[uniq, LAST_T]
        new_t = np.maximum(old_t, batch_t)
        at = t == new_t[inv]
        old_n = np.where(old_t == new_t, flat[uniq, LAST_N], 0.0)
        old_sum = np.where(old_n > 0, flat[uniq, LAST] * old_n, 0.0)
        n_at = old_n + np.bincount(inv, weights=at.astype(np.float64))
        sum_at = old_sum + np.bincount(inv, weights=np.where(at, y, 0.0))
        flat[uniq, LAST_T] = new_t
        flat[uniq, LAST_N] = n_at
        with np.errstate(invalid="ignore", divide="ignore"):
            flat[uniq, LAST] = np.where(n_at > 0, sum_at / n_at, np.nan)

    def _steps_partials(self, slots: NDArray[np.intp], steps: NDArray[np.int64]) -> F64:
        """Partials of the given (slot, step) pairs; empty where the ring has none."""
        pos = steps % self.ring
        held = self._ring_step[slots, pos] == steps
        out = self._p[slots, pos].copy()
        if not held.all():
            out[~held] = empty_partials((len(self.config.sensors),))
        return out

    def _read_steps(self, slot: int, lo: int, hi: int) -> list[int]:
        """Steps in [lo, hi] that hold readings of this machine."""
        held = self._ring_step[slot]
        has = self._p[slot][:, :, N].sum(axis=1) > 0
        return sorted(int(s) for s in held[(held >= lo) & (held <= hi) & has])

    def _emitted_steps(self, slot: int, lo: int, hi: int) -> list[int]:
        """Steps in [lo, hi] to emit: those at most max_gap_steps after a reading.

        Deeper inside a long silence nothing is emitted (the sequence breaks), without
        walking through every empty step of it.
        """
        gap = self.config.max_gap_steps
        start = max(lo, int(self._seg_start[slot]))
        anchors = [int(self._last_read[slot]), *self._read_steps(slot, lo, hi)]
        steps: list[int] = []
        for i, r in enumerate(anchors):
            upper = min(hi, r + gap)
            if i + 1 < len(anchors):
                upper = min(upper, anchors[i + 1] - 1)
            lower = max(start, r if i else start)
            if lower <= upper:
                steps.extend(range(lower, upper + 1))
        return steps

    def _close(self, closes: list[tuple[int, int, int, int]], out: Update) -> None:
        """Finish closed steps: per machine in step order, across machines at once."""
        cfg, w = self.config, self.config.window_steps
        slot_l: list[int] = []
        step_l: list[int] = []
        trig_l: list[int] = []
        per_slot: dict[int, list[tuple[int, int, int]]] = {}
        for slot, lo, hi, trigger in closes:
            per_slot.setdefault(slot, []).append((lo, hi, trigger))
        for slot, ranges in per_slot.items():
            # One machine's ranges are contiguous; choose its steps over their union, so
            # that a reading in one range keeps the next range's first steps emitted.
            emitted = self._emitted_steps(slot, ranges[0][0], ranges[-1][1])
            bounds = [hi for _, hi, _ in ranges]
            for k in emitted:
                slot_l.append(slot)
                step_l.append(k)
                trig_l.append(ranges[bisect.bisect_left(bounds, k)][2])
        if not slot_l:
            return
        slots = np.array(slot_l, dtype=np.intp)
        steps = np.array(step_l, dtype=np.int64)
        triggers = np.array(trig_l, dtype=np.int64)
        order = np.lexsort((steps, slots))
        slots, steps, triggers = slots[order], steps[order], triggers[order]
        first = np.r_[0, np.flatnonzero(slots[1:] != slots[:-1]) + 1]
        rank = np.arange(len(slots)) - np.repeat(first, np.diff(np.r_[first, len(slots)]))
        step_s = cfg.step_ms / 1000.0
        for r in range(int(rank.max()) + 1):
            sel = rank == r
            a_slots, k, trig = slots[sel], steps[sel], triggers[sel]
            window = np.stack(
                [self._steps_partials(a_slots, k - (w - 1) + j) for j in range(w)], axis=1
            )
            carry = self._carry.take(a_slots)
            # After a silence longer than max_gap_steps the previous step was not emitted:
            # its mean was missing, as it is for a machine seen for the first time.
            broke = k - self._last_done[a_slots] > 1
            carry.prev_mean[broke] = np.nan
            merged = window_partials(window, step_s)
            vectors, carry = step_features(merged, window[:, -1], k * cfg.step_ms, carry, cfg)
            self._carry.put(a_slots, carry)
            self._last_done[a_slots] = k
            has = window[:, -1, :, N].sum(axis=1) > 0
            self._last_read[a_slots] = np.where(has, k, self._last_read[a_slots])
            for j, slot in enumerate(a_slots.tolist()):
                trigger = int(trig[j])
                out.steps.append(
                    ClosedStep(
                        self._ids[slot],
                        int(k[j]) * cfg.step_ms,
                        vectors[j],
                        trigger if trigger >= 0 else None,
                    )
                )

    def rewind_offset(self, equipment_ids: Sequence[str]) -> int | None:
        """The smallest source offset a replay must start from to rebuild these machines.

        That is the first offset among the readings of each machine's last
        :attr:`lookback` steps before its oldest open step, and its open steps; None if
        no offsets were recorded for them.
        """
        known = [self._slots[e] for e in equipment_ids if e in self._slots]
        if not known:
            return None
        slots = np.array(known, dtype=np.intp)
        floor = self._next_close[slots] - self.lookback
        live = self._ring_step[slots] >= floor[:, None]
        low = int(np.where(live, self._ring_off[slots], _NO_OFFSET).min())
        return None if low == _NO_OFFSET else low
