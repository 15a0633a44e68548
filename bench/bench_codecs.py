"""Benchmark: our producers' throughput per Kafka codec, side by side (not a test).

Each round runs `plantwatch simulate` once per codec (none, gzip, snappy, lz4, zstd; the
order rotates each round) against fresh topics of the real broker, single-sample messages
and batch messages, acks=all (bench_simulator's runner). Also the size of one producer
batch (16 KiB of simulator telemetry) after each codec. Prints medians, min and max per
codec and the ratio to `none`; this is how PLANTWATCH_KAFKA_COMPRESSION's default was
chosen.

    .venv/bin/python bench/bench_codecs.py --rounds 3 --out bench/results/codecs.json
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path
from typing import Any

from _common import machine, run_header, summarize, write_result
from bench_simulator import _run_once

from ingest.simulator import SimulatorConfig, messages

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")


def batch_sizes() -> dict[str, int]:
    """Bytes of a 16 KiB batch of simulator messages after each codec (kafka-python's)."""
    from kafka import codec

    raw = b""
    for message in messages(SimulatorConfig(machines=100)):
        raw += message.value
        if len(raw) >= 16_384:
            break
    return {
        "none": len(raw),
        "gzip": len(codec.gzip_encode(raw)),
        "snappy": len(codec.snappy_encode(raw)),
        "lz4": len(codec.lz4_encode(raw)),
        "zstd": len(codec.zstd_encode(raw)),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the rounds; print a table and write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", "--runs", type=int, default=3)
    parser.add_argument("--machines", type=int, default=100)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    before = machine()
    single: dict[str, list[float]] = {c: [] for c in CODECS}
    batched: dict[str, list[float]] = {c: [] for c in CODECS}
    for r in range(args.rounds):
        order = CODECS[r % len(CODECS) :] + CODECS[: r % len(CODECS)]
        for codec in order:
            run = argparse.Namespace(machines=args.machines, compression=codec)
            one = _run_once(run, args.messages, 1)
            many = _run_once(run, args.messages // args.batch_size, args.batch_size)
            single[codec].append(one["messages_per_s"])
            batched[codec].append(many["samples_per_s"])
            print(
                f"round {r + 1} {codec:<6} single {single[codec][-1]:>9,.0f} msg/s  "
                f"batch {batched[codec][-1]:>9,.0f} samples/s",
                file=sys.stderr,
            )
    sizes = batch_sizes()
    result: dict[str, Any] = run_header(before, args.rounds) | {"codecs": {}}
    base = statistics.median(single["none"])
    for codec in CODECS:
        s, b = summarize(single[codec]), summarize(batched[codec])
        result["codecs"][codec] = {
            "single_messages_per_s": s,
            "batch_samples_per_s": b,
            "bytes_of_16k_batch": sizes[codec],
        }
        print(
            f"producer {codec:<6}: {s['median']:>9,.0f} msg/s single "
            f"({s['median'] / base:.2f}x none), {b['median']:>9,.0f} "
            f"samples/s batch, 16 KiB batch -> {sizes[codec]:,} bytes "
            f"(median of {args.rounds}, {os.cpu_count()} cores)"
        )
    print(result["busy"])
    write_result(args.out, result)
    return result


if __name__ == "__main__":
    main()
