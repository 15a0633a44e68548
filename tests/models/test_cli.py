"""The train / evaluate / fine-tune commands end to end on simulated data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from plantwatch.cli import cli

pytestmark = pytest.mark.slow


def test_help_explains_each_option() -> None:
    runner = CliRunner()
    for command, options in (
        ("train", ["--data", "--horizon", "--out", "--seed", "--epochs", "--target-recall"]),
        ("evaluate", ["--model", "--data", "--plots"]),
        ("fine-tune", ["--model", "--feedback", "--data", "--out", "--learning-rate"]),
    ):
        result = runner.invoke(cli, [command, "--help"])
        assert result.exit_code == 0, result.output
        for option in options:
            assert option in result.output


def test_train_defaults_are_the_library_defaults() -> None:
    """--help's defaults come from literals (no Keras import at start); they must not drift."""
    from models.network import DEFAULT_ARCHITECTURE, DEFAULT_AUX

    params = {p.name: p for p in cli.commands["train"].params}
    assert params["architecture"].default == DEFAULT_ARCHITECTURE
    assert params["aux_horizons"].default == DEFAULT_AUX
    from evaluation.workflow import DEFAULT_LOST_READINGS

    assert params["lost_readings"].default is None  # auto: history: data only
    assert f"[default: {DEFAULT_LOST_READINGS} for history: data" in str(
        params["lost_readings"].help
    )


def test_bad_source_is_one_line_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["train", "--data", "ftp://x", "--horizon", "30", "--out", str(tmp_path / "m")]
    )
    assert result.exit_code == 2
    assert "expected cmapss:DIR or history:FILE" in result.output


def _train(sim_files: tuple[Path, Path], out: Path, *extra: str) -> Path:
    result = CliRunner().invoke(
        cli,
        [
            "train",
            "--data",
            f"history:{sim_files[0]}",
            "--horizon",
            "30m",
            "--out",
            str(out),
            "--sequence-length",
            "20",
            "--min-steps",
            "5",
            "--epochs",
            "3",
            "--units",
            "8",
            "--quiet",
            *extra,
        ],
    )
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def trained(sim_files: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(sim_files, tmp_path_factory.mktemp("cli") / "model")


@pytest.fixture(scope="module")
def trained_members(sim_files: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ensemble artifact (--members 2): one Keras model of two members."""
    return _train(sim_files, tmp_path_factory.mktemp("cli") / "members", "--members", "2")


def test_train_writes_artifact_and_evaluate_scores_it(
    trained: Path, sim_files: tuple[Path, Path], tmp_path: Path
) -> None:
    spec = json.loads((trained / "spec.json").read_text())
    assert spec["horizon_steps"] == 30
    assert 0 < spec["threshold"] < 1
    assert len(spec["fingerprint"]) == 64
    assert spec["metrics"]["training"]["lost_readings"] == 0.02  # the default for history:
    plots = tmp_path / "plots"
    result = CliRunner().invoke(
        cli,
        [
            "evaluate",
            "--model",
            str(trained),
            "--data",
            f"history:{sim_files[0]}",
            "--plots",
            str(plots),
            "--json-out",
            str(tmp_path / "m.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert {
        "accuracy",
        "precision",
        "recall",
        "f1",
        "roc_auc",
        "pr_auc",
        "brier",
        "confusion",
        "lead_median",
    } <= set(metrics)
    events = pd.read_parquet(sim_files[1])
    tickets = metrics["tickets"]
    assert tickets["failures"] == int((events["kind"] == "failure").sum())
    assert tickets["max_lead_steps"] == 60  # 2 H
    assert tickets["tickets"] == tickets["false_alarms"] + round(
        tickets["ticket_precision"] * tickets["tickets"]
    )
    assert f"tickets (alert rules replayed): {tickets['tickets']} opened" in result.output
    assert metrics["lost_readings"] == 0.0
    assert sorted(p.name for p in plots.glob("*.png")) == [
        "calibration.png",
        "pr_curve.png",
        "risk_over_time.png",
        "training_curves.png",
    ]


def test_tickets_are_replayed_on_the_windows_the_scorer_emits(
    trained: Path, sim_files: tuple[Path, Path]
) -> None:
    """Not on a silent step: no reading while a machine is down between failure and repair."""
    from evaluation.workflow import scored_windows
    from models.artifact import load_artifact
    from models.data import load_source
    from plantwatch.presets import PRESETS

    window = PRESETS["plant"]
    artifact = load_artifact(trained, window)
    history = load_source(f"history:{sim_files[0]}", window.step_ms, window.sensors)
    stream, emitted = scored_windows(history.telemetry, artifact.spec, artifact.meta)
    t = history.telemetry
    heard = set(zip(t["equipment_id"], t["ts"] // window.step_ms * window.step_ms, strict=True))
    ids, starts = stream.index["equipment_id"], stream.index["step_start"]
    assert emitted.tolist() == [(e, s) in heard for e, s in zip(ids, starts, strict=True)]
    ev = history.events.sort_values("ts")
    down = np.zeros(len(stream), dtype=bool)
    for eid, rows in ev.groupby("equipment_id"):
        kinds, ts = rows["kind"].tolist(), rows["ts"].tolist()
        for k, (kind, at) in enumerate(zip(kinds, ts, strict=True)):
            if kind == "failure" and k + 1 < len(kinds) and kinds[k + 1] == "repair":
                down |= (
                    (ids == eid) & (starts > at) & (starts + window.step_ms < ts[k + 1])
                ).to_numpy()
    assert down.sum() > 100  # the simulator's repairs: steps emitted (gap-filled) while down
    assert not emitted[down].any()  # ... and none of them would open a ticket


def test_evaluate_lost_readings_max_lead_and_alert_rules_from_settings(
    trained: Path, sim_files: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def evaluate(*extra: str) -> tuple[Any, dict[str, Any]]:
        out = tmp_path / "m.json"
        args = ["evaluate", "--model", str(trained), "--data", f"history:{sim_files[0]}"]
        result = CliRunner().invoke(cli, [*args, *extra, "--json-out", str(out)])
        return result, (json.loads(out.read_text()) if result.exit_code == 0 else {})

    result, base = evaluate()
    assert result.exit_code == 0, result.output
    result, lossy = evaluate("--lost-readings", "0.05", "--max-lead", "90m")
    assert result.exit_code == 0, result.output
    assert lossy["lost_readings"] == 0.05
    assert lossy["brier"] != base["brier"]  # other inputs: filled steps where readings were lost
    assert lossy["tickets"]["max_lead_steps"] == 90
    # a critical level no probability reaches opens no ticket
    monkeypatch.setenv("PLANTWATCH_ALERT_CRITICAL", "1.0")
    monkeypatch.setenv("PLANTWATCH_ALERT_CRITICAL_RESET", "1.0")
    result, never = evaluate()
    assert result.exit_code == 0, result.output
    assert never["tickets"]["tickets"] == never["tickets"]["unjudged"] == 0
    result, _ = evaluate("--max-lead", "5x")
    assert result.exit_code == 2
    assert "--max-lead '5x' is not valid" in result.output
    result, _ = evaluate("--lost-readings", "1.5")
    assert result.exit_code == 2
    assert "--lost-readings" in result.output
    result = CliRunner().invoke(
        cli,
        ["evaluate", "--model", str(trained), "--data", "cmapss:x", "--lost-readings", "0.1"],
    )
    assert result.exit_code == 2
    assert "apply to history: data only" in result.output


def test_evaluate_replays_tickets_at_other_levels(
    trained: Path, sim_files: tuple[Path, Path], tmp_path: Path
) -> None:
    out = tmp_path / "m.json"
    args = ["evaluate", "--model", str(trained), "--data", f"history:{sim_files[0]}"]
    result = CliRunner().invoke(cli, [*args, "--levels", "0.9, 0.6,0.9", "--json-out", str(out)])
    assert result.exit_code == 0, result.output
    metrics = json.loads(out.read_text())
    rows = metrics["tickets_by_level"]
    assert [(r["level"], r["reset"]) for r in rows] == [(0.9, 0.8), (0.6, 0.5)]  # once each
    # the settings' level (CRITICAL 0.6 / 0.5) replayed again gives the main figures
    assert {k: v for k, v in rows[1].items() if k not in ("level", "reset")} == metrics["tickets"]
    lines = [line for line in result.output.splitlines() if line.startswith("  level ")]
    assert len(lines) == 2
    assert lines[0].startswith(f"  level 0.90 (reset 0.80): {rows[0]['tickets']} opened, ")
    assert sum("<- best ticket F1 here" in line for line in lines) == 1
    for bad in ("0.5,x", "1.5", ""):
        result = CliRunner().invoke(cli, [*args, "--levels", bad])
        assert result.exit_code == 2
        assert "--levels" in result.output
        assert "is not a probability in [0, 1]" in result.output
    result = CliRunner().invoke(
        cli, ["evaluate", "--model", str(trained), "--data", "cmapss:x", "--levels", "0.7"]
    )
    assert result.exit_code == 2
    assert "ticket levels apply to history: data only" in result.output


def test_evaluate_refuses_other_features_config(
    trained: Path, sim_files: tuple[Path, Path]
) -> None:
    result = CliRunner().invoke(
        cli,
        [
            "evaluate",
            "--model",
            str(trained),
            "--data",
            f"history:{sim_files[0]}",
            "--features-config",
            "cmapss",
        ],
    )
    assert result.exit_code == 2
    assert "differs: the model was trained with" in result.output


@pytest.mark.parametrize("artifact", ["trained", "trained_members"])
def test_fine_tune_moves_labelled_machines_in_labelled_direction(
    artifact: str, sim_files: tuple[Path, Path], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    from models.artifact import load_artifact

    trained: Path = request.getfixturevalue(artifact)
    from models.data import load_history_files
    from models.windows import make_windows, step_features

    art = load_artifact(trained)
    history = load_history_files(*sim_files, art.spec.window.sensors)
    windows = make_windows(
        step_features(history.telemetry, art.spec.window),
        art.spec,
        None,
        art.meta.horizon_steps,
        art.meta.min_steps,
    )
    p = art.predict_proba(windows)
    ids = windows.index["equipment_id"].to_numpy()
    starts = windows.index["step_start"].to_numpy()
    # the machine/time with the lowest risk is declared a confirmed failure, the highest a false alarm
    low, high = int(np.argmin(p)), int(np.argmax(p))
    feedback = pd.DataFrame(
        {
            "equipment_id": [ids[low], ids[high]],
            "ts": [int(starts[low]), int(starts[high])],
            "outcome": ["confirmed", "false-alarm"],
        }
    )
    path = tmp_path / "feedback.csv"
    feedback.to_csv(path, index=False)
    out = tmp_path / "tuned"
    result = CliRunner().invoke(
        cli,
        [
            "fine-tune",
            "--model",
            str(trained),
            "--feedback",
            str(path),
            "--data",
            f"history:{sim_files[0]}",
            "--out",
            str(out),
            "--epochs",
            "10",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    q = load_artifact(out).predict_proba(windows)
    assert q[low] > p[low], (p[low], q[low])
    assert q[high] < p[high], (p[high], q[high])
