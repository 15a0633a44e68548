from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from plantwatch.cli import cli
from plantwatch.cli.main import main as _main  # noqa: F401 - registers the subcommands


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from plantwatch.cli import main; main()", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


def test_help_lists_commands_and_env_names() -> None:
    result = _run("--help")
    assert result.returncode == 0
    for word in (
        "services",
        "smoke",
        "PLANTWATCH_KAFKA_BOOTSTRAP_SERVERS",
        "PLANTWATCH_INFLUX_TOKEN",
    ):
        assert word in result.stdout


def test_help_does_not_import_heavy_libraries() -> None:
    code = (
        "import sys; from plantwatch.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('tensorflow', 'keras', 'pandas', 'kafka', 'influxdb_client') "
        "if m in sys.modules]\nprint('HEAVY', heavy)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "HEAVY []" in out


@pytest.mark.parametrize(("given", "seen"), [(None, "3"), ("0", "0")])
def test_tensorflow_cpp_log_is_quiet_unless_asked(given: str | None, seen: str) -> None:
    """Commands that import TensorFlow get TF_CPP_MIN_LOG_LEVEL=3 unless the user set it."""
    code = (
        "import os, sys; from plantwatch.cli import main\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('LEVEL', os.environ.get('TF_CPP_MIN_LOG_LEVEL'))"
    )
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    if given is not None:
        env["TF_CPP_MIN_LOG_LEVEL"] = given
    out = subprocess.run(
        [sys.executable, "-c", code, "train", "--help"],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    ).stdout
    assert f"LEVEL {seen}" in out


def test_secrets_have_no_option_and_defaults_are_not_printed() -> None:
    out = _run("--help").stdout
    assert "--influx-token" not in out
    assert "--kafka-sasl-password" not in out
    assert "plantwatch-local-dev-token" not in out


def test_bad_setting_is_one_line_and_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    env = dict(os.environ, PLANTWATCH_INFLUX_URL="not-a-url")
    result = _run("services", "status", env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "PLANTWATCH_INFLUX_URL='not-a-url'" in lines[0]
    assert "Traceback" not in result.stderr


def test_bad_option_value_names_the_option() -> None:
    result = CliRunner().invoke(cli, ["--kafka-bootstrap-servers", "nohost", "services", "status"])
    assert result.exit_code == 2
    assert "--kafka-bootstrap-servers='nohost'" in result.output


def test_services_refuse_remote_endpoints() -> None:
    result = CliRunner().invoke(
        cli, ["--kafka-bootstrap-servers", "kafka.example.com:9092", "services", "status"]
    )
    assert result.exit_code == 2
    assert "loopback" in result.output


def test_subcommand_help_explains() -> None:
    for args in (["services", "--help"], ["services", "up", "--help"], ["smoke", "--help"]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0
        assert len(result.output.splitlines()) > 4


def test_run_scorers_without_the_score_stage_is_a_clear_error() -> None:
    result = _run("run", "--stages", "ingest,alert", "--scorers", "2", "--no-services")
    assert result.returncode == 2
    assert "--scorers 2: the score stage is not in --stages ingest,alert" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_stops_the_services_it_started_when_start_up_fails(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A Kafka error while creating the topics must not leave this run's services behind."""
    import plantwatch.cli.run as run
    import plantwatch.topics as topics
    from pipeline.errors import PlantwatchError

    stopped: list[bool] = []
    monkeypatch.setattr(run, "_start_local", lambda settings: True)
    monkeypatch.setattr(run, "_stop_local", lambda settings: stopped.append(True))

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise PlantwatchError("Kafka refused to create the topics (test)")

    monkeypatch.setattr(topics, "ensure_topics", refuse)
    result = CliRunner().invoke(cli, ["run", "--stages", "score"])
    assert result.exit_code != 0
    assert stopped == [True]


_SECRET_VARS = (
    "PLANTWATCH_INFLUX_TOKEN",
    "PLANTWATCH_KAFKA_SASL_PASSWORD",
    "PLANTWATCH_ALERT_WEBHOOK_AUTH",
)


@pytest.mark.parametrize(
    ("var", "bad"),
    [
        (var, bad)
        for var in _SECRET_VARS
        for bad in ("\n", " ", "\r\n", "\t", "\x01")
        # a space inside an Authorization value is data ('Bearer <token>')
        if not (var.endswith("WEBHOOK_AUTH") and bad == " ")
    ],
)
def test_a_secret_with_bad_characters_is_one_line_without_the_secret(var: str, bad: str) -> None:
    secret = "Sup3r-s3cret-" + var[-5:].lower()
    env = {**os.environ, var: secret + bad + "tail"}
    if var.endswith("SASL_PASSWORD"):
        env.update(
            PLANTWATCH_KAFKA_SECURITY_PROTOCOL="SASL_SSL",
            PLANTWATCH_KAFKA_SASL_MECHANISM="PLAIN",
            PLANTWATCH_KAFKA_SASL_USERNAME="u",
        )
    result = _run("status", env=env)
    out = result.stdout + result.stderr
    assert result.returncode == 2, out
    assert "s3cret" not in out
    assert "Traceback" not in out
    assert out.strip().count("\n") == 0, out
    assert var in out


def test_a_bug_traceback_masks_the_secrets() -> None:
    code = (
        "import os\n"
        "from plantwatch.cli import cli, main\n"
        "@cli.command('boom')\n"
        "def boom():\n"
        "    raise ValueError('Invalid header value ' + repr(b'Token ' + os.environ['PLANTWATCH_INFLUX_TOKEN'].encode()))\n"
        "main()\n"
    )
    env = {**os.environ, "PLANTWATCH_INFLUX_TOKEN": "t0ken-value-123456"}
    result = subprocess.run(
        [sys.executable, "-c", code, "boom"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1
    assert "Traceback" in result.stderr
    assert "ValueError" in result.stderr
    assert "t0ken-value" not in result.stderr
    assert "***" in result.stderr


def test_report_without_a_model_names_what_to_pass(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["report", "--since", "1h"], env={"PLANTWATCH_MODELS_DIR": str(tmp_path / "none")}
    )
    assert result.exit_code == 2
    assert "(unset)" not in result.output
    assert "no model in PLANTWATCH_MODELS_DIR" in result.output
    assert "--max-lead 60m" in result.output
