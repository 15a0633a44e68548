"""Training and serving compute the same features: offline == streaming, property-tested."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from features.config import AGGREGATES, DERIVED, WindowConfig
from features.offline import step_features_frame
from features.streaming import StreamingWindows

# The stated tolerance: |streaming - offline| <= 1e-6 * |offline| + 1e-6 * (1 + max |reading|).
# The absolute part scales with the data: a slope whose true value is 0 comes out as
# +-1e-9 from either path when readings of size 7 lie 1 ms apart (summation order differs).
RTOL, ATOL = 1e-6, 1e-6


@dataclass(frozen=True)
class Rec:
    equipment_id: str
    ts_ms: int
    readings: dict[str, float]


@st.composite
def scenario(draw: st.DrawFn) -> tuple[WindowConfig, list[Rec], list[int]]:
    sensors = tuple(
        draw(st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=1, max_size=3, unique=True))
    )
    step = draw(st.sampled_from([1000, 5000, 60_000]))
    grace = draw(st.integers(0, 3)) * step // 2
    config = WindowConfig(
        sensors=sensors,
        step_ms=step,
        window_steps=draw(st.integers(1, 3)),
        aggregates=tuple(
            draw(st.permutations(AGGREGATES))[: draw(st.integers(1, len(AGGREGATES)))]
        ),
        derived=tuple(draw(st.sampled_from([(), DERIVED, ("delta",), ("since_last",)]))),
        grace_ms=grace,
        max_fill_steps=draw(st.integers(0, 3)),
        max_gap_steps=20,
        stuck_min_count=draw(st.integers(2, 4)),
        ranges={sensors[0]: (-5.0, 5.0)},
    )
    records: list[Rec] = []
    for m in range(draw(st.integers(1, 4))):
        ts = draw(st.integers(0, 10 * step)) + 1_700_000_000_000 // step * step
        for _ in range(draw(st.integers(1, 40))):
            kind = draw(st.sampled_from(["same", "small", "small", "small", "gap", "jump"]))
            if kind == "small":
                ts += draw(st.integers(1, 2 * step))
            elif kind == "gap":
                ts += draw(st.integers(3, 8)) * step + draw(st.integers(0, step - 1))
            elif kind == "jump":
                ts += draw(st.integers(30, 60)) * step  # beyond max_gap_steps + grace
            present = draw(
                st.lists(st.sampled_from([*sensors, "other"]), min_size=1, max_size=4, unique=True)
            )
            value = draw(st.sampled_from([0.0, 1.0, 2.5, -3.0, 7.0, 1e3, 1e3 + 1e-3, 123456.789]))
            readings = {
                s: value + i * draw(st.sampled_from([0.0, 0.5])) for i, s in enumerate(present)
            }
            if draw(st.booleans()) and present[0] in sensors:
                readings[present[0]] = float("nan")  # a NaN that slipped through: ignored
            records.append(Rec(f"m{m}", ts, readings))
    # Arrival order: out of order, but never more than the grace behind a machine's newest.
    jitter = [draw(st.integers(0, grace)) for _ in records]
    arrival = sorted(range(len(records)), key=lambda i: (records[i].ts_ms + jitter[i], i))
    batches = draw(st.lists(st.integers(1, 25), min_size=1, max_size=20))
    return config, [records[i] for i in arrival], batches


def _frame(records: list[Rec], sensors: tuple[str, ...]) -> pd.DataFrame:
    rows = [{"equipment_id": r.equipment_id, "ts": r.ts_ms, **r.readings} for r in records]
    df = pd.DataFrame(rows)
    df["ts"] = df["ts"].astype("int64")
    return df


def _stream(
    config: WindowConfig, records: list[Rec], batches: list[int]
) -> dict[tuple[str, int], np.ndarray]:
    windows = StreamingWindows(config, capacity=1)
    out: dict[tuple[str, int], np.ndarray] = {}
    i = b = 0
    while i < len(records):
        size = batches[b % len(batches)]
        update = windows.update(records[i : i + size])
        assert update.late == [], "no reading inside the grace may be late"
        for step in update.steps:
            key = (step.equipment_id, step.step_start)
            assert key not in out, f"step emitted twice: {key}"
            out[key] = step.vector
        i, b = i + size, b + 1
    return out


@settings(max_examples=500, deadline=None)
@given(scenario())
def test_streaming_equals_offline(case: tuple[WindowConfig, list[Rec], list[int]]) -> None:
    config, records, batches = case
    X, index = step_features_frame(_frame(records, config.sensors), config)
    offline = {
        (eid, int(start)): X[i]
        for i, (eid, start) in enumerate(
            zip(index["equipment_id"], index["step_start"], strict=True)
        )
    }
    streaming = _stream(config, records, batches)
    assert streaming.keys() == offline.keys()
    scale = 1 + max(
        (abs(v) for r in records for v in r.readings.values() if np.isfinite(v)), default=0
    )
    for key, vector in offline.items():
        np.testing.assert_allclose(
            streaming[key], vector, rtol=RTOL, atol=ATOL * scale, equal_nan=True, err_msg=str(key)
        )
