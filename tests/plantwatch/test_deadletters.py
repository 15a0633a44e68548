"""Reading dead letters back (pure: records built by hand; the broker side is in
``test_deadletters_integration.py``)."""

from __future__ import annotations

import base64
from types import SimpleNamespace

from pipeline.deadletter import dead_letter
from plantwatch.deadletters import Digest, Letter, letter_of


def _letter(offset: int, time_ms: int, reason: str = "not_json", value: bytes = b"x") -> Letter:
    d = dead_letter("telemetry", 1, offset, 5, b"pump-1", value, reason, f"detail {offset}")
    record = SimpleNamespace(
        topic="telemetry.dlq",
        partition=0,
        offset=offset,
        timestamp=time_ms,
        headers=d.headers,
        key=d.key,
        value=d.value,
    )
    return letter_of(record)


def test_a_letter_carries_its_headers() -> None:
    letter = _letter(41, 1_000, reason="invalid_ts", value=b'{"ts": "x"}')
    assert (letter.stage, letter.reason, letter.detail) == ("ingest", "invalid_ts", "detail 41")
    assert (letter.source_topic, letter.source_partition, letter.source_offset) == (
        "telemetry",
        1,
        41,
    )
    assert letter.source == "telemetry[1]@41"
    assert letter.source_timestamp_ms == 5
    doc = letter.to_doc()
    assert doc["value"] == '{"ts": "x"}'
    assert doc["time"] == "1970-01-01T00:00:01Z"


def test_a_record_without_plantwatch_headers_still_reads() -> None:
    record = SimpleNamespace(
        topic="t.dlq", partition=2, offset=9, timestamp=0, headers=[], key=None, value=None
    )
    letter = letter_of(record)
    assert (letter.reason, letter.stage, letter.source) == ("", "", "[?]@?")
    assert letter.to_doc()["value"] is None


def test_a_binary_value_goes_to_json_as_base64() -> None:
    raw = b"PWF\x01\xff\x00"
    doc = _letter(1, 0, value=raw).to_doc()
    assert "value" not in doc
    assert base64.b64decode(doc["value_base64"]) == raw


def test_the_digest_counts_everything_and_keeps_the_newest_in_bounded_memory() -> None:
    digest = Digest(newest=3)
    times = [50, 10, 70, 30, 90, 60, 20]  # not in time order: partitions interleave
    for i, t in enumerate(times):
        digest.add(_letter(i, t, reason="not_json" if i % 2 else "too_late"))
    assert digest.total == 7
    assert [letter.timestamp_ms for letter in digest.letters] == [60, 70, 90]
    rows = {(r.reason, r.count, r.first_ms, r.last_ms) for r in digest.rows()}
    assert rows == {("too_late", 4, 20, 90), ("not_json", 3, 10, 60)}
    assert digest.rows()[0].reason == "too_late"  # the most frequent first


def test_a_reason_filter_counts_only_matches_but_remembers_every_reason_seen() -> None:
    digest = Digest(newest=5, reasons=frozenset({"too_late", "not_jsn"}))
    for i, reason in enumerate(["not_json", "too_late", "not_json"]):
        digest.add(_letter(i, i, reason=reason))
    assert digest.total == 1
    assert [r.reason for r in digest.rows()] == ["too_late"]
    assert digest.seen == {"not_json", "too_late"}  # so a typo can be told from no letters


def test_limit_zero_keeps_counts_only() -> None:
    digest = Digest(newest=0)
    digest.add(_letter(0, 0))
    assert (digest.total, digest.letters) == (1, [])


def test_a_topic_kafka_would_refuse_is_named_before_any_connection() -> None:
    from click.testing import CliRunner

    from plantwatch.cli import cli

    for bad in ("", "two words", ".."):
        result = CliRunner().invoke(
            cli, ["--kafka-bootstrap-servers", "127.0.0.1:1", "dead-letters", "--topic", bad]
        )
        assert result.exit_code == 2, result.output
        assert f"invalid option --topic={bad!r}: expected a Kafka topic name" in result.output
