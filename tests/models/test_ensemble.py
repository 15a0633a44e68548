"""K-fold by machine and the mean-logit ensemble."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from models.ensemble import average_model, fold_machines
from models.errors import DataError
from models.network import build_model
from models.training import predict_logits
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


def test_train_with_folds_thresholds_on_every_machine(
    sim_files: tuple[Path, Path], tmp_path: Path
) -> None:
    import json

    from plantwatch.cli.main import cli

    out = tmp_path / "model"
    telemetry, events = sim_files
    result = CliRunner().invoke(
        cli,
        [
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
            "--folds",
            "3",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    spec = json.loads((out / "spec.json").read_text())
    training = spec["metrics"]["training"]
    assert training["folds"] == 3
    assert len(training["members"]) == 3
    # out-of-fold: every simulated machine is a validation machine once
    assert len(training["validation_machines"]) == 24
    assert 0 < spec["threshold"] < 1
