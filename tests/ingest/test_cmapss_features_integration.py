"""C-MAPSS replay -> ingest (preset `cmapss`) -> features topic == the offline features."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest

from features.offline import step_features_frame
from ingest.cmapss import load_cmapss
from pipeline.featurerecords import decode_feature
from plantwatch.connections import kafka_config
from plantwatch.presets import PRESETS
from plantwatch.settings import Settings
from tests.conftest import CMAPSS

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not CMAPSS.exists(), reason="../shared/data/cmapss not present"),
]
ENGINES = (1, 2, 3)


def test_replayed_engines_give_the_offline_features(
    live_services: Settings,
    topic: str,
    unique: str,
    tmp_path: Path,
    run_ingest: Callable[..., None],
) -> None:
    from kafka import KafkaConsumer

    env = dict(
        os.environ,
        PLANTWATCH_TOPIC_TELEMETRY=topic,
        PLANTWATCH_TOPIC_TELEMETRY_DLQ=f"{topic}.dlq",
        PLANTWATCH_TOPIC_FEATURES=f"{topic}.features",
        PLANTWATCH_TOPIC_EVENTS=f"{topic}.events",
        PLANTWATCH_FEATURES_CONFIG="cmapss",
        PLANTWATCH_FEATURES_ENCODING="json",  # the other encoding than the SIGKILL test's
        PLANTWATCH_INGEST_GROUP=f"g-{unique}",
        PLANTWATCH_INSTANCE_ID="cmapss-test",
    )
    cli = [sys.executable, "-c", "from plantwatch.cli import main; main()"]
    replay = subprocess.run(
        [*cli, "replay", "cmapss", str(CMAPSS / "train_FD001.txt"), "--engines", "1-3"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert replay.returncode == 0, replay.stderr
    run_ingest(live_services, env, tmp_path / "ingest.log")

    consumer = KafkaConsumer(
        f"{topic}.features",
        **kafka_config(
            live_services,
            group_id=None,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            consumer_timeout_ms=4000,
        ),
    )
    streamed = {}
    for record in consumer:
        assert orjson.loads(record.value)["v"] == 1  # written as JSON, as configured
        rec, reason = decode_feature(record.value)
        assert rec is not None, reason
        streamed[(rec.equipment_id, rec.step_start)] = rec.values
    consumer.close()

    # Offline, from the file itself: the same rules, the cycle -> event time of the replay.
    df = load_cmapss(CMAPSS / "train_FD001.txt")
    df = df[df["unit"].isin(ENGINES)]
    config = PRESETS["cmapss"]
    starts = {eid: min(s for e, s in streamed if e == eid) for eid, _ in streamed}
    frame = pd.DataFrame(
        {"equipment_id": df["unit"].map(lambda u: f"engine-{u:03d}"), "cycle": df["cycle"]}
    )
    first = frame["equipment_id"].map(starts)
    frame["ts"] = (first + (frame["cycle"] - 1) * config.step_ms).astype("int64")
    for sensor in config.sensors:
        frame[sensor] = df[sensor].to_numpy()
    X, index = step_features_frame(frame.drop(columns="cycle"), config)
    offline = {
        (e, int(s)): X[i]
        for i, (e, s) in enumerate(zip(index["equipment_id"], index["step_start"], strict=True))
    }

    cycles = df.groupby("unit")["cycle"].max()
    assert len(streamed) == sum(cycles[u] - 1 for u in ENGINES)  # every cycle but the last closes
    assert streamed.keys() == offline.keys()
    for key, vector in offline.items():
        np.testing.assert_allclose(
            streamed[key], vector, rtol=1e-9, atol=1e-9, equal_nan=True, err_msg=str(key)
        )
