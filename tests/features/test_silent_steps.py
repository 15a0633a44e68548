"""``silent_steps``: a step is silent exactly when its window held no reading of any sensor.

Checked against the readings themselves, on random sparse streams (gaps shorter and longer
than the fill horizon, one sensor missing while the other reports), for tumbling and
hopping windows and with ``mean`` or ``count`` as the first aggregate.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from features.config import WindowConfig
from features.core import silent_steps
from features.streaming import StreamingWindows
from tests.features.test_edge_cases import R

STEP_MS = 1000


@st.composite
def streams(draw: st.DrawFn) -> tuple[WindowConfig, list[R]]:
    config = WindowConfig(
        sensors=("a", "b"),
        step_ms=STEP_MS,
        grace_ms=0,
        window_steps=draw(st.sampled_from([1, 3])),
        aggregates=draw(st.sampled_from([("mean", "count"), ("count", "mean")])),
        max_fill_steps=draw(st.integers(0, 3)),
    )
    records = []
    for step in range(draw(st.integers(2, 40))):
        who = "both" if step == 0 else draw(st.sampled_from(["none", "a", "b", "both"]))
        if who != "none":
            readings = {s: float(step) for s in ("a", "b") if who in (s, "both")}
            records.append(R("m", step * STEP_MS + draw(st.integers(0, STEP_MS - 1)), readings))
    records.append(R("m", 41 * STEP_MS, {"a": 0.0}))  # closes every step before it
    return config, records


@settings(max_examples=200, deadline=None)
@given(streams())
def test_a_step_is_silent_when_its_window_had_no_reading(
    case: tuple[WindowConfig, list[R]],
) -> None:
    config, records = case
    steps = StreamingWindows(config).update(records).steps
    assert steps
    vectors = np.stack([s.vector for s in steps])
    reading_steps = {r.ts_ms // STEP_MS for r in records}
    expected = [
        not any(s.step_start // STEP_MS - k in reading_steps for k in range(config.window_steps))
        for s in steps
    ]
    assert silent_steps(vectors, config).tolist() == expected
