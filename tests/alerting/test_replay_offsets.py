"""Records the store already applied never move its offset back (pure logic, fake Kafka).

A crash between the store's commit and Kafka's (``docs/alerting.md``, exactly once) replays
records below the stored offset, which are skipped. A replay may take several polls; one
that ends inside the skipped range must not store its own, lower offset, or a second crash
would apply the records between the two again (their dead letters would be sent again).
The real-broker side is ``tests/alerting/test_tickets_integration.py``.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from kafka import TopicPartition

from alerting import store
from alerting.service import AlertConfig, AlertingService
from tests.fake_kafka import FakeConsumer

TP = TopicPartition("predictions", 0)
GROUP = "g"


class _Writer:
    def write(self, lines: list[str]) -> None:
        assert not lines  # skipped records write nothing


def _service(consumer: FakeConsumer, conn: sqlite3.Connection) -> AlertingService:
    return AlertingService(
        consumer,
        None,
        _Writer(),  # type: ignore[arg-type]
        conn,
        None,  # type: ignore[arg-type]  # rules, silences: never reached (all skipped)
        AlertConfig(group=GROUP, topic=TP.topic),
        None,  # type: ignore[arg-type]
        lambda version: True,
    )


def test_a_poll_inside_the_skipped_range_keeps_the_stored_offset(tmp_path: Path) -> None:
    conn = store.connect(tmp_path / "alerting.db")
    with store.transaction(conn) as tx:
        store.advance_offsets(tx, GROUP, TP.topic, {0: None}, {0: 10})  # applied up to 10
    consumer = FakeConsumer(TP, [b"not read: below the stored offset"] * 12, chunk=4)
    service = _service(consumer, conn)
    for _ in range(2):  # offsets 0..3, then 4..7: all already applied
        service.process(consumer.poll(timeout_ms=0, max_records=4))
        assert store.stored_offsets(conn, GROUP, TP.topic) == {0: 10}
        assert consumer.committed_offset == 10  # Kafka's commit catches up with the store
    assert service.metrics.skipped == 8


class _RefusingConsumer(FakeConsumer):
    """Refuses the first commit, as Kafka does after the group dropped this member."""

    refused = 0

    def commit(self, offsets: dict[TopicPartition, object]) -> None:  # type: ignore[override]
        from kafka.errors import CommitFailedError

        if not self.refused:
            self.refused += 1
            raise CommitFailedError("UnknownMemberIdError")
        super().commit(offsets)  # type: ignore[arg-type]


def test_a_refused_kafka_commit_does_not_stop_the_stage(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """After a long broker outage the group may have dropped the member before its commit."""
    conn = store.connect(tmp_path / "alerting.db")
    with store.transaction(conn) as tx:
        store.advance_offsets(tx, GROUP, TP.topic, {0: None}, {0: 10})
    consumer = _RefusingConsumer(TP, [b"below the stored offset"] * 12, chunk=4)
    service = _service(consumer, conn)
    service.process(consumer.poll(timeout_ms=0, max_records=4))
    assert consumer.refused == 1
    assert consumer.committed_offset is None
    assert "Kafka refused the offset commit (CommitFailedError" in caplog.text
    service.process(consumer.poll(timeout_ms=0, max_records=4))  # the next batch commits
    assert consumer.committed_offset == 10
    assert store.stored_offsets(conn, GROUP, TP.topic) == {0: 10}
