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


def test_a_given_split_is_used_and_a_bad_one_refused(
    sim_files: tuple[Path, Path], prepared: Prepared
) -> None:
    history = load_history_files(*sim_files, WINDOW.sensors)
    train_ids, val_ids = prepared.train.machines(), prepared.val.machines()
    # the seeded split of `prepared`, given explicitly, and then the other way round
    same = prepare(history, WINDOW, 20, 30, min_steps=5, split=(train_ids, val_ids))
    assert len(same.train) == len(prepared.train)
    np.testing.assert_array_equal(same.val.y, prepared.val.y)
    swapped = prepare(history, WINDOW, 20, 30, min_steps=5, split=(val_ids, train_ids))
    assert set(swapped.train.machines()) == set(val_ids)
    assert set(swapped.val.machines()) == set(train_ids)
    for bad, said in [
        ((train_ids, [*val_ids, train_ids[0]]), "disjoint"),
        ((train_ids, [*val_ids, "nosuch-7"]), "unknown ['nosuch-7']"),
        ((train_ids, []), "0 machines"),
    ]:
        with pytest.raises(DataError, match="split must be two non-empty, disjoint lists") as e:
            prepare(history, WINDOW, 20, 30, min_steps=5, split=bad)
        assert said in str(e.value)


def test_without_validation_windows_every_epoch_is_trained_and_the_last_kept(
    prepared: Prepared,
) -> None:
    small = prepared.train.select(np.arange(min(2000, len(prepared.train))))
    config = TrainConfig(epochs=3, patience=1, seed=3, verbose=0)
    device = setup_device(3)
    model = build_model(20, prepared.n_inputs, "gru", units=4, seed=3)
    result = train(model, small, None, config, device=device)
    assert [h["epoch"] for h in result.history] == [1.0, 2.0, 3.0]  # patience 1 is moot
    assert set(result.history[0]) == {"epoch", "loss"}
    assert result.best_epoch == 3
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < losses[0], losses
    with pytest.raises(DataError, match="no labelled validation windows"):
        train(model, small, small.select(np.arange(0)), config, device=device)
