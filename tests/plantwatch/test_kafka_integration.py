"""Against the real broker: keyed records, a consumer group, commit, restart, resume."""

from __future__ import annotations

import time

import pytest

from plantwatch.connections import kafka_config
from plantwatch.settings import Settings

pytestmark = pytest.mark.integration


def _produce(settings: Settings, topic: str, n: int) -> dict[tuple[int, int], bytes]:
    from kafka import KafkaProducer

    producer = KafkaProducer(**kafka_config(settings, acks="all"))
    futures = [
        producer.send(topic, key=f"pump-{i % 7}".encode(), value=f"reading-{i}".encode())
        for i in range(n)
    ]
    producer.flush()
    sent = {}
    for i, fut in enumerate(futures):
        meta = fut.get(timeout=30)
        sent[(meta.partition, meta.offset)] = f"reading-{i}".encode()
    producer.close()
    return sent


def _consumer(settings: Settings, topic: str, group: str):  # type: ignore[no-untyped-def]
    from kafka import KafkaConsumer

    return KafkaConsumer(
        topic,
        **kafka_config(
            settings,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=5,
        ),
    )


def test_same_key_lands_on_same_partition(live_services: Settings, topic: str) -> None:
    sent = _produce(live_services, topic, 70)
    by_key: dict[str, set[int]] = {}
    for (partition, _), value in sent.items():
        i = int(value.decode().split("-")[1])
        by_key.setdefault(f"pump-{i % 7}", set()).add(partition)
    assert all(len(parts) == 1 for parts in by_key.values())


def test_group_resumes_after_committed_offset(
    live_services: Settings, topic: str, unique: str
) -> None:
    from kafka import OffsetAndMetadata, TopicPartition

    sent = _produce(live_services, topic, 60)
    group = f"group-{unique}"

    # First consumer: process 23 records, commit exactly what was processed, close.
    first = _consumer(live_services, topic, group)
    processed: list[tuple[int, int]] = []
    deadline = time.monotonic() + 60
    while len(processed) < 23 and time.monotonic() < deadline:
        for tp, records in first.poll(timeout_ms=500).items():
            for rec in records:
                if len(processed) < 23:
                    assert rec.value == sent[(tp.partition, rec.offset)]
                    processed.append((tp.partition, rec.offset))
    assert len(processed) == 23
    upto: dict[int, int] = {}
    for partition, offset in processed:
        upto[partition] = max(upto.get(partition, -1), offset)
    first.commit(
        {TopicPartition(topic, p): OffsetAndMetadata(o + 1, "", -1) for p, o in upto.items()}
    )
    first.close()

    # Second consumer in the same group: continues right after the committed offsets.
    second = _consumer(live_services, topic, group)
    rest: list[tuple[int, int]] = []
    deadline = time.monotonic() + 60
    while len(processed) + len(rest) < len(sent) and time.monotonic() < deadline:
        for tp, records in second.poll(timeout_ms=500).items():
            rest.extend((tp.partition, rec.offset) for rec in records)
    time.sleep(1.0)
    for tp, records in second.poll(timeout_ms=1000).items():  # nothing more may come
        rest.extend((tp.partition, rec.offset) for rec in records)
    second.close()

    assert not set(processed) & set(rest), "a committed record was read again"
    assert sorted(processed + rest) == sorted(sent), "a record was skipped or doubled"
    for partition, offset in rest:
        assert offset > upto.get(partition, -1)


def test_ensure_topics_creates_only_missing_ones(live_services: Settings, unique: str) -> None:
    from kafka import KafkaAdminClient

    from plantwatch.topics import ensure_topics, partitions_of

    names = {f"ensure-{unique}-a": 4, f"ensure-{unique}-b": 2}
    assert ensure_topics(live_services, names) == sorted(names)
    assert ensure_topics(live_services, names) == []  # idempotent
    assert partitions_of(live_services, f"ensure-{unique}-a") == 4
    assert partitions_of(live_services, f"ensure-{unique}-missing") is None
    admin = KafkaAdminClient(**kafka_config(live_services))
    admin.delete_topics(list(names))
    admin.close()


def test_consumer_lag_counts_records_not_transaction_markers(
    live_services: Settings, topic: str, unique: str
) -> None:
    """The lag gauges' rule: 0 once a transactional topic is read, however many markers."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    from pipeline.idle import consumer_lag

    producer = KafkaProducer(**kafka_config(live_services, transactional_id=f"lag-{unique}"))
    producer.init_transactions()
    for t in range(3):  # three transactions over all three partitions
        producer.begin_transaction()
        for i in range(6):
            producer.send(topic, value=f"{t}-{i}".encode(), partition=i % 3)
        producer.commit_transaction()
    producer.close()

    consumer = KafkaConsumer(
        **kafka_config(live_services, isolation_level="read_committed", enable_auto_commit=False)
    )
    tps = [TopicPartition(topic, p) for p in range(3)]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    first = consumer.poll(timeout_ms=5000, max_records=2)
    assert sum(map(len, first.values())) == 2
    assert consumer_lag(consumer) >= 4  # at least the rest of the first partition read
    last: dict[TopicPartition, int] = {}
    for tp, records in first.items():
        last[tp] = records[-1].offset
    deadline = time.monotonic() + 30
    read = 2
    while read < 18 and time.monotonic() < deadline:
        for tp, records in consumer.poll(timeout_ms=500, max_records=5).items():
            read += len(records)
            last[tp] = records[-1].offset
    assert read == 18
    for _ in range(3):  # a caught-up consumer keeps polling
        assert consumer.poll(timeout_ms=200) == {}
    # Every partition ends with a commit marker: counting from the last record, as the
    # gauges did, says one record behind per partition.
    markers = sum(consumer.highwater(tp) - (last[tp] + 1) for tp in tps)
    assert markers == 3
    assert consumer_lag(consumer) == 0
    consumer.close()
