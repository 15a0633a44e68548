"""Training on simulated fleet data must beat a constant predictor; fine-tuning moves predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from models.data import load_history_files
from models.errors import DataError
from models.network import build_model
from models.pipeline import Prepared, prepare
from models.training import TrainConfig, predict_logits, setup_device, train
from plantwatch.presets import PRESETS

pytestmark = pytest.mark.slow
WINDOW = PRESETS["plant"]


@pytest.fixture(scope="module")
def prepared(sim_files: tuple[Path, Path]) -> Prepared:
    history = load_history_files(*sim_files, WINDOW.sensors)
    return prepare(
        history,
        WINDOW,
        sequence_length=20,
        horizon_steps=30,
        validation_fraction=0.25,
        seed=0,
        min_steps=5,
    )


def test_no_machine_in_two_splits(prepared: Prepared) -> None:
    train_ids, val_ids = set(prepared.train.machines()), set(prepared.val.machines())
    assert train_ids
    assert val_ids
    assert not train_ids & val_ids


def test_short_training_beats_a_constant_predictor(prepared: Prepared) -> None:
    from sklearn.metrics import average_precision_score

    device = setup_device(0)
    model = build_model(20, prepared.n_inputs, "gru", units=16, seed=0)
    result = train(
        model,
        prepared.train,
        prepared.val,
        TrainConfig(epochs=4, patience=4, seed=0, verbose=0),
        device=device,
    )
    positive_rate = float(prepared.val.y.mean())
    pr_auc = average_precision_score(prepared.val.y, predict_logits(model, prepared.val))
    # a constant score has PR-AUC equal to the positive rate
    assert 0 < positive_rate < 0.5
    assert pr_auc > positive_rate + 0.1, (pr_auc, positive_rate)
    assert max(h["val_pr_auc"] for h in result.history) == pytest.approx(
        result.history[result.best_epoch - 1]["val_pr_auc"]
    )
    assert result.device == "cpu"
    assert result.precision == "float32"


def test_training_is_reproducible_with_a_seed(prepared: Prepared) -> None:
    small = prepared.train.select(np.arange(min(2000, len(prepared.train))))
    outs = []
    for _ in range(2):
        device = setup_device(5)
        model = build_model(20, prepared.n_inputs, "gru", units=4, seed=5)
        train(model, small, prepared.val, TrainConfig(epochs=1, seed=5, verbose=0), device=device)
        outs.append(predict_logits(model, prepared.val))
    np.testing.assert_allclose(outs[0], outs[1], atol=1e-5)


def test_a_fleet_without_failures_is_refused(sim_files: tuple[Path, Path], tmp_path: Path) -> None:
    events = tmp_path / "events.csv"
    pd.DataFrame({"equipment_id": ["x"], "ts": [0], "kind": ["repair"]}).to_csv(events, index=False)
    history = load_history_files(sim_files[0], events, WINDOW.sensors)
    with pytest.raises(DataError, match="no machine in the telemetry has a failure event"):
        prepare(history, WINDOW, 20, 30)


def test_auxiliary_horizons_train_with_the_same_core(sim_files: tuple[Path, Path]) -> None:
    from models.network import aux_horizons, serving_model

    history = load_history_files(*sim_files, WINDOW.sensors)
    prep = prepare(
        history, WINDOW, 20, 30, 0.25, seed=0, min_steps=5, aux_horizons=aux_horizons(30)
    )
    assert prep.train.aux is not None
    assert prep.train.aux.shape == (len(prep.train), 5)
    # failing within 10 steps implies failing within 30, which implies within 40
    assert (prep.train.aux[:, 0] <= prep.train.y).all()
    assert (prep.train.y <= prep.train.aux[:, 2]).all()
    small = prep.train.select(np.arange(min(3000, len(prep.train))))
    model = build_model(20, prep.n_inputs, "gru", units=4, seed=0, aux_outputs=5)
    result = train(model, small, prep.val, TrainConfig(epochs=1, seed=0, verbose=0))
    assert len(result.history) == 1
    assert predict_logits(serving_model(model), prep.val).shape == (len(prep.val),)


def test_train_config_checks_arguments() -> None:
    with pytest.raises(ValueError, match="Received: epochs=0"):
        TrainConfig(epochs=0)
    with pytest.raises(ValueError, match="Received: schedule='linear'"):
        TrainConfig(schedule="linear")
