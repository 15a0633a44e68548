"""The whole pipeline on the real services: a seeded simulated fleet through `plantwatch run`.

simulate -> telemetry -> ingest -> features -> scorer -> predictions -> alerting ->
InfluxDB (failure_risk, alerts) + tickets (store and the tickets topic). Checked:

- exactly one prediction per machine per feature step after warm-up, in the predictions
  topic and as points in InfluxDB (counted per machine);
- one ticket per incident (store, and exactly one message per incident on the tickets
  topic);
- tickets against the simulator's failures: most failures get a ticket before them
  (the fraction and lead times are printed, see the closing note of the issue);
- every malformed message is in the telemetry DLQ.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from plantwatch.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

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


def _pw(args: list[str], env: dict[str, str], log: Path, timeout: float = 300) -> str:
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


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained on simulated history of another seed than the stream."""
    import os

    base = tmp_path_factory.mktemp("e2e-model")
    env = {k: v for k, v in os.environ.items()} | {"TF_CPP_MIN_LOG_LEVEL": "3"}
    log = base / "train.log"
    history = base / "history" / "telemetry.parquet"
    _pw(["simulate", "--history-out", str(history), "--machines", "30", "--steps", "1200",
         "--seed", "101", *SIM], env, log)  # fmt: skip
    _pw(["train", "--data", f"history:{history}", "--horizon", "30", "--epochs", "15",
         "--out", str(base / "models" / "sim"), "--quiet"], env, log)  # fmt: skip
    return base / "models"


def test_simulated_fleet_through_the_whole_pipeline(
    live_services: Settings, model_dir: Path, unique: str, tmp_path: Path
) -> None:
    import json
    import os
    import sqlite3

    from features.records import decode_feature
    from models.predictions import decode_prediction
    from plantwatch.connections import influx_client
    from plantwatch.groundtruth import Failure, Opened, compare
    from plantwatch.report import prediction_counts, read_failures, read_topic
    from plantwatch.settings import load_settings
    from plantwatch.supervisor import settings_env

    run = f"e2e-{unique}"
    overrides = {f"PLANTWATCH_TOPIC_{var}": f"{run}.{name}" for name, var in TOPICS.items()}
    overrides |= {
        "PLANTWATCH_INGEST_GROUP": f"{run}-ingest",
        "PLANTWATCH_SCORER_GROUP": f"{run}-scorer",
        "PLANTWATCH_ALERT_GROUP": f"{run}-alerting",
        "PLANTWATCH_ALERT_DB": str(tmp_path / "alerts.db"),
        "PLANTWATCH_ALERT_SINKS": "builtin,kafka",
        "PLANTWATCH_MODELS_DIR": str(model_dir),
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }
    env = dict(os.environ) | settings_env(live_services) | overrides
    settings = load_settings({k.removeprefix("PLANTWATCH_").lower(): v for k, v in overrides.items()
                              if k.startswith("PLANTWATCH_")})  # fmt: skip
    log = tmp_path / "pipeline.log"
    machines, steps = 12, 400
    out = _pw(["simulate", "--machines", str(machines), "--count", str(machines * steps),
               "--seed", "7", "--malformed", "0.01", "--summary-json", str(tmp_path / "sim.json"),
               *SIM], env, log)  # fmt: skip
    _pw(["run", "--no-services", "--idle-exit", "12", "--log-dir", str(tmp_path / "logs")],
        env, log, timeout=600)  # fmt: skip
    summary = json.loads((tmp_path / "sim.json").read_text())

    # Exactly one prediction per machine per feature step after warm-up.
    features: dict[str, list[int]] = {}
    for value in read_topic(settings, settings.topic_features):
        rec, _ = decode_feature(value)
        assert rec is not None
        features.setdefault(rec.equipment_id, []).append(rec.step_start)
    spec = json.loads(next(model_dir.glob("*/spec.json")).read_text())
    warmup, step_ms = spec["min_steps"] - 1, spec["feature_spec"]["window"]["step_ms"]
    expected = {}
    for eid, starts in features.items():
        starts = sorted(set(starts))
        assert len(starts) == len(features[eid]), f"{eid}: a feature step twice"
        segments = 1 + sum(1 for a, b in itertools.pairwise(starts) if b != a + step_ms)
        expected[eid] = len(starts) - warmup * segments
    keys = Counter()
    produced: Counter[str] = Counter()
    versions = set()
    for value in read_topic(settings, settings.topic_predictions):
        p, reason = decode_prediction(value)
        assert p is not None, reason
        keys[(p.equipment_id, p.window_end)] += 1
        produced[p.equipment_id] += 1
        versions.add(p.model_version)
    assert max(keys.values()) == 1, "a prediction was produced twice"
    assert dict(produced) == expected
    assert len(versions) == 1
    first, last = min(w for _, w in keys), max(w for _, w in keys)
    with influx_client(live_services) as client:
        points = prediction_counts(
            client, live_services, sorted(expected), sorted(versions), first, last
        )
    assert points == expected

    # One ticket per incident, in the store and on the tickets topic.
    conn = sqlite3.connect(tmp_path / "alerts.db")
    rows = conn.execute("SELECT equipment_id, incident_key, opened_ms FROM tickets").fetchall()
    conn.close()
    assert rows, "no ticket at all"
    assert len({r[1] for r in rows}) == len(rows)
    topic_keys = Counter()
    for value in read_topic(settings, settings.topic_tickets):
        assert value is not None
        topic_keys[json.loads(value)["incident_key"]] += 1
    assert set(topic_keys) == {r[1] for r in rows}
    assert max(topic_keys.values()) == 1

    # Tickets against the simulator's failures.
    failures = read_failures(settings, settings.topic_events, 0, 2**62)
    horizon_ms = spec["horizon_steps"] * step_ms
    result = compare(failures, [Opened(r[0], r[2]) for r in rows], max_lead_ms=2 * horizon_ms)
    leads = sorted(lead // 60_000 for lead in result.lead_ms)
    print(
        f"\ne2e: {machines} machines, {sum(produced.values())} predictions (= InfluxDB points), "
        f"{len(rows)} tickets; failures {result.failures}: caught {result.caught} "
        f"({result.recall:.0%}), lead minutes {leads}; false alarms {result.false_alarms}"
    )
    assert result.failures > 0
    assert result.recall > 0.5, f"most failures should get a ticket first: {result}"
    assert all(isinstance(f, Failure) for f in failures)

    # `plantwatch report` gives the same figures.
    _pw(["report", "--since", "30h", "--max-lead", f"{2 * horizon_ms // 60_000}m",
         "--json-out", str(tmp_path / "report.json"), "--png", str(tmp_path / "report.png")],
        env, log)  # fmt: skip
    doc = json.loads((tmp_path / "report.json").read_text())
    assert doc["predictions_produced"] == doc["predictions_in_influxdb"] == sum(produced.values())
    assert (doc["tickets"], doc["failures"], doc["caught"]) == (
        len(rows),
        result.failures,
        result.caught,
    )
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Every malformed message is a dead letter.
    invalid = sum(v for k, v in summary["by_expect"].items() if k not in ("valid", "duplicate"))
    assert invalid > 0, out
    assert sum(1 for _ in read_topic(settings, settings.topic_telemetry_dlq)) >= invalid
