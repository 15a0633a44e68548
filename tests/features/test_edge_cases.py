"""Defined behaviour at the edges: NaN, empty windows, sensors that come and go, clock jumps."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from features.config import FeatureConfigError, WindowConfig
from features.offline import step_features_frame
from features.spec import FeatureSpecMismatch, fit_spec, normalize, sequences
from features.streaming import StreamingWindows

CFG = WindowConfig(sensors=("a", "b"), step_ms=1000, grace_ms=0, max_fill_steps=2)
NAMES = CFG.feature_names()


@dataclass(frozen=True)
class R:
    equipment_id: str
    ts_ms: int
    readings: dict[str, float]


def col(vector: np.ndarray, name: str) -> float:
    return float(vector[NAMES.index(name)])


def run(records: list[R], config: WindowConfig = CFG) -> tuple[dict[int, np.ndarray], list[int]]:
    windows = StreamingWindows(config)
    update = windows.update(records)
    return {s.step_start: s.vector for s in update.steps}, update.late


def test_nan_that_slipped_through_is_ignored() -> None:
    steps, _ = run(
        [R("m", 0, {"a": 1.0, "b": np.nan}), R("m", 500, {"a": 3.0}), R("m", 1000, {"a": 0.0})]
    )
    assert col(steps[0], "a__mean") == 2.0
    assert col(steps[0], "a__count") == 2.0
    assert col(steps[0], "b__count") == 0.0
    assert np.isnan(col(steps[0], "b__mean"))  # never read: missing, not 0


def test_record_with_only_nan_or_unknown_sensors_is_ignored() -> None:
    steps, late = run([R("m", 0, {"a": 1.0}), R("m", 5000, {"a": np.nan, "zzz": 1.0})])
    assert steps == {}  # it neither closed step 0 nor opened step 5
    assert late == []


def test_empty_windows_fill_for_a_while_then_go_missing() -> None:
    records = [R("m", 0, {"a": 5.0}), R("m", 6000, {"a": 1.0})]
    steps, _ = run(records)
    assert sorted(steps) == [0, 1000, 2000, 3000, 4000, 5000]
    assert [col(steps[t], "a__count") for t in (1000, 2000, 3000)] == [0.0, 0.0, 0.0]
    assert [col(steps[t], "a__filled") for t in (1000, 2000, 3000)] == [1.0, 1.0, 0.0]
    assert col(steps[2000], "a__mean") == 5.0  # filled with the last value
    assert np.isnan(col(steps[3000], "a__mean"))  # beyond max_fill_steps: missing
    assert col(steps[3000], "a__since_last") == (CFG.max_fill_steps + 2) * 1.0  # saturated


def test_sensor_appearing_mid_stream() -> None:
    steps, _ = run(
        [R("m", 0, {"a": 1.0}), R("m", 1000, {"a": 1.0, "b": 7.0}), R("m", 2000, {"a": 1.0})]
    )
    assert np.isnan(col(steps[0], "b__mean"))
    assert col(steps[1000], "b__mean") == 7.0
    assert np.isnan(col(steps[1000], "b__delta"))  # no previous mean to compare with


def test_sensor_disappearing() -> None:
    records = [R("m", t * 1000, {"a": 1.0, "b": 2.0}) for t in range(2)]
    records += [R("m", t * 1000, {"a": 1.0}) for t in range(2, 8)]
    steps, _ = run(records)
    assert [col(steps[t * 1000], "b__filled") for t in range(2, 7)] == [1.0, 1.0, 0.0, 0.0, 0.0]
    since = [col(steps[t * 1000], "b__since_last") for t in range(1, 7)]
    assert since == sorted(since)  # grows, then saturates
    assert since[-1] == since[-2] == (CFG.max_fill_steps + 2) * 1.0


def test_clock_jump_backwards_within_grace_is_placed() -> None:
    cfg = WindowConfig(sensors=("a",), step_ms=1000, grace_ms=1500)
    steps, late = run(
        [R("m", 2100, {"a": 1.0}), R("m", 1200, {"a": 3.0}), R("m", 4000, {"a": 0.0})], cfg
    )
    assert late == []
    assert col(steps[1000], "a__mean") == 3.0


def test_clock_jump_backwards_beyond_grace_is_late() -> None:
    steps, late = run([R("m", 0, {"a": 1.0}), R("m", 5000, {"a": 2.0}), R("m", 1500, {"a": 9.0})])
    assert late == [2]  # the caller dead-letters it as too_late
    assert col(steps[1000], "a__count") == 0.0  # step 1 was closed; the late reading is not in it


def test_clock_jump_forward_beyond_max_gap_breaks_the_sequence() -> None:
    cfg = WindowConfig(sensors=("a",), step_ms=1000, grace_ms=0, max_gap_steps=10)
    windows = StreamingWindows(cfg)
    update = windows.update(
        [
            R("m", 0, {"a": 1.0}),
            R("m", 1000, {"a": 1.0}),
            R("m", 60_000, {"a": 5.0}),
            R("m", 61_000, {"a": 5.0}),
        ]
    )
    expected = [*range(0, 12_000, 1000), 60_000]  # 10 empty steps after the last reading, then none
    assert [s.step_start for s in update.steps] == expected
    df = pd.DataFrame(
        {"equipment_id": "m", "ts": [0, 1000, 60_000, 61_000], "a": [1.0, 1.0, 5.0, 5.0]}
    )
    _, index = step_features_frame(df, cfg)
    assert index["step_start"].tolist() == expected
    assert index["segment"].tolist() == [0] * 12 + [1]  # sequences break at the silence


def test_state_is_bounded_whatever_the_stream_length() -> None:
    windows = StreamingWindows(CFG)
    windows.update([R(f"m{i}", 0, {"a": 1.0}) for i in range(100)])
    before = windows.state_bytes()
    for t in range(1, 300):
        windows.update([R(f"m{i}", t * 1000, {"a": float(t)}) for i in range(100)])
    assert windows.state_bytes() == before


def test_bad_configuration_names_the_setting() -> None:
    with pytest.raises(FeatureConfigError, match="step_ms must be an integer >= 1, got 0"):
        WindowConfig(sensors=("a",), step_ms=0)
    with pytest.raises(FeatureConfigError, match="aggregates"):
        WindowConfig(sensors=("a",), aggregates=("median",))
    with pytest.raises(FeatureConfigError, match="ranges"):
        WindowConfig(sensors=("a",), ranges={"b": (0.0, 1.0)})


def test_spec_refuses_other_rules_naming_the_difference() -> None:
    X = np.random.default_rng(0).normal(size=(50, len(NAMES)))
    spec = fit_spec(X, CFG, sequence_length=4)
    spec.check(CFG)
    other = WindowConfig(sensors=("a", "b"), step_ms=2000, grace_ms=0, max_fill_steps=2)
    with pytest.raises(
        FeatureSpecMismatch, match="'step_ms' differs: the model was trained with 1000"
    ):
        spec.check(other)


@pytest.mark.parametrize("sensors", [1, 2, 3, 11])
def test_spec_statistics_are_numpys_over_all_columns(
    sensors: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """fit_spec takes its statistics a block of columns at a time (memory): same numbers."""
    from features import spec as spec_module

    monkeypatch.setattr(spec_module, "_STATS_COLUMNS", 4)  # blocks of 4 and the rest
    cfg = WindowConfig(sensors=tuple(f"s{i}" for i in range(sensors)), step_ms=1000)
    rng = np.random.default_rng(sensors)
    width = len(cfg.feature_names())
    X = rng.normal(1000.0, 3.0, size=(3000, width)) * rng.uniform(1e-3, 1e2, size=width)
    X[rng.random(X.shape) < 0.1] = np.nan
    X[:, 0] = np.nan  # never read: mean 0, std 1
    spec = fit_spec(X, cfg, sequence_length=4)
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        mean, std = np.nanmean(X, axis=0), np.nanstd(X, axis=0)
    assert spec.mean[0] == tuple(np.where(np.isnan(mean), 0.0, mean).tolist())
    assert spec.std[0] == tuple(np.where(np.isnan(std) | (std < 1e-9), 1.0, std).tolist())
    assert (spec.mean[0][0], spec.std[0][0]) == (0.0, 1.0)


def test_regimes_normalize_each_condition_separately() -> None:
    cfg = WindowConfig(sensors=("op", "t"), step_ms=1000, aggregates=("mean",), derived=())
    rng = np.random.default_rng(1)
    op = np.repeat([0.0, 10.0], 200)
    t = np.where(op > 5, 100.0, 20.0) + rng.normal(size=400)
    X = np.zeros((400, len(cfg.feature_names())))
    X[:, cfg.feature_names().index("op__mean")] = op
    X[:, cfg.feature_names().index("t__mean")] = t
    spec = fit_spec(X, cfg, sequence_length=3, regime_sensors=("op",), n_regimes=2)
    Z = normalize(spec, X)[:, cfg.feature_names().index("t__mean")]
    assert abs(Z[:200].mean()) < 1e-9
    assert abs(Z[200:].mean()) < 1e-9  # per regime, not pulled apart by the condition


def test_sequences_pad_short_histories_and_never_cross_machines() -> None:
    index = pd.DataFrame(
        {"equipment_id": ["a", "a", "a", "b"], "segment": 0, "step_start": [0, 1, 2, 0]}
    )
    Z = np.arange(4, dtype=float)[:, None]
    S, mask, seq_index = sequences(Z, index, length=3)
    assert S[:, :, 0].tolist() == [[0, 0, 0], [0, 0, 1], [0, 1, 2], [0, 0, 3]]
    assert mask.tolist()[3] == [False, False, True]
    S, _, seq_index = sequences(Z, index, length=3, min_steps=3)
    assert seq_index["equipment_id"].tolist() == ["a"]
    assert S[:, :, 0].tolist() == [[0, 1, 2]]


def test_sequences_keep_the_dtype_of_z() -> None:
    """gather builds the (N, L, F) array in Z's dtype (Windows keep float32 steps)."""
    index = pd.DataFrame({"equipment_id": ["a"] * 5, "segment": 0, "step_start": range(5)})
    Z = np.linspace(-1.0, 1.0, 10).reshape(5, 2)
    S64, _, _ = sequences(Z, index, length=4)
    S32, _, _ = sequences(Z.astype(np.float32), index, length=4)
    assert (S64.dtype, S32.dtype) == (np.float64, np.float32)
    assert np.array_equal(S64.astype(np.float32), S32)


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (None, "tombstone"),
        (b"{", "nor JSON"),
        (b"[]", "not a JSON object"),
        (b'{"v": 2}', "expected 1"),
        (
            b'{"v": 1, "equipment_id": "m", "step_start": 5, "step_end": 5, "config": "c", "values": [1]}',
            "start < end",
        ),
        (
            b'{"v": 1, "equipment_id": "m", "step_start": 0, "step_end": 5, "values": [1]}',
            "'config'",
        ),
        (
            b'{"v": 1, "equipment_id": "m", "step_start": 0, "step_end": 5, "config": "c", "values": ["x"]}',
            "other than numbers",
        ),
        (
            b'{"v": 1, "equipment_id": "m", "step_start": 0, "step_end": 5, "config": "c", "values": [true]}',
            "boolean",
        ),
    ],
)
def test_bad_feature_records_get_a_reason(raw: bytes | None, fragment: str) -> None:
    from pipeline.featurerecords import decode_feature

    record, reason = decode_feature(raw)
    assert record is None
    assert reason is not None
    assert fragment in reason


@pytest.mark.parametrize("encoding", ["json", "binary"])
def test_readings_at_the_float_limit_give_missing_features_not_infinities(encoding: str) -> None:
    """Any finite reading is valid telemetry; a square of 1e308 overflows. No warning, no inf."""
    import warnings

    from ingest.contract import Telemetry
    from ingest.featurestage import FeatureStage
    from pipeline.featurerecords import decode_feature
    from plantwatch.presets import load_window_config

    stage = FeatureStage(load_window_config("plant"), encoding)  # type: ignore[arg-type]
    base = 1_796_000_000_000
    values = [1e308, -1e308, 1.7976931348623157e308, 5e-324] * 5
    records = [
        Telemetry("m-1", base + i * 20_000, {"vibration_rms": v, "bearing_temp": -v})
        for i, v in enumerate(values)
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        outputs, late = stage.update(records, list(range(len(records))), None)
    assert late == []
    assert len(outputs) >= 4
    for out in outputs:
        record, reason = decode_feature(out.value)
        assert reason is None
        assert record is not None
        assert not np.isinf(record.values).any()
