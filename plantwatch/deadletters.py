"""Reading the dead-letter topics back: what was refused, where, and why.

Every stage sends a record it refuses to its DLQ topic with the original key and value and
the reason in headers (:mod:`pipeline.deadletter`). :func:`read_letters` reads them from a point in
time on (committed records only); :class:`Digest` keeps a count per topic, stage and reason
and the newest letters, so a topic of any size is read in bounded memory.

>>> from types import SimpleNamespace as R
>>> from pipeline.deadletter import dead_letter
>>> d = dead_letter("telemetry", 1, 7, 1_000, b"pump-1", b'{"ts": "x"}', "invalid_ts", "field 'ts'")
>>> rec = R(topic="telemetry.dlq", partition=0, offset=3, timestamp=2_000, headers=d.headers,
...         key=d.key, value=d.value)
>>> letter = letter_of(rec)
>>> letter.reason, letter.stage, letter.source, preview(letter.value)
('invalid_ts', 'ingest', 'telemetry[1]@7', '{"ts": "x"}')
>>> digest = Digest(newest=1)
>>> digest.add(letter); digest.add(letter)
>>> [(r.topic, r.reason, r.count) for r in digest.rows()], len(digest.letters)
([('telemetry.dlq', 'invalid_ts', 2)], 1)
"""

from __future__ import annotations

import base64
import contextlib
import heapq
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pipeline.deadletter import PREFIX, REDRIVEN_FROM, headers_of
from plantwatch.settings import Settings


@dataclass(frozen=True)
class Letter:
    """One dead letter: the DLQ record and what its headers say."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    stage: str
    reason: str
    detail: str
    source_topic: str
    source_partition: int | None
    source_offset: int | None
    source_timestamp_ms: int | None
    key: bytes | None
    value: bytes | None
    own_headers: tuple[tuple[str, bytes], ...] = ()
    """The refused record's own headers (not ``plantwatch.*``): a redrive restores them."""
    redriven_from: str = ""
    """The earlier letter whose redriven copy this letter refused again ("" if none)."""

    @property
    def source(self) -> str:
        """``topic[partition]@offset`` of the refused record."""
        return f"{self.source_topic}[{_text(self.source_partition)}]@{_text(self.source_offset)}"

    def to_doc(self) -> dict[str, Any]:
        """JSON-ready; key and value as UTF-8 text, else base64 (``*_base64``)."""
        doc: dict[str, Any] = {
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "time": iso(self.timestamp_ms),
            "stage": self.stage,
            "reason": self.reason,
            "detail": self.detail,
            "source_topic": self.source_topic,
            "source_partition": self.source_partition,
            "source_offset": self.source_offset,
            "source_timestamp_ms": self.source_timestamp_ms,
            "redriven_from": self.redriven_from or None,
            "headers": [_bytes_doc({"key": k}, "value", v) for k, v in self.own_headers],
        }
        _bytes_doc(doc, "key", self.key)
        return _bytes_doc(doc, "value", self.value)


def _bytes_doc(doc: dict[str, Any], name: str, raw: bytes | None) -> dict[str, Any]:
    """``doc`` with ``raw`` as UTF-8 text under ``name``, else base64 under ``name_base64``."""
    try:
        doc[name] = None if raw is None else raw.decode("utf-8")
    except UnicodeDecodeError:
        doc[f"{name}_base64"] = base64.b64encode(raw).decode("ascii")  # type: ignore[arg-type]
    return doc


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _text(value: int | None) -> str:
    return "?" if value is None else str(value)


def letter_of(record: Any) -> Letter:
    """A kafka-python record of a DLQ topic as a :class:`Letter` (missing headers: "")."""
    h = headers_of(record.headers)
    source_ts = _int(h.get("source.timestamp"))
    return Letter(
        record.topic,
        record.partition,
        record.offset,
        record.timestamp,
        h.get("stage", ""),
        h.get("reason", ""),
        h.get("detail", ""),
        h.get("source.topic", ""),
        _int(h.get("source.partition")),
        _int(h.get("source.offset")),
        None if source_ts is None or source_ts < 0 else source_ts,
        record.key,
        record.value,
        tuple((k, v) for k, v in record.headers or () if not k.startswith(PREFIX)),
        h.get("redriven.from", ""),
    )


def preview(value: bytes | None, width: int = 120) -> str:
    r"""The start of a value, readable: text as is, other bytes escaped.

    >>> preview(b"ab" * 100, width=6), preview(b"\x00\xffPW"), preview(None)
    ('ababab...', "b'\\x00\\xffPW'", '(no value: a tombstone)')
    """
    if value is None:
        return "(no value: a tombstone)"
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError:
        text = repr(value)
    text = text.replace("\n", "\\n")
    return text if len(text) <= width else text[:width] + "..."


def iso(ms: int) -> str:
    """Epoch ms as an ISO UTC time to the second.

    >>> iso(0)
    '1970-01-01T00:00:00Z'
    """
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Row:
    """The letters of one topic, stage and reason."""

    topic: str
    stage: str
    reason: str
    count: int
    first_ms: int
    last_ms: int


@dataclass
class Digest:
    """Counts per topic, stage and reason, and the ``newest`` letters (by DLQ time).

    >>> letter = Letter("t.dlq", 0, 0, 0, "ingest", "not_json", "", "t", 0, 0, 0, None, None)
    >>> d = Digest(reasons=frozenset({"not_jsn"}))
    >>> d.add(letter); d.total, sorted(d.seen)
    (0, ['not_json'])
    """

    newest: int = 20
    reasons: frozenset[str] = frozenset()
    """Only letters with these reasons (empty: all); the others are only in ``seen``."""
    seen: set[str] = field(default_factory=set)
    counts: dict[tuple[str, str, str], list[int]] = field(default_factory=dict)
    per_topic: dict[str, int] = field(default_factory=dict)
    _heap: list[tuple[int, int, Letter]] = field(default_factory=list)

    def add(self, letter: Letter) -> None:
        """Count one letter and keep it if it is among the newest."""
        self.seen.add(letter.reason)
        if self.reasons and letter.reason not in self.reasons:
            return
        key = (letter.topic, letter.stage, letter.reason)
        entry = self.counts.setdefault(key, [0, letter.timestamp_ms, letter.timestamp_ms])
        entry[0] += 1
        entry[1] = min(entry[1], letter.timestamp_ms)
        entry[2] = max(entry[2], letter.timestamp_ms)
        self.per_topic[letter.topic] = self.per_topic.get(letter.topic, 0) + 1
        if self.newest:
            item = (letter.timestamp_ms, self.total, letter)
            if len(self._heap) < self.newest:
                heapq.heappush(self._heap, item)
            else:
                heapq.heappushpop(self._heap, item)

    @property
    def letters(self) -> list[Letter]:
        """The newest letters kept, oldest first."""
        return [item[2] for item in sorted(self._heap, key=lambda i: (i[0], i[1]))]

    @property
    def total(self) -> int:
        """Every letter counted."""
        return sum(self.per_topic.values())

    def rows(self) -> list[Row]:
        """One row per topic, stage and reason, the most frequent first."""
        rows = [Row(*key, n, first, last) for key, (n, first, last) in self.counts.items()]
        return sorted(rows, key=lambda r: (-r.count, r.topic, r.stage, r.reason))


STALL_S = 10.0
""":func:`read_letters` and :func:`read_marks` stop when no record arrived for this long
(e.g. behind a transaction still open): what was read by then is what they return."""


def _reader(settings: Settings) -> Any:
    """A consumer of committed records, in no group, that never creates a topic."""
    from kafka import KafkaConsumer

    from plantwatch.connections import kafka_config

    return KafkaConsumer(
        **kafka_config(settings, allow_auto_create_topics=False),
        enable_auto_commit=False,
        isolation_level="read_committed",
    )


def _read_to_ends(consumer: Any, todo: list[Any], ends: dict[Any, int]) -> Iterator[Any]:
    """The records of the ``todo`` partitions from their positions up to ``ends``.

    The consumer's other assigned partitions are paused. A partition is done at its end
    (a trailing transaction marker counts as read, :func:`pipeline.idle.records_to_read`);
    reading stops early when nothing came for :data:`STALL_S`.
    """
    from pipeline.idle import records_to_read

    consumer.pause(*(tp for tp in consumer.assignment() if tp not in todo))
    stalled_since = time.monotonic()
    while todo and time.monotonic() - stalled_since < STALL_S:
        for tp, records in consumer.poll(timeout_ms=500).items():
            stalled_since = time.monotonic()
            for record in records:
                if record.offset >= ends[tp]:
                    break
                yield record
        positions = {tp: consumer.position(tp) for tp in todo}
        highwaters = {tp: consumer.highwater(tp) for tp in todo}
        behind = records_to_read(positions, {tp: ends[tp] for tp in todo}, highwaters)
        consumer.pause(*(tp for tp in todo if tp not in behind))
        todo = [tp for tp in todo if tp in behind]


def read_letters(
    settings: Settings,
    topics: Iterable[str],
    start_ms: int,
    on_missing: Callable[[str], object] = lambda topic: None,
    most: int | None = None,
    spans: dict[str, int] | None = None,
) -> Iterator[Letter]:
    """The committed dead letters of ``topics`` written at or after ``start_ms``.

    Each partition is sought to its first record at or after ``start_ms`` (Kafka's time
    index) and read to its end as it was when reading began (or until nothing came for
    :data:`STALL_S`). A topic that does not exist yields nothing and is passed to
    ``on_missing``. ``spans`` (when given) gets each topic's offsets from there to the
    end: the letters, plus transaction markers and aborted records. With ``most`` and more offsets
    than that in all, only about the newest ``most`` are read, each partition's share in
    proportion to its span.
    """
    from kafka import TopicPartition

    consumer = _reader(settings)
    try:
        parts = []
        for topic in topics:
            found = consumer.partitions_for_topic(topic)
            if not found:
                on_missing(topic)
            parts += [TopicPartition(topic, p) for p in sorted(found or ())]
        if not parts:
            return
        consumer.assign(parts)
        ends = consumer.end_offsets(parts)
        starts = consumer.offsets_for_times({tp: start_ms for tp in parts})
        first = {tp: found.offset for tp, found in starts.items() if found is not None}
        span = {tp: max(0, ends[tp] - offset) for tp, offset in first.items()}
        if spans is not None:
            for tp in parts:
                spans[tp.topic] = spans.get(tp.topic, 0) + span.get(tp, 0)
        total = sum(span.values())
        if most is not None and total > most:
            first = {tp: ends[tp] - math.ceil(most * n / total) for tp, n in span.items()}
        for tp, offset in first.items():  # a partition with nothing since start_ms: not read
            consumer.seek(tp, offset)
        for record in _read_to_ends(consumer, list(first), ends):
            yield letter_of(record)
    finally:
        consumer.close()


def dlq_topics(settings: Settings) -> list[str]:
    """The three stages' DLQ topics (ingest, scorer, alerting), from the settings."""
    return [
        settings.topic_telemetry_dlq,
        settings.topic_features_dlq,
        settings.topic_predictions_dlq,
    ]


@dataclass
class Counted:
    """The letters of some DLQ topics since a time: counted, or (many) estimated."""

    digest: Digest = field(default_factory=lambda: Digest(newest=0))
    missing: list[str] = field(default_factory=list)
    spans: dict[str, int] = field(default_factory=dict)
    """Offsets since the time per topic: the letters, transaction markers, aborted records."""
    most: int | None = None

    @property
    def sampled(self) -> bool:
        """Whether only the newest letters were read (then the counts are the spans)."""
        return self.most is not None and sum(self.spans.values()) > self.most

    def count(self, topic: str) -> int:
        """The letters read, or the offset span when only the newest were read."""
        if self.sampled:
            return self.spans.get(topic, 0)
        return self.digest.per_topic.get(topic, 0)


COUNT_MOST = 100_000
"""`plantwatch status` reads at most about this many letters (~3 s here); beyond, it
estimates each topic's count from offsets and gives the reasons of the newest."""


def count_letters(
    settings: Settings, topics: Iterable[str], start_ms: int, most: int | None = None
) -> Counted:
    """Counts per topic, stage and reason of the letters since ``start_ms`` (none kept).

    ``most``: see :func:`read_letters` (None: read them all).
    """
    counted = Counted(most=most)
    for letter in read_letters(
        settings, topics, start_ms, counted.missing.append, most, counted.spans
    ):
        counted.digest.add(letter)
    return counted


def marks_topic(dlq_topic: str) -> str:
    """The compacted topic that records which letters of ``dlq_topic`` were redriven."""
    return f"{dlq_topic}.redriven"


def mark_of(letter: Letter) -> tuple[str, int, int, int]:
    """What identifies a letter across runs: DLQ topic, partition, offset and time.

    The time tells a letter apart from one at the same offset of a re-created topic.
    """
    return (letter.topic, letter.partition, letter.offset, letter.timestamp_ms)


def _mark_key(letter: Letter) -> bytes:
    return f"{letter.partition}:{letter.offset}:{letter.timestamp_ms}".encode()


def read_marks(settings: Settings, dlq_topics: Iterable[str]) -> set[tuple[str, int, int, int]]:
    """The letters of ``dlq_topics`` that a redrive committed (their marks topics, whole)."""
    from kafka import TopicPartition

    consumer = _reader(settings)
    marks: set[tuple[str, int, int, int]] = set()
    try:
        parts = {
            TopicPartition(marks_topic(t), p): t
            for t in dlq_topics
            for p in consumer.partitions_for_topic(marks_topic(t)) or ()
        }
        if not parts:
            return marks
        consumer.assign(list(parts))
        consumer.seek_to_beginning()
        ends = consumer.end_offsets(list(parts))
        for record in _read_to_ends(consumer, [tp for tp in parts if ends[tp] > 0], ends):
            fields = (record.key or b"").decode("ascii", "replace").split(":")
            if len(fields) == 3 and all(f.lstrip("-").isdigit() for f in fields):
                p, o, ts = (int(f) for f in fields)
                dlq = parts[TopicPartition(record.topic, record.partition)]
                marks.add((dlq, p, o, ts))
    finally:
        consumer.close()
    return marks


@dataclass
class Redrive:
    """What a redrive did; only committed letters are counted in ``redriven``."""

    redriven: dict[tuple[str, str, str], int] = field(default_factory=dict)
    """(DLQ topic, reason, source topic) -> letters re-published, committed."""
    already: int = 0
    """Letters skipped: an earlier redrive committed them."""
    no_source: dict[str, int] = field(default_factory=dict)
    """Letters skipped per source topic named in their headers that does not exist ("" for
    a letter with no source topic header)."""
    left: int = 0
    """Letters not redriven because the run's ``most`` was reached (a later run takes them)."""
    refused_again: int = 0
    """Letters skipped: a redriven copy that the stage refused again (without ``again``)."""

    @property
    def total(self) -> int:
        """Letters re-published."""
        return sum(self.redriven.values())


def redrive(
    producer: Any,
    letters: Iterable[Letter],
    done: set[tuple[str, int, int, int]],
    partitions: Callable[[str], set[int] | None],
    result: Redrive | None = None,
    chunk: int = 500,
    on_commit: Callable[[Redrive], object] = lambda result: None,
    most: int | None = None,
    again: bool = False,
) -> Redrive:
    """Re-publish each letter's key and value to its source topic and partition, once.

    ``producer`` is a transactional KafkaProducer whose ``init_transactions()`` ran before
    ``done`` (:func:`read_marks`) was read, so that a concurrent redrive is fenced off and
    its committed work is in ``done``. Each transaction of up to ``chunk`` letters holds
    their copies and their marks (``marks_topic``): a letter counts as redriven exactly
    when both are committed, and a later run skips it. A copy goes to the partition the
    letter came from (one machine's records stay on one partition), carries the record's
    own headers and :data:`~pipeline.deadletter.REDRIVEN_FROM`, and is stamped with the current
    time.
    ``partitions(topic)`` gives a topic's partitions (None or empty: no such topic).
    Counts go into ``result`` as transactions commit (then ``on_commit(result)`` is
    called, e.g. for progress), so a caller that catches an error still knows what was
    done. With ``most``, at most that many letters are redriven; the rest are counted in
    ``left`` (the iterator is still read to its end, for the caller's counts).
    A letter that is a redriven copy refused again (``redriven_from``) is skipped and
    counted in ``refused_again`` unless ``again``: its cause was not fixed by the last
    redrive, and a redrive repeated by a schedule would otherwise loop it for ever.
    """
    import orjson

    result = Redrive() if result is None else result
    pending: dict[tuple[str, str, str], int] = {}  # in the open transaction
    in_transaction = False
    known: dict[str, set[int] | None] = {}

    def commit() -> None:
        nonlocal in_transaction
        producer.commit_transaction()
        in_transaction = False
        for key, n in pending.items():
            result.redriven[key] = result.redriven.get(key, 0) + n
        pending.clear()
        on_commit(result)

    try:
        for letter in letters:
            if mark_of(letter) in done:
                result.already += 1
                continue
            if letter.redriven_from and not again:
                result.refused_again += 1
                continue
            if most is not None and result.total + sum(pending.values()) >= most:
                result.left += 1
                continue
            if letter.source_topic not in known:
                known[letter.source_topic] = (
                    partitions(letter.source_topic) if letter.source_topic else None
                )
            parts = known[letter.source_topic]
            if not parts:
                result.no_source[letter.source_topic] = (
                    result.no_source.get(letter.source_topic, 0) + 1
                )
                continue
            if not in_transaction:
                producer.begin_transaction()
                in_transaction = True
            where = f"{letter.topic}[{letter.partition}]@{letter.offset}"
            producer.send(
                letter.source_topic,
                key=letter.key,
                value=letter.value,
                partition=letter.source_partition if letter.source_partition in parts else None,
                headers=[*letter.own_headers, (REDRIVEN_FROM, where.encode())],
            )
            producer.send(
                marks_topic(letter.topic),
                key=_mark_key(letter),
                value=orjson.dumps({"to": letter.source_topic, "reason": letter.reason}),
            )
            done.add(mark_of(letter))
            key = (letter.topic, letter.reason, letter.source_topic)
            pending[key] = pending.get(key, 0) + 1
            if sum(pending.values()) >= chunk:
                commit()
        if in_transaction:
            commit()
    except BaseException:
        if in_transaction:
            with contextlib.suppress(Exception):  # a fenced producer cannot abort either
                producer.abort_transaction()
        raise
    return result
