from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.config import WindowConfig
from features.spec import fit_spec
from models.artifact import ModelMeta, load_artifact, save_artifact
from models.errors import ArtifactError, ArtifactMismatch
from models.network import build_model
from models.windows import Windows

WINDOW = WindowConfig(sensors=("a", "b"), step_ms=1000, aggregates=("mean",), derived=())
L = 6


def _windows(n: int = 16, seed: int = 0) -> Windows:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, L, 8)).astype(np.float32)
    mask = np.ones((n, L), dtype=bool)
    mask[: n // 2, :2] = False
    x[~mask] = 0.0
    y = (rng.random(n) < 0.3).astype(np.float32)
    index = pd.DataFrame(
        {"equipment_id": [f"m{i}" for i in range(n)], "step_start": 0, "step_end": 1000}
    )
    return Windows.from_arrays(x, mask, y, index)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"architecture": "transformer"}, "Received: architecture='transformer'"),
        ({"units": -3}, "Received: units=-3"),
        ({"dropout": 1.5}, "Received: dropout=1.5"),
    ],
)
def test_build_model_checks_arguments(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_model(L, 8, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("architecture", ["gru", "lstm", "gru-stats"])
def test_masked_steps_do_not_change_the_output(architecture: str) -> None:
    model = build_model(L, 8, architecture, units=4, seed=1)
    w = _windows()
    garbage = w.x.copy()
    garbage[~w.mask] = 99.0
    a = model.predict(w.inputs(), verbose=0)
    b = model.predict({"features": garbage, "mask": w.mask}, verbose=0)
    np.testing.assert_allclose(a, b, atol=1e-6)


def test_predict_logits_batch_by_batch_equals_one_predict_call() -> None:
    """predict_logits scores batch by batch (no dataset per call): predict's numbers."""
    from models.training import predict_logits

    model = build_model(L, 8, "gru-stats", units=4, seed=1)
    w = _windows(n=101)
    whole = np.asarray(model.predict(w.inputs(), batch_size=4, verbose=0)).reshape(-1)
    batched = predict_logits(model, w, batch_size=4)  # 26 batches, the last of 1
    assert batched.shape == (101,)
    np.testing.assert_array_equal(batched, whole)
    assert predict_logits(model, w.select(np.arange(0))).shape == (0,)


def test_window_stats_are_the_masked_means_and_least_squares_slopes() -> None:
    from models.layers import WindowStats

    rng = np.random.default_rng(3)
    length, n_features = 40, 3
    x = rng.normal(size=(3, length, n_features)).astype(np.float32)
    mask = np.ones((3, length), dtype=bool)
    mask[1, :25] = False  # 15 real steps
    mask[2, :39] = False  # one real step: no slope
    x[~mask] = 0.0
    out = np.asarray(WindowStats(mean_spans=(5, 20), slope_spans=(10, 0))(x, mask))
    assert out.shape == (3, 4 * n_features)
    for row in range(3):
        real = x[row, mask[row]]
        for f in range(n_features):
            means = [real[-5:, f].mean(), real[-20:, f].mean()]
            slopes = []
            for span in (10, length):
                seg = real[-span:, f]
                slopes.append(
                    np.polyfit(np.arange(len(seg)), seg, 1)[0] * span if len(seg) > 1 else 0.0
                )
            got = out[row, f::n_features]
            np.testing.assert_allclose(got, [*means, *slopes], rtol=1e-4, atol=1e-5)


def test_window_stats_stay_float32_under_mixed_precision() -> None:
    """A 100-step slope's sum of squared times (83,325) overflows float16."""
    import keras

    from models.layers import WindowStats

    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, 100, 3)).astype(np.float32)
    mask = np.ones((2, 100), dtype=bool)
    reference = np.asarray(WindowStats()(x, mask))
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")
    try:
        layer = WindowStats()
        mixed = np.asarray(layer(x.astype(np.float16), mask))
    finally:
        keras.config.set_dtype_policy(previous)
    assert layer.compute_dtype == "float32"
    assert np.isfinite(mixed).all()
    np.testing.assert_allclose(mixed, reference, atol=2e-2)


def test_window_stats_refuse_bad_spans() -> None:
    from models.layers import WindowStats

    with pytest.raises(ValueError, match="mean_spans=\\(0,\\)"):
        WindowStats(mean_spans=(0,))


def _spec():  # type: ignore[no-untyped-def]
    X = np.random.default_rng(0).normal(size=(20, len(WINDOW.feature_names())))
    return fit_spec(X, WINDOW, sequence_length=L)


def _meta() -> ModelMeta:
    return ModelMeta(
        3,
        1,
        0.4,
        (1.5, -0.2),
        "gru",
        "abc",
        "2026-01-01T00:00:00+00:00",
        {"validation": {"f1": 0.5}},
    )


@pytest.mark.parametrize("architecture", ["gru", "gru-stats"])
def test_save_load_round_trip_gives_identical_predictions(
    tmp_path: Path, architecture: str
) -> None:
    from models.artifact import Artifact

    model = build_model(L, 8, architecture, units=4, seed=2)
    spec, meta = _spec(), _meta()
    w = _windows()
    before = Artifact(model, spec, meta).predict_proba(w)
    save_artifact(tmp_path / "art", model, spec, meta)
    loaded = load_artifact(tmp_path / "art", WINDOW)
    np.testing.assert_array_equal(loaded.predict_proba(w), before)
    assert loaded.spec == spec
    assert loaded.meta == meta
    doc = json.loads((tmp_path / "art" / "spec.json").read_text())
    assert {
        "feature_spec",
        "sequence_length",
        "horizon_steps",
        "threshold",
        "metrics",
        "fingerprint",
        "version",
        "created_at",
    } <= set(doc)


def test_load_refuses_other_feature_settings(tmp_path: Path) -> None:
    save_artifact(tmp_path / "art", build_model(L, 8, units=2), _spec(), _meta())
    other = WindowConfig(sensors=("a", "b"), step_ms=2000, aggregates=("mean",), derived=())
    with pytest.raises(
        ArtifactMismatch, match=r"'step_ms' differs: the model was trained with 1000"
    ):
        load_artifact(tmp_path / "art", other)


def test_load_refuses_incomplete_or_malformed_artifacts(tmp_path: Path) -> None:
    with pytest.raises(ArtifactError, match=r"spec\.json is missing"):
        load_artifact(tmp_path)
    save_artifact(tmp_path / "art", build_model(L, 8, units=2), _spec(), _meta())
    (tmp_path / "art" / "spec.json").write_text('{"feature_spec": {}}')
    with pytest.raises(ArtifactError, match="malformed artifact spec"):
        load_artifact(tmp_path / "art")


def test_serving_model_keeps_the_main_logit_of_an_aux_model(tmp_path: Path) -> None:
    from models.network import aux_horizons, serving_model

    assert aux_horizons(30) == (10, 20, 40, 50, 75)
    assert aux_horizons(1) == (2,)
    assert aux_horizons(30, "dense") == tuple(h for h in range(5, 126, 5) if h != 30)
    assert aux_horizons(30, "none") == ()
    with pytest.raises(ValueError, match="Received: 'ordinal'"):
        aux_horizons(30, "ordinal")
    model = build_model(L, 8, "gru", units=4, seed=3, aux_outputs=2)
    w = _windows()
    both = model.predict(w.inputs(), verbose=0)
    serving = serving_model(model)
    assert serving.count_params() < model.count_params()
    np.testing.assert_allclose(serving.predict(w.inputs(), verbose=0), both["logit"], atol=1e-6)
    save_artifact(tmp_path / "art", serving, _spec(), _meta())
    loaded = load_artifact(tmp_path / "art")
    np.testing.assert_allclose(
        loaded.model.predict(w.inputs(), verbose=0), both["logit"], atol=1e-6
    )
