"""Issue 26 on the real broker and InfluxDB: any producer's codec, hostile records, a sink's
refusal; `plantwatch ingest --influx --tap` never stops, loses or doubles a record.

Telemetry is produced with librdkafka (confluent-kafka: what plant gateways and `kcat` use),
not with our own client, and read back from InfluxDB and the dead-letter topic.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from ingest.contract import Telemetry, encode
from pipeline.deadletter import headers_of
from plantwatch.settings import Settings
from tests.conftest import group_lag
from tests.ingest.helpers import influx_rows, ingest_env, read_topic

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
NOW_MS = int(time.time() * 1000)


def librdkafka_produce(
    settings: Settings,
    topic: str,
    values: Sequence[tuple[bytes, bytes]],
    codec: str = "none",
    **config: Any,
) -> None:
    """Produce (key, value) pairs with librdkafka, compressed with ``codec``."""
    from confluent_kafka import Producer

    producer = Producer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "compression.type": codec,
            "linger.ms": 20,
            "acks": "all",
            **config,
        }
    )
    failed: list[str] = []

    def report(err: Any, _msg: Any) -> None:
        if err is not None:
            failed.append(str(err))

    for key, value in values:
        producer.produce(topic, key=key, value=value, on_delivery=report)
        producer.poll(0)
    assert producer.flush(30) == 0
    assert not failed, failed


def run_ingest(
    settings: Settings, topic: str, group: str, tap: Path, *extra: str, idle: float = 4
) -> subprocess.CompletedProcess[str]:
    env = ingest_env(topic, group)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "plantwatch",
            "ingest",
            "--influx",
            "--tap",
            str(tap),
            "--idle-exit",
            str(idle),
            *extra,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


def tap_lines(tap: Path) -> list[tuple[str, int]]:
    return [(d["equipment_id"], d["ts"]) for d in map(json.loads, tap.read_bytes().splitlines())]


def good(eid: str, i: int, **extra: Any) -> bytes:
    return encode(Telemetry(eid, NOW_MS - 600_000 + i * 1000, {"temp": 20.0 + i}, **extra))


@pytest.mark.parametrize("codec", CODECS)
def test_every_codec_of_a_librdkafka_producer_is_read(
    live_services: Settings, make_topic: Any, unique: str, tmp_path: Path, codec: str
) -> None:
    topic = make_topic(f"codec-{codec}-{unique}")
    eid = f"codec-{codec}-{unique}"
    values = [(eid.encode(), good(eid, i)) for i in range(30)]
    librdkafka_produce(live_services, topic, values, codec)
    tap = tmp_path / "tap.jsonl"
    done = run_ingest(live_services, topic, f"g-{unique}", tap)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert "group_id is None" not in done.stderr  # a start without a client's warnings
    assert len(tap_lines(tap)) == 30
    rows = influx_rows(live_services, eid)
    assert sorted(rows) == [(NOW_MS - 600_000 + i * 1000, "temp", 20.0 + i) for i in range(30)]
    assert group_lag(live_services, f"g-{unique}", topic) == 0


def _raw(eid: str, i: int, **fields: Any) -> bytes:
    doc: dict[str, Any] = {"equipment_id": eid, "ts": NOW_MS - 500_000 + i, "readings": {"t": 1}}
    doc.update(fields)
    return json.dumps(doc).encode()


def _literal(eid: str, field: str, value: bytes) -> bytes:
    """A message with one field written as raw JSON text (what json.dumps cannot write)."""
    fields = {"ts": b"%d" % NOW_MS, "readings": b'{"t":1}', field: value}
    return b'{"equipment_id":"%s",%s}' % (
        eid.encode(),
        b",".join(b'"%s":%s' % (k.encode(), v) for k, v in fields.items()),
    )


# Each case of issue 26's report (observed at 3a82194: the stage exited, or InfluxDB refused
# the batch and the stage stopped, or it retried forever), the reason and words it gets now.
HOSTILE: dict[str, tuple[Any, str, str]] = {
    "id_final_newline": (lambda e: _raw(e + "\n", 1), "invalid_equipment_id", "outside"),
    "sensor_final_newline": (
        lambda e: _raw(e, 2, readings={"t\n": 1.0}),
        "invalid_readings",
        "sensor name",
    ),
    "site_final_newline": (lambda e: _raw(e, 3, site="plant-a\n"), "invalid_field", "site"),
    "site_final_backslash": (
        lambda e: _raw(e, 4, site="plant-a\\"),
        "invalid_field",
        "backslashes",
    ),
    "lone_surrogate": (
        lambda e: _literal(e, "site", b'"\\ud800"'),
        "invalid_field",
        "surrogates",
    ),
    "400_digit_reading": (
        lambda e: _literal(e, "readings", b'{"t":%s}' % (b"9" * 400)),
        "invalid_reading",
        "out of range",
    ),
    # orjson reads an integer beyond 64 bits as a float: refused as not a time
    "ts_10e24": (lambda e: _raw(e, 5, ts=10**24), "invalid_ts", "1e+24"),
    "ts_2e62": (lambda e: _raw(e, 5, ts=2**62), "ts_out_of_range", "1970-01-01"),
    "utf16_bom": (lambda e: _raw(e, 6).decode().encode("utf-16"), "not_json", "not UTF-8"),
    "5_mb": (
        lambda e: _literal(e, "site", b'"%s"' % (b"x" * 5_000_000)),
        "too_large",
        "5000",
    ),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_hostile_record_is_a_dead_letter_and_its_neighbours_are_written(
    live_services: Settings, make_topic: Any, unique: str, tmp_path: Path, case: str
) -> None:
    make, reason, words = HOSTILE[case]
    topic = make_topic(f"hostile-{unique}")
    eid = f"h-{unique}"
    raw = make(eid)
    values = [(eid.encode(), good(eid, 0)), (eid.encode(), raw), (eid.encode(), good(eid, 1))]
    # zstd: the 5 MB record travels in a batch below the broker's 1 MiB limit, as a gateway's would.
    librdkafka_produce(live_services, topic, values, "zstd", **{"message.max.bytes": 8_000_000})
    tap = tmp_path / "tap.jsonl"
    done = run_ingest(live_services, topic, f"g-{unique}", tap)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr

    expected = [(NOW_MS - 600_000 + i * 1000, "temp", 20.0 + i) for i in range(2)]
    assert sorted(influx_rows(live_services, eid)) == expected
    assert sorted(tap_lines(tap)) == [(eid, ts) for ts, _, _ in expected], "each line once"
    letters = read_topic(live_services, f"{topic}.dlq", 1)
    assert len(letters) == 1
    fields = headers_of(letters[0].headers)
    assert fields["source.offset"] == "1"
    assert (fields["reason"], words in fields["detail"]) == (reason, True), fields
    if len(raw) > 1_000_000:  # stored cut, with the size and hash of the original
        assert len(letters[0].value) == 1_000_000
        assert fields["original.size"] == str(len(raw))
        assert fields["original.sha256"] == hashlib.sha256(raw).hexdigest()
    else:
        assert letters[0].value == raw
    assert group_lag(live_services, f"g-{unique}", topic) == 0


def test_a_point_influxdb_refuses_is_dead_lettered_and_its_neighbours_written(
    live_services: Settings, make_topic: Any, unique: str, tmp_path: Path
) -> None:
    """A field type conflict: InfluxDB refuses a float field where the shard holds a string."""
    from influxdb_client.client.write_api import SYNCHRONOUS

    from plantwatch.connections import influx_client

    topic = make_topic(f"refused-{unique}")
    poisoned, fine, sensor = f"p-{unique}", f"f-{unique}", f"s{unique}"
    with influx_client(live_services) as client:
        client.write_api(write_options=SYNCHRONOUS).write(
            bucket=live_services.influx_bucket,
            record=f'telemetry,equipment_id={poisoned} {sensor}="text" {NOW_MS - 900_000}',
            write_precision="ms",
        )
    refused = encode(Telemetry(poisoned, NOW_MS - 300_000, {sensor: 1.5}))
    values = [(fine.encode(), good(fine, i)) for i in range(10)]
    values.insert(5, (poisoned.encode(), refused))
    librdkafka_produce(live_services, topic, values, "lz4")
    tap = tmp_path / "tap.jsonl"
    done = run_ingest(live_services, topic, f"g-{unique}", tap)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(influx_rows(live_services, fine)) == 10
    assert sorted(set(tap_lines(tap))) == sorted(tap_lines(tap))
    assert {e for e, _ in tap_lines(tap)} == {fine}, "the tap gets only what InfluxDB took"
    letters = read_topic(live_services, f"{topic}.dlq", 1)
    assert len(letters) == 1
    fields = headers_of(letters[0].headers)
    assert fields["reason"] == "sink_refused"
    assert "conflict" in fields["detail"], fields["detail"]
    assert letters[0].value == refused
    assert group_lag(live_services, f"g-{unique}", topic) == 0
