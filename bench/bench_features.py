"""Benchmark: the pure streaming feature path (not a test; run by `make bench`).

10,000 machines x 20 sensors, one reading per machine per second, tumbling 60 s steps:
readings/s through ``StreamingWindows.update`` in batches of ``--batch`` samples, on one
core (one Python thread), and the state's memory per machine. Median of ``--runs``.

    python bench/bench_features.py --machines 10000 --sensors 20 --seconds 240 --runs 5
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from features.config import WindowConfig
from features.streaming import StreamingWindows


@dataclass(frozen=True)
class Sample:
    """A telemetry sample as the windows see it."""

    equipment_id: str
    ts_ms: int
    readings: dict[str, float]


def make_samples(machines: int, sensors: int, seconds: int, seed: int = 0) -> list[Sample]:
    """One sample per machine per second, with jitter inside the second."""
    rng = np.random.default_rng(seed)
    names = [f"s{j:02d}" for j in range(sensors)]
    ids = [f"machine-{m:05d}" for m in range(machines)]
    base = 1_700_000_000_000
    values = rng.normal(size=(seconds, machines, sensors)).round(4)
    jitter = rng.integers(0, 1000, size=(seconds, machines))
    return [
        Sample(
            ids[m],
            base + s * 1000 + int(jitter[s, m]),
            dict(zip(names, values[s, m].tolist(), strict=True)),
        )
        for s in range(seconds)
        for m in range(machines)
    ]


def run_once(samples: list[Sample], config: WindowConfig, batch: int) -> tuple[float, int, int]:
    """Seconds to feed all samples, steps closed, state bytes per machine."""
    windows = StreamingWindows(config, capacity=16)
    closed = 0
    start = time.perf_counter()
    for i in range(0, len(samples), batch):
        closed += len(windows.update(samples[i : i + batch]).steps)
    seconds = time.perf_counter() - start
    return seconds, closed, windows.state_bytes() // max(len(windows), 1)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; print one line and write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--machines", type=int, default=10_000)
    parser.add_argument("--sensors", type=int, default=20)
    parser.add_argument(
        "--seconds", type=int, default=240, help="seconds of event time per machine"
    )
    parser.add_argument("--batch", type=int, default=2000, help="samples per update call")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    config = WindowConfig(
        sensors=tuple(f"s{j:02d}" for j in range(args.sensors)), step_ms=60_000, grace_ms=5_000
    )
    samples = make_samples(args.machines, args.sensors, args.seconds)
    readings = len(samples) * args.sensors
    rates, per_machine, closed = [], 0, 0
    for _ in range(args.runs):
        seconds, closed, per_machine = run_once(samples, config, args.batch)
        rates.append(readings / seconds)
    result = {
        "cores_used": 1,
        "machine_cores": os.cpu_count(),
        "machines": args.machines,
        "sensors": args.sensors,
        "readings": readings,
        "steps_closed": closed,
        "readings_per_s": {
            "median": statistics.median(rates),
            "min": min(rates),
            "max": max(rates),
        },
        "state_bytes_per_machine": per_machine,
    }
    print(
        f"features streaming ({args.machines} machines x {args.sensors} sensors, batches of {args.batch}): "
        f"{result['readings_per_s']['median']:,.0f} readings/s on one core "
        f"(min {min(rates):,.0f}, max {max(rates):,.0f}; median of {args.runs}); "
        f"state {per_machine:,} bytes/machine"
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
