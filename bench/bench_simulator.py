"""Benchmark: how fast `plantwatch simulate` publishes to the real Kafka broker.

Each run starts the real command in a fresh process against fresh 3-partition topics,
reads the rate it measured (first send until the last record is acknowledged, acks=all)
from its --summary-json, and deletes the topics. Prints every run, then the median, min
and max per mode: single-sample messages (messages/s) and batch messages (samples/s and
messages/s). Also prints the generator's own rate without Kafka, for comparison.

Usage (broker from PLANTWATCH_KAFKA_BOOTSTRAP_SERVERS, default 127.0.0.1:9092; `make bench`
runs it against private services)::

    .venv/bin/python bench/bench_simulator.py --runs 5 --out bench/results/simulator.json
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from ingest.simulator import SimulatorConfig, messages
from plantwatch.connections import kafka_config
from plantwatch.settings import load_settings


def _run_once(args: argparse.Namespace, count: int, batch_size: int) -> dict[str, Any]:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    settings = load_settings()
    suffix = uuid.uuid4().hex[:10]
    topics = [f"bench-sim-{suffix}", f"bench-sim-{suffix}-events"]
    admin = KafkaAdminClient(**kafka_config(settings))
    admin.create_topics([NewTopic(t, num_partitions=3, replication_factor=1) for t in topics])
    try:
        with tempfile.TemporaryDirectory() as tmp:
            summary_path = Path(tmp) / "summary.json"
            env = dict(
                os.environ,
                PLANTWATCH_TOPIC_TELEMETRY=topics[0],
                PLANTWATCH_TOPIC_EVENTS=topics[1],
            )
            command = [
                sys.executable,
                "-c",
                "from plantwatch.cli import main; main()",
                "simulate",
                f"--count={count}",
                f"--machines={args.machines}",
                f"--batch-size={batch_size}",
                f"--compression={args.compression}",
                f"--summary-json={summary_path}",
            ]
            subprocess.run(command, env=env, check=True, capture_output=True, timeout=600)
            return dict(json.loads(summary_path.read_text()))
    finally:
        admin.delete_topics(topics)
        admin.close()


def _summarize(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _generator_rate(machines: int, batch_size: int, count: int) -> tuple[float, float]:
    config = SimulatorConfig(machines=machines, batch_size=batch_size)
    started = time.perf_counter()
    sent = samples = 0
    for message in messages(config):
        sent += 1
        samples += message.samples
        if sent >= count:
            break
    seconds = time.perf_counter() - started
    return sent / seconds, samples / seconds


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; print per-run lines (stderr), the medians (stdout), and write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--machines", type=int, default=100)
    parser.add_argument(
        "--messages", "--count", type=int, default=200_000, help="single messages per run"
    )
    parser.add_argument("--batch-size", "--batch", type=int, default=20)
    parser.add_argument(
        "--batch-messages", type=int, default=None, help="batch messages per run [messages / 10]"
    )
    parser.add_argument(
        "--compression", default="none", choices=["none", "gzip", "snappy", "lz4", "zstd"]
    )
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)

    import kafka

    crc = importlib.util.find_spec("crc32c") is not None
    compression = args.compression
    setup = (
        f"kafka-python {kafka.__version__}, crc32c C extension: {'yes' if crc else 'no'}, "
        f"compression {compression}, {args.machines} machines, acks=all, {os.cpu_count()} CPUs"
    )
    print(f"[simulate] {setup}; load average {os.getloadavg()[0]:.2f}", file=sys.stderr)
    result: dict[str, Any] = {"setup": setup, "runs": args.runs}
    batch_messages = args.batch_messages or max(1, args.messages // 10)
    for mode, batch_size, count in (
        ("single", 1, args.messages),
        ("batch", args.batch_size, batch_messages),
    ):
        gen_msgs, gen_samples = _generator_rate(args.machines, batch_size, count)
        runs = []
        for run in range(1, args.runs + 1):
            summary = _run_once(args, count, batch_size)
            runs.append(summary)
            print(
                f"[simulate] {mode} run {run}: {summary['messages']:,} messages, "
                f"{summary['samples']:,} samples in {summary['seconds']:.2f} s: "
                f"{summary['messages_per_s']:,} messages/s, {summary['samples_per_s']:,} samples/s",
                file=sys.stderr,
            )
        m = result[mode] = {
            "samples_per_message": batch_size,
            "messages_per_s": _summarize([r["messages_per_s"] for r in runs]),
            "samples_per_s": _summarize([r["samples_per_s"] for r in runs]),
            "generator_alone": {"messages_per_s": gen_msgs, "samples_per_s": gen_samples},
        }
        print(
            f"simulate {mode:<6} ({batch_size:>2} samples/msg): "
            f"{m['messages_per_s']['median']:>9,.0f} msg/s  "
            f"{m['samples_per_s']['median']:>9,.0f} samples/s (median of {args.runs}; "
            f"samples/s min {m['samples_per_s']['min']:,.0f} max {m['samples_per_s']['max']:,.0f}; "
            f"generator alone {gen_samples:,.0f} samples/s)"
        )
    print(f"simulate setup: {setup}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
