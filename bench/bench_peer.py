"""Benchmark: plantwatch ingest + features against a Quix Streams peer (run by `make bench`).

Same broker, same data, same windows, run side by side in one invocation:

- data: ``plantwatch simulate --machines M --seed 7 --count N --interval-ms 1000
  --batch-size 1 --no-events --start <a whole minute>`` into a staging topic of 2
  partitions, read back once into memory; no faults, so every record is valid;
- windows: the ``plant`` preset's tumbling steps (``step_ms`` 60 s, ``grace_ms`` 120 s)
  per machine (Kafka key), closed per key once the machine's newest reading is past the
  step's end plus grace, one output record per closed step;
- modes, interleaved in each run (order rotated from run to run): ``plantwatch ingest``
  with 1 process, with 2 processes (same group, one partition each), and a Quix Streams
  application (1 process);
- each mode gets a fresh, empty input topic (2 partitions) and its own group and output
  topic; once every process is a member of a stable group (so 2 processes never pay a
  rebalance and replay inside the clock), the records are produced into the input topic
  in their original partitions and order with confluent-kafka from the Quix environment
  (well under a second for 200k records);
- rate: records committed per second from the first look at the group's committed
  offsets after the input is complete to the commit that reaches the topic's end
  (polled every 50 ms; records committed before the clock starts are not counted), so
  process start, group join and producing are outside the clock on both sides.

What each side computes per machine and step:

- plantwatch (the real `plantwatch ingest` service with the ``plant`` preset): contract
  validation of every record (schema, time bounds, ranges), duplicate detection, the
  dead-letter path, raw-sample sinks (none configured here), then per sensor (12) the
  aggregates mean, std, min, max, last, slope, count, the derived delta and since_last
  and the flags filled, stuck, out_of_range (144 features), gap filling, and feature
  records plus offsets in one Kafka transaction per batch (exactly once).
- Quix Streams (``quixstreams`` from PyPI, the ``bench`` extra): JSON deserialisation,
  event time from the record's ``ts``, then per sensor its built-in aggregations Mean,
  Min, Max, Count and Latest (= last) (60 aggregates): Quix has no built-in std or slope
  and no validation, gap filling or flags, so it does less work per record than
  plantwatch. ``processing_guarantee="exactly-once"`` (transactions, like plantwatch),
  state in RocksDB with its changelog topic (Quix's recovery, as plantwatch's is replay),
  ``commit_every=2000`` records (plantwatch commits each poll batch of at most 2000)
  and ``commit_interval=1`` s.

The ratio reported is plantwatch records/s divided by Quix records/s (medians).

    python bench/bench_peer.py --runs 3 --out bench/results/peer.json
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from _common import (
    GroupWatch,
    create_topics,
    drop_topics,
    end_offsets,
    fmt,
    machine,
    run_header,
    summarize,
)
from _common import write_result as write_json

from plantwatch.connections import kafka_config
from plantwatch.presets import PRESETS
from plantwatch.settings import Settings, load_settings

WINDOW = PRESETS["plant"]
QUIX_AGGS = ("mean", "min", "max", "count", "last")  # as bench/quix_worker.py AGGREGATES
PARTITIONS = 2
PREFIX = "bench-peer-"


QUIX_WORKER = Path(__file__).with_name("quix_worker.py")


def quix_python() -> str:
    """The interpreter that has Quix Streams: $PLANTWATCH_BENCH_QUIX_PYTHON or this one."""
    return os.environ.get("PLANTWATCH_BENCH_QUIX_PYTHON") or sys.executable


def quix_version() -> str:
    """The Quix Streams version of :func:`quix_python` (fails clearly when it is missing)."""
    done = subprocess.run(
        [quix_python(), "-c", "import quixstreams; print(quixstreams.__version__)"],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(
            f"bench_peer: Quix Streams is not importable by {quix_python()} "
            "(set PLANTWATCH_BENCH_QUIX_PYTHON; `make bench` makes .venv-bench): "
            + (done.stderr.strip().splitlines() or ["no error output"])[-1]
        )
    return done.stdout.strip()


def _generate(settings: Settings, topic: str, machines: int, count: int) -> list[list[Any]]:
    """Simulate the fleet into a staging topic and read it back: (key, value) per partition.

    Event times start at a whole minute, so the data and its steps are the same in every
    invocation (same seed, same bytes but for the times, same windows).
    """
    from kafka import KafkaConsumer, TopicPartition

    create_topics(settings, {topic: PARTITIONS})
    span_ms = (count // machines + 1) * 1000
    # simulate plans some slack past the count: start twice the span back
    start = ((int(time.time() * 1000) - 2 * span_ms - 120_000) // 60_000) * 60_000
    env = dict(os.environ, PLANTWATCH_TOPIC_TELEMETRY=topic)
    cmd = [sys.executable, "-m", "plantwatch", "simulate", f"--machines={machines}"]
    cmd += ["--seed=7", f"--count={count}", "--interval-ms=1000", "--batch-size=1"]
    cmd += ["--no-events", f"--start={start}"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"simulate failed: {done.stderr[-2000:]}")
    ends = end_offsets(settings, topic)
    consumer = KafkaConsumer(**kafka_config(settings, group_id=None, consumer_timeout_ms=5000))
    parts: list[list[Any]] = [[] for _ in range(PARTITIONS)]
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(PARTITIONS)])
        consumer.seek_to_beginning()
        for msg in consumer:
            parts[msg.partition].append((msg.key, msg.value))
            if all(len(parts[p]) >= ends.get(p, 0) for p in range(PARTITIONS)):
                break
    finally:
        consumer.close()
    if sum(len(p) for p in parts) != count:
        raise RuntimeError(f"read back {sum(len(p) for p in parts)} of {count} records")
    return parts


def _replay(settings: Settings, topic: str, parts: list[list[Any]]) -> float:
    """Produce the records into ``topic``, same partitions and order; seconds it took.

    Done by ``quix_worker.py --replay`` with confluent-kafka from the Quix environment,
    several times faster than the consumers, so the input is complete early in each run.
    """
    import pickle

    with tempfile.NamedTemporaryFile(suffix=".pickle") as handle:
        pickle.dump(parts, handle)
        handle.flush()
        cmd = [quix_python(), str(QUIX_WORKER), "--replay", _bootstrap(settings), topic]
        done = subprocess.run([*cmd, handle.name], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"replaying the input failed: {done.stderr.strip()[-500:]}")
    return float(done.stdout.strip().splitlines()[-1])


def _count_output(settings: Settings, topic: str) -> int:
    """Committed records on an output topic (read_committed)."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        **kafka_config(
            settings,
            group_id=None,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            consumer_timeout_ms=3000,
        ),
    )
    try:
        return sum(1 for _ in consumer)
    finally:
        consumer.close()


def _start(
    mode: str, settings: Settings, source: str, tag: str, idle: float, tmp: Path
) -> tuple[list, str]:
    """Start a mode's processes (output to files in ``tmp``); returns them and the group."""
    group = f"{PREFIX}{tag}-{mode}"
    out = f"{PREFIX}{tag}-{mode}.out"
    create_topics(settings, {out: PARTITIONS})
    procs = []
    if mode.startswith("plantwatch"):
        n = int(mode[-1])
        for i in range(n):
            env = dict(
                os.environ,
                PLANTWATCH_TOPIC_TELEMETRY=source,
                PLANTWATCH_TOPIC_TELEMETRY_DLQ=f"{PREFIX}{tag}-{mode}.dlq",
                PLANTWATCH_TOPIC_FEATURES=out,
                PLANTWATCH_INGEST_GROUP=group,
                PLANTWATCH_INSTANCE_ID=f"{tag}-{mode}-{i}",
                PLANTWATCH_FEATURES_CONFIG="plant",
                PLANTWATCH_INGEST_EMIT_FEATURES="true",
                PLANTWATCH_METRICS_PORT="0",
            )
            cmd = [sys.executable, "-m", "plantwatch", "ingest", f"--idle-exit={idle}"]
            cmd += ["--log-every=3600"]
            with (tmp / f"ingest-{i}.log").open("wb") as log:
                procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
    else:
        state_dir = tmp / "quix-state"
        cmd = [quix_python(), str(QUIX_WORKER), f"--bootstrap={_bootstrap(settings)}"]
        cmd += [f"--in-topic={source}", f"--out-topic={out}", f"--group={group}"]
        cmd += [f"--state-dir={state_dir}", f"--idle={idle}"]
        cmd += [f"--sensors={','.join(WINDOW.sensors)}", f"--step-ms={WINDOW.step_ms}"]
        cmd += [f"--grace-ms={WINDOW.grace_ms}"]
        with (tmp / "quix.log").open("wb") as log:
            procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT))
    return procs, group


def _bootstrap(settings: Settings) -> str:
    return settings.kafka_bootstrap_servers


def run_mode(
    mode: str, settings: Settings, parts: list[list[Any]], tag: str, timeout: float
) -> dict[str, Any]:
    """One timed run of one mode."""
    with tempfile.TemporaryDirectory(prefix="bench-peer-") as tmp:
        return _run_mode(mode, settings, parts, tag, timeout, Path(tmp))


def _run_mode(
    mode: str, settings: Settings, parts: list[list[Any]], tag: str, timeout: float, tmp: Path
) -> dict[str, Any]:
    source = f"{PREFIX}{tag}-{mode}.in"
    create_topics(settings, {source: PARTITIONS})
    total = sum(len(p) for p in parts)
    procs, group = _start(mode, settings, source, tag, timeout, tmp)
    members = len(procs)
    deadline = time.monotonic() + timeout
    t0: float | None = None
    base = 0
    t_end: float | None = None
    replay_s = 0.0
    watch = GroupWatch(settings, group)
    try:
        # every process a member with its partitions before the first record exists
        while not watch.stable_with(members):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"{mode}: the group never became stable with {members}")
            time.sleep(0.1)
        replay_s = _replay(settings, source, parts)
        # the clock starts at the first look after the input is complete, so that it
        # covers consuming alone; committed offsets at that look are not counted
        while time.monotonic() < deadline:
            committed = watch.committed()
            now = time.perf_counter()
            if t0 is None and committed < total:
                t0, base = now, committed
            if committed >= total:
                t_end = now
                break
            if any(p.poll() is not None and p.returncode != 0 for p in procs):
                break
            time.sleep(0.05)
        for p in procs:  # done (or failed): SIGTERM finishes the batch and stops
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        watch.close()
    logs = [f.read_text(errors="replace")[-1500:] for f in sorted(tmp.glob("*.log"))]
    if t_end is None or t0 is None:
        raise RuntimeError(f"{mode}: did not reach the end of the topic; output: {logs}")
    out = _count_output(settings, f"{PREFIX}{tag}-{mode}.out")
    seconds = t_end - t0
    return {
        "records_per_s": (total - base) / seconds,
        "seconds": seconds,
        "timed_records": total - base,
        "feature_records": out,
        "producer_seconds": replay_s,
        "exit_codes": [p.returncode for p in procs],
    }


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    """Run the comparison; print a table and write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--machines", type=int, default=200)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds per mode and run")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    quixstreams_version = quix_version()

    settings = load_settings()
    before = machine()
    tag = uuid.uuid4().hex[:8]
    source = f"{PREFIX}{tag}.telemetry"
    modes = ["plantwatch-1", "plantwatch-2", "quix-1"]
    per_mode: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    try:
        parts = _generate(settings, source, args.machines, args.messages)
        total = sum(len(p) for p in parts)
        for run in range(args.runs):
            order = modes[run % len(modes) :] + modes[: run % len(modes)]
            for mode in order:
                r = run_mode(mode, settings, parts, f"{tag}r{run}", args.timeout)
                per_mode[mode].append(r)
                print(
                    f"[peer] run {run + 1} {mode:<13} {r['records_per_s']:>9,.0f} records/s "
                    f"({r['timed_records']:,} records in {r['seconds']:.2f} s, "
                    f"{r['feature_records']:,} window records out; input produced in "
                    f"{r['producer_seconds']:.2f} s)",
                    file=sys.stderr,
                )
    finally:
        drop_topics(settings, PREFIX)
        drop_topics(settings, f"changelog__{PREFIX}")
    result: dict[str, Any] = {
        **run_header(before),
        "data": {
            "machines": args.machines,
            "records": total,
            "partitions": PARTITIONS,
            "interval_ms": 1000,
            "samples_per_record": 1,
            "seed": 7,
        },
        "window": {"step_ms": WINDOW.step_ms, "grace_ms": WINDOW.grace_ms, "per": "machine"},
        "features": {
            "plantwatch": f"{len(WINDOW.feature_names())} per step: {WINDOW.per_sensor} per "
            f"sensor x {len(WINDOW.sensors)} sensors ({', '.join(WINDOW.aggregates)}, "
            f"{', '.join(WINDOW.derived)}, filled, stuck, out_of_range); plus validation, "
            "dedupe, DLQ, exactly-once transactions",
            "quix": f"{len(QUIX_AGGS) * len(WINDOW.sensors)} per step: {', '.join(QUIX_AGGS)} "
            f"x {len(WINDOW.sensors)} sensors; exactly-once, RocksDB state + changelog",
        },
        "quixstreams_version": quixstreams_version,
        "runs": args.runs,
    }
    for mode in modes:
        rs = per_mode[mode]
        result[mode] = {
            "records_per_s": summarize([r["records_per_s"] for r in rs]),
            "feature_records": [r["feature_records"] for r in rs],
        }
    quix = result["quix-1"]["records_per_s"]["median"]
    for mode in ("plantwatch-1", "plantwatch-2"):
        ratios = [
            a["records_per_s"] / b["records_per_s"]
            for a, b in zip(per_mode[mode], per_mode["quix-1"], strict=True)
        ]
        result[mode]["ratio_to_quix"] = result[mode]["records_per_s"]["median"] / quix
        result[mode]["ratio_to_quix_per_run"] = summarize(ratios)
    for mode in modes:
        m = result[mode]
        ratio = f"; {m['ratio_to_quix']:.2f}x Quix" if "ratio_to_quix" in m else ""
        print(
            f"peer {mode:<13} windowed features: {fmt(m['records_per_s'], 'records/s')}"
            f"{ratio}; median of {args.runs}"
        )
    print(
        f"peer setup: {args.machines} machines, {total:,} records, plant step "
        f"{WINDOW.step_ms // 1000} s grace {WINDOW.grace_ms // 1000} s, plantwatch "
        f"{len(WINDOW.feature_names())} features vs Quix {quixstreams_version} "
        f"{len(QUIX_AGGS) * len(WINDOW.sensors)} aggregates per step; {result['busy']}"
    )
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
