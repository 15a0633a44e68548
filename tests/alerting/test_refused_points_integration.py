"""A record whose point the real InfluxDB refuses becomes a dead letter; the stage goes on.

InfluxDB refuses a point whose field has another type than the same field already has in
its shard (HTTP 422, "field type conflict"). The test makes the server refuse one record
that way: a ``failure_risk`` point with a *string* ``probability`` is written first, two
weeks back, where the refused record's time lies; the record's float ``probability`` is
then refused. Field types hold per measurement and shard (not per machine), so the
refused record lies in another shard than its neighbours (shards of the test's bucket
span 7 days), and the test writes into a bucket of its own, deleted afterwards: in the
shared bucket a string ``probability`` would make every ``failure_risk`` point of that
shard refused, other tests' included.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from alerting import store
from alerting.influx import InfluxWriter
from alerting.rules import Rules
from pipeline.deadletter import headers_of
from pipeline.predictions import decode_prediction
from plantwatch.connections import influx_client, kafka_config
from plantwatch.settings import Settings
from tests.alerting.helpers import Running, base_ms, model_version, produce, risk_points

pytestmark = pytest.mark.integration
RULES = Rules(pending_steps=3, repeat_ms=0, deadman_ms=0)
TWO_WEEKS_MS = 14 * 24 * 3600 * 1000


@pytest.fixture
def own_bucket(live_services: Settings, unique: str) -> Iterator[Settings]:
    """The settings with a bucket of the test's own (infinite retention), deleted after."""
    name = f"refused-{unique}"
    with influx_client(live_services, timeout_ms=10_000) as client:
        buckets = client.buckets_api()
        created = buckets.create_bucket(bucket_name=name, org=live_services.influx_org)
        try:
            yield live_services.model_copy(update={"influx_bucket": name})
        finally:
            buckets.delete_bucket(created)


def _letters(settings: Settings, topic: str) -> list[tuple[bytes, dict[str, str]]]:
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic, **kafka_config(settings, auto_offset_reset="earliest", consumer_timeout_ms=5000)
    )
    out = [(m.value, headers_of(m.headers)) for m in consumer]
    consumer.close()
    return out


def test_a_point_influx_refuses_is_a_dead_letter_and_the_neighbours_are_written(
    own_bucket: Settings,
    make_topic: Callable[[str], str],
    unique: str,
    tmp_path: Path,
) -> None:
    from tests.conftest import group_lag

    s = own_bucket
    topic = make_topic(f"pred-{unique}")
    make_topic(f"pred-{unique}.dlq")
    version = model_version(tmp_path / "models")
    base = base_ms()
    victim, old = f"pump-{unique}-v", base - TWO_WEEKS_MS
    with influx_client(s, timeout_ms=10_000) as client:
        InfluxWriter(client, s.influx_bucket, s.influx_org).write(
            [f'failure_risk,equipment_id={victim},model_version=x probability="high" {old}']
        )
    neighbours = {f"pump-{unique}-{i}": [0.1, 0.2, 0.3, 0.2] for i in range(4)}
    n = produce(s, topic, neighbours, version, base)
    n += produce(s, topic, {victim: [0.25]}, version, old)
    group = f"g-{unique}"

    run = Running(s, topic, group, tmp_path / "alert.sqlite", version, RULES).start(idle_exit=4)
    run.join()  # raises what stopped the stage, if anything did

    m = run.service.metrics
    assert m.consumed == n
    assert dict(m.dead) == {"sink_refused": 1}
    for eid, probs in neighbours.items():
        assert [r["probability"] for r in risk_points(s, eid)] == probs
    ((value, h),) = _letters(s, f"{topic}.dlq")
    letter, _ = decode_prediction(value)  # the source record, byte for byte
    assert letter is not None
    assert (letter.equipment_id, letter.window_end) == (victim, old)
    assert (h["reason"], h["stage"], h["source.topic"]) == ("sink_refused", "alerting", topic)
    assert "field type conflict" in h["detail"]
    assert "InfluxDB refused 1 of the record's 1 point(s) (failure_risk)" in h["detail"]
    assert group_lag(s, group, topic) == 0  # every offset committed, the refused one too
    stored = store.stored_offsets(store.connect(tmp_path / "alert.sqlite"), group, topic)
    assert sum(stored.values()) == n
