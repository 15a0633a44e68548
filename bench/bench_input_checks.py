"""Benchmark: ingest throughput with and without issue 26's input checks, side by side.

The checks (full-match names, UTF-8 only, bounded numbers and times, sink refusals
isolated per source message, a tap written once) are timed against the ingest stage of
a baseline commit without them (default 3a82194), checked out in a temporary git
worktree. Each pair runs bench/bench_ingest.py once in each tree (single messages, batch
messages, single messages with features) against the same broker, the order alternating
between pairs, and times the stage's own work without Kafka (process() over in-memory
records, CPU per sample): the figure other load on the machine moves least. Medians and the
ratio current / baseline per mode are printed and written.

    .venv/bin/python bench/bench_input_checks.py --pairs 5 --out bench/results/input_checks.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _common import machine, run_header, summarize, write_result

ROOT = Path(__file__).resolve().parents[1]
MODES = ("single", "batch", "single+features")


# Runs in each tree: bench_ingest's run_once, with the CPU time of the stage's loop (all
# its threads: kafka-python's fetcher too) beside the wall-clock rate. CPU per sample is
# the figure that other load on the machine moves least.
_HARNESS = """
import json, sys, time
sys.path.insert(0, "bench")
import bench_ingest
import ingest.service as service
from plantwatch.settings import load_settings

run, cpu = service.IngestService.run, {}

def timed(self, *args, **kwargs):
    started = time.process_time()
    try:
        return run(self, *args, **kwargs)
    finally:
        cpu["s"] = time.process_time() - started

service.IngestService.run = timed
messages, batch, features = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
r = bench_ingest.run_once(load_settings(), messages, batch, 1000, features)
print(json.dumps({"samples_per_s": r["samples_per_s"],
                  "cpu_us_per_sample": cpu["s"] * 1e6 / (messages * batch)}))
"""


# The stage's own work alone (validation, routing, the sink and DLQ steps, no Kafka): the
# service's process() over batches of 2,000 in-memory records, fake consumer and producer,
# best of 30 batches of CPU time. The figure that isolates the checks.
_STAGE_HARNESS = """
import sys, time
from collections import namedtuple
from ingest.contract import Telemetry, encode, encode_batch
from ingest.service import IngestConfig, IngestService

TP = namedtuple("TP", "topic partition")
Msg = namedtuple("Msg", "offset timestamp key value headers")

class Consumer:
    def assignment(self): return set()
    def pause(self, *tps): pass
    def resume(self, *tps): pass
    def paused(self): return set()
    def commit(self, offsets): pass

class Future:
    def add_errback(self, f): return self

class Producer:
    def send(self, *args, **kwargs): return Future()
    def flush(self): pass

class Sink:
    def write(self, records): pass
    def flush(self): pass

size = int(sys.argv[1])
service = IngestService(Consumer(), Producer(), [Sink()], IngestConfig())
base = int(time.time() * 1000) - 3_600_000
best, offset, n = float("inf"), 0, 2000
for _ in range(30):
    msgs = []
    for i in range(n):
        eid = f"machine-{i % 1000:05d}"
        recs = [Telemetry(eid, base + (offset * size + k) * 10, {f"s{j}": float(offset + j) for j in range(8)})
                for k in range(size)]
        raw = encode(recs[0]) if size == 1 else encode_batch(recs)
        msgs.append(Msg(offset, base, eid.encode(), raw, []))
        offset += 1
    started = time.process_time()
    service.process({TP("telemetry", 0): msgs})
    best = min(best, time.process_time() - started)
print(best * 1e6 / (n * size))
"""


def _stage(tree: Path, size: int) -> float:
    done = subprocess.run(
        [sys.executable, "-c", _STAGE_HARNESS, str(size)],
        cwd=tree,
        env=dict(os.environ, PYTHONPATH=str(tree)),
        check=True,
        capture_output=True,
        text=True,
    )
    return float(done.stdout.strip().splitlines()[-1])


def _run(tree: Path, messages: int, batch: int) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for mode in MODES:
        size = batch if mode == "batch" else 1
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                _HARNESS,
                str(messages // size),
                str(size),
                "1" if mode.endswith("features") else "0",
            ],
            cwd=tree,
            env=dict(os.environ, PYTHONPATH=str(tree)),
            check=True,
            capture_output=True,
            text=True,
        )
        out[mode] = json.loads(done.stdout.strip().splitlines()[-1])
        out[mode]["stage_us_per_sample"] = _stage(tree, size) if mode != MODES[2] else 0.0
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the pairs; print a table and write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default="3a82194", help="commit without the checks")
    parser.add_argument("--pairs", "--runs", type=int, default=5)
    parser.add_argument("--messages", type=int, default=100_000, help="samples per run")
    parser.add_argument("--batch", type=int, default=20, help="samples per batch message")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    before = machine()
    runs: dict[str, dict[str, dict[str, list[float]]]] = {"baseline": {}, "current": {}}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "baseline"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(base), args.baseline],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        try:
            for pair in range(args.pairs):
                order = [("baseline", base), ("current", ROOT)]
                for name, tree in order if pair % 2 == 0 else order[::-1]:
                    for mode, got in _run(tree, args.messages, args.batch).items():
                        for key, value in got.items():
                            runs[name].setdefault(mode, {}).setdefault(key, []).append(value)
                    print(
                        f"pair {pair + 1} {name}: "
                        + ", ".join(
                            f"{m} {runs[name][m]['samples_per_s'][-1]:,.0f}/s "
                            f"{runs[name][m]['cpu_us_per_sample'][-1]:.1f} us"
                            for m in MODES
                        ),
                        file=sys.stderr,
                    )
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, check=False
            )
    result: dict[str, Any] = run_header(before, args.pairs) | {
        "messages": args.messages,
        "baseline": args.baseline,
    }
    for mode in MODES:
        entry: dict[str, Any] = {}
        for key in ("samples_per_s", "cpu_us_per_sample", "stage_us_per_sample"):
            if mode == MODES[2] and key == "stage_us_per_sample":
                continue
            old, new = runs["baseline"][mode][key], runs["current"][mode][key]
            entry[key] = {
                "baseline": summarize(old),
                "current": summarize(new),
                "ratio": statistics.median(new) / statistics.median(old),
            }
        result[mode] = entry
        cpu, rate = entry["cpu_us_per_sample"], entry["samples_per_s"]
        if "stage_us_per_sample" in entry:
            own = entry["stage_us_per_sample"]
            print(
                f"ingest {mode:<15} the stage's own CPU per sample (no Kafka) with the input "
                f"checks {own['current']['median']:.2f} us, without {own['baseline']['median']:.2f}"
                f" us: {own['ratio']:.3f}x"
            )
        print(
            f"ingest {mode:<15} CPU per sample with the input checks "
            f"{cpu['current']['median']:.1f} us, without ({args.baseline}) "
            f"{cpu['baseline']['median']:.1f} us: {cpu['ratio']:.3f}x; samples/s "
            f"{rate['current']['median']:,.0f} vs {rate['baseline']['median']:,.0f} "
            f"({rate['ratio']:.3f}x) (medians of {args.pairs} pairs, {os.cpu_count()} cores)"
        )
    print(result["busy"])
    write_result(args.out, result)
    return result


if __name__ == "__main__":
    main()
