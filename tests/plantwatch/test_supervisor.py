"""The stage supervisor behind `plantwatch run`, with small stand-in child programs."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

from plantwatch.settings import load_settings
from plantwatch.supervisor import Supervisor, settings_env

CHILD = """
import pathlib, signal, sys, time
stage, mode, state = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3])
runs = state / f"{stage}.runs"
n = int(runs.read_text()) + 1 if runs.exists() else 1
runs.write_text(str(n))
print(f"{stage} run {n}", flush=True)
if mode == "crash-once":
    sys.exit(3 if n == 1 else 0)
if mode == "always-crash":
    sys.exit(4)
if mode == "serve":
    signal.signal(signal.SIGTERM, lambda *a: (print("clean stop", flush=True), sys.exit(0)))
    while True:
        time.sleep(0.05)
"""


def _supervisor(tmp_path: Path, stages: dict[str, str], lines: list[str]) -> Supervisor:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    return Supervisor(
        {stage: [mode, str(tmp_path)] for stage, mode in stages.items()},
        {"PATH": "/usr/bin:/bin"},
        echo=lines.append,
        max_restarts=2,
        program=(sys.executable, str(script)),
    )


def _run_until_done(sup: Supervisor, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while sup.poll():
        assert time.monotonic() < deadline, "the supervisor did not finish"
        time.sleep(0.05)


def test_a_crashed_stage_is_restarted_and_a_finished_one_is_not(tmp_path: Path) -> None:
    lines: list[str] = []
    sup = _supervisor(tmp_path, {"ingest": "crash-once", "score": "always-crash"}, lines)
    sup.start()
    _run_until_done(sup)
    assert (tmp_path / "ingest.runs").read_text() == "2"  # crashed once, restarted, done
    assert (tmp_path / "score.runs").read_text() == "3"  # 1 + max_restarts, then given up
    assert any("score failed 3 times in a row" in line for line in lines)
    assert "[ingest] ingest run 2" in lines
    codes = sup.stop()
    assert codes == {"ingest": [3, 0], "score": [4, 4, 4]}


def test_stop_sends_sigterm_and_waits_for_a_clean_exit(tmp_path: Path) -> None:
    lines: list[str] = []
    sup = _supervisor(tmp_path, {"alert": "serve"}, lines)
    sup.start()
    deadline = time.monotonic() + 10
    while not (tmp_path / "alert.runs").exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(0.3)
    assert sup.stop(grace_s=10) == {"alert": [0]}
    assert "[alert] clean stop" in lines


def test_settings_travel_to_children_as_environment() -> None:
    settings = load_settings(
        {"topic_predictions": "p2", "ingest_write_influx": True}, read_env=False
    )
    env = settings_env(settings)
    assert env["PLANTWATCH_TOPIC_PREDICTIONS"] == "p2"
    assert env["PLANTWATCH_INGEST_WRITE_INFLUX"] == "true"
    assert (
        load_settings({}, read_env=False).influx_token.get_secret_value()
        == env["PLANTWATCH_INFLUX_TOKEN"]
    )


INSTANCE = """
import os, pathlib, sys
pathlib.Path(sys.argv[2], sys.argv[1] + "-" + os.environ["PLANTWATCH_INSTANCE_ID"]).touch()
"""


def test_a_stage_with_instances_gets_one_process_and_transactional_id_each(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(INSTANCE)
    lines: list[str] = []
    sup = Supervisor(
        {"ingest": [str(tmp_path)], "score": [str(tmp_path)]},
        {"PATH": "/usr/bin:/bin", "PLANTWATCH_INSTANCE_ID": "host"},
        echo=lines.append,
        program=(sys.executable, str(script)),
        instances={"score": 3},
    )
    assert [c.stage for c in sup.children] == ["ingest", "score-1", "score-2", "score-3"]
    sup.start()
    _run_until_done(sup)
    made = sorted(p.name for p in tmp_path.iterdir() if p.name != "child.py")
    assert made == ["ingest-host", "score-host", "score-host-2", "score-host-3"]
    assert sup.stop() == {"ingest": [0], "score-1": [0], "score-2": [0], "score-3": [0]}
    assert "run: score-2 finished (exit 0)" in lines


def test_instances_without_an_instance_id_are_refused() -> None:
    with pytest.raises(ValueError, match="PLANTWATCH_INSTANCE_ID"):
        Supervisor({"score": []}, {}, instances={"score": 2})
