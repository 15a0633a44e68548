"""The scorer's batches, without Kafka: records in -> windows queued -> predictions out.

:class:`Batcher` decodes one poll's records (refusals become dead letters: what does not
decode, another config, an ``equipment_id`` or a time that the predictions could not carry
downstream, a step that is not one of the feature rules' steps, values beyond float32 once
normalized), normalizes them with the served
model's spec, pushes them into the machines' windows and queues each
advanced window that has at least ``min_steps`` real steps and whose step had a reading
(:func:`features.core.silent_steps`: a machine that is down or whose messages were lost
gets no prediction for that step); records below a partition's replay mark only rebuild
windows. :func:`score` turns a batch's windows into predictions
(model calls of pinned sizes, top sensors for the windows near or above the threshold).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
from numpy.typing import NDArray

from features.config import WindowConfig
from features.core import silent_steps
from features.spec import normalize
from models.backend import aligned_empty
from models.buffers import MachineBuffers, window_mask
from models.featuredecode import decode_fast
from models.servable import Servable
from pipeline.deadletter import DeadLetter, letter_of
from pipeline.names import MAX_TS_MS
from pipeline.predictions import Prediction, check_equipment_id
from pipeline.rewind import settle_replay

REWIND_REFRESH_S = 2.0
"""How long :meth:`Batcher.rewind_offset` reuses a partition's rewind offset."""


@dataclass
class Batch:
    """Records polled since the last commit: queued windows, dead letters, next offsets.

    ``windows`` rows are ``(equipment_id, window_end, age, steps)``, ``sources`` the
    ``(partition, message)`` of the feature record that closed each (a prediction Kafka
    cannot take dead-letters it); their (L, F) features are the first rows of ``x``, in
    the same order: a window is copied once, when its step
    arrives, into a 64-byte-aligned buffer that the model takes without another copy
    (:func:`models.backend.host_input`). The :class:`Batcher` grows and recycles buffers.
    """

    windows: list[tuple[str, int, int, int]] = field(default_factory=list)
    sources: list[tuple[Any, Any]] = field(default_factory=list)
    x: NDArray[np.float32] | None = None
    dead: list[DeadLetter] = field(default_factory=list)
    offsets: dict[Any, int] = field(default_factory=dict)
    reasons: Counter[str] = field(default_factory=Counter)
    records: int = 0
    warming: int = 0
    silent: int = 0
    duplicates: int = 0
    since: float | None = None
    model_seconds: float = 0.0


@dataclass
class Batcher:
    """Feeds polled records into the windows and a batch.

    Attributes:
        buffers: the machines' windows.
        fingerprint: the feature rules' fingerprint records must carry.
        window: those feature rules (to tell silent steps; None: every step is scored).
        machines_of: the machines seen per partition (for rewinds).
        replay_until: per replaying partition, its committed offset.
        rewinds: per (partition, segment), when its rewind offset was last computed, and it.
    """

    buffers: MachineBuffers
    fingerprint: str
    window: WindowConfig | None = None
    machines_of: dict[Any, set[str]] = field(default_factory=dict)
    replay_until: dict[Any, int] = field(default_factory=dict)
    rewinds: dict[tuple[Any, bool], tuple[float, int]] = field(default_factory=dict)
    spare: list[NDArray[np.float32]] = field(default_factory=list)

    def recycle(self, batch: Batch) -> None:
        """Keep a scored batch's buffer for a later batch.

        Allocating ~30 MB per batch of 1,024 plant windows and faulting its pages in costs
        more than the copy itself.
        """
        if batch.x is not None and len(self.spare) < 2:
            self.spare.append(batch.x)
        batch.x = None

    def _rows(self, batch: Batch, n: int) -> NDArray[np.float32]:
        """Room for ``n`` more windows at the end of the batch's buffer (grown as needed)."""
        used = len(batch.windows)
        x = batch.x
        if x is None or len(x) < used + n:
            shape = (self.buffers.length, self.buffers.n_features)
            rows = max(used + n, 1024, 2 * (0 if x is None else len(x)))
            fit = next(
                (
                    i
                    for i, b in enumerate(self.spare)
                    if len(b) >= used + n and b.shape[1:] == shape
                ),
                None,
            )
            grown = aligned_empty((rows, *shape)) if fit is None else self.spare.pop(fit)
            if x is not None:
                grown[:used] = x[:used]
            batch.x = x = grown
        return x[used : used + n]

    def rewind_offset(self, tp: Any, segment: bool, now: float) -> int | None:
        """Where a replay of ``tp`` must start to rebuild its windows (None: no machine yet).

        Scanning every machine of a partition costs O(machines), so the result is reused for
        :data:`REWIND_REFRESH_S` seconds. A reused offset is never too late: each machine's
        kept offsets only grow, a machine first seen later has larger offsets than every
        record read before, and :meth:`forget_partition` drops the cached value with the
        machines. It is only earlier than needed, which costs a slightly longer replay.

        >>> import numpy as np
        >>> b = Batcher(MachineBuffers(2, 1, 10), "c")
        >>> b.buffers.push("m", 0, np.zeros(1), offset=7), b.machines_of.setdefault("p", {"m"})
        ('ok', {'m'})
        >>> b.rewind_offset("p", False, now=0.0), b.buffers.push("m", 10, np.zeros(1), offset=8)
        (7, 'ok')
        >>> b.rewind_offset("p", False, now=1.0), b.rewind_offset("p", False, now=99.0)
        (7, 8)
        """
        cached = self.rewinds.get((tp, segment))
        if cached is not None and now - cached[0] < REWIND_REFRESH_S:
            return cached[1]
        found = self.buffers.rewind_offset(self.machines_of.get(tp, ()), segment=segment)
        if found is not None:  # none yet: the next machine's offset is not known
            self.rewinds[(tp, segment)] = (now, found)
        return found

    def forget_partition(self, tp: Any) -> None:
        """Drop a partition's machines, replay mark and cached rewind (before a seek back)."""
        self.buffers.forget(self.machines_of.pop(tp, set()))
        self.replay_until.pop(tp, None)
        self.rewinds.pop((tp, False), None)
        self.rewinds.pop((tp, True), None)

    def _refusal(self, raw: bytes | None) -> tuple[Any, str, str]:
        record, reason = decode_fast(raw)
        if record is None:
            return None, "not_a_feature_record", str(reason)
        # What the predictions carry on (InfluxDB tags and times): the contract's rules.
        bad_id = check_equipment_id(record.equipment_id)
        if bad_id is not None:
            return None, "not_a_feature_record", bad_id
        if not 0 <= record.step_start < record.step_end <= MAX_TS_MS:
            return None, "not_a_feature_record", (
                f"fields 'step_start'/'step_end': {record.step_start}/{record.step_end}: "
                f"expected ms in 0..{MAX_TS_MS}, start < end"
            )  # fmt: skip
        step_ms = self.buffers.step_ms
        if record.step_start % step_ms or record.step_end - record.step_start != step_ms:
            # Not a step of the rules: its window_end would not be the step's own (two
            # records of other steps could end at the same time: two predictions of one key).
            return None, "not_a_feature_record", (
                f"fields 'step_start'/'step_end': {record.step_start}/{record.step_end}: "
                f"expected one step of the feature rules: a multiple of {step_ms} ms, and "
                f"{step_ms} ms later"
            )  # fmt: skip
        if record.config != self.fingerprint:
            return None, "config_mismatch", (
                f"field 'config': value {record.config!r} is not the scorer's feature rules: "
                f"expected {self.fingerprint}"
            )  # fmt: skip
        if len(record.values) != self.buffers.n_features:
            return None, "config_mismatch", (
                f"field 'values': {len(record.values)} values: expected {self.buffers.n_features}"
            )  # fmt: skip
        return record, "", ""

    def add(self, polled: dict[Any, list[Any]], batch: Batch, model: Servable) -> None:
        """Decode, window and queue one poll's records."""
        min_steps = model.artifact.meta.min_steps
        for tp, messages in polled.items():
            until = self.replay_until.get(tp)
            good: list[tuple[Any, Any]] = []
            for message in messages:
                replaying = until is not None and message.offset < until
                batch.offsets[tp] = message.offset + 1
                batch.records += 0 if replaying else 1
                record, code, detail = self._refusal(message.value)
                if record is not None:
                    good.append((message, record))
                elif not replaying:
                    refuse(batch, tp, message, code, detail)
            if good:
                X = np.stack([r.values for _, r in good])
                with np.errstate(over="ignore"):  # told apart just below
                    Z = normalize(model.artifact.spec, X).astype(np.float32)
                beyond = np.isinf(Z).any(axis=1)
                if beyond.any():  # the same records on a replay: the windows are the same
                    for i in np.flatnonzero(beyond).tolist():
                        message = good[i][0]
                        if until is None or message.offset >= until:
                            refuse(batch, tp, message, "value_out_of_range", _BEYOND)
                    keep = ~beyond
                    good = [good[i] for i in np.flatnonzero(keep).tolist()]
                    X, Z = X[keep], Z[keep]
                if good:
                    silent = None if self.window is None else silent_steps(X, self.window)
                    self._push(tp, good, Z, silent, until, batch, min_steps)
            settle_replay(tp, batch.offsets, self.replay_until)

    def _push(
        self,
        tp: Any,
        good: list[tuple[Any, Any]],
        Z: Any,
        silent: NDArray[np.bool_] | None,
        until: int | None,
        batch: Batch,
        min_steps: int,
    ) -> None:
        machines = self.machines_of.setdefault(tp, set())
        buffers = self.buffers
        x = self._rows(batch, len(good))
        queued = 0
        for i, ((message, record), z) in enumerate(zip(good, Z, strict=True)):
            eid = record.equipment_id
            verdict = buffers.push(eid, record.step_start, z, message.offset)
            machines.add(eid)
            if until is not None and message.offset < until:
                continue
            if verdict == "duplicate":
                batch.duplicates += 1
                continue
            if buffers.history(eid)[0] < min_steps:
                batch.warming += 1
                continue
            if silent is not None and silent[i]:
                batch.silent += 1
                continue
            steps, age = buffers.copy_window(eid, x[queued])
            queued += 1
            batch.windows.append((eid, record.step_end, age, steps))
            batch.sources.append((tp, message))


_BEYOND = (
    "field 'values': a value lies beyond float32 (about 3.4e38 in magnitude) once normalized "
    "by the served model's spec: expected values the model can take"
)


def refuse(batch: Batch, tp: Any, message: Any, code: str, detail: str) -> None:
    """Add the dead letter of a feature record (stage ``score``) to the batch."""
    batch.dead.append(letter_of(tp, message, code, detail, "score"))
    batch.reasons[code] += 1


def score(batch: Batch, m: Servable, step_ms: int, attribution_fraction: float) -> list[Prediction]:
    """Predictions of the batch's windows, in queue order."""
    if not batch.windows:
        return []
    spent = m.call_seconds
    mask = window_mask(np.array([w[3] for w in batch.windows]), m.length)
    ages = np.array([w[2] for w in batch.windows])
    rows = cast(NDArray[np.float32], batch.x)  # set with the first window
    x = m.inputs(rows[: len(batch.windows)], mask, ages)
    logits = m.logits(x, mask)
    proba = m.probability(logits)
    meta = m.artifact.meta
    hot = np.flatnonzero(proba >= attribution_fraction * meta.threshold)
    tops: dict[int, tuple[tuple[str, float], ...]] = {}
    if len(hot):
        tops = dict(zip(hot.tolist(), m.attribute(x[hot], mask[hot], logits[hot]), strict=True))
    batch.model_seconds = m.call_seconds - spent
    horizon_ms = meta.horizon_steps * step_ms
    return [
        Prediction(
            eid,
            end,
            float(proba[i]),
            meta.threshold,
            m.version,
            meta.horizon_steps,
            horizon_ms,
            steps,
            tops.get(i, ()),
        )
        for i, (eid, end, _, steps) in enumerate(batch.windows)
    ]
