"""K-fold by machine, M seeds on one split, and the mean-logit ensemble."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from models.ensemble import average_model, fold_machines, train_members
from models.errors import DataError
from models.network import build_model, serving_model
from models.training import TrainConfig, predict_logits, train
from tests.models.test_network_artifact import WINDOW, L, _meta, _spec, _windows


@given(st.integers(2, 40), st.integers(2, 10), st.integers(0, 2**32 - 1))
def test_folds_cover_every_machine_exactly_once(n: int, folds: int, seed: int) -> None:
    machines = [f"m{i:03d}" for i in range(n)]
    if folds > n:
        with pytest.raises(DataError, match=f"Received: folds={folds}"):
            fold_machines(machines, folds, seed)
        return
    groups = fold_machines(machines, folds, seed)
    flat = [m for g in groups for m in g]
    assert sorted(flat) == machines  # every machine in exactly one fold
    sizes = [len(g) for g in groups]
    assert max(sizes) - min(sizes) <= 1
    assert fold_machines(machines, folds, seed) == groups  # seeded


def test_ensemble_logit_is_the_mean_of_its_members(tmp_path: Path) -> None:
    from models.artifact import load_artifact, save_artifact

    members = [build_model(L, 8, units=4, seed=k, name=f"member{k}") for k in range(3)]
    w = _windows()
    each = np.stack([predict_logits(m, w) for m in members])
    ensemble = average_model(members)
    np.testing.assert_allclose(predict_logits(ensemble, w), each.mean(axis=0), rtol=1e-5, atol=1e-6)
    assert ensemble.count_params() == sum(m.count_params() for m in members)
    save_artifact(tmp_path / "art", ensemble, _spec(), _meta())
    loaded = load_artifact(tmp_path / "art", WINDOW)
    np.testing.assert_array_equal(predict_logits(loaded.model, w), predict_logits(ensemble, w))


def _train_args(telemetry: Path, events: Path, out: Path) -> list[str]:
    return [
        "train",
        "--data",
        f"history:{telemetry}",
        "--events",
        str(events),
        "--horizon",
        "30",
        "--out",
        str(out),
        "--sequence-length",
        "20",
        "--units",
        "8",
        "--epochs",
        "2",
        "--quiet",
    ]


def _trained_spec(sim_files: tuple[Path, Path], out: Path, *extra: str) -> dict[str, Any]:
    """``plantwatch train`` with :func:`_train_args` and ``extra``; the artifact's spec."""
    import json

    from plantwatch.cli.main import cli

    result = CliRunner().invoke(cli, [*_train_args(*sim_files, out), *extra])
    assert result.exit_code == 0, result.output
    spec: dict[str, Any] = json.loads((out / "spec.json").read_text())
    return spec


def test_train_with_folds_thresholds_on_every_machine(
    sim_files: tuple[Path, Path], tmp_path: Path
) -> None:
    spec = _trained_spec(sim_files, tmp_path / "model", "--folds", "3")
    training = spec["metrics"]["training"]
    assert training["folds"] == 3
    assert len(training["members"]) == 3
    # out-of-fold: every simulated machine is a validation machine once
    assert len(training["validation_machines"]) == 24
    assert 0 < spec["threshold"] < 1


def test_members_are_the_single_model_trained_from_their_own_seeds() -> None:
    """Member k is exactly what one training run from seed + 1000 k gives."""
    train_w, val_w = _windows(48, seed=1), _windows(24, seed=2)
    config = TrainConfig(epochs=2, batch_size=8, seed=7, verbose=0)

    def build(k: int) -> object:
        return build_model(L, 8, units=4, seed=7 + 1000 * k, name=f"member{k}")

    ensemble = train_members(build, train_w, val_w, config, members=2)
    assert len(ensemble.results) == 2
    singles = []
    for k in range(2):
        model = build(k)
        train(
            model, train_w, val_w, TrainConfig(epochs=2, batch_size=8, seed=7 + 1000 * k, verbose=0)
        )
        singles.append(predict_logits(serving_model(model), val_w))
    assert not np.allclose(singles[0], singles[1])  # two seeds, two different members
    np.testing.assert_allclose(ensemble.oof_logits, np.mean(singles, axis=0), rtol=1e-4, atol=1e-5)
    assert ensemble.oof is val_w
    assert ensemble.model.count_params() == 2 * build(0).count_params()


def test_members_must_be_positive() -> None:
    with pytest.raises(DataError, match="Received: members=0"):
        train_members(lambda k: None, _windows(), _windows(), TrainConfig(verbose=0), 0)


def test_train_with_members_keeps_the_hold_out(
    sim_files: tuple[Path, Path], tmp_path: Path
) -> None:
    training = _trained_spec(sim_files, tmp_path / "model", "--members", "2")["metrics"]["training"]
    assert training["ensemble_members"] == 2
    assert len(training["members"]) == 2
    assert len(training["validation_machines"]) < 24  # the 20 % hold-out, not every machine
    single = _trained_spec(sim_files, tmp_path / "one")["metrics"]["training"]
    assert single["validation_machines"] == training["validation_machines"]  # same split
    assert training["params"] == 2 * single["params"]  # both members served as one model


def test_train_refuses_folds_with_members(sim_files: tuple[Path, Path], tmp_path: Path) -> None:
    from plantwatch.cli.main import cli

    out = tmp_path / "model"
    result = CliRunner().invoke(
        cli, [*_train_args(*sim_files, out), "--members", "2", "--folds", "3"]
    )
    assert result.exit_code == 2
    assert "--folds 3 and --members 2" in result.output
    assert not out.exists()
