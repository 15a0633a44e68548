"""Publishing a simulator run through a :class:`~ingest.publisher.Publisher`.

:func:`publish_run` sends each step's ground-truth events, then its telemetry messages,
and counts every message by what validation will say of it. :class:`KeyPartitioned`
spares kafka-python the per-send hashing of keys that repeat (the machines' ids).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ingest.events import encode_event
from ingest.publisher import Publisher
from ingest.simulator import SimulatorConfig, ticks


class KeyPartitioned:
    """A kafka-python producer whose sends name their key's partition, hashed once per key.

    kafka-python runs its pure-Python murmur2 on every keyed send; this caches the
    partition its default partitioner would choose, per topic and key, so records land
    where any other producer would put them. Partitions added to a topic while it runs
    are not seen (neither would a consumer's key order survive that).

    Args:
        producer: a ``kafka.KafkaProducer``.
    """

    def __init__(self, producer: Any) -> None:
        self._producer = producer
        self._cache: dict[str, dict[bytes, int]] = {}

    def partition(self, topic: str, key: bytes) -> int:
        """The partition of ``key`` in ``topic`` (waits for the topic's metadata once)."""
        from kafka.partitioner.default import murmur2

        cache = self._cache.setdefault(topic, {})
        if key not in cache:
            parts = sorted(self._producer.partitions_for(topic))
            cache[key] = parts[(murmur2(key) & 0x7FFFFFFF) % len(parts)]
        return cache[key]

    def send(self, topic: str, *, key: bytes, value: bytes, timestamp_ms: int | None) -> Any:
        """Queue one record on its key's partition; returns kafka-python's future."""
        part = self._cache.get(topic, {}).get(key)
        if part is None:
            part = self.partition(topic, key)
        return self._producer.send(
            topic, key=key, value=value, partition=part, timestamp_ms=timestamp_ms
        )

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every queued record is acknowledged or failed."""
        self._producer.flush(timeout=timeout)

    def close(self, timeout: float | None = None) -> None:
        """Close the producer."""
        self._producer.close(timeout=timeout)


@dataclass
class RunSummary:
    """What a run published.

    Attributes:
        messages: telemetry messages sent.
        by_expect: messages per expectation (valid, duplicate, or a rejection reason).
        samples: samples in the valid messages (what the ingest stage should accept).
        duplicate_samples: samples in the duplicate messages.
        events: ground-truth events sent, per kind.
        last_ts_ms: newest event time among the telemetry messages.
        seconds: wall time from the first send until everything was acknowledged.
    """

    messages: int = 0
    by_expect: Counter[str] = field(default_factory=Counter)
    samples: int = 0
    duplicate_samples: int = 0
    events: Counter[str] = field(default_factory=Counter)
    last_ts_ms: int | None = None
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready data, with rates."""
        seconds = max(self.seconds, 1e-9)
        return {
            "messages": self.messages,
            "by_expect": dict(sorted(self.by_expect.items())),
            "samples": self.samples,
            "duplicate_samples": self.duplicate_samples,
            "events": dict(sorted(self.events.items())),
            "last_ts_ms": self.last_ts_ms,
            "seconds": round(self.seconds, 3),
            "messages_per_s": round(self.messages / seconds),
            "samples_per_s": round(self.samples / seconds),
        }


def publish_run(
    publisher: Publisher,
    config: SimulatorConfig,
    *,
    topic: str,
    events_topic: str | None,
    count: int | None,
    duration: float | None,
    progress: Callable[[int, float], None] | None = None,
    every_s: float = 2.0,
) -> RunSummary:
    """Publish a run until ``count`` messages are sent or ``duration`` seconds have passed.

    Args:
        publisher: the producing edge (its clock times the run).
        config: the simulation.
        topic: where telemetry goes (key: equipment id, timestamp: event time).
        events_topic: where failures and repairs go; None to leave them out.
        count: telemetry messages to send, or None.
        duration: seconds of wall time to run, or None (with ``count`` None: endless).
        progress: called about every ``every_s`` seconds with (messages sent, seconds).
        every_s: how often to call ``progress``.

    Returns:
        The counts, timed up to the acknowledgement of the last record.

    Raises:
        PublishError: if Kafka did not acknowledge some records.
    """
    send = publisher.send
    summary = RunSummary()
    by_expect = summary.by_expect
    sent = samples = duplicate_samples = 0
    last_ts = -1
    t0 = publisher.elapsed()
    report = t0 + every_s
    for tick in ticks(config):
        if events_topic is not None:
            for event in tick.events:
                key = event.equipment_id.encode()
                send(events_topic, key, encode_event(event), timestamp_ms=event.ts_ms)
                summary.events[event.kind] += 1
        batch = tick.messages if count is None else tick.messages[: count - sent]
        for message in batch:
            send(topic, message.key, message.value, timestamp_ms=message.ts_ms)
            by_expect[message.expect] += 1
            if message.expect == "valid":
                samples += message.samples
            elif message.expect == "duplicate":
                duplicate_samples += message.samples
            if message.ts_ms > last_ts:
                last_ts = message.ts_ms
        sent += len(batch)
        now = publisher.elapsed()
        if progress is not None and now >= report:
            progress(sent, now - t0)
            report = now + every_s
        if (count is not None and sent >= count) or (duration is not None and now - t0 >= duration):
            break
    publisher.flush(timeout=300)
    summary.messages, summary.samples = sent, samples
    summary.duplicate_samples = duplicate_samples
    summary.last_ts_ms = last_ts if last_ts >= 0 else None
    summary.seconds = publisher.elapsed() - t0
    return summary
