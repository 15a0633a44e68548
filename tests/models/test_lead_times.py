"""Lead times: each failure's first alert since the machine's previous failure."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from models.evaluation import lead_times


def _by_definition(
    index: pd.DataFrame, p: np.ndarray, threshold: float, failures: dict[str, list[int]]
) -> tuple[list[float], int]:
    """The docstring's rule, one window at a time."""
    leads, missed = [], 0
    rows = list(zip(index["equipment_id"], index["step_start"], p, strict=True))
    for eid, times in failures.items():
        previous = None
        for ts in sorted(times):
            mine = [
                (s, q)
                for e, s, q in rows
                if e == eid and s <= ts and (previous is None or s > previous)
            ]
            previous = ts
            if not mine:
                continue
            hits = [s for s, q in mine if q >= threshold]
            if hits:
                leads.append(float(ts - min(hits)))
            else:
                missed += 1
    return leads, missed


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 40), st.floats(0, 1)), max_size=60),
    st.dictionaries(st.sampled_from("abcd"), st.lists(st.integers(0, 45), min_size=1, max_size=3)),
)
def test_lead_times_follow_the_definition(
    windows: list[tuple[str, int, float]], failures: dict[str, list[int]]
) -> None:
    index = pd.DataFrame(
        {"equipment_id": [w[0] for w in windows], "step_start": [w[1] for w in windows]},
        columns=["equipment_id", "step_start"],
    )
    p = np.array([w[2] for w in windows], dtype=np.float64)
    got = lead_times(index, p, 0.5, failures, 1)
    leads, missed = _by_definition(index, p, 0.5, failures)
    assert got["detected"] == len(leads)
    assert got["missed"] == missed
    if leads:
        assert got["lead_median"] == float(np.median(leads))
        assert got["lead_min"] == min(leads)
    else:
        assert np.isnan(got["lead_median"])
