"""The C-MAPSS FD001 test protocol (needs ../shared/data/cmapss)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import CMAPSS

pytestmark = pytest.mark.skipif(
    not (CMAPSS / "train_FD001.txt").is_file(), reason="../shared/data/cmapss not present"
)


def test_protocol_has_93_engines_25_positive_and_no_leakage() -> None:
    from models.data import load_cmapss_history
    from models.pipeline import cmapss_test, prepare
    from plantwatch.presets import PRESETS

    window = PRESETS["cmapss"]
    history = load_cmapss_history(CMAPSS, window.step_ms)
    prep = prepare(history, window, 50, 30, 0.2, seed=0, min_steps=10, age_feature=True)
    assert not set(prep.train.machines()) & set(prep.val.machines())
    assert len(prep.train.machines()) == 80
    assert len(prep.val.machines()) == 20
    # each training engine: exactly H + 1 positive windows (remaining cycles 0..30)
    per_engine = prep.train.index.assign(y=prep.train.y).groupby("equipment_id")["y"].sum()
    assert (per_engine == 31).all()
    last, every, _ = cmapss_test(history, prep.spec, 30, 10, prep.age_scale)
    assert len(last) == 93
    assert int(last.y.sum()) == 25
    assert last.mask.all()
    assert len(every) > len(last)
    rul = history.test_rul
    assert rul is not None
    expected = np.array([rul[e] <= 30 for e in last.index["equipment_id"]])
    assert (last.y == expected).all()


def test_protocol_keeps_the_same_93_engines_for_any_window_length() -> None:
    """The 93 engines are those with >= 50 cycles, not >= L: a longer window is padded."""
    from models.data import load_cmapss_history
    from models.pipeline import PROTOCOL_MIN_CYCLES, cmapss_test, prepare
    from plantwatch.presets import PRESETS

    window = PRESETS["cmapss"]
    history = load_cmapss_history(CMAPSS, window.step_ms)
    assert history.test is not None
    cycles = history.test.groupby("equipment_id")["ts"].size()
    reference = None
    for length in (30, 120):
        prep = prepare(history, window, length, 30, 0.2, seed=0, min_steps=10)
        last, _, _ = cmapss_test(history, prep.spec, 30, 10)
        engines = list(last.index["equipment_id"])
        assert len(engines) == 93
        assert int(last.y.sum()) == 25
        assert (cycles[engines] >= PROTOCOL_MIN_CYCLES).all()
        real = last.mask.sum(axis=1)
        assert (real == np.minimum(cycles[engines].to_numpy(), length)).all()
        if length > PROTOCOL_MIN_CYCLES:
            assert not last.mask.all()  # engines with 50..119 cycles are padded in front
        reference = reference or engines
        assert engines == reference
