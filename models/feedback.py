"""Operator feedback on alerts, as labels for fine-tuning.

A feedback file (CSV or Parquet) has one row per reviewed alert: ``equipment_id``, ``ts``
(integer epoch ms: when the failure was confirmed or the alert was reviewed) and
``outcome``: ``confirmed`` labels the machine's windows whose last step starts within H
steps before ``ts`` positive; ``false-alarm`` and ``no-fault-found`` label the same
windows negative. Windows of other machines or times are not used.

>>> import pandas as pd
>>> index = pd.DataFrame({"equipment_id": ["m"] * 4, "step_start": [0, 10, 20, 30]})
>>> fb = pd.DataFrame({"equipment_id": ["m"], "ts": [20], "outcome": ["confirmed"]})
>>> y, used = feedback_labels(index, fb, horizon_ms=10)
>>> y.tolist(), used.tolist()
([0.0, 1.0, 1.0, 0.0], [False, True, True, False])
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from models.errors import FeedbackError

OUTCOMES = {"confirmed": 1.0, "false-alarm": 0.0, "no-fault-found": 0.0}


def load_feedback(path: str | Path) -> pd.DataFrame:
    """Read and check a feedback file.

    Raises:
        FeedbackError: missing/empty file, missing column, non-integer ts, unknown outcome.
    """
    path = Path(path)
    if not path.is_file():
        raise FeedbackError(f"{path}: no such feedback file")
    try:
        frame = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path)
    except pd.errors.EmptyDataError:
        raise FeedbackError(f"{path}: the feedback file is empty") from None
    except (ValueError, OSError) as exc:
        raise FeedbackError(f"{path}: cannot read the feedback file: {exc}") from exc
    if frame.empty:
        raise FeedbackError(f"{path}: the feedback file has no rows")
    for column in ("equipment_id", "ts", "outcome"):
        if column not in frame.columns:
            raise FeedbackError(
                f"{path}: the feedback file has no column {column!r} "
                f"(expected equipment_id, ts, outcome)"
            )
    if not pd.api.types.is_integer_dtype(frame["ts"]):
        raise FeedbackError(
            f"{path}: column 'ts' must hold integer epoch milliseconds, "
            f"got dtype {frame['ts'].dtype}"
        )
    bad = ~frame["outcome"].isin(list(OUTCOMES))
    if bad.any():
        raise FeedbackError(
            f"{path}: column 'outcome': value {frame['outcome'][bad].iloc[0]!r} is not valid: "
            f"expected one of {', '.join(OUTCOMES)}"
        )
    return frame.assign(equipment_id=frame["equipment_id"].astype(str))


def feedback_labels(
    index: pd.DataFrame, feedback: pd.DataFrame, horizon_ms: int
) -> tuple[NDArray[np.float32], NDArray[np.bool_]]:
    """Labels from feedback: ``(y, used)``; windows not covered by feedback are not used."""
    y = np.zeros(len(index), dtype=np.float32)
    used = np.zeros(len(index), dtype=bool)
    ids = index["equipment_id"].astype(str).to_numpy()
    starts = index["step_start"].to_numpy(dtype=np.int64)
    for eid, ts, outcome in zip(
        feedback["equipment_id"], feedback["ts"], feedback["outcome"], strict=True
    ):
        rows = (ids == eid) & (starts <= ts) & (starts >= ts - horizon_ms)
        y[rows] = OUTCOMES[outcome]
        used |= rows
    return y, used
