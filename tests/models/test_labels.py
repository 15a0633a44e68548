from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.errors import DataError
from models.labels import split_machines, window_labels


def _index(machine: str, n: int, step: int = 10) -> pd.DataFrame:
    starts = np.arange(n) * step
    return pd.DataFrame({"equipment_id": machine, "step_start": starts, "step_end": starts + step})


def _events(*rows: tuple[str, int, str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["equipment_id", "ts", "kind"])


def test_run_to_failure_positive_within_horizon() -> None:
    # C-MAPSS-like: 10 cycles, failure at the last one (ts 90); H = 3 steps.
    y, keep = window_labels(_index("e", 10), _events(("e", 90, "failure")), horizon_ms=30)
    # remaining cycles 9..0: positive when remaining <= 3
    assert y.tolist() == [0, 0, 0, 0, 0, 0, 1, 1, 1, 1]
    assert keep.all()


def test_windows_after_failure_before_repair_are_excluded() -> None:
    index = _index("m", 12)
    events = _events(("m", 50, "failure"), ("m", 80, "repair"))
    y, keep = window_labels(index, events, horizon_ms=20, censor=False)
    assert keep.tolist() == [True] * 6 + [False, False] + [True] * 4
    assert y[keep].tolist() == [0, 0, 0, 1, 1, 1, 0, 0, 0, 0]


def test_failure_never_repaired_excludes_the_rest() -> None:
    y, keep = window_labels(_index("m", 6), _events(("m", 20, "failure")), horizon_ms=10)
    assert keep.tolist() == [True, True, True, False, False, False]
    assert y[:3].tolist() == [0, 1, 1]


def test_machine_without_failure_is_negative_and_its_tail_censored() -> None:
    index = pd.concat([_index("ok", 10), _index("bad", 10)], ignore_index=True)
    y, keep = window_labels(index, _events(("bad", 95, "failure")), horizon_ms=30)
    ok = (index["equipment_id"] == "ok").to_numpy()
    assert y[ok].sum() == 0
    # the last 3 windows of "ok" could still be followed by a failure within H: unknown
    assert keep[ok].tolist() == [True] * 7 + [False] * 3
    assert keep[~ok].all()
    assert y[~ok].tolist() == [0] * 6 + [1] * 4
    _, keep_all = window_labels(index, _events(("bad", 95, "failure")), 30, censor=False)
    assert keep_all.all()


def test_negative_horizon_is_refused() -> None:
    with pytest.raises(DataError, match="horizon_ms=-1"):
        window_labels(_index("m", 2), _events(), horizon_ms=-1)


def test_split_is_by_machine_disjoint_and_seeded() -> None:
    machines = [f"m{i}" for i in range(50)]
    train, val = split_machines(machines * 3, 0.2, seed=7)
    assert not set(train) & set(val)
    assert set(train) | set(val) == set(machines)
    assert len(val) == 10
    assert split_machines(machines, 0.2, seed=7) == (train, val)
    assert split_machines(machines, 0.2, seed=8) != (train, val)


def test_split_rejects_bad_fraction() -> None:
    with pytest.raises(DataError, match=r"Received: 1\.5"):
        split_machines(["a", "b"], 1.5, seed=0)
