"""A whole-path differential fuzzer: generated telemetry through the real broker,
`plantwatch ingest --influx --tap` and the real InfluxDB.

Hypothesis generates messages in both forms (single and batch) with hostile strings
(control characters, newlines, surrogates, backslashes, non-BMP), numbers (huge integers,
NaN literals, exponents), timestamps (far past, far future, 64-bit and beyond, RFC 3339),
sizes (up to a few MB) and encodings (UTF-16, a BOM), each produced with librdkafka and
one of the five codecs. One ingest stage runs the whole time. The oracle, after the stage
has committed everything:

- every message is either in the DLQ with a reason, or read back from InfluxDB exactly
  (series, time, every value), as the standard library's parse of the bytes says;
- a message built valid is never dead-lettered; no message has two letters; the tap has
  each accepted sample once;
- the stage never exits (it is stopped with SIGTERM at the end and exits 0).

Each example also runs the contract in-process, so an exception there is shrunk by
Hypothesis. ``PLANTWATCH_FUZZ_EXAMPLES`` sets the number of examples (default 150; the
longer profile of the issue ran 10,000).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest.contract import validate
from pipeline.deadletter import headers_of
from plantwatch.settings import Settings
from tests.conftest import group_lag
from tests.ingest.helpers import ingest_env, read_topic

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(3600)]

EXAMPLES = int(os.environ.get("PLANTWATCH_FUZZ_EXAMPLES", "150"))
CODECS = ("none", "gzip", "snappy", "lz4", "zstd")
NOW_MS = int(time.time() * 1000)
RUN = f"fz{os.getpid()}x{NOW_MS % 1_000_000}"

HOSTILE_CHARS = st.sampled_from(
    [
        "\n",
        "\r",
        "\t",
        "\x00",
        "\x1f",
        "\x7f",
        "\x85",
        "\u2028",
        "\\",
        '"',
        ",",
        "=",
        " ",
        "#",
        "\ufeff",
        "\ufffe",
        "😀",
        "ä",
        "\ud800",
        "\udfff",
    ]
)
SAFE_TEXT = st.text(
    alphabet=st.characters(
        codec="utf-8",
        exclude_categories=("Cc", "Cs", "Zl", "Zp"),
        exclude_characters="\\\x85",
    ),
    min_size=1,
    max_size=40,
)
HOSTILE_TEXT = st.lists(st.one_of(HOSTILE_CHARS, SAFE_TEXT), min_size=1, max_size=5).map("".join)
NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]{0,20}", fullmatch=True)
FINITE = st.floats(allow_nan=False, allow_infinity=False, width=64)
HOSTILE_NUMBER = st.sampled_from(
    [
        "NaN",
        "Infinity",
        "-Infinity",
        "9" * 400,
        "1e400",
        "-1e400",
        "1e-400",
        "-0",
        "0.0",
        "1E5",
        "18446744073709551616",
        '"1.5"',
        "true",
        "null",
        "[]",
        "{}",
    ]
)


@dataclass
class Sent:
    """What one example produced: the bytes, whether they were built valid, and where."""

    raw: bytes
    built_valid: bool
    codec: str
    partition: int = -1
    offset: int = -1


def _dumps(doc: Any) -> str:
    """JSON text that keeps lone surrogates as escapes (json.dumps does, by ensure_ascii)."""
    return json.dumps(doc, ensure_ascii=True, allow_nan=True)


@st.composite
def messages(draw: st.DrawFn, serial: Iterator[int]) -> tuple[bytes, bool]:
    """One message and whether it was built valid.

    ``rare(n)`` holds about once in ``n`` draws: Hypothesis favours the ends of a range,
    so the rare branch is a value in the middle.
    """

    def rare(n: int) -> bool:
        return draw(st.integers(0, n - 1)) == n // 2

    n = next(serial)
    eid = f"{RUN}-{n}"
    valid = True
    doc: dict[str, Any] = {"equipment_id": eid}
    if rare(10):
        doc["equipment_id"] = eid + draw(HOSTILE_TEXT)
        valid = False
    if draw(st.booleans()):
        site = draw(st.one_of(SAFE_TEXT, HOSTILE_TEXT))
        valid = valid and _safe(site)
        doc["site"] = site
    batch = rare(5)
    samples: list[dict[str, Any]] = []
    raw_numbers: dict[str, str] = {}
    for i in range(draw(st.integers(1, 4)) if batch else 1):
        ts: Any = NOW_MS - 3_000_000 + i * 1000
        kind = draw(st.integers(0, 12))
        if kind == 6:
            ts = draw(st.sampled_from([10**24, 2**63, 2**64, -1, 10**400, 1.5e12, "1e12", True]))
            valid = False
        elif kind == 7:
            zone = timezone(timedelta(minutes=draw(st.integers(-12 * 60, 14 * 60))))
            ts = datetime.fromtimestamp(ts / 1000, zone).isoformat()
        readings: dict[str, Any] = {}
        for _ in range(draw(st.integers(1, 4))):
            name = draw(NAMES)
            if rare(16):
                name = draw(HOSTILE_TEXT)
                valid = False
            if rare(11):
                token = f"__raw{len(raw_numbers)}__"
                raw_numbers[token] = draw(HOSTILE_NUMBER)
                readings[name] = token
                valid = False
            else:
                readings[name] = draw(st.one_of(FINITE, st.integers(-(2**70), 2**70)))
        samples.append({"ts": ts, "readings": readings})
    if batch:
        doc["samples"] = samples
    else:
        doc.update(samples[0])
    text = _dumps(doc)
    for token, number in raw_numbers.items():
        text = text.replace(f'"{token}"', number)
    if rare(60):
        text = text[:-1] + ', "asset_type": "' + "x" * draw(st.integers(900_000, 3_000_000)) + '"}'
        valid = False
    if rare(30):
        return text.encode("utf-16"), False
    if rare(30):
        return b"\xef\xbb\xbf" + text.encode("utf-8", "surrogatepass"), False
    return text.encode("utf-8", "surrogatepass"), valid


def _safe(text: str) -> bool:
    return 0 < len(text) <= 128 and not any(
        c < " " or "\x7f" <= c <= "\x9f" or c in "\u2028\u2029\\" or "\ud800" <= c <= "\udfff"
        for c in text
    )


def _reference(raw: bytes) -> list[tuple[str, str | None, int, dict[str, float]]]:
    """The samples of an accepted message by the standard library's own reading."""
    doc = json.loads(raw.decode("utf-8"))
    samples = doc.get("samples") or [{"ts": doc["ts"], "readings": doc["readings"]}]
    out = []
    for s in samples:
        ts = s["ts"]
        if isinstance(ts, str):
            ts = int(datetime.fromisoformat(ts).timestamp() * 1000)
        out.append(
            (
                doc["equipment_id"],
                doc.get("site"),
                ts,
                {k: float(v) for k, v in s["readings"].items()},
            )
        )
    return out


def _influx_points(live: Settings) -> dict[tuple[str, str | None, int], dict[str, float]]:
    from plantwatch.connections import influx_client

    flux = (
        f'from(bucket: "{live.influx_bucket}") |> range(start: 0) '
        f'|> filter(fn: (r) => r._measurement == "telemetry" and '
        f'strings.hasPrefix(v: r.equipment_id, prefix: "{RUN}-"))'
    )
    points: dict[tuple[str, str | None, int], dict[str, float]] = {}
    with influx_client(live, timeout_ms=120_000) as client:
        for table in client.query_api().query('import "strings"\n' + flux):
            for rec in table.records:
                key = (
                    rec.values["equipment_id"],
                    rec.values.get("site"),
                    int(rec.get_time().timestamp() * 1000),
                )
                points.setdefault(key, {})[rec.get_field()] = rec.get_value()
    return points


def test_generated_telemetry_through_the_real_pipeline(
    live_services: Settings, make_topic: Any, tmp_path: Path
) -> None:
    from confluent_kafka import Producer

    topic = make_topic(f"{RUN}-telemetry")
    group = f"{RUN}-ingest"
    tap = tmp_path / "tap.jsonl"
    log = tmp_path / "ingest.log"
    env = ingest_env(topic, group)
    with log.open("w") as err:
        stage = subprocess.Popen(
            [sys.executable, "-m", "plantwatch", "ingest", "--influx", "--tap", str(tap)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    producers = {
        codec: Producer(
            {
                "bootstrap.servers": live_services.kafka_bootstrap_servers,
                "compression.type": codec,
                "message.max.bytes": 10_000_000,
                "acks": "all",
                "linger.ms": 5,
            }
        )
        for codec in CODECS
    }
    sent: list[Sent] = []
    serial = iter(range(10**9))
    started = time.monotonic()

    def delivered(item: Sent) -> Any:
        def report(err: Any, msg: Any) -> None:
            assert err is None, f"produce failed: {err}"
            item.partition, item.offset = msg.partition(), msg.offset()

        return report

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(message=messages(serial), codec=st.sampled_from(CODECS))
    def produce_one(message: tuple[bytes, bool], codec: str) -> None:
        raw, built_valid = message
        validate(raw, int(time.time() * 1000))  # in-process: an exception here is shrunk
        if len(raw) > 900_000:
            codec = "zstd"  # a batch must stay below the broker's 1 MiB record limit
        item = Sent(raw, built_valid, codec)
        sent.append(item)
        producers[codec].produce(
            topic, key=b"k%d" % len(sent), value=raw, on_delivery=delivered(item)
        )
        producers[codec].poll(0)

    produce_one()
    for producer in producers.values():
        assert producer.flush(60) == 0
    produced_s = time.monotonic() - started

    deadline = time.monotonic() + 600
    while group_lag(live_services, group, topic) and time.monotonic() < deadline:
        assert stage.poll() is None, f"ingest exited {stage.returncode}: {log.read_text()[-3000:]}"
        time.sleep(1)
    assert stage.poll() is None, f"ingest exited {stage.returncode}: {log.read_text()[-3000:]}"
    assert group_lag(live_services, group, topic) == 0, "the stage stalled"
    stage.send_signal(signal.SIGTERM)
    assert stage.wait(60) == 0, log.read_text()[-3000:]
    assert "Traceback" not in log.read_text()

    letters = read_topic(live_services, f"{topic}.dlq", len(sent), timeout=60)
    by_source = Counter(
        (
            int(headers_of(m.headers)["source.partition"]),
            int(headers_of(m.headers)["source.offset"]),
        )
        for m in letters
    )
    reason_of = {
        (
            int(headers_of(m.headers)["source.partition"]),
            int(headers_of(m.headers)["source.offset"]),
        ): headers_of(m.headers)["reason"]
        for m in letters
    }
    assert max(by_source.values(), default=1) == 1, "a message was dead-lettered twice"
    points = _influx_points(live_services)
    tap_keys = Counter(
        (d["equipment_id"], d["ts"]) for d in map(json.loads, tap.read_bytes().splitlines())
    )
    assert max(tap_keys.values(), default=1) == 1, "the tap got a sample twice"

    problems: list[str] = []
    accepted = 0
    for item in sent:
        where = (item.partition, item.offset)
        if where in by_source:
            if item.built_valid:
                problems.append(
                    f"built valid, dead-lettered {reason_of[where]}: {item.raw[:300]!r}"
                )
            continue
        accepted += 1
        try:
            samples = _reference(item.raw)
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError) as exc:
            problems.append(f"neither dead-lettered nor readable ({exc}): {item.raw[:300]!r}")
            continue
        for eid, site, ts, readings in samples:
            got = points.get((eid, site, ts))
            if got != readings:
                problems.append(
                    f"accepted but not in InfluxDB as sent: {(eid, site, ts)} {readings} -> {got}; "
                    f"{item.raw[:300]!r}"
                )
            if tap_keys.get((eid, ts)) != 1:
                problems.append(f"accepted but not on the tap once: {(eid, ts)}")
    print(
        f"\nfuzz: {len(sent)} messages ({EXAMPLES} examples) produced in {produced_s:.0f}s, "
        f"{accepted} accepted, {len(by_source)} dead letters "
        f"({', '.join(f'{r} {c}' for r, c in Counter(reason_of.values()).most_common())}), "
        f"{len(problems)} problems, {time.monotonic() - started:.0f}s in all"
    )
    assert not problems, "\n".join(problems[:20])
    assert accepted + len(by_source) == len(sent)
