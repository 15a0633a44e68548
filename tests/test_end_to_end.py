"""The whole pipeline on the real services: a seeded simulated fleet through `plantwatch run`
with two scorer processes (`--scorers 2`).

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

import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from plantwatch.settings import Settings
from tests.pipeline_helpers import (
    SIM,
    expected_predictions,
    model_spec,
    prediction_keys,
    pw,
    run_overrides,
    settings_of,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def model_dir(sim_model_dir: Path) -> Path:
    """The model trained on simulated history of another seed than the stream."""
    return sim_model_dir


def test_simulated_fleet_through_the_whole_pipeline(
    live_services: Settings, model_dir: Path, unique: str, tmp_path: Path
) -> None:
    import json
    import os
    import sqlite3

    from evaluation.groundtruth import Failure, Opened, compare
    from plantwatch.connections import influx_client
    from plantwatch.report import prediction_counts, read_failures, read_topic
    from plantwatch.supervisor import settings_env

    overrides = run_overrides(f"e2e-{unique}", tmp_path, model_dir)
    env = dict(os.environ) | settings_env(live_services) | overrides
    settings = settings_of(overrides)
    log = tmp_path / "pipeline.log"
    machines, steps = 12, 400
    out = pw(["simulate", "--machines", str(machines), "--count", str(machines * steps),
               "--seed", "7", "--malformed", "0.01", "--summary-json", str(tmp_path / "sim.json"),
               *SIM], env, log)  # fmt: skip
    # More scorers than the features topic has partitions: refused before any stage starts.
    refused = subprocess.run(
        [sys.executable, "-m", "plantwatch", "run", "--no-services", "--scorers", "9"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert refused.returncode == 2, refused.stderr
    assert f"has {settings.topic_partitions} partitions, so at most" in refused.stderr
    assert "Traceback" not in refused.stderr
    # Two scorer processes share the features partitions (one group, two transactional ids).
    pw(["run", "--no-services", "--idle-exit", "12", "--scorers", "2",
        "--log-dir", str(tmp_path / "logs")], env, log, timeout=600)  # fmt: skip
    assert {p.name for p in (tmp_path / "logs").iterdir()} >= {"score-1.log", "score-2.log"}
    summary = json.loads((tmp_path / "sim.json").read_text())

    # Exactly one prediction per machine per feature step after warm-up.
    expected = expected_predictions(settings, model_dir)
    spec = model_spec(model_dir)
    step_ms = spec["feature_spec"]["window"]["step_ms"]
    keys, versions = prediction_keys(settings)
    produced: Counter[str] = Counter(eid for eid, _ in keys.elements())
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
    pw(["report", "--since", "30h", "--max-lead", f"{2 * horizon_ms // 60_000}m",
         "--json-out", str(tmp_path / "report.json"), "--png", str(tmp_path / "report.png")],
        env, log)  # fmt: skip
    doc = json.loads((tmp_path / "report.json").read_text())
    assert doc["predictions_produced"] == doc["predictions_in_influxdb"] == sum(produced.values())
    assert (doc["tickets"], doc["failures"], doc["caught"]) == (
        len(rows),
        result.failures,
        result.caught,
    )
    # near each machine's last prediction a ticket without a failure yet is not judged
    assert doc["false_alarms"] + doc["unjudged"] == result.false_alarms
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Every malformed message is a dead letter.
    invalid = sum(v for k, v in summary["by_expect"].items() if k not in ("valid", "duplicate"))
    assert invalid > 0, out
    assert sum(1 for _ in read_topic(settings, settings.topic_telemetry_dlq)) >= invalid
