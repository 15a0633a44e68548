"""Third-party log noise is off by default, and back with --verbose / PLANTWATCH_LOG_LEVEL."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest
from click.testing import CliRunner

NOISE = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    "I0000 00:00:1796674637.189752   15897 cudart_stub.cc:31] Could not find cuda drivers on "
    "your machine, GPU will not be used.\n"
    "I0000 00:00:1796674637.547067   15897 cpu_feature_guard.cc:227] This TensorFlow binary is "
    "optimized to use available CPU instructions in performance-critical operations.\n"
    "To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow "
    "with the appropriate compiler flags.\n"
    "I0000 00:00:1796674637.6 15897 port.cc:153] oneDNN custom operations are on.\n"
)


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
        timeout=120,
    )


def test_filtered_stderr_drops_the_noise_and_keeps_the_rest() -> None:
    code = (
        "import os\n"
        "from plantwatch.quiet import filtered_stderr\n"
        f"with filtered_stderr():\n    os.write(2, {NOISE.encode()!r} + b'a real error\\n')\n"
        "os.write(2, b'after\\n')\n"
    )
    assert _python(code).stderr == "a real error\nafter\n"


@pytest.mark.slow
def test_tensorflow_starts_quietly() -> None:
    """The first import of TensorFlow through the quiet hook prints nothing (no GPU here)."""
    code = (
        "import sys\n"
        "from plantwatch.quiet import quiet_third_party\n"
        "quiet_third_party(verbose=False)\n"
        "import keras\n"
        "import tensorflow as tf\n"
        "import importlib.resources\n"
        "assert importlib.resources.files('tensorflow').is_dir()\n"
        "print('imported', tf.__version__, file=sys.stderr)\n"
    )
    done = _python(code, TF_CPP_MIN_LOG_LEVEL="")
    lines = done.stderr.splitlines()
    assert lines[-1].startswith("imported "), done.stderr
    assert not [line for line in lines[:-1] if "absl" in line or "cuda" in line], done.stderr


@pytest.mark.parametrize(
    ("args", "env", "verbose"),
    [
        ([], {}, False),
        (["--verbose"], {}, True),
        (["-v"], {}, True),
        ([], {"PLANTWATCH_LOG_LEVEL": "debug"}, True),
        ([], {"PLANTWATCH_LOG_LEVEL": "DEBUG"}, True),
        (["--log-level", "warning"], {"PLANTWATCH_LOG_LEVEL": "debug"}, False),
    ],
)
def test_verbose_brings_the_third_party_logs_back(
    monkeypatch: pytest.MonkeyPatch, args: list[str], env: dict[str, str], verbose: bool
) -> None:
    from plantwatch.cli import cli

    monkeypatch.delenv("PLANTWATCH_LOG_LEVEL", raising=False)
    seen: list[bool] = []
    monkeypatch.setattr("plantwatch.quiet.quiet_third_party", lambda verbose: seen.append(verbose))
    result = CliRunner().invoke(cli, [*args, "profile", "show"], env=env)
    assert result.exit_code == 0, result.output
    assert seen == [verbose]


def test_log_level_sets_our_own_log_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    import logging

    import click

    from plantwatch.cli.main import cli, configure_logging

    levels: dict[str, Any] = {}

    @cli.command("log-level-probe", hidden=True)
    def probe() -> None:
        calls: list[Any] = []
        monkeypatch.setattr(logging, "basicConfig", lambda **kw: calls.append(kw))
        configure_logging()
        levels["level"] = calls[0]["level"]

    try:
        for given, expected in (("warning", logging.WARNING), ("debug", logging.DEBUG)):
            result = CliRunner().invoke(cli, ["--log-level", given, "log-level-probe"])
            assert result.exit_code == 0, result.output
            assert levels["level"] == expected
        bad = CliRunner().invoke(cli, ["--log-level", "loud", "profile", "show"])
        assert bad.exit_code == 2
    finally:
        cli.commands.pop("log-level-probe")
    assert isinstance(cli, click.Group)
