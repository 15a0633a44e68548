"""Window labels from maintenance events, and splits by machine.

A window is identified by its last step ``[step_start, step_end)``. It is **positive**
when the machine's next failure at or after ``step_start`` happens before
``step_end + horizon_ms``: for C-MAPSS (one step per cycle, the failure at the last cycle)
that is "the engine fails within H cycles", counting the failure cycle itself as 0.

Windows are **excluded** (``keep`` False) when the machine is down: after a failure and
before the next repair (or after a failure never repaired). With ``censor`` (default)
windows of a machine with no later failure whose horizon reaches past the machine's last
step are excluded too, because their label is unknown. A machine without any failure is
documented behaviour, not an error: its windows are negative (except the censored tail).

>>> import pandas as pd
>>> index = pd.DataFrame({"equipment_id": ["m"] * 6, "step_start": [0, 1, 2, 3, 4, 5],
...                       "step_end": [1, 2, 3, 4, 5, 6]})
>>> events = pd.DataFrame({"equipment_id": ["m", "m"], "ts": [3, 5], "kind": ["failure", "repair"]})
>>> y, keep = window_labels(index, events, horizon_ms=1, censor=False)
>>> y.tolist(), keep.tolist()
([0.0, 0.0, 1.0, 1.0, 0.0, 0.0], [True, True, True, True, False, True])
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from models.errors import DataError


def window_labels(
    index: pd.DataFrame, events: pd.DataFrame, horizon_ms: int, censor: bool = True
) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
    """Label windows by whether a failure follows within the horizon.

    Args:
        index: one row per window: ``equipment_id``, ``step_start``, ``step_end`` (ms).
        events: ``equipment_id``, ``ts`` (ms), ``kind`` (``failure`` or ``repair``).
        horizon_ms: H as event time, ms (H steps = ``H * step_ms``).
        censor: exclude windows whose label is unknown because the history ends first.

    Returns:
        ``(y, keep)``: y is 1.0 for positive windows and 0.0 otherwise; keep is False for
        windows to leave out of training and evaluation.
    """
    if horizon_ms < 0:
        raise DataError(f"horizon must be >= 0. Received: horizon_ms={horizon_ms}")
    n = len(index)
    y = np.zeros(n, dtype=np.float32)
    keep = np.ones(n, dtype=bool)
    kinds = events["kind"].astype(str).to_numpy() if len(events) else np.array([], dtype=str)
    ev_ids = events["equipment_id"].astype(str).to_numpy() if len(events) else kinds
    ev_ts = events["ts"].to_numpy(dtype=np.int64) if len(events) else np.array([], np.int64)
    starts = index["step_start"].to_numpy(dtype=np.int64)
    ends = index["step_end"].to_numpy(dtype=np.int64)
    groups = index["equipment_id"].astype(str).groupby(index["equipment_id"].astype(str)).indices
    for eid, rows in groups.items():
        mine = ev_ids == eid
        fails = np.sort(ev_ts[mine & (kinds == "failure")])
        repairs = np.sort(ev_ts[mine & (kinds == "repair")])
        s, e = starts[rows], ends[rows]
        j = np.searchsorted(fails, s, side="left")
        has_next = j < len(fails)
        next_fail = fails[np.minimum(j, max(len(fails) - 1, 0))] if len(fails) else s
        y[rows] = (has_next & (next_fail < e + horizon_ms)).astype(np.float32)
        prev = j - 1
        prev_fail = fails[np.maximum(prev, 0)] if len(fails) else s
        k = np.searchsorted(repairs, s, side="right") - 1
        last_repair = repairs[np.maximum(k, 0)] if len(repairs) else s
        repaired = (k >= 0) & (last_repair >= prev_fail) if len(repairs) else np.zeros_like(s, bool)
        down = (prev >= 0) & ~repaired
        drop = down
        if censor:
            drop = drop | (~has_next & (e + horizon_ms > e.max()))
        keep[rows] = ~drop
    return y, keep


def split_machines(
    machines: list[str] | NDArray[np.str_], validation_fraction: float, seed: int
) -> tuple[list[str], list[str]]:
    """Split machine ids into (train, validation), seeded; never a row-level split.

    >>> split_machines(["a", "b", "c", "d"], 0.25, seed=0)
    (['a', 'b', 'd'], ['c'])
    """
    if not 0.0 < validation_fraction < 1.0:
        raise DataError(f"validation fraction must be in (0, 1). Received: {validation_fraction!r}")
    unique = sorted({str(m) for m in machines})
    if len(unique) < 2:
        raise DataError(f"need at least 2 machines to split, got {len(unique)}")
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(unique))
    n_val = min(max(1, round(validation_fraction * len(unique))), len(unique) - 1)
    val = sorted(unique[i] for i in order[:n_val])
    train = sorted(unique[i] for i in order[n_val:])
    return train, val
