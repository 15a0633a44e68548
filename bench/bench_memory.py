"""Benchmark: resident memory of each service against fleet size (run by `make bench`).

For each fleet size (``--sizes``, default 1k, 10k and 100k machines) and each of
``--runs`` runs (default 3; each figure is the median of the runs with min and max), on
fresh topics:

1. ``plantwatch simulate --machines M --count M --batch-size S --interval-ms 60000``: one
   message per machine with S (``--samples``, default 5) one-minute samples, so that with
   the ``plant`` preset (60 s steps, 120 s grace) every machine closes S - 3 steps (2)
   and keeps open windows;
2. ``plantwatch ingest`` over it (telemetry -> features), then ``plantwatch score`` over
   the features (a random-weight GRU(8), L = 20, min_steps 2, on the plant rules: every
   machine gets a prediction and a sequence buffer), then ``plantwatch alert`` over the
   predictions (per-machine alert state, points to InfluxDB), one after the other, each
   as its own process;
3. each service's VmRSS (resident now) and VmHWM (peak resident) from /proc/PID/status,
   read 1 s after its consumer group has committed its whole input (then SIGTERM).

Bytes per machine = (RSS at the largest size - RSS at the smallest) / (difference in
machines): the state each machine costs on top of the process's fixed size.

    python bench/bench_memory.py --runs 3 --out bench/results/memory.json
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
    machine,
    make_model,
    proc_memory,
    run_header,
    summarize,
)
from _common import write_result as write_json

from plantwatch.presets import PRESETS
from plantwatch.settings import Settings, load_settings

WINDOW = PRESETS["plant"]
PREFIX = "bench-mem-"
SERVICES = ("ingest", "score", "alert")
MiB = 1024 * 1024


def _env(tag: str, tmp: Path, models: Path) -> dict[str, str]:
    t = f"{PREFIX}{tag}"
    return dict(
        os.environ,
        PLANTWATCH_TOPIC_TELEMETRY=f"{t}.telemetry",
        PLANTWATCH_TOPIC_TELEMETRY_DLQ=f"{t}.telemetry.dlq",
        PLANTWATCH_TOPIC_FEATURES=f"{t}.features",
        PLANTWATCH_TOPIC_FEATURES_DLQ=f"{t}.features.dlq",
        PLANTWATCH_TOPIC_PREDICTIONS=f"{t}.predictions",
        PLANTWATCH_TOPIC_PREDICTIONS_DLQ=f"{t}.predictions.dlq",
        PLANTWATCH_TOPIC_EVENTS=f"{t}.events",
        PLANTWATCH_TOPIC_TICKETS=f"{t}.tickets",
        PLANTWATCH_TOPIC_FEEDBACK=f"{t}.feedback",
        PLANTWATCH_INGEST_GROUP=f"{t}-ingest",
        PLANTWATCH_SCORER_GROUP=f"{t}-score",
        PLANTWATCH_ALERT_GROUP=f"{t}-alert",
        PLANTWATCH_ALERT_DB=str(tmp / "alert.sqlite"),
        PLANTWATCH_FEATURES_CONFIG="plant",
        PLANTWATCH_INGEST_EMIT_FEATURES="true",
        PLANTWATCH_INSTANCE_ID=t,
        PLANTWATCH_METRICS_PORT="0",
        PLANTWATCH_MODELS_DIR=str(models),
    )


def _measure(
    cmd: list[str],
    env: dict[str, str],
    settings: Settings,
    group: str,
    topic: str,
    timeout: float,
    transactional: bool = True,
) -> dict[str, Any]:
    """Run one service until its group has committed ``topic``; its memory then."""
    total = sum(end_offsets(settings, topic).values())
    log_path = Path(env["PLANTWATCH_ALERT_DB"]).with_name(f"{cmd[3]}.log")
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT)
    watch = GroupWatch(settings, group)
    start = time.monotonic()
    last, changed, finished = -1, start, False
    try:
        while time.monotonic() - start < timeout and proc.poll() is None:
            committed = watch.committed()
            now = time.monotonic()
            if committed != last:
                last, changed = committed, now
            # done: all committed (a transactional input ends with commit markers, so
            # allow for them: committed and unchanged for 3 s)
            quiet = transactional and committed > 0 and now - changed > 3.0
            if committed >= total or quiet:
                finished = True
                break
            time.sleep(0.2)
        time.sleep(1.0)
        mem = proc_memory(proc.pid) if proc.poll() is None else {}
    finally:
        watch.close()
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    log = log_path.read_text(errors="replace")
    if not finished:
        print(f"[memory] {cmd[3]} did not finish; its log ends: {log[-1500:]}", file=sys.stderr)
    if not mem:
        raise RuntimeError(f"{cmd[3]} exited early ({proc.returncode}): {log[-2000:]}")
    return {
        "rss": mem["VmRSS"],
        "hwm": mem["VmHWM"],
        "seconds": time.monotonic() - start,
        "committed": last,
        "input_end": total,
        "finished": finished,
    }


def run_size(
    settings: Settings, machines: int, samples: int, model: Path, timeout: float
) -> dict[str, Any]:
    """One run at one fleet size: the three services in turn on fresh topics."""
    tag = uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory(prefix="bench-mem-") as tmp:
        # the model's directory: `plantwatch alert` accepts predictions of known models only
        env = _env(tag, Path(tmp), model.parent)
        t = f"{PREFIX}{tag}"
        create_topics(
            settings,
            {f"{t}.{n}": 3 for n in ("telemetry", "features", "predictions")},
        )
        py = [sys.executable, "-m", "plantwatch"]
        fill = [*py, "simulate", f"--machines={machines}", f"--count={machines}"]
        fill += [f"--batch-size={samples}", "--interval-ms=60000", "--no-events", "--seed=3"]
        done = subprocess.run(fill, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"simulate failed: {done.stderr[-2000:]}")
        common = ["--idle-exit=600", "--log-every=10"]
        out: dict[str, Any] = {}
        out["ingest"] = _measure(
            [*py, "ingest", *common],
            env,
            settings,
            f"{t}-ingest",
            f"{t}.telemetry",
            timeout,
            transactional=False,
        )
        out["score"] = _measure(
            [*py, "score", f"--model={model}", *common],
            env,
            settings,
            f"{t}-score",
            f"{t}.features",
            timeout,
        )
        out["alert"] = _measure(
            [*py, "alert", *common], env, settings, f"{t}-alert", f"{t}.predictions", timeout
        )
    drop_topics(settings, t)
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark; print a table and write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--samples", type=int, default=5, help="one-minute samples per machine")
    parser.add_argument("--runs", type=int, default=3, help="runs of every size (median, min, max)")
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds per service")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    settings = load_settings()
    before = machine()
    runs: dict[int, list[dict[str, Any]]] = {n: [] for n in sizes}
    with tempfile.TemporaryDirectory(prefix="bench-mem-model-") as tmp:
        model = make_model(Path(tmp) / "models" / "bench-model", WINDOW)
        try:
            for run in range(args.runs):
                for n in sizes:
                    r = run_size(settings, n, args.samples, model, args.timeout)
                    runs[n].append(r)
                    print(
                        f"[memory] run {run + 1} {n:>7,} machines: "
                        + ", ".join(
                            f"{s} {r[s]['rss'] / MiB:,.0f} MiB (peak {r[s]['hwm'] / MiB:,.0f}, "
                            f"{r[s]['seconds']:.0f} s, {r[s]['committed']:,}/{r[s]['input_end']:,} records"
                            f"{'' if r[s]['finished'] else ', UNFINISHED'})"
                            for s in SERVICES
                        ),
                        file=sys.stderr,
                    )
        finally:
            drop_topics(settings, PREFIX)
    result: dict[str, Any] = {
        **run_header(before, args.runs),
        "setup": f"plant preset, {args.samples} one-minute samples per machine "
        f"({args.samples - 3} closed steps each), scorer GRU(8) L=20 min_steps 2 random weights, services run one after "
        "the other; RSS read 1 s after each has committed its input",
        "sizes": {},
    }
    for n in sizes:
        result["sizes"][str(n)] = {
            s: {
                "rss_mib": summarize([r[s]["rss"] / MiB for r in runs[n]]),
                "peak_mib": summarize([r[s]["hwm"] / MiB for r in runs[n]]),
                "finished": all(r[s]["finished"] for r in runs[n]),
                "seconds": summarize([r[s]["seconds"] for r in runs[n]]),
                "input_records": [r[s]["committed"] for r in runs[n]],
                "input_end_offsets": [r[s]["input_end"] for r in runs[n]],
            }
            for s in SERVICES
        }
    lo, hi = str(min(sizes)), str(max(sizes))
    per_machine = {}
    for s in SERVICES:
        diffs = [
            (b[s]["rss"] - a[s]["rss"]) / (int(hi) - int(lo))
            for a, b in zip(runs[int(lo)], runs[int(hi)], strict=True)
            if int(hi) > int(lo)
        ]
        per_machine[s] = summarize(diffs) if diffs else None
    result["bytes_per_machine"] = per_machine
    print(
        f"memory (resident MiB, median of {args.runs} [min..max]; peak median in brackets; "
        "* = a run did not finish)"
    )
    print(f"{'machines':>10}  " + "  ".join(f"{s:>24}" for s in SERVICES))

    def cell(s: dict[str, float], digits: int = 0) -> str:
        return f"{s['median']:,.{digits}f} [{s['min']:,.{digits}f}..{s['max']:,.{digits}f}]"

    for n in sizes:
        row = result["sizes"][str(n)]
        cells = [
            f"{cell(row[s]['rss_mib'])} ({row[s]['peak_mib']['median']:,.0f})"
            + ("" if row[s]["finished"] else "*")
            for s in SERVICES
        ]
        print(f"{n:>10,}  " + "  ".join(f"{c:>24}" for c in cells))
    if int(hi) > int(lo):
        print(
            f"{'bytes/mach':>10}  "
            + "  ".join(f"{cell(per_machine[s]):>24}" for s in SERVICES)  # type: ignore[arg-type]
            + f"   ((RSS at {int(hi):,} - RSS at {int(lo):,}) / machines)"
        )
    print(f"memory setup: {result['setup']}; {result['busy']}")
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
