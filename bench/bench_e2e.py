"""Benchmark: end-to-end latency, telemetry append -> point queryable in InfluxDB (`make bench`).

The whole pipeline runs as `plantwatch run --no-services` (ingest, score, alert, each its
own process) on fresh topics. Once the three consumer groups are up, `plantwatch simulate`
offers a fixed load: ``--machines`` machines at one reading per second each (``--rate``
= machines records/s, single-sample records, event time = wall time minus a constant) for
``--seconds`` (after ``--warmup`` seconds that are not counted).

Feature rules: the ``plant`` preset's sensors and features with a 1 s step and no grace
(``step_ms`` 1000, ``grace_ms`` 0, given as a WindowConfig JSON through
PLANTWATCH_FEATURES_CONFIG), so a step closes as soon as the machine's next reading
arrives and the latency measures the pipeline, not the window: with the preset's 60 s
step and 120 s grace a prediction would trail its first reading by three minutes by
design. The model is a random-weight GRU(8), L = 20, min_steps 2, fitted to those rules
(the latency does not depend on the weights).

Latency of one (probe machine, step): the wall time at which its ``failure_risk`` point
(time = the step's end) is first returned by an InfluxDB query, minus the broker's
append time (LogAppendTime) of the telemetry record that closed the step (the machine's
first reading at or after the step's end). ``--probes`` machines spread over the fleet
are polled every ``--poll`` seconds with one Flux ``last()`` query, so a figure can be
late by up to one poll interval; steps that two polls miss are not sampled.

    python bench/bench_e2e.py --runs 3 --out bench/results/e2e.json
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from _common import (
    GroupWatch,
    create_topics,
    drop_topics,
    fmt,
    machine,
    make_model,
    run_header,
    summarize,
)
from _common import write_result as write_json

from features.config import WindowConfig
from plantwatch.connections import influx_client, kafka_config
from plantwatch.presets import PRESETS
from plantwatch.settings import Settings, load_settings

WINDOW = WindowConfig(
    sensors=PRESETS["plant"].sensors,
    step_ms=1000,
    grace_ms=0,
)
PREFIX = "bench-e2e-"


def _env(tag: str, tmp: Path, models: Path) -> dict[str, str]:
    t = f"{PREFIX}{tag}"
    return {
        **os.environ,
        "PLANTWATCH_TOPIC_TELEMETRY": f"{t}.telemetry",
        "PLANTWATCH_TOPIC_TELEMETRY_DLQ": f"{t}.telemetry.dlq",
        "PLANTWATCH_TOPIC_FEATURES": f"{t}.features",
        "PLANTWATCH_TOPIC_FEATURES_DLQ": f"{t}.features.dlq",
        "PLANTWATCH_TOPIC_PREDICTIONS": f"{t}.predictions",
        "PLANTWATCH_TOPIC_PREDICTIONS_DLQ": f"{t}.predictions.dlq",
        "PLANTWATCH_TOPIC_EVENTS": f"{t}.events",
        "PLANTWATCH_TOPIC_TICKETS": f"{t}.tickets",
        "PLANTWATCH_TOPIC_FEEDBACK": f"{t}.feedback",
        "PLANTWATCH_INGEST_GROUP": f"{t}-ingest",
        "PLANTWATCH_SCORER_GROUP": f"{t}-score",
        "PLANTWATCH_ALERT_GROUP": f"{t}-alert",
        "PLANTWATCH_ALERT_DB": str(tmp / "alert.sqlite"),
        "PLANTWATCH_FEATURES_CONFIG": str(tmp / "window.json"),
        "PLANTWATCH_INGEST_EMIT_FEATURES": "true",
        "PLANTWATCH_INSTANCE_ID": t,
        "PLANTWATCH_METRICS_PORT": "0",
        "PLANTWATCH_MODELS_DIR": str(models),
    }


def _probe_ids(machines: int, probes: int) -> list[str]:
    from ingest.simulator import Simulator, SimulatorConfig

    ids = Simulator(SimulatorConfig(machines=machines, seed=11, start_ms=0)).plant.ids
    return [ids[i] for i in np.linspace(0, machines - 1, probes).astype(int)]


def _wait_groups(
    settings: Settings, groups: list[str], proc: subprocess.Popen, timeout: float
) -> float:
    """Wait until every group has a stable member; seconds waited."""
    start = time.monotonic()
    watches = [GroupWatch(settings, g) for g in groups]
    try:
        while time.monotonic() - start < timeout:
            if proc.poll() is not None:
                raise RuntimeError(f"plantwatch run exited ({proc.returncode}) before it was up")
            if all(w.stable_with(1) for w in watches):
                return time.monotonic() - start
            time.sleep(0.5)
    finally:
        for w in watches:
            w.close()
    raise RuntimeError(f"the stages did not join their groups within {timeout:.0f} s")


def _append_times(
    settings: Settings, topic: str, probes: set[str]
) -> dict[str, tuple[list[int], list[int]]]:
    """Per probe machine: event times (sorted) and the append times of those records."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        **kafka_config(
            settings, group_id=None, auto_offset_reset="earliest", consumer_timeout_ms=3000
        ),
    )
    rows: dict[str, list[tuple[int, int]]] = {p: [] for p in probes}
    keys = {p.encode(): p for p in probes}
    try:
        for msg in consumer:
            eid = keys.get(msg.key)
            if eid is not None:
                rows[eid].append((int(orjson.loads(msg.value)["ts"]), msg.timestamp))
    finally:
        consumer.close()
    out = {}
    for eid, pairs in rows.items():
        pairs.sort()
        out[eid] = ([p[0] for p in pairs], [p[1] for p in pairs])
    return out


def run_once(settings: Settings, args: argparse.Namespace, model_src: Path) -> dict[str, Any]:
    """One run: pipeline up, offered load, latency samples."""
    tag = uuid.uuid4().hex[:8]
    t = f"{PREFIX}{tag}"
    probes = _probe_ids(args.machines, args.probes)
    logs = Path(tempfile.mkdtemp(prefix="bench-e2e-logs-"))  # kept: the stages' logs
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmpname:
        tmp = Path(tmpname)
        (tmp / "window.json").write_text(json.dumps(WINDOW.to_dict()))
        # the model's directory: `plantwatch alert` accepts predictions of known models only
        env = _env(tag, tmp, model_src.parent)
        create_topics(
            settings, {f"{t}.telemetry": 3}, **{"message.timestamp.type": "LogAppendTime"}
        )
        py = [sys.executable, "-m", "plantwatch"]
        run = subprocess.Popen(
            [
                *py,
                "run",
                "--no-services",
                f"--model={model_src}",
                f"--log-dir={logs}",
                "--log-every=3600",
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        sim = None
        seen: dict[tuple[str, int], float] = {}
        client = influx_client(settings)
        try:
            up = _wait_groups(settings, [f"{t}-ingest", f"{t}-score", f"{t}-alert"], run, 180)
            seconds = args.warmup + args.seconds
            # event time = wall time minus a constant: simulate refuses a run whose planned
            # event times end more than 60 s after now, so the first step lies 1.5 x the
            # run's length in the past (the offset does not enter the latency: steps close
            # on event time, latency is measured on wall and append times)
            start_ms = ((int(time.time() * 1000) - int(seconds * 1500)) // 1000) * 1000
            sim = subprocess.Popen(
                [
                    *py,
                    "simulate",
                    f"--machines={args.machines}",
                    "--seed=11",
                    f"--rate={args.machines}",
                    f"--duration={seconds}",
                    "--interval-ms=1000",
                    "--batch-size=1",
                    "--no-events",
                    f"--start={start_ms}",
                ],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
            query_api = client.query_api()
            flt = " or ".join(f'r.equipment_id == "{p}"' for p in probes)
            flux = (
                f'from(bucket: "{settings.influx_bucket}") |> range(start: -10m) '
                f'|> filter(fn: (r) => r._measurement == "failure_risk" and r._field == "probability") '
                f'|> filter(fn: (r) => {flt}) |> last() |> keep(columns: ["_time", "equipment_id"])'
            )
            drain_until = None
            while True:
                t0 = time.time()
                for table in query_api.query(flux, org=settings.influx_org):
                    for rec in table.records:
                        end_ms = int(rec.get_time().timestamp() * 1000)
                        key = (rec.values["equipment_id"], end_ms)
                        if end_ms >= start_ms and key not in seen:
                            seen[key] = time.time()
                if sim.poll() is not None and drain_until is None:
                    drain_until = time.monotonic() + 5.0
                if drain_until is not None and time.monotonic() > drain_until:
                    break
                time.sleep(max(0.0, args.poll - (time.time() - t0)))
            sim_out = sim.stdout.read().decode(errors="replace") if sim.stdout else ""
        finally:
            client.close()
            if sim is not None and sim.poll() is None:
                sim.kill()
            if run.poll() is None:
                run.send_signal(signal.SIGTERM)
            try:
                run.wait(timeout=60)
            except subprocess.TimeoutExpired:
                run.kill()
                run.wait()
        appends = _append_times(settings, f"{t}.telemetry", set(probes))
    drop_topics(settings, t)
    latencies = []
    for (eid, end_ms), first_seen in seen.items():
        if end_ms < start_ms + args.warmup * 1000:
            continue
        ts, appended = appends.get(eid, ([], []))
        i = bisect.bisect_left(ts, end_ms)  # the reading that closed the step
        if i < len(ts):
            latencies.append(first_seen * 1000 - appended[i])
    if not latencies:
        raise RuntimeError(
            f"no latency samples ({len(seen)} points seen); stage logs in {logs}; "
            f"simulate said: {sim_out[-300:]}"
        )
    shutil.rmtree(logs, ignore_errors=True)  # kept only when a run fails
    lat = np.array(latencies)
    return {
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        "max_ms": float(lat.max()),
        "samples": len(latencies),
        "startup_s": up,
        "simulate": sim_out.strip().splitlines()[-1] if sim_out.strip() else "",
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; print a line and write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--machines", type=int, default=1000)
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--probes", type=int, default=10)
    parser.add_argument("--poll", type=float, default=0.1)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    settings = load_settings()
    before = machine()
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-e2e-model-") as tmp:
        model = make_model(Path(tmp) / "models" / "bench-model", WINDOW)
        try:
            for i in range(args.runs):
                r = run_once(settings, args, model)
                runs.append(r)
                print(
                    f"[e2e] run {i + 1}: p50 {r['p50_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms, "
                    f"max {r['max_ms']:.0f} ms ({r['samples']} samples); {r['simulate']}",
                    file=sys.stderr,
                )
        finally:
            drop_topics(settings, PREFIX)
    result: dict[str, Any] = {
        **run_header(before, args.runs),
        "load": {
            "machines": args.machines,
            "records_per_s": args.machines,
            "samples_per_record": 1,
            "seconds": args.seconds,
            "warmup_s": args.warmup,
        },
        "window": {
            "step_ms": WINDOW.step_ms,
            "grace_ms": WINDOW.grace_ms,
            "features": len(WINDOW.feature_names()),
        },
        "probes": args.probes,
        "poll_s": args.poll,
        "p50_ms": summarize([r["p50_ms"] for r in runs]),
        "p99_ms": summarize([r["p99_ms"] for r in runs]),
        "max_ms": summarize([r["max_ms"] for r in runs]),
        "samples": [r["samples"] for r in runs],
        "per_run": runs,
    }
    print(
        f"e2e latency telemetry append -> InfluxDB point ({args.machines:,} machines at 1 Hz, "
        f"{args.seconds} s, 1 s steps, grace 0): p50 {fmt(result['p50_ms'], 'ms')}, "
        f"p99 {fmt(result['p99_ms'], 'ms')}; median of {args.runs}, "
        f"{sum(result['samples']):,} samples of {args.probes} probe machines polled every "
        f"{args.poll:g} s; {result['busy']}"
    )
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
