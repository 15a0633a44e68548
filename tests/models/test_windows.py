"""Windows hold the step features and gather each window's (L, F) input when it is used."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.spec import sequence_bounds, sequences
from models.training import _batches
from models.windows import StepParts, Windows

L = 4


def _steps() -> tuple[np.ndarray, pd.DataFrame]:
    """Two machines, the second with two segments (a repair), one history shorter than L."""
    ids = ["a"] * 6 + ["b"] * 2 + ["b"] * 5
    segments = [0] * 6 + [0] * 2 + [1] * 5
    index = pd.DataFrame({"equipment_id": ids, "segment": segments, "step_start": range(len(ids))})
    Z = np.random.default_rng(0).normal(size=(len(ids), 3)).astype(np.float32)
    return Z, index


def _windows(min_steps: int = 1) -> Windows:
    Z, index = _steps()
    end, first = sequence_bounds(index, L, min_steps)
    y = (np.arange(len(end)) % 3 == 0).astype(np.float32)
    aux = np.arange(len(end), dtype=np.float32)[:, None]  # each window's number
    return Windows(Z, end, first, L, y, index.iloc[end].reset_index(drop=True), aux)


@pytest.mark.parametrize("min_steps", [1, 2, 4])
def test_gathered_inputs_equal_the_built_sequences(min_steps: int) -> None:
    Z, index = _steps()
    S, mask, seq_index = sequences(Z, index, L, min_steps)
    w = _windows(min_steps)
    assert len(w) == len(S)
    np.testing.assert_array_equal(w.x, S)
    np.testing.assert_array_equal(w.mask, mask)
    np.testing.assert_array_equal(w.inputs(np.array([2, 0]))["features"], S[[2, 0]])
    assert w.index["step_start"].tolist() == seq_index["step_start"].tolist()
    assert not w.x[~w.mask].any()  # padding is zero and never crosses a segment


def test_from_arrays_round_trip_and_refuses_holes_in_the_mask() -> None:
    w = _windows()
    again = Windows.from_arrays(w.x, w.mask, w.y, w.index)
    np.testing.assert_array_equal(again.x, w.x)
    np.testing.assert_array_equal(again.mask, w.mask)
    holes = w.mask.copy()
    holes[-1, 1] = False
    with pytest.raises(ValueError, match="leading"):
        Windows.from_arrays(w.x, holes, w.y, w.index)


def test_select_and_concat_share_the_steps() -> None:
    w = _windows()
    a, b = w.select(np.array([5, 1])), w.select(np.arange(len(w)) > 7)
    both = Windows.concat([a, b])
    assert both.steps is w.steps
    np.testing.assert_array_equal(both.x, np.concatenate([a.x, b.x]))
    assert both.aux is not None
    assert both.aux[:, 0].tolist() == [5, 1, *range(8, len(w))]
    other = Windows.from_arrays(a.x, a.mask, a.y, a.index)
    with pytest.raises(ValueError, match="share one step array"):
        Windows.concat([a, other])


def test_training_batches_cover_every_window_once_per_epoch_in_a_new_order() -> None:
    w = _windows()
    batches = _batches(w, {0: 1.0, 1: 3.0}, batch_size=4, seed=7, aux=True)
    epochs = []
    for _ in range(3):
        seen = []
        for i in range(len(batches)):
            inputs, targets, weight = batches[i]
            rows = targets["aux"][:, 0].astype(int)
            np.testing.assert_array_equal(inputs["features"], w.x[rows])  # inputs, labels
            np.testing.assert_array_equal(targets["logit"], w.y[rows])  # and weights agree
            np.testing.assert_array_equal(weight, np.where(w.y[rows] > 0.5, 3.0, 1.0))
            seen.extend(rows.tolist())
        assert sorted(seen) == list(range(len(w)))
        epochs.append(seen)
        batches.on_epoch_end()
    assert epochs[0] != epochs[1] != epochs[2]
    again = _batches(w, {0: 1.0, 1: 3.0}, batch_size=4, seed=7, aux=True)
    first = np.concatenate([again[i][1]["aux"][:, 0] for i in range(len(again))])
    assert first.astype(int).tolist() == epochs[0]  # seeded


def test_make_windows_normalizes_in_chunks_to_the_same_numbers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """make_windows normalizes a few rows at a time (memory); the inputs are unchanged."""
    from features.config import WindowConfig
    from features.spec import fit_spec, normalize
    from models import windows as windows_module
    from models.windows import Steps, make_windows, step_age

    config = WindowConfig(sensors=("a", "b"), step_ms=1000, aggregates=("mean",), derived=())
    _, index = _steps()
    rng = np.random.default_rng(1)
    X = rng.normal(3.0, 2.0, size=(len(index), len(config.feature_names())))
    X[rng.random(X.shape) < 0.1] = np.nan  # missing values become 0
    spec = fit_spec(X, config, sequence_length=L)
    monkeypatch.setattr(windows_module, "_NORMALIZE_ROWS", 5)  # 3 chunks, the last short
    w = make_windows(Steps(X, index), spec, None, horizon_steps=2, age_scale=4.0)
    Z = np.concatenate([normalize(spec, X), (step_age(index) / 4.0)[:, None]], axis=1)
    S, mask, _ = sequences(Z.astype(np.float32), index, L)
    assert w.steps.dtype == np.float32
    np.testing.assert_array_equal(w.x, S)
    np.testing.assert_array_equal(w.mask, mask)


def test_step_features_in_machine_groups_equal_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """step_features builds groups of machines at a time (memory); the steps are the same."""
    from features.config import WindowConfig
    from features.offline import step_features_frame
    from models import windows as windows_module
    from models.windows import step_features

    config = WindowConfig(sensors=("a", "b"), step_ms=1000, aggregates=("mean",), derived=())
    rng = np.random.default_rng(2)
    frames = []
    for m, n in (("m3", 4), ("m1", 12), ("m2", 3), ("m0", 20)):  # m0, m1: each over 7 rows
        ts = np.arange(n, dtype=np.int64) * 1000
        if m == "m1":
            ts[6:] += 2_000_000  # a gap of 2,000 steps (> max_gap_steps): a second segment
        frames.append(
            pd.DataFrame(
                {"equipment_id": m, "ts": ts, "a": rng.normal(size=n), "b": rng.normal(size=n)}
            )
        )
    telemetry = pd.concat(frames, ignore_index=True)
    telemetry.loc[5, "a"] = np.nan
    X, index = step_features_frame(telemetry, config, complete=True)
    monkeypatch.setattr(windows_module, "_STEP_ROWS", 7)
    assert len(windows_module._machine_parts(telemetry)) == 3  # m0 | m1 | m2 + m3
    steps = step_features(telemetry, config)
    np.testing.assert_array_equal(steps.X, X)
    pd.testing.assert_frame_equal(steps.index, index)
    assert index["segment"].nunique() == 5  # m1's gap made two

    # The split into training and validation machines: those machines' rows, one buffer.
    groups = (["m1", "m3"], ["m0", "m2"])
    split = StepParts.build(telemetry, config).split(*groups)
    assert [len(s.X) for s in split] == [
        int(steps.index["equipment_id"].isin(g).sum()) for g in groups
    ]
    for part, machines in zip(split, groups, strict=True):
        rows = steps.index["equipment_id"].isin(machines).to_numpy()
        np.testing.assert_array_equal(part.X, steps.X[rows])
        pd.testing.assert_frame_equal(part.index, steps.index[rows].reset_index(drop=True))
    assert split[0].X.base is not None  # slices of one buffer
    assert split[0].X.base is split[1].X.base
    parts = StepParts.build(telemetry, config)
    parts.split(*groups)
    assert parts.parts == []  # consumed: each part freed once copied


def test_step_parts_refuse_a_history_without_steps() -> None:
    from features.config import WindowConfig
    from models.errors import DataError

    config = WindowConfig(sensors=("a",), step_ms=1000, aggregates=("mean",), derived=())
    telemetry = pd.DataFrame({"equipment_id": ["m"], "ts": [0], "a": [np.nan]})
    with pytest.raises(DataError, match="no feature steps"):
        StepParts.build(telemetry, config)
