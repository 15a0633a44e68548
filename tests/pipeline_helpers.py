"""Shared parts of the whole-pipeline tests (`test_end_to_end.py`, `test_faults.py`).

- :func:`pw`: run one `plantwatch` command, fail the test on a non-zero exit;
- :func:`train_sim_model`: a model trained on simulated history (the session fixture
  ``sim_model_dir`` of ``conftest.py`` trains it once for every pipeline test);
- :func:`run_overrides`: per-run topics, groups and alert store;
- :func:`expected_predictions` / :func:`prediction_keys`: what the predictions topic must
  hold (one per machine per feature step after warm-up, none for a silent step) and what
  it holds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from plantwatch.settings import Settings, load_settings

BROKER_OUTAGE_MARKS = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.timeout(300),
    # kafka-python leaves the sockets of refused connects (the broker is down for a while)
    # to the garbage collector; they are collected at the end of the test (gc.collect()).
    pytest.mark.filterwarnings("ignore:unclosed <socket.socket:ResourceWarning"),
]
"""Marks of a test that stops the shared test broker for a while."""

SIM = ["--interval-ms", "60000", "--mean-life-steps", "300", "--repair-steps", "30"]
TOPICS = {
    "telemetry": "TELEMETRY",
    "telemetry.dlq": "TELEMETRY_DLQ",
    "features": "FEATURES",
    "features.dlq": "FEATURES_DLQ",
    "predictions": "PREDICTIONS",
    "predictions.dlq": "PREDICTIONS_DLQ",
    "events": "EVENTS",
    "tickets": "TICKETS",
    "feedback": "FEEDBACK",
}


def wait_until(cond: Callable[[], bool], timeout: float, step: float = 0.5) -> bool:
    """Poll ``cond`` every ``step`` seconds until it holds or ``timeout`` passed; its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


def pw(args: list[str], env: dict[str, str], log: Path, timeout: float = 300) -> str:
    """Run ``plantwatch ARGS`` (stderr appended to ``log``); its stdout, or fail the test."""
    with log.open("a") as err:
        done = subprocess.run(
            [sys.executable, "-m", "plantwatch", *args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            timeout=timeout,
            check=False,
        )
    if done.returncode != 0:
        pytest.fail(f"plantwatch {args[0]} exited {done.returncode}:\n{log.read_text()[-4000:]}")
    return done.stdout.decode()


def train_sim_model(base: Path) -> Path:
    """A model trained on simulated history of another seed than the streams; its models dir."""
    env = dict(os.environ) | {"TF_CPP_MIN_LOG_LEVEL": "3"}
    log = base / "train.log"
    history = base / "history" / "telemetry.parquet"
    pw(["simulate", "--history-out", str(history), "--machines", "30", "--steps", "1200",
        "--seed", "101", *SIM], env, log)  # fmt: skip
    pw(["train", "--data", f"history:{history}", "--horizon", "30", "--epochs", "15",
        "--out", str(base / "models" / "sim"), "--quiet"], env, log)  # fmt: skip
    return base / "models"


def model_spec(model_dir: Path) -> dict[str, Any]:
    """The spec.json of the (only) model in ``model_dir``."""
    spec: dict[str, Any] = json.loads(next(model_dir.glob("*/spec.json")).read_text())
    return spec


def run_overrides(run: str, tmp_path: Path, model_dir: Path) -> dict[str, str]:
    """``PLANTWATCH_*`` variables giving a run its own topics, groups and alert store."""
    overrides = {f"PLANTWATCH_TOPIC_{var}": f"{run}.{name}" for name, var in TOPICS.items()}
    return overrides | {
        "PLANTWATCH_INGEST_GROUP": f"{run}-ingest",
        "PLANTWATCH_SCORER_GROUP": f"{run}-scorer",
        "PLANTWATCH_ALERT_GROUP": f"{run}-alerting",
        "PLANTWATCH_ALERT_DB": str(tmp_path / "alerts.db"),
        "PLANTWATCH_ALERT_SINKS": "builtin,kafka",
        "PLANTWATCH_MODELS_DIR": str(model_dir),
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }


def settings_of(overrides: dict[str, str]) -> Settings:
    """The settings of the environment with the ``PLANTWATCH_*`` entries of ``overrides``."""
    over = {
        k.removeprefix("PLANTWATCH_").lower(): v
        for k, v in overrides.items()
        if k.startswith("PLANTWATCH_")
    }
    return load_settings(over)


def expected_predictions(settings: Settings, model_dir: Path) -> dict[str, int]:
    """Predictions per machine that the features topic calls for: each machine's feature
    steps minus the model's warm-up once per run of consecutive steps and minus the silent
    steps after it (no reading at all: ``features.core.silent_steps``). Fails the test if
    a feature step is on the topic twice."""
    import numpy as np

    from features.config import WindowConfig
    from features.core import silent_steps
    from pipeline.featurerecords import decode_feature
    from plantwatch.report import read_topic

    spec = model_spec(model_dir)
    window = WindowConfig.from_dict(spec["feature_spec"]["window"])
    features: dict[str, list[tuple[int, bool]]] = {}
    for value in read_topic(settings, settings.topic_features):
        rec, reason = decode_feature(value)
        assert rec is not None, reason
        silent = bool(silent_steps(rec.values[None, :], window)[0])
        features.setdefault(rec.equipment_id, []).append((rec.step_start, silent))
    warmup, step_ms = spec["min_steps"] - 1, window.step_ms
    expected = {}
    for eid, steps in features.items():
        steps.sort()
        starts = np.array([start for start, _ in steps])
        assert len(set(starts.tolist())) == len(starts), f"{eid}: a feature step twice"
        new_segment = np.r_[True, np.diff(starts) != step_ms]
        segment = np.cumsum(new_segment)
        position = np.arange(len(starts)) - np.flatnonzero(new_segment)[segment - 1]
        silent = np.array([q for _, q in steps])
        expected[eid] = int(np.sum((position >= warmup) & ~silent))
    return expected


def prediction_keys(settings: Settings) -> tuple[Counter[tuple[str, int]], set[str]]:
    """Every (equipment_id, window_end) on the predictions topic, counted; model versions."""
    from pipeline.predictions import decode_prediction
    from plantwatch.report import read_topic

    keys: Counter[tuple[str, int]] = Counter()
    versions = set()
    for value in read_topic(settings, settings.topic_predictions):
        p, reason = decode_prediction(value)
        assert p is not None, reason
        keys[(p.equipment_id, p.window_end)] += 1
        versions.add(p.model_version)
    return keys, versions


def records_behind(settings: Settings, group: str, topic: str) -> int:
    """Committed records of ``topic`` after ``group``'s committed offsets.

    Unlike ``conftest.group_lag`` (end offset minus committed offset), this does not count
    the commit markers of a transactional topic: a group that consumed everything of the
    features or predictions topic is 0 behind, though its offsets stay before the last marker.
    """
    from kafka import KafkaConsumer, TopicPartition

    from plantwatch.connections import kafka_config

    grouped = KafkaConsumer(**kafka_config(settings, group_id=group, enable_auto_commit=False))
    try:
        tps = [TopicPartition(topic, p) for p in grouped.partitions_for_topic(topic) or ()]
        committed = {tp: grouped.committed(tp) or 0 for tp in tps}
    finally:
        grouped.close()
    reader = KafkaConsumer(
        **kafka_config(settings), enable_auto_commit=False, isolation_level="read_committed"
    )
    behind = 0
    try:
        if not tps:
            return 0
        reader.assign(tps)
        for tp, offset in committed.items():
            reader.seek(tp, offset)
        ends = reader.end_offsets(tps)
        while any(reader.position(tp) < ends[tp] for tp in tps):
            behind += sum(len(r) for r in reader.poll(timeout_ms=1000).values())
    finally:
        reader.close()
    return behind
