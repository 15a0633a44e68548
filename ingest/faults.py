"""Injected faults of the plant simulator: data-quality issues, delivery issues, bad messages.

Data-quality faults (stuck sensor, dropout, spike) keep messages *valid*: they are what a
real sensor does and the model must live with. Delivery faults (out-of-order, duplicate)
re-order or repeat valid messages. Malformed messages break the telemetry contract, each
in a way whose :class:`~ingest.contract.Rejection` reason is known in advance.

>>> from ingest.contract import validate
>>> doc = {"v": 1, "equipment_id": "pump-1", "ts": 1700000000000, "readings": {"t": 1.0}}
>>> raw, reason = malformed(doc, 20)
>>> reason, validate(raw, now_ms=1700000000000)[1].reason
('invalid_reading', 'invalid_reading')
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from ingest.contract import DEFAULT_LIMITS

_DAY_MS = 86_400_000
_NAN = "__plantwatch_nan__"
_INF = "__plantwatch_inf__"
#: Episode lengths (steps) of a stuck sensor and of a missing sensor: uniform in [lo, hi].
STUCK_STEPS = (5, 60)
MISSING_STEPS = (3, 20)


@dataclass(frozen=True, slots=True)
class FaultRates:
    """How often each fault is injected, as a fraction (0..1) of the samples or messages.

    Attributes:
        stuck: samples in which one sensor repeats a frozen value (runs of 5-60 steps).
        dropout: samples lost whole (half of it) or missing one sensor (runs of 3-20 steps).
        spike: samples with one extreme but finite reading.
        out_of_order: valid messages delivered after 1..max_delay later messages of their machine.
        duplicate: valid messages delivered a second time, byte for byte.
        malformed: samples sent as a message that breaks the telemetry contract.
    """

    stuck: float = 0.0
    dropout: float = 0.0
    spike: float = 0.0
    out_of_order: float = 0.0
    duplicate: float = 0.0
    malformed: float = 0.0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"{f.name} must be a number, got {value!r}")
            if not (math.isfinite(value) and 0.0 <= value <= 1.0):
                raise ValueError(f"{f.name} must be between 0 and 1, got {value!r}")

    @property
    def any(self) -> bool:
        """Whether any fault is switched on."""
        return any(getattr(self, f.name) > 0 for f in fields(self))


def _dumps(doc: dict[str, Any], **changes: Any) -> bytes:
    out = dict(doc)
    out.update(changes)
    raw = orjson.dumps(out)
    return raw.replace(f'"{_NAN}"'.encode(), b"NaN").replace(f'"{_INF}"'.encode(), b"Infinity")


def _without(doc: dict[str, Any], key: str) -> bytes:
    return orjson.dumps({k: v for k, v in doc.items() if k != key})


def _reading(doc: dict[str, Any], value: Any) -> bytes:
    readings = dict(doc["readings"])
    readings[next(iter(readings))] = value
    return _dumps(doc, readings=readings)


def _wall(ts: int) -> str:
    return datetime.fromtimestamp(ts / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _batch(doc: dict[str, Any]) -> bytes:
    head = {k: v for k, v in doc.items() if k not in ("ts", "readings", "seq")}
    return _dumps(head, samples=[])


_Build = Callable[[dict[str, Any]], bytes]

#: (reason that validate gives, how to break a valid single-sample document).
VARIANTS: tuple[tuple[str, _Build], ...] = (
    ("not_json", lambda d: orjson.dumps(d)[: len(orjson.dumps(d)) // 2]),
    (
        "not_json",
        lambda d: f"{d['equipment_id']},{d['ts']},{list(d['readings'].values())}".encode(),
    ),
    ("not_object", lambda d: b"[" + orjson.dumps(d) + b"]"),
    ("not_object", lambda d: str(d["ts"]).encode()),
    ("unsupported_version", lambda d: _dumps(d, v=2)),
    ("unknown_field", lambda d: _dumps(d, unit="SI")),
    ("missing_field", lambda d: _without(d, "equipment_id")),
    ("missing_field", lambda d: _without(d, "ts")),
    ("missing_field", lambda d: _without(d, "readings")),
    ("invalid_equipment_id", lambda d: _dumps(d, equipment_id=d["equipment_id"] + "-" + "x" * 130)),
    ("invalid_equipment_id", lambda d: _dumps(d, equipment_id=d["equipment_id"] + "\x07")),
    ("invalid_equipment_id", lambda d: _dumps(d, equipment_id=17)),
    ("invalid_ts", lambda d: _dumps(d, ts=d["ts"] / 1000)),
    ("invalid_ts", lambda d: _dumps(d, ts=_wall(d["ts"]))),
    ("ts_out_of_range", lambda d: _dumps(d, ts=d["ts"] * 1000)),
    ("ts_out_of_range", lambda d: _dumps(d, ts=d["ts"] // 1000)),
    ("ts_out_of_range", lambda d: _dumps(d, ts=d["ts"] - 400 * _DAY_MS)),
    ("invalid_readings", lambda d: _dumps(d, readings=list(d["readings"].values()))),
    ("invalid_readings", lambda d: _dumps(d, readings={"bearing temp": 1.0, **d["readings"]})),
    ("invalid_reading", lambda d: _reading(d, "n/a")),
    ("invalid_reading", lambda d: _reading(d, None)),
    ("invalid_reading", lambda d: _reading(d, _NAN)),
    ("invalid_reading", lambda d: _reading(d, _INF)),
    ("invalid_reading", lambda d: _reading(d, True)),
    ("no_readings", lambda d: _dumps(d, readings={})),
    ("invalid_field", lambda d: _dumps(d, site="")),
    ("invalid_field", lambda d: _dumps(d, seq=-1)),
    ("invalid_batch", _batch),
)
#: One malformed message in this many is ``too_large`` (a megabyte each, so kept rare).
TOO_LARGE_EVERY = 64


def malformed(doc: dict[str, Any], n: int) -> tuple[bytes, str]:
    """The ``n``-th malformed message made from a valid single-sample document.

    Cycles through :data:`VARIANTS`; every :data:`TOO_LARGE_EVERY`-th one is instead the
    valid message padded past the contract's size limit.

    Returns:
        The message bytes and the reason code that ``validate`` gives for them.
    """
    k = n % TOO_LARGE_EVERY
    if k == TOO_LARGE_EVERY - 1:
        raw = orjson.dumps(doc)
        return raw + b" " * (DEFAULT_LIMITS.max_bytes + 1 - len(raw)), "too_large"
    reason, build = VARIANTS[k % len(VARIANTS)]
    return build(doc), reason


@dataclass(frozen=True, slots=True)
class Faults:
    """The faults of one step, per machine (M machines, S sensor columns).

    Attributes:
        values: (M, S) readings with stuck sensors and spikes applied.
        skip: (M,) the sample is lost.
        missing: (M, S) sensors absent from the sample.
        malformed: (M,) the sample is sent as a malformed message.
        delay: (M,) 0, or the number of later messages an out-of-order message waits for.
        again: (M,) -1, or after how many steps a valid message is delivered again.
    """

    values: npt.NDArray[np.float64]
    skip: npt.NDArray[np.bool_]
    missing: npt.NDArray[np.bool_]
    malformed: npt.NDArray[np.bool_]
    delay: npt.NDArray[np.int64]
    again: npt.NDArray[np.int64]


def _pick(u: npt.NDArray[np.float64], lo: int, hi: int) -> npt.NDArray[np.int64]:
    """Integers uniform in [lo, hi] from uniforms in [0, 1)."""
    out: npt.NDArray[np.int64] = (lo + np.floor(u * (hi - lo + 1))).astype(np.int64)
    return out


class Injector:
    """Draws the faults of each step from its own random stream.

    Args:
        rates: the fault fractions.
        columns: per machine, the sensor columns of its asset type.
        scale: (M, S) a typical magnitude per machine and sensor (spikes are 5-20 of it).
        max_delay: most later messages an out-of-order message waits for.
        rng: the random stream of the faults.
    """

    def __init__(
        self,
        rates: FaultRates,
        columns: list[npt.NDArray[np.intp]],
        scale: npt.NDArray[np.float64],
        max_delay: int,
        rng: np.random.Generator,
    ) -> None:
        m, s = scale.shape
        self._rates = rates
        self._rng = rng
        self._max_delay = max_delay
        self._scale = scale
        self._rows = np.arange(m)
        self._n = np.array([len(c) for c in columns])
        self._cols = np.zeros((m, max(self._n)), dtype=np.intp)
        for i, cols in enumerate(columns):
            self._cols[i, : len(cols)] = cols
        self._stuck_left = np.zeros((m, s), dtype=np.int64)
        self._stuck_value = np.zeros((m, s))
        self._missing_left = np.zeros((m, s), dtype=np.int64)

    def _column(self, u: npt.NDArray[np.float64]) -> npt.NDArray[np.intp]:
        """One of each machine's own sensor columns, chosen by uniforms ``u``."""
        picked: npt.NDArray[np.intp] = self._cols[self._rows, (u * self._n).astype(np.intp)]
        return picked

    def _start(
        self,
        left: npt.NDArray[np.int64],
        start: npt.NDArray[np.bool_],
        u: npt.NDArray[np.float64],
        steps: tuple[int, int],
    ) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
        """Start episodes of ``steps`` on one random sensor of the ``start`` machines."""
        rows = np.flatnonzero(start)
        cols = self._column(u[:, 0])[rows]
        left[rows, cols] = _pick(u[rows, 1], *steps)
        return rows, cols

    def step(self, values: npt.NDArray[np.float64], running: npt.NDArray[np.bool_]) -> Faults:
        """The faults of one step for readings ``values`` of the ``running`` machines."""
        r, m = self._rates, running.size
        u = self._rng.random((m, 16))
        values = values.copy()
        start = running & (u[:, 0] < r.stuck / np.mean(STUCK_STEPS))
        rows, cols = self._start(self._stuck_left, start, u[:, 1:3], STUCK_STEPS)
        self._stuck_value[rows, cols] = values[rows, cols]
        held = self._stuck_left > 0
        values[held] = self._stuck_value[held]
        self._stuck_left[held] -= 1
        start = running & (u[:, 3] < r.dropout / 2 / np.mean(MISSING_STEPS))
        self._start(self._missing_left, start, u[:, 4:6], MISSING_STEPS)
        missing = self._missing_left > 0
        self._missing_left[missing] -= 1
        spike = np.flatnonzero(running & (u[:, 6] < r.spike))
        if spike.size:
            cols = self._column(u[:, 7])[spike]
            sign = np.where(u[spike, 8] < 0.8, 1.0, -1.0)
            size = (5.0 + 15.0 * u[spike, 9]) * self._scale[spike, cols]
            values[spike, cols] = np.round(values[spike, cols] + sign * size, 3)
        return Faults(
            values=values,
            skip=running & (u[:, 14] < r.dropout / 2),
            missing=missing,
            malformed=running & (u[:, 15] < r.malformed),
            delay=np.where(u[:, 10] < r.out_of_order, _pick(u[:, 11], 1, self._max_delay), 0),
            again=np.where(u[:, 12] < r.duplicate, _pick(u[:, 13], 0, self._max_delay), -1),
        )
