"""Whole-path differential fuzzers of the scorer's and the alerting stage's input:
generated records through the real broker, one real stage subprocess, its real outputs.

As ``test_fuzz_pipeline.py`` does for ingest, Hypothesis generates records (valid ones and
near-valid mutations: hostile ``equipment_id`` and ``model_version`` text, numbers beyond
every range as raw JSON literals, times past both ends, wrong types, odd lengths, not
UTF-8, a few MB), each produced with librdkafka and one of the five codecs, keyed by
machine. One stage runs the whole time; after it has committed everything it is stopped
with SIGTERM (it must never have exited, and exits 0 then). A reference reading of each
record (the standard library's ``json`` / ``struct`` and the documented rules, written
here, not the stage's decoders) says what the stage must have done with it:

* **alerting** (``plantwatch alert``, predictions in): every record is either in
  ``predictions.dlq`` with the reason the reference gives (``bad_record``,
  ``unknown_model_version``; never ``sink_refused``: what decodes, InfluxDB takes), or its
  ``failure_risk`` point is in InfluxDB exactly (series ``equipment_id`` +
  ``model_version``, time ``window_end``, ``probability``, ``threshold``,
  ``top_sensors``; the last of the records written to one point wins), and InfluxDB holds
  no other point. It writes into a bucket of its own (times from 1970 to 2262: a shard
  per far week), deleted afterwards.
* **scorer** (``plantwatch score``, feature records of both encodings in, the session's
  simulated model): every record is either in ``features.dlq`` with the reason the
  reference gives (``not_a_feature_record``, ``config_mismatch``, ``value_out_of_range``;
  ``prediction_refused`` only for a record whose window the reference scores), or taken;
  the predictions topic holds exactly the predictions the reference's windows call for
  (one per machine per warm, non-silent step; none for a re-delivered or silent step),
  once each, each decodable by ``decode_prediction`` with a finite probability; the
  stage's summary counts every record.

In both, a record built valid is never dead-lettered and no record has two letters. Each
example also runs the stage's decoder in-process, so that an exception there is shrunk.
``PLANTWATCH_FUZZ_EXAMPLES`` sets the examples per test (default 300).

The failing examples found are kept as regression cases: here
``test_top_sensors_read_back_at_their_own_times`` (InfluxDB put one prediction's top
sensors at another's time), and in tests/models: ``test_featuredecode.py`` (JSON
``step_end: true`` and ``values: ["1.5"]`` were taken), ``test_scorer_refusals.py`` (a
record longer or shorter than one step made two predictions of one key),
``test_servable.py`` (logits beyond float32 stopped the scorer in the attribution) and
``test_predictions.py`` (no empty string field).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import signal
import struct
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeGuard

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.deadletter import MAX_LETTER_VALUE, headers_of
from plantwatch.settings import Settings
from tests.conftest import group_lag
from tests.test_fuzz_pipeline import CODECS, HOSTILE_TEXT, NAMES, SAFE_TEXT

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(3600)]

EXAMPLES = int(os.environ.get("PLANTWATCH_FUZZ_EXAMPLES", "300"))
NOW_MS = int(time.time() * 1000)
RUN = f"fs{os.getpid()}x{NOW_MS % 1_000_000}"
MIN_MS = 60_000
MAX_TS_MS = 9_223_372_036_854  # the end of InfluxDB's time range, in ms (2262-04-11)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# --- what the documents say (written out here, not imported from the stages) ----------
ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@-]{0,127}")
SENSOR_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")
HOSTILE_LITERAL = st.sampled_from(
    [
        "NaN",
        "Infinity",
        "-Infinity",
        "9" * 400,
        "1e400",
        "-1e400",
        "1e-400",
        "-0",
        "-0.0",
        "5e-324",
        "1E0",
        "0.99999999999999999999",
        "18446744073709551615",
        "18446744073709551616",
        "9223372036854775808",
        "-9223372036854775809",
        str(MAX_TS_MS),
        str(MAX_TS_MS + 1),
        "1.5",
        "-1",
        "0",
        "2",
        '"1"',
        '"0.5"',
        "true",
        "false",
        "null",
        "[]",
        "[1]",
        "{}",
        '"\\ud800"',
    ]
)


@dataclass
class Sent:
    """One produced record: its bytes, key, whether it was built valid, and where it went."""

    raw: bytes | None
    key: bytes
    built_valid: bool
    codec: str
    partition: int = -1
    offset: int = -1


class Literals:
    """Raw JSON literals put in place of placeholder strings after ``json.dumps``."""

    def __init__(self) -> None:
        self.tokens: dict[str, str] = {}

    def __call__(self, literal: str) -> str:
        token = f"__raw{len(self.tokens)}__"
        self.tokens[token] = literal
        return token

    def text(self, doc: Any, ascii_only: bool = True) -> str:
        text = json.dumps(doc, ensure_ascii=ascii_only, allow_nan=True)
        for token, literal in self.tokens.items():
            text = text.replace(f'"{token}"', literal)
        return text


def _key(equipment_id: Any, fallback: str) -> bytes:
    """A record's key: its equipment_id where it has one (one machine, one partition)."""
    text = equipment_id if isinstance(equipment_id, str) else fallback
    return text.encode("utf-8", "surrogatepass")


def _cut(value: bytes, at: int) -> bytes:
    """``value`` truncated somewhere before its end.

    (The place is drawn in a fixed range: a range that depends on the value's length, which
    depends on the serial number, would change the shape of the draws between runs.)
    """
    return value[: at % len(value)]


def _rare(draw: st.DrawFn, n: int) -> bool:
    """Holds about once in ``n`` draws (the middle of a range: Hypothesis favours its ends)."""
    return draw(st.integers(0, n - 1)) == n // 2


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _strict_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ValueError("a number beyond float64")
    return value


def _int_or_float(text: str) -> int | float:
    """Integers as orjson reads them: 64-bit ones as int, larger ones as float."""
    value = int(text)
    return value if -(2**63) <= value < 2**64 else _strict_float(text)


def _has_surrogate(doc: Any) -> bool:
    if isinstance(doc, str):
        return any("\ud800" <= c <= "\udfff" for c in doc)
    if isinstance(doc, list):
        return any(_has_surrogate(v) for v in doc)
    if isinstance(doc, dict):
        return any(_has_surrogate(k) or _has_surrogate(v) for k, v in doc.items())
    return False


def _json(raw: bytes) -> Any:
    """The standard library's reading of a JSON record, as strict as RFC 8259 (UTF-8, no
    BOM, no NaN, no number beyond float64, no lone surrogate); ValueError if not JSON."""
    text = raw.decode("utf-8")  # strict: encoded surrogates are not UTF-8 either
    doc = json.loads(
        text,
        parse_constant=_reject_constant,
        parse_float=_strict_float,
        parse_int=_int_or_float,
    )
    if _has_surrogate(doc):
        raise ValueError("a lone surrogate")
    return doc


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> float | None:
    """A finite JSON number as float (an integer only within +-MAX_TS_MS), else None."""
    if _is_int(value):
        return float(value) if -MAX_TS_MS <= value <= MAX_TS_MS else None
    if isinstance(value, float) and math.isfinite(value):
        return value
    return None


def _ms(when: datetime) -> int:
    return (when - EPOCH) // timedelta(milliseconds=1)


def _producers(live: Settings) -> dict[str, Any]:
    from confluent_kafka import Producer

    return {
        codec: Producer(
            {
                "bootstrap.servers": live.kafka_bootstrap_servers,
                "compression.type": codec,
                "message.max.bytes": 10_000_000,
                "acks": "all",
                "linger.ms": 5,
            }
        )
        for codec in CODECS
    }


def _delivered(item: Sent) -> Callable[[Any, Any], None]:
    def report(err: Any, msg: Any) -> None:
        assert err is None, f"produce failed: {err}"
        item.partition, item.offset = msg.partition(), msg.offset()

    return report


@dataclass
class Stage:
    """A `plantwatch` stage subprocess (stderr to a log, stdout to a file)."""

    args: list[str]
    env: dict[str, str]
    log: Path
    out: Path
    proc: subprocess.Popen[bytes] = field(init=False)

    def __post_init__(self) -> None:
        with self.log.open("w") as err, self.out.open("w") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "plantwatch", *self.args],
                env=self.env,
                stdout=out,
                stderr=err,
            )

    def __enter__(self) -> Stage:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:  # the test failed before it stopped the stage
            self.proc.kill()
            self.proc.wait(30)

    def alive(self) -> None:
        code = self.proc.poll()
        assert code is None, f"{self.args[0]} exited {code}: {self.log.read_text()[-4000:]}"

    def drain(self, live: Settings, group: str, topic: str, timeout: float = 600) -> None:
        """Wait until the group committed the whole topic (the stage alive), then SIGTERM."""
        deadline = time.monotonic() + timeout
        while group_lag(live, group, topic) and time.monotonic() < deadline:
            self.alive()
            time.sleep(1)
        self.alive()
        assert group_lag(live, group, topic) == 0, f"{self.args[0]} stalled"
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(120)
        assert code == 0, f"exit {code}: {self.log.read_text()[-4000:]}"
        assert "Traceback" not in self.log.read_text(), self.log.read_text()[-4000:]


@dataclass
class Letters:
    """A DLQ topic's letters by source (partition, offset); problems with the letters."""

    reason: dict[tuple[int, int], str]
    detail: dict[tuple[int, int], str]
    problems: list[str]

    @classmethod
    def read(cls, live: Settings, dlq: str, source: str, stage: str, sent: list[Sent]) -> Letters:
        from plantwatch.report import read_records

        raw_of = {(s.partition, s.offset): s.raw for s in sent}
        key_of = {(s.partition, s.offset): s.key for s in sent}
        by_source: Counter[tuple[int, int]] = Counter()
        reason, detail, problems = {}, {}, []
        for m in read_records(live, dlq):
            h = headers_of(m.headers)
            where = (int(h["source.partition"]), int(h["source.offset"]))
            by_source[where] += 1
            reason[where], detail[where] = h["reason"], h.get("detail", "")
            if (h.get("stage"), h.get("source.topic")) != (stage, source) or not detail[where]:
                problems.append(f"letter {where}: headers {h}")
            raw = raw_of.get(where, b"?")
            if raw is not None and len(raw) > MAX_LETTER_VALUE:
                intact = h.get("original.sha256") == hashlib.sha256(raw).hexdigest()
            else:
                intact = m.value == raw
            if not intact or m.key != key_of.get(where):
                problems.append(f"letter {where}: not the source record's key and value")
        problems += [f"{where} dead-lettered {n} times" for where, n in by_source.items() if n > 1]
        return cls(reason, detail, problems)


def _produce_all(
    live: Settings,
    topic: str,
    strategy: st.SearchStrategy[tuple[bytes | None, bytes, bool]],
    check: Callable[[bytes | None], Any],
    ordered: bool,
) -> list[Sent]:
    """Produce ``EXAMPLES`` generated records, each with a generated codec.

    ``ordered``: flush a producer before another one sends, so that the records of a
    machine reach the topic in the order generated (the scorer's windows need runs of
    consecutive steps); the oracle still follows the offsets.
    """
    producers = _producers(live)
    sent: list[Sent] = []
    last: list[str] = []

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(record=strategy, codec=st.sampled_from(CODECS))
    def produce_one(record: tuple[bytes | None, bytes, bool], codec: str) -> None:
        raw, key, built_valid = record
        check(raw)  # in-process: an exception here is shrunk
        if raw is not None and len(raw) > 900_000:
            codec = "zstd"  # a batch must stay below the broker's 1 MiB record limit
        if ordered and last and last[0] != codec:
            assert producers[last[0]].flush(60) == 0
        last[:] = [codec]
        item = Sent(raw, key, built_valid, codec)
        sent.append(item)
        producers[codec].produce(topic, key=key, value=raw, on_delivery=_delivered(item))
        producers[codec].poll(0)

    produce_one()
    for producer in producers.values():
        assert producer.flush(60) == 0
    assert all(s.offset >= 0 for s in sent)
    return sent


# ======================================================================================
# alerting: prediction records in
# ======================================================================================

EDGE_TIMES = [0, 1, 2**31, 10**12, MAX_TS_MS - 1, MAX_TS_MS]
BAD_TIMES = ["-1", str(MAX_TS_MS + 1), str(2**63), str(2**64), "1" + "0" * 30, "1.5e12"]
PROBABILITY = st.one_of(
    st.floats(0.0, 1.0),
    st.sampled_from([0, 1, 0.0, 1.0, -0.0, 5e-324, 1 - 2**-53, 0.5]),
)


@st.composite
def prediction_records(
    draw: st.DrawFn, serial: Iterator[int], versions: list[str]
) -> tuple[bytes | None, bytes, bool]:
    """One prediction record's value, its key and whether it was built valid."""
    n = next(serial)
    eid = f"{RUN}-a{draw(st.integers(0, 5))}"
    valid = True
    raw = Literals()
    window_end: Any = NOW_MS // MIN_MS * MIN_MS - 2 * 86_400_000 + n * MIN_MS
    if _rare(draw, 12):
        window_end = draw(st.sampled_from(EDGE_TIMES))
    elif _rare(draw, 8):  # a time written before: the point is written again (last wins)
        window_end = (
            NOW_MS // MIN_MS * MIN_MS
            - 2 * 86_400_000
            + draw(st.integers(0, 2**20)) % (n + 1) * MIN_MS
        )
    top = [
        [draw(NAMES), draw(st.one_of(st.floats(0.0, 1.0), st.floats(0.0, 1e308)))]
        for _ in range(draw(st.integers(0, 3)))
    ]
    doc: dict[str, Any] = {
        "v": 1,
        "equipment_id": eid,
        "window_end": window_end,
        "probability": draw(PROBABILITY),
        "threshold": draw(PROBABILITY),
        "model_version": draw(st.sampled_from(versions)),
        "horizon_steps": draw(st.integers(1, 1000)),
        "horizon_ms": draw(st.integers(1, MAX_TS_MS)),
        "steps": draw(st.integers(1, 500)),
        "top_sensors": top,
    }
    hostile = st.one_of(HOSTILE_TEXT, HOSTILE_LITERAL.map(raw), st.integers(), st.floats())
    if _rare(draw, 10):
        valid = False
        doc["equipment_id"] = draw(
            st.one_of(
                HOSTILE_TEXT.map(lambda t: eid + t),
                st.sampled_from(["", "a" * 128, "a" * 129, "-x", f"{eid}\n", f"{eid}/x@y:z"]),
                hostile,
            )
        )
    if _rare(draw, 12):
        valid = False
        doc["window_end"] = draw(st.one_of(st.sampled_from(BAD_TIMES).map(raw), hostile))
    for name in ("probability", "threshold"):
        if _rare(draw, 12):
            valid = False
            doc[name] = draw(
                st.one_of(st.sampled_from(["-1e-300", "1.0000001", "2", "1E0"]).map(raw), hostile)
            )
    if _rare(draw, 12):
        valid = False
        doc["model_version"] = draw(
            st.one_of(
                HOSTILE_TEXT.map(lambda t: doc["model_version"] + t),
                st.sampled_from(["m-000000000000", versions[0].upper(), "", "m" * 129]),
                hostile,
            )
        )
    for name in ("horizon_steps", "horizon_ms", "steps"):
        if _rare(draw, 20):
            valid = False
            doc[name] = draw(hostile)
    if _rare(draw, 10):
        valid = False
        doc["top_sensors"] = draw(
            st.one_of(
                st.just([[draw(NAMES)]]),
                st.just([[1, 0.5]]),
                st.just([[draw(HOSTILE_TEXT), 0.5]]),
                st.just([[draw(NAMES), draw(hostile)]]),
                st.just([["s", -0.0], ["t", 1e308], ["u", 0]]),
                st.just([[f"s{i}", 0.001] for i in range(draw(st.sampled_from([256, 257])))]),
                st.just({"a": 1}),
                st.just("a:0.5"),
                hostile,
            )
        )
    if _rare(draw, 15):
        valid = False
        doc["v"] = draw(st.one_of(st.sampled_from([2, 0, "1", 1.0, True, None]), hostile))
    if _rare(draw, 15):
        valid = False
        doc.pop(draw(st.sampled_from(sorted(doc))))
    if _rare(draw, 10):  # an extra field: ignored, if it is JSON at all
        valid = False
        doc[draw(st.one_of(NAMES, HOSTILE_TEXT))] = draw(st.one_of(SAFE_TEXT, hostile))
    text = raw.text(doc, ascii_only=not _rare(draw, 10))
    if _rare(draw, 20):  # a key twice: the last one counts
        valid = False
        text = text[:-1] + ', "probability": ' + draw(st.sampled_from(["0.25", "2", "null"])) + "}"
    if _rare(draw, 60):
        text = text[:-1] + ', "pad": "' + "x" * draw(st.integers(900_000, 3_000_000)) + '"}'
    key = _key(doc.get("equipment_id"), eid)
    value = text.encode("utf-8", "surrogatepass")
    if _rare(draw, 30):
        return text.encode("utf-16"), key, False
    if _rare(draw, 30):
        return b"\xef\xbb\xbf" + value, key, False
    if _rare(draw, 30):
        return _cut(value, draw(st.integers(0, 2**20))), key, False
    if _rare(draw, 40):
        return None, key, False  # a tombstone
    if _rare(draw, 40):
        return draw(st.binary(max_size=300)), key, False
    if _rare(draw, 40):
        return draw(st.sampled_from([b"[]", b"1", b'"x"', b"null", b"{}"])), key, False
    return value, key, valid


@dataclass(frozen=True)
class RiskPoint:
    """The fields of a ``failure_risk`` point that a record determines."""

    probability: float
    threshold: float
    top_sensors: str | None


def _reference_prediction(
    raw: bytes | None, versions: set[str]
) -> tuple[str, tuple[str, str, int] | None, RiskPoint | None]:
    """What the alerting stage must do with a record, by docs/alerting.md (Dead letters) and
    pipeline/predictions.py: ``(code, series key, point)``, code ``ok``, ``bad_record`` or
    ``unknown_model_version``."""
    bad = "bad_record", None, None
    if raw is None:
        return bad
    try:
        doc = _json(raw)
    except (ValueError, RecursionError):
        return bad
    if not isinstance(doc, dict) or doc.get("v") != 1:
        return bad
    eid, when = doc.get("equipment_id"), doc.get("window_end")
    if not (isinstance(eid, str) and ID_RE.fullmatch(eid)):
        return bad
    if not (_is_int(when) and 0 <= when <= MAX_TS_MS):
        return bad
    prob, thr = _number(doc.get("probability")), _number(doc.get("threshold"))
    if prob is None or thr is None or not (0 <= prob <= 1 and 0 <= thr <= 1):
        return bad
    version = doc.get("model_version")
    if not isinstance(version, str) or not 0 < len(version) <= 128:
        return bad
    if any(
        c.isspace() or c < " " or "\x7f" <= c <= "\x9f" or c in "\u2028\u2029\\" for c in version
    ):
        return bad
    for name in ("horizon_steps", "horizon_ms", "steps"):
        value = doc.get(name)
        if not (_is_int(value) and 1 <= value <= MAX_TS_MS):
            return bad
    top = doc.get("top_sensors", [])
    if not isinstance(top, list) or len(top) > 256:
        return bad
    pairs = []
    for item in top:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
            return bad
        share = _number(item[1])
        if not SENSOR_RE.fullmatch(item[0]) or share is None or share < 0:
            return bad
        pairs.append(f"{item[0]}:{share:.4g}")
    if version not in versions:
        return "unknown_model_version", None, None
    return "ok", (eid, version, when), RiskPoint(prob, thr, ",".join(pairs))


@pytest.fixture
def own_bucket(live_services: Settings) -> Iterator[str]:
    """A bucket of the test's own (infinite retention), deleted after: the far times of
    the records open shards that no other test should see."""
    from plantwatch.connections import influx_client

    name = f"{RUN}-alerting-{uuid.uuid4().hex[:6]}"
    with influx_client(live_services, timeout_ms=30_000) as client:
        buckets = client.buckets_api()
        created = buckets.create_bucket(bucket_name=name, org=live_services.influx_org)
        try:
            yield name
        finally:
            buckets.delete_bucket(created)


def _risk_points(live: Settings, bucket: str) -> dict[tuple[str, str, int], dict[str, Any]]:
    from plantwatch.connections import influx_client

    flux = (
        f'from(bucket: "{bucket}") '
        "|> range(start: 1970-01-01T00:00:00Z, stop: 2262-04-11T23:47:16.854775806Z) "
        '|> filter(fn: (r) => r._measurement == "failure_risk")'
    )
    points: dict[tuple[str, str, int], dict[str, Any]] = {}
    with influx_client(live, timeout_ms=120_000) as client:
        for table in client.query_api().query(flux, org=live.influx_org):
            for rec in table.records:
                key = (rec.values["equipment_id"], rec.values["model_version"], _ms(rec.get_time()))
                points.setdefault(key, {})[rec.get_field()] = rec.get_value()
    return points


def _model_dirs(root: Path) -> list[str]:
    """Two artifacts the alerting stage knows (any bytes: it only hashes them)."""
    from models.registry import versions_in

    for name in ("a", "b"):
        (root / name).mkdir(parents=True)
        (root / name / "spec.json").write_text(json.dumps({"fuzz": RUN, "name": name}))
        (root / name / "model.keras").write_bytes(name.encode())
    return sorted(versions_in(root))


def test_generated_predictions_through_the_real_alerting_stage(
    live_services: Settings, make_topic: Callable[[str], str], own_bucket: str, tmp_path: Path
) -> None:
    from pipeline.predictions import decode_prediction

    live = live_services
    topic = make_topic(f"{RUN}-predictions")
    for suffix in ("dlq", "tickets", "feedback"):
        make_topic(f"{topic}.{suffix}")
    versions = _model_dirs(tmp_path / "models")
    group = f"{RUN}-alerting"
    env = dict(
        os.environ,
        PLANTWATCH_TOPIC_PREDICTIONS=topic,
        PLANTWATCH_TOPIC_PREDICTIONS_DLQ=f"{topic}.dlq",
        PLANTWATCH_TOPIC_TICKETS=f"{topic}.tickets",
        PLANTWATCH_TOPIC_FEEDBACK=f"{topic}.feedback",
        PLANTWATCH_ALERT_GROUP=group,
        PLANTWATCH_ALERT_DB=str(tmp_path / "alerts.db"),
        PLANTWATCH_ALERT_SINKS="builtin,kafka",
        PLANTWATCH_ALERT_DEADMAN_MS="20000",
        PLANTWATCH_MODELS_DIR=str(tmp_path / "models"),
        PLANTWATCH_INFLUX_BUCKET=own_bucket,
    )
    started = time.monotonic()
    with Stage(
        ["alert", "--log-every", "5"], env, tmp_path / "alert.log", tmp_path / "out"
    ) as stage:
        sent = _produce_all(
            live,
            topic,
            prediction_records(iter(range(10**9)), versions),
            decode_prediction,
            ordered=False,
        )
        produced_s = time.monotonic() - started
        stage.drain(live, group, topic)

    letters = Letters.read(live, f"{topic}.dlq", topic, "alerting", sent)
    problems = list(letters.problems)
    points = _risk_points(live, own_bucket)
    writes: dict[tuple[str, str, int], list[tuple[tuple[int, int], RiskPoint]]] = {}
    accepted = 0
    for item in sent:
        where = (item.partition, item.offset)
        code, series, point = _reference_prediction(item.raw, set(versions))
        got = letters.reason.get(where)
        if got is not None:
            if item.built_valid or code != got:
                problems.append(
                    f"dead-lettered {got} ({letters.detail[where][:200]}), reference {code}, "
                    f"built valid {item.built_valid}: {(item.raw or b'')[:300]!r}"
                )
            continue
        accepted += 1
        if code != "ok" or series is None or point is None:
            problems.append(f"accepted, reference {code}: {(item.raw or b'')[:300]!r}")
            continue
        writes.setdefault(series, []).append((where, point))
    expected: dict[tuple[str, str, int], RiskPoint] = {}
    for series, points_written in writes.items():
        # Each field of a point is its last write; an empty top_sensors is not written.
        ordered = [point for _where, point in sorted(points_written, key=lambda w: w[0])]
        tops = [point.top_sensors for point in ordered if point.top_sensors]
        expected[series] = replace(ordered[-1], top_sensors=tops[-1] if tops else None)
    for series, want in expected.items():
        got_fields = points.get(series)
        if got_fields is None:
            problems.append(f"accepted but not in InfluxDB: {series} {want}")
            continue
        have = RiskPoint(
            got_fields.get("probability", math.nan),
            got_fields.get("threshold", math.nan),
            got_fields.get("top_sensors"),  # (the client reads "" as None)
        )
        if have != want or got_fields.get("level") not in (None, "OK", "WARNING", "CRITICAL"):
            problems.append(f"InfluxDB holds {series} {got_fields}, sent {want}")
    extra = set(points) - set(expected)
    problems += [f"a point no accepted record made: {k} {points[k]}" for k in sorted(extra)[:20]]
    summary = (tmp_path / "out").read_text().strip()
    counts = re.match(r"consumed (\d+) predictions: .* (\d+) dead letters;", summary)
    if counts is None or [int(g) for g in counts.groups()] != [len(sent), len(letters.reason)]:
        problems.append(f"summary {summary!r}: sent {len(sent)}, {len(letters.reason)} letters")
    reasons = Counter(letters.reason.values())
    print(
        f"\nfuzz alerting: {len(sent)} records ({EXAMPLES} examples) produced in "
        f"{produced_s:.0f}s, {accepted} accepted ({len(expected)} points), "
        f"{len(letters.reason)} dead letters "
        f"({', '.join(f'{r} {c}' for r, c in reasons.most_common())}), "
        f"{len(problems)} problems, {time.monotonic() - started:.0f}s in all; {summary}"
    )
    assert not problems, "\n".join(problems[:20])
    assert accepted + len(letters.reason) == len(sent)


def test_top_sensors_read_back_at_their_own_times(
    live_services: Settings, make_topic: Callable[[str], str], own_bucket: str, tmp_path: Path
) -> None:
    """Regression: the failing example the fuzzer found, shrunk by hand.

    InfluxDB 2.8 gives a series' string values back in the wrong places once an empty one
    follows a non-empty one: the stage wrote ``top_sensors=""`` for a prediction without
    top sensors, and a reader found the next prediction's top sensors there. It now leaves
    an empty string field out (alerting/influx.py).
    """
    from kafka import KafkaProducer

    from alerting.rules import Rules
    from pipeline.predictions import Prediction, encode_prediction
    from plantwatch.connections import kafka_config
    from tests.alerting.helpers import Running, model_version

    live = live_services.model_copy(update={"influx_bucket": own_bucket})
    topic = make_topic(f"{RUN}-tops")
    make_topic(f"{topic}.dlq")
    version = model_version(tmp_path / "models")
    eid, base = f"{RUN}-tops", NOW_MS // MIN_MS * MIN_MS - 3_600_000
    tops: list[tuple[tuple[str, float], ...]] = [(("s", 0.5),), (), (("g", 0.25),), (), ()]
    producer = KafkaProducer(**kafka_config(live, acks="all"))
    for i, top in enumerate(tops):
        p = Prediction(eid, base + i * MIN_MS, 0.1, 0.5, version, 30, 1_800_000, 5, top)
        producer.send(topic, key=eid.encode(), value=encode_prediction(p))
    producer.flush()
    producer.close()
    rules = Rules(deadman_ms=0)
    Running(live, topic, f"{RUN}-tops", tmp_path / "a.db", version, rules).start(3).join()
    points = _risk_points(live, own_bucket)
    got = [points[(eid, version, base + i * MIN_MS)].get("top_sensors") for i in range(5)]
    assert got == ["s:0.5", None, "g:0.25", None, None]


# ======================================================================================
# scorer: feature records in
# ======================================================================================

MACHINES = 5
HEADER = struct.Struct("<4sqqHBH")
VALUE_EDGES = [
    float("nan"),
    float("inf"),
    float("-inf"),
    1e300,
    -1e300,
    1.7976931348623157e308,
    -1.7976931348623157e308,
    5e-324,
    -0.0,
    1e30,
    -1e30,
    1e36,
    3e36,
    -3e36,
]
Z_EDGES = [1e20, 1e30, 1e37, 3e38, -3e38, 3.5e38]  # normalized values: near float32's limit
STORM_Z = [1e37, 2e38, 3e38]  # whole steps of them (the model's statistics overflow)


@dataclass
class Served:
    """What the oracle knows of the served model and the feature rules."""

    fingerprint: str
    step_ms: int
    n_features: int
    length: int
    min_steps: int
    mean: np.ndarray
    std: np.ndarray
    per_sensor: int
    filled: int
    first_is_count: bool
    cursor: dict[str, int] = field(default_factory=dict)  # each machine's next step
    storm: dict[str, int] = field(default_factory=dict)  # steps of extremes still to come

    @classmethod
    def of(cls, model_dir: Path) -> Served:
        from plantwatch.presets import load_window_config
        from plantwatch.settings import load_settings

        window = load_window_config(load_settings().features_config)
        spec = json.loads(next(model_dir.glob("*/spec.json")).read_text())
        fs = spec["feature_spec"]
        assert len(fs["mean"]) == 1, "the oracle normalizes with one regime"
        assert fs["window"] == window.to_dict(), "the model was trained on other feature rules"
        return cls(
            window.fingerprint(),
            window.step_ms,
            len(window.feature_names()),
            spec["sequence_length"],
            spec["min_steps"],
            np.array(fs["mean"][0], dtype=np.float64),
            np.array(fs["std"][0], dtype=np.float64),
            window.per_sensor,
            len(window.aggregates) + len(window.derived),
            window.aggregates[0] == "count",
        )


def _binary(eid: bytes, start: int, end: int, config: bytes, values: np.ndarray) -> bytes:
    head = HEADER.pack(b"PWF2", start, end, len(values), len(config), len(eid))
    return head + config + eid + values.astype("<f8").tobytes()


@st.composite
def feature_records(
    draw: st.DrawFn, serial: Iterator[int], served: Served
) -> tuple[bytes | None, bytes, bool]:
    """One feature record's value, its key and whether it was built valid.

    A machine's next step is the one after its last valid record (a record built invalid
    leaves its step to the next one: the windows warm up in runs of valid steps).
    """
    n = next(serial)
    eid = f"{RUN}-s{draw(st.integers(0, MACHINES - 1))}"
    step = served.cursor.setdefault(eid, (NOW_MS - 30 * 86_400_000) // served.step_ms)
    if _rare(draw, 15):  # a re-delivery: taken, no prediction
        step -= draw(st.integers(1, 5))
    elif _rare(draw, 25):  # a gap: a new segment, warming up again
        step += draw(st.integers(1, 3))
    if _rare(draw, 20):  # a storm: the machine's next steps all near float32's limit
        served.storm[eid] = draw(st.integers(3, 12))
    storm_z = draw(st.sampled_from(STORM_Z))  # drawn always: the draws' shape is fixed
    storm = storm_z if served.storm.get(eid) else None
    served.storm[eid] = max(served.storm.get(eid, 0) - 1, 0)
    value, key, valid = _feature_record(draw, n, served, eid, step, storm)
    if valid:
        served.cursor[eid] = max(served.cursor[eid], step + 1)
    return value, key, valid


def _feature_record(
    draw: st.DrawFn, n: int, served: Served, eid: str, step: int, storm: float | None
) -> tuple[bytes | None, bytes, bool]:
    valid = True
    start = step * served.step_ms
    end = start + served.step_ms
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    z = rng.normal(size=served.n_features)
    if storm is not None:  # valid: the model takes them (its logits may overflow)
        z = storm * np.sign(z)
    values = served.mean + served.std * z
    values[rng.random(served.n_features) < 0.05] = np.nan
    if _rare(draw, 10):  # silent: no reading at all (taken, no prediction)
        values[:] = np.nan
    config = served.fingerprint
    json_values: list[Any] | None = None
    raw = Literals()
    if _rare(draw, 8):
        valid = False
        for _ in range(draw(st.integers(1, 3))):
            i = draw(st.integers(0, served.n_features - 1))
            if draw(st.booleans()):
                values[i] = draw(st.sampled_from(VALUE_EDGES))
            else:
                values[i] = served.mean[i] + served.std[i] * draw(st.sampled_from(Z_EDGES))
    if _rare(draw, 12):
        valid = False
        eid = draw(
            st.one_of(
                HOSTILE_TEXT.map(lambda t: eid + t),
                st.sampled_from(["a" * 128, "a" * 129, "-x", f"{eid}\n", f"{eid} x", "é"]),
            )
        )
    if _rare(draw, 12):
        valid = False
        start, end = draw(
            st.sampled_from(
                [
                    (-served.step_ms, 0),
                    (MAX_TS_MS - served.step_ms, MAX_TS_MS),  # valid: the last step
                    (MAX_TS_MS, MAX_TS_MS + served.step_ms),
                    (2**63 - 1 - served.step_ms, 2**63 - 1),
                    (-(2**63), -(2**63) + served.step_ms),
                    (end, start),
                    (start, start),
                    (start, start + 1),
                    (start, start + 2 * served.step_ms),
                    (start + 1, end + 1),
                    (start, end - 1),
                ]
            )
        )
        if start > MAX_TS_MS - 10 * served.step_ms:
            eid = f"{RUN}-x{n}"  # a machine of its own: its far step would end the others'
    if _rare(draw, 15):
        valid = False
        values = values[: draw(st.sampled_from([0, 1, served.n_features - 1]))]
        if draw(st.booleans()):
            values = np.r_[values, np.zeros(draw(st.integers(1, 3)))]
    if _rare(draw, 15):
        valid = False
        config = draw(st.sampled_from(["", "0" * 16, config.upper(), config + "x", "é"]))
    binary = draw(st.booleans())
    key = eid.encode("utf-8", "surrogatepass")
    if binary:
        eid_bytes = eid.encode("utf-8", "surrogatepass")
        cfg = config.encode("utf-8")
        if _rare(draw, 20):
            valid = False
            eid_bytes = draw(st.sampled_from([b"\xff", b"m\xc3", b"", eid_bytes * 600]))
        if len(eid_bytes) > 0xFFFF or len(cfg) > 0xFF:
            eid_bytes = eid_bytes[:0xFFFF]
        try:
            value = _binary(eid_bytes, start, end, cfg, values)
        except struct.error:  # a time beyond int64: only JSON can carry it
            return _binary(eid_bytes, 0, 1, cfg, values)[:-1], key, False
        if _rare(draw, 15):
            valid = False
            value = _cut(value, draw(st.integers(0, 2**20)))
        if _rare(draw, 30):
            valid = False
            value = b"PWF2" + draw(st.binary(max_size=200))
        return value, key, valid
    json_values = [None if math.isnan(v) else v for v in values.tolist()]
    for i, v in enumerate(json_values):
        if v is not None and math.isinf(v):
            json_values[i] = raw(draw(st.sampled_from(["Infinity", "1e400", "-1e400"])))
    doc: dict[str, Any] = {
        "v": 1,
        "equipment_id": eid,
        "step_start": start,
        "step_end": end,
        "config": config,
        "values": json_values,
    }
    hostile = st.one_of(HOSTILE_TEXT, HOSTILE_LITERAL.map(raw), st.integers(), st.floats())
    if _rare(draw, 12) and json_values:
        valid = False
        json_values[draw(st.integers(0, len(json_values) - 1))] = draw(
            st.one_of(st.sampled_from(["1.5", "nan", True, [1.0], {"a": 1}]), hostile)
        )
    for name in ("v", "step_start", "step_end", "equipment_id", "config"):
        if _rare(draw, 25):
            valid = False
            doc[name] = draw(st.one_of(st.sampled_from([True, "12", 1.5, None, 2**64]), hostile))
    if _rare(draw, 25):
        valid = False
        doc.pop(draw(st.sampled_from(sorted(doc))))
    if _rare(draw, 15):
        doc[draw(NAMES)] = draw(st.one_of(SAFE_TEXT, hostile))
        valid = False
    text = raw.text(doc, ascii_only=not _rare(draw, 10))
    if _rare(draw, 60):
        text = text[:-1] + ', "pad": "' + "x" * draw(st.integers(900_000, 3_000_000)) + '"}'
    value = text.encode("utf-8", "surrogatepass")
    key = _key(doc.get("equipment_id"), eid)
    if _rare(draw, 30):
        return _cut(value, draw(st.integers(0, 2**20))), key, False
    if _rare(draw, 40):
        return draw(st.binary(max_size=300)), key, False
    if _rare(draw, 40):
        return None, key, False
    if _rare(draw, 40):
        return text.encode("utf-16"), key, False
    return value, key, valid


@dataclass(frozen=True)
class Feature:
    equipment_id: str
    step_start: int
    step_end: int
    values: np.ndarray


def _decode_reference(raw: bytes) -> tuple[Feature, str] | None:
    """A feature record and its config by pipeline/featurerecords.py's module doc; None if the
    record is not one."""
    bad = None
    if raw[:4] == b"PWF2":
        if len(raw) < HEADER.size:
            return bad
        _, start, end, n, c, e = HEADER.unpack_from(raw)
        if len(raw) != HEADER.size + c + e + 8 * n or end <= start or 0 in (c, e, n):
            return bad
        try:
            config = raw[HEADER.size : HEADER.size + c].decode("ascii")
            eid = raw[HEADER.size + c : HEADER.size + c + e].decode("utf-8")
        except UnicodeDecodeError:
            return bad
        values = np.frombuffer(raw, "<f8", n, HEADER.size + c + e).astype(np.float64)
        if np.isinf(values).any():
            return bad
        return Feature(eid, start, end, values), config
    try:
        doc = _json(raw)
    except (ValueError, RecursionError):
        return bad
    if not isinstance(doc, dict) or doc.get("v") != 1:
        return bad
    name, first, last = doc.get("equipment_id"), doc.get("step_start"), doc.get("step_end")
    rules, listed = doc.get("config"), doc.get("values")
    if not (isinstance(name, str) and name and _is_int(first) and _is_int(last) and first < last):
        return bad
    if not (isinstance(rules, str) and rules and isinstance(listed, list) and listed):
        return bad
    if not all(v is None or _is_int(v) or isinstance(v, float) for v in listed):
        return bad
    arr = np.array([np.nan if v is None else float(v) for v in listed], dtype=np.float64)
    return Feature(name, first, last, arr), rules


def _reference_feature(raw: bytes | None, served: Served) -> tuple[str, Feature | None]:
    """What the scorer must do with a record (models/scoring.py's module doc, docs/models.md):
    ``(code, record)``, code ``ok`` or the dead letter's reason."""
    if raw is None:
        return "not_a_feature_record", None
    got = _decode_reference(raw)
    if got is None:
        return "not_a_feature_record", None
    rec, config = got
    if not ID_RE.fullmatch(rec.equipment_id):
        return "not_a_feature_record", None
    if not 0 <= rec.step_start < rec.step_end <= MAX_TS_MS:
        return "not_a_feature_record", None
    if rec.step_start % served.step_ms or rec.step_end - rec.step_start != served.step_ms:
        return "not_a_feature_record", None  # not one step of the rules
    if config != served.fingerprint or len(rec.values) != served.n_features:
        return "config_mismatch", None
    with np.errstate(over="ignore", invalid="ignore"):
        z = (rec.values - served.mean) / served.std
        z = np.where(np.isnan(z), 0.0, z).astype(np.float32)
    if np.isinf(z).any():
        return "value_out_of_range", None
    return "ok", rec


def _silent(values: np.ndarray, served: Served) -> bool:
    """No sensor had a reading in the step (features.core.silent_steps' rule)."""
    per = values.reshape(-1, served.per_sensor)
    empty = per[:, 0] == 0.0 if served.first_is_count else np.isnan(per[:, 0])
    return bool(np.all(empty | (per[:, served.filled] == 1.0)))


def _expected_windows(
    taken: list[tuple[tuple[int, int], Feature]], served: Served
) -> dict[tuple[int, int], tuple[str, int]]:
    """Per source record, the (equipment_id, window_end) of the prediction it must close:
    the windows of models/buffers.py (a step at or before the newest is a re-delivery, one
    after a gap starts a segment), warm from ``min_steps`` real steps, not silent."""
    last: dict[str, tuple[int, int]] = {}  # machine -> (newest step, segment start)
    out = {}
    for where, rec in sorted(taken, key=lambda t: t[0]):
        step = rec.step_start // served.step_ms
        seen = last.get(rec.equipment_id)
        if seen is not None and step <= seen[0]:
            continue
        segment = seen[1] if seen is not None and step == seen[0] + 1 else step
        last[rec.equipment_id] = (step, segment)
        if min(served.length, step - segment + 1) < served.min_steps:
            continue
        if not _silent(rec.values, served):
            out[where] = (rec.equipment_id, rec.step_end)
    return out


def test_generated_feature_records_through_the_real_scorer(
    live_services: Settings,
    make_topic: Callable[[str], str],
    sim_model_dir: Path,
    tmp_path: Path,
) -> None:
    from models.featuredecode import decode_fast
    from models.registry import versions_in
    from pipeline.predictions import decode_prediction
    from plantwatch.report import read_records

    live = live_services
    served = Served.of(sim_model_dir)
    (version,) = versions_in(sim_model_dir)
    topic = make_topic(f"{RUN}-features")
    predictions = make_topic(f"{topic}.predictions")
    make_topic(f"{topic}.dlq")
    group = f"{RUN}-scorer"
    env = dict(
        os.environ,
        PLANTWATCH_TOPIC_FEATURES=topic,
        PLANTWATCH_TOPIC_FEATURES_DLQ=f"{topic}.dlq",
        PLANTWATCH_TOPIC_PREDICTIONS=predictions,
        PLANTWATCH_SCORER_GROUP=group,
        PLANTWATCH_INSTANCE_ID=RUN,
        PLANTWATCH_MODELS_DIR=str(sim_model_dir),
        TF_CPP_MIN_LOG_LEVEL="3",
    )
    started = time.monotonic()
    args = ["score", "--device", "cpu", "--log-every", "5"]
    with Stage(args, env, tmp_path / "score.log", tmp_path / "out") as stage:
        sent = _produce_all(
            live, topic, feature_records(iter(range(10**9)), served), decode_fast, ordered=True
        )
        produced_s = time.monotonic() - started
        stage.drain(live, group, topic)

    letters = Letters.read(live, f"{topic}.dlq", topic, "score", sent)
    problems = list(letters.problems)
    taken: list[tuple[tuple[int, int], Feature]] = []
    for item in sent:
        where = (item.partition, item.offset)
        code, rec = _reference_feature(item.raw, served)
        if code == "ok" and rec is not None:
            taken.append((where, rec))
        got = letters.reason.get(where)
        if got is None and code != "ok":
            problems.append(f"taken, reference {code}: {(item.raw or b'')[:300]!r}")
        elif got is not None and (item.built_valid or got != code) and got != "prediction_refused":
            problems.append(
                f"dead-lettered {got} ({letters.detail[where][:200]}), reference {code}, "
                f"built valid {item.built_valid}: {(item.raw or b'')[:300]!r}"
            )
    windows = _expected_windows(taken, served)
    for where, got in letters.reason.items():
        if got == "prediction_refused" and where not in windows:
            problems.append(f"prediction_refused for {where}, which closes no window")
    expected = Counter(w for where, w in windows.items() if where not in letters.reason)
    published: Counter[tuple[str, int]] = Counter()
    for m in read_records(live, predictions):
        p, why = decode_prediction(m.value)
        if p is None:
            problems.append(f"a prediction that does not decode ({why}): {m.value[:300]!r}")
            continue
        if m.key != p.equipment_id.encode() or p.model_version != version:
            problems.append(f"prediction {p}: key {m.key!r}")
        if not math.isfinite(p.probability):
            problems.append(f"prediction {p}: no finite probability")
        published[(p.equipment_id, p.window_end)] += 1
    problems += [f"{k} predicted {n} times" for k, n in published.items() if n > 1]
    problems += [f"{k} expected, not predicted" for k in sorted(expected - published)[:20]]
    problems += [f"{k} predicted, not expected" for k in sorted(published - expected)[:20]]
    summary = (tmp_path / "out").read_text().strip()
    counts = re.fullmatch(
        r"scored (\d+) feature records: (\d+) predictions, \d+ warming up, (\d+) dead letters, "
        r"model \S+",
        summary,
    )
    if counts is None or [int(g) for g in counts.groups()] != [
        len(sent),
        sum(published.values()),
        len(letters.reason),
    ]:
        problems.append(
            f"summary {summary!r}: sent {len(sent)}, published {sum(published.values())}, "
            f"{len(letters.reason)} dead letters"
        )
    reasons = Counter(letters.reason.values())
    print(
        f"\nfuzz scorer: {len(sent)} records ({EXAMPLES} examples) produced in {produced_s:.0f}s, "
        f"{len(taken)} taken, {len(windows)} windows to score, "
        f"{sum(published.values())} predictions, {len(letters.reason)} dead letters "
        f"({', '.join(f'{r} {c}' for r, c in reasons.most_common())}), "
        f"{len(problems)} problems, {time.monotonic() - started:.0f}s in all; {summary}"
    )
    assert not problems, "\n".join(problems[:30])
