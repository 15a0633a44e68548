"""Benchmark: ingest throughput against the real broker (not a test; run by `make bench`).

For each mode (single messages, batch messages of ``--batch`` samples) and each of
``--runs`` runs: fill a fresh 3-partition topic with ``--messages`` records (not timed),
then run the real IngestService over it with a counting sink and time from the first
handed-on batch to the last. Prints and writes (``--out``) median/min/max of messages/s
and samples/s.

    python bench/bench_ingest.py --messages 200000 --runs 5 --out bench/results/ingest.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ingest.contract import Telemetry, encode, encode_batch
from ingest.service import IngestConfig, IngestService
from plantwatch.connections import kafka_config
from plantwatch.settings import Settings, load_settings

SENSORS = tuple(f"s{j}" for j in range(8))


class CountingSink:
    """Counts samples and notes when the first and the last batch arrived."""

    def __init__(self) -> None:
        self.samples = 0
        self.first: float | None = None
        self.first_size = 0
        self.last = 0.0

    def write(self, records: Sequence[Telemetry]) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first, self.first_size = now, len(records)
        self.last = now
        self.samples += len(records)

    def flush(self) -> None:
        return None


def _fill(settings: Settings, topic: str, messages: int, batch: int, machines: int) -> int:
    from kafka import KafkaAdminClient, KafkaProducer
    from kafka.admin import NewTopic

    admin = KafkaAdminClient(**kafka_config(settings))
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
    admin.close()
    producer = KafkaProducer(
        **kafka_config(
            settings, acks=1, enable_idempotence=False, linger_ms=20, batch_size=512 * 1024
        )
    )
    base = int(time.time() * 1000) - 3_600_000
    sensors = SENSORS
    samples = 0
    for i in range(messages):
        eid = f"machine-{i % machines:05d}"
        step = i // machines
        recs = [
            Telemetry(
                eid,
                base + (step * batch + k) * 1000,  # 1 Hz per machine
                {s: float(i + k + j) for j, s in enumerate(sensors)},
            )
            for k in range(batch)
        ]
        value = encode(recs[0]) if batch == 1 else encode_batch(recs)
        producer.send(topic, key=eid.encode(), value=value)
        samples += batch
    producer.flush()
    producer.close()
    return samples


def _drop(settings: Settings, topics: list[str]) -> None:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(**kafka_config(settings))
    admin.delete_topics(topics, raise_errors=False)
    admin.close()


def run_once(
    settings: Settings, messages: int, batch: int, machines: int, features: bool = False
) -> dict[str, float]:
    """One timed ingest run over a freshly filled topic.

    With ``features``, the feature stage runs and outputs go out in transactions.
    """
    from kafka import KafkaConsumer, KafkaProducer

    topic = f"bench-ingest-{uuid.uuid4().hex[:8]}"
    samples = _fill(settings, topic, messages, batch, machines)
    sink = CountingSink()
    consumer = KafkaConsumer(
        **kafka_config(
            settings,
            group_id=f"bench-{topic}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=2000,
        )
    )
    stage = None
    extra: dict[str, Any] = {}
    if features:
        from features.config import WindowConfig
        from ingest.featurestage import FeatureStage

        stage = FeatureStage(WindowConfig(sensors=SENSORS, step_ms=10_000, grace_ms=2_000))
        extra["transactional_id"] = f"bench-{topic}"
    producer = KafkaProducer(**kafka_config(settings, acks="all", linger_ms=5, **extra))
    config = IngestConfig(
        topic=topic,
        dlq_topic=f"{topic}.dlq",
        features_topic=f"{topic}.features",
        log_every_s=3600,
        transactional=features,
    )
    service = IngestService(consumer, producer, [sink], config, features=stage)
    try:
        service.run(
            threading.Event(), max_messages=messages, idle_exit_s=60, on_log=lambda _l: None
        )
    finally:
        consumer.close()
        producer.close()
        _drop(settings, [topic, f"{topic}.features"] if features else [topic])
    assert sink.samples == samples, (sink.samples, samples)
    assert sink.first is not None
    seconds = max(sink.last - sink.first, 1e-9)
    counted_messages = messages - sink.first_size // batch
    return {
        "messages_per_s": counted_messages / seconds,
        "samples_per_s": counted_messages * batch / seconds,
        "seconds": seconds,
    }


def summarize(values: list[float]) -> dict[str, float]:
    """Median, min and max."""
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; print a table and write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=20, help="samples per batch message")
    parser.add_argument("--machines", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    settings = load_settings()
    result: dict[str, Any] = {"cores": os.cpu_count(), "messages": args.messages, "runs": args.runs}
    modes = (
        ("single", 1, args.messages, False),
        ("batch", args.batch, args.messages // args.batch, False),
        ("single+features", 1, args.messages, True),
    )
    for mode, batch, count, features in modes:
        runs = [run_once(settings, count, batch, args.machines, features) for _ in range(args.runs)]
        result[mode] = {
            "samples_per_message": batch,
            "messages_per_s": summarize([r["messages_per_s"] for r in runs]),
            "samples_per_s": summarize([r["samples_per_s"] for r in runs]),
        }
        m = result[mode]
        print(
            f"ingest {mode:<15} ({batch:>2} samples/msg): "
            f"{m['messages_per_s']['median']:>9,.0f} msg/s  {m['samples_per_s']['median']:>9,.0f} samples/s "
            f"(median of {args.runs}; samples/s min {m['samples_per_s']['min']:,.0f} max {m['samples_per_s']['max']:,.0f})"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
