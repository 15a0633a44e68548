"""Records the store already applied never move its offset back (pure logic, fake Kafka).

A crash between the store's commit and Kafka's (``docs/alerting.md``, exactly once) replays
records below the stored offset, which are skipped. A replay may take several polls; one
that ends inside the skipped range must not store its own, lower offset, or a second crash
would apply the records between the two again (their dead letters would be sent again).
The real-broker side is ``tests/alerting/test_tickets_integration.py``.
"""

from __future__ import annotations

from pathlib import Path

from kafka import TopicPartition

from alerting import store
from alerting.service import AlertConfig, AlertingService
from tests.fake_kafka import FakeConsumer

TP = TopicPartition("predictions", 0)
GROUP = "g"


class _Writer:
    def write(self, lines: list[str]) -> None:
        assert not lines  # skipped records write nothing


def test_a_poll_inside_the_skipped_range_keeps_the_stored_offset(tmp_path: Path) -> None:
    conn = store.connect(tmp_path / "alerting.db")
    with store.transaction(conn) as tx:
        store.advance_offsets(tx, GROUP, TP.topic, {0: None}, {0: 10})  # applied up to 10
    consumer = FakeConsumer(TP, [b"not read: below the stored offset"] * 12, chunk=4)
    service = AlertingService(
        consumer,
        None,
        _Writer(),  # type: ignore[arg-type]
        conn,
        None,  # type: ignore[arg-type]  # rules, silences: never reached (all skipped)
        AlertConfig(group=GROUP, topic=TP.topic),
        None,  # type: ignore[arg-type]
        lambda version: True,
    )
    for _ in range(2):  # offsets 0..3, then 4..7: all already applied
        service.process(consumer.poll(timeout_ms=0, max_records=4))
        assert store.stored_offsets(conn, GROUP, TP.topic) == {0: 10}
        assert consumer.committed_offset == 10  # Kafka's commit catches up with the store
    assert service.metrics.skipped == 8
