"""The current profile: below options and environment, shown, saved and cleared by the CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.errors import SettingsError
from plantwatch.cli import cli
from plantwatch.profile import profile_path, read_profile
from plantwatch.settings import Settings, load_settings


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No PLANTWATCH_* variables but a state directory in tmp_path; returns the profile path."""
    for name in list(os.environ):
        if name.upper().startswith("PLANTWATCH_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PLANTWATCH_STATE_DIR", str(tmp_path / "state"))
    return tmp_path / "state" / "profile.json"


def _write(path: Path, settings: dict[str, str], name: str = "demo-1") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps({"name": name, "saved": "2026-12-07T10:00:00Z", "settings": settings})
    )


def test_profile_sits_below_environment_and_options(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write(clean_env, {"PLANTWATCH_TOPIC_TELEMETRY": "p.telemetry", "PLANTWATCH_ALERT_DB": "/p.db"})
    assert load_settings().topic_telemetry == "p.telemetry"
    assert load_settings().alert_db == Path("/p.db")
    assert load_settings().topic_features == "features"  # not in the profile: the default
    monkeypatch.setenv("PLANTWATCH_TOPIC_TELEMETRY", "e.telemetry")
    assert load_settings().topic_telemetry == "e.telemetry"
    assert load_settings({"topic_telemetry": "o.telemetry"}).topic_telemetry == "o.telemetry"
    assert load_settings(read_env=False).topic_telemetry == "telemetry"  # no environment: none


def test_profile_is_found_where_the_settings_say(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    other = tmp_path / "elsewhere" / "p.json"
    _write(other, {"PLANTWATCH_ALERT_DB": "/other.db"})
    _write(clean_env, {"PLANTWATCH_ALERT_DB": "/state.db"})
    assert load_settings().alert_db == Path("/state.db")
    assert load_settings({"profile_file": other}).alert_db == Path("/other.db")
    monkeypatch.setenv("PLANTWATCH_PROFILE_FILE", str(other))
    assert load_settings().alert_db == Path("/other.db")
    assert profile_path() == other
    monkeypatch.delenv("PLANTWATCH_PROFILE_FILE")
    assert load_settings({"state_dir": tmp_path / "none"}).alert_db != Path("/state.db")


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("not json", "not JSON"),
        ('{"settings": {}}', "no name or no settings object"),
        ('{"name": "x", "settings": {"PLANTWATCH_TOPIC_PARTITIONS": 3}}', "is not a string"),
        (
            '{"name": "x", "settings": {"PLANTWATCH_INFLUX_TOKEN": "abcdefghij"}}',
            "secrets and where",
        ),
        ('{"name": "x", "settings": {"PLANTWATCH_STATE_DIR": "/x"}}', "secrets and where"),
        (
            '{"name": "x", "settings": {"PLANTWATCH_NO_SUCH": "1"}}',
            "PLANTWATCH_NO_SUCH is no setting",
        ),
    ],
)
def test_a_broken_profile_is_one_clear_error(clean_env: Path, content: str, why: str) -> None:
    clean_env.parent.mkdir(parents=True)
    clean_env.write_text(content)
    with pytest.raises(SettingsError) as caught:
        load_settings()
    message = str(caught.value)
    assert message.startswith(f"invalid setting PLANTWATCH_PROFILE_FILE='{clean_env}'")
    assert why in message
    assert "`plantwatch profile clear`" in message


def test_a_wrong_value_names_the_profile(clean_env: Path) -> None:
    _write(clean_env, {"PLANTWATCH_TOPIC_PARTITIONS": "0"}, name="demo-7")
    with pytest.raises(SettingsError, match=r"PLANTWATCH_TOPIC_PARTITIONS='0'.*profile 'demo-7'"):
        load_settings()


def test_save_show_clear_and_services_status(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PLANTWATCH_TOPIC_TELEMETRY", "run-1.telemetry")
    monkeypatch.setenv("PLANTWATCH_MODELS_DIR", "models")  # relative: saved absolute
    monkeypatch.setenv("PLANTWATCH_INFLUX_TOKEN", "secret-token-1")  # never saved
    runner = CliRunner()
    saved = runner.invoke(cli, ["--alert-db", "a.db", "profile", "save", "run-1"])
    assert saved.exit_code == 0, saved.output
    assert f"saved the profile run-1 (3 settings) to {clean_env}" in saved.output
    profile = read_profile(clean_env, Settings)
    assert profile is not None
    assert profile.settings == {  # no secret, no state directory
        "PLANTWATCH_ALERT_DB": str(tmp_path / "a.db"),
        "PLANTWATCH_MODELS_DIR": str(tmp_path / "models"),
        "PLANTWATCH_TOPIC_TELEMETRY": "run-1.telemetry",
    }
    assert "secret-token-1" not in clean_env.read_text()

    monkeypatch.delenv("PLANTWATCH_TOPIC_TELEMETRY")
    monkeypatch.delenv("PLANTWATCH_MODELS_DIR")
    assert load_settings().topic_telemetry == "run-1.telemetry"
    shown = runner.invoke(cli, ["profile", "show"])
    assert shown.exit_code == 0, shown.output
    assert "profile run-1 (saved " in shown.output
    assert "  PLANTWATCH_TOPIC_TELEMETRY=run-1.telemetry\n" in shown.output
    status = runner.invoke(cli, ["services", "status"])
    assert status.exit_code == 0, status.output
    assert f"profile   run-1            {clean_env} (3 settings;" in status.output

    bad = runner.invoke(cli, ["profile", "save", "no/slashes"])
    assert bad.exit_code == 2
    assert "invalid setting NAME='no/slashes'" in bad.output
    cleared = runner.invoke(cli, ["profile", "clear"])
    assert cleared.exit_code == 0, cleared.output
    assert f"removed the profile run-1 ({clean_env})" in cleared.output
    assert not clean_env.exists()
    assert "no profile" in runner.invoke(cli, ["profile", "clear"]).output
    assert (
        f"profile   none             ({clean_env})"
        in runner.invoke(cli, ["services", "status"]).output
    )


def test_save_refuses_settings_that_do_not_validate(clean_env: Path) -> None:
    _write(clean_env, {"PLANTWATCH_TOPIC_TELEMETRY": "old"}, name="old")
    result = CliRunner().invoke(cli, ["--topic-partitions", "0", "profile", "save", "new"])
    assert result.exit_code == 2
    assert "invalid setting --topic-partitions='0'" in result.output
    profile = read_profile(clean_env)
    assert profile is not None
    assert profile.name == "old"  # left as it was
    assert [p.name for p in clean_env.parent.iterdir()] == ["profile.json"]
