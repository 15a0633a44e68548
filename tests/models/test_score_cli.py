"""`plantwatch score`: its help, and one-line errors for user mistakes."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from plantwatch.cli import cli
from tests.models.tiny import make_artifact, write_window


def test_help_explains_every_option() -> None:
    result = CliRunner().invoke(cli, ["score", "--help"])
    assert result.exit_code == 0, result.output
    for option in ("--model", "--device", "--max-batch", "--max-wait-ms", "--idle-exit"):
        assert option in result.output
    assert "PLANTWATCH_MODELS_DIR" in result.output


def test_no_model_is_one_line_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--models-dir", str(tmp_path / "none"), "score"])
    assert result.exit_code == 2
    assert "no model artifact in" in result.output
    assert "Traceback" not in result.output


def test_not_an_artifact_is_one_line_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["score", "--model", str(tmp_path)])
    assert result.exit_code == 2
    assert "not a model artifact" in result.output


@pytest.mark.slow
def test_gpu_without_one_and_wrong_feature_rules_are_one_line(tmp_path: Path) -> None:
    from models import backend

    model = make_artifact(tmp_path / "m")
    config = write_window(tmp_path / "w.json")
    base = ["--features-config", str(config), "score", "--model", str(model)]
    if not backend.gpu_count():
        result = CliRunner().invoke(cli, [*base, "--device", "gpu"])
        assert result.exit_code == 2
        assert "--device gpu: the Keras backend" in result.output
    result = CliRunner().invoke(cli, ["--features-config", "cmapss", *base[2:]])
    assert result.exit_code == 2
    assert "differs: the model was trained with" in result.output
