"""Benchmark: the stages of a baseline commit and of the working tree, side by side.

Ingest, scorer and alerting throughput of a baseline commit (default 0240c56, the last
commit before issue 27's redesign; 3a82194 was issue 26's baseline), checked out in a temporary git worktree, against the current
working tree (or ``--current`` DIR), on the same real broker and InfluxDB. Each tree runs
its own bench scripts (module paths differ between the trees) in a harness subprocess with
cwd = that tree and sys.path = [tree, tree/bench]. Each pair runs every stage once in each
tree, the two trees back to back per stage, the order alternating between pairs:

- ingest: bench_ingest.run_once in three modes (single messages, batch messages of
  ``--batch`` samples, single messages with the feature stage and transactions): samples/s
  from the first handed-on batch to the last, and the CPU of IngestService.run per sample;
- scorer: bench_scorer.load_test(backlog=True), a real `plantwatch score` subprocess
  draining ``--scorer-machines`` x 25 feature steps: predictions/s over the span of their
  append times, and the scorer process's CPU per feature record from its assignment to its
  idle exit;
- alerting: bench_alerting.drain, a backlog of ``--backlog`` predictions through the real
  AlertingService into InfluxDB: predictions/s from the first batch to the last, and the
  CPU (whole process) from the start of the first process() to the end of the last, per
  prediction.

CPU per record is the figure that other load on the machine moves least. Medians of the
pairs, the ratio current / baseline of the medians (``ratio``, the one judged: within 5%
means a rate ratio >= 0.95, a CPU ratio <= 1.05), the median of the per-pair ratios and the
ratio of the best runs are printed and written (``--out``, default
bench/results/redesign.json). One pair takes ~2.5 min on 2 cores at the default sizes.

    .venv/bin/python bench/compare_stages.py --pairs 5 --out bench/results/redesign.json
    .venv/bin/python bench/compare_stages.py --baseline 3a82194 --stages ingest --out /tmp/x.json

Not one of `make bench`'s (bench/bench_*.py): it compares two commits, run it by hand
with the bench services up (scripts/bench.sh's settings).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import machine, run_header, summarize, write_result

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("ingest", "scorer", "alerting")
INGEST_MODES = ("single", "batch", "single+features")
SCORER_STEPS = 25  # the backlog bench_scorer's capacity test offers
THROUGHPUT = ("samples_per_s", "predictions_per_s")  # higher is better; the rest: lower


# Runs in each tree (cwd = the tree). argv: stage, then the stage's sizes as JSON. Prints
# one JSON line: {figure: value} (ingest: {mode: {figure: value}}).
_HARNESS = r"""
import json, os, sys, time
tree = os.getcwd()
sys.path[:0] = [tree, os.path.join(tree, "bench")]
stage, opts = sys.argv[1], json.loads(sys.argv[2])


def mine(*modules):
    # the tree's own code, not the editable install's (which points at the main checkout)
    for m in modules:
        assert m.__file__.startswith(tree + os.sep), (m.__name__, m.__file__, tree)


def ingest():
    import bench_ingest
    import ingest.service as service
    from plantwatch.settings import load_settings

    mine(bench_ingest, service)
    run, cpu = service.IngestService.run, {}

    def timed(self, *args, **kwargs):
        started = time.process_time()
        try:
            return run(self, *args, **kwargs)
        finally:
            cpu["s"] = time.process_time() - started

    service.IngestService.run = timed
    settings, n, out = load_settings(), opts["messages"], {}
    for mode, batch, count, features in (
        ("single", 1, n, False),
        ("batch", opts["batch"], opts["batch_messages"], False),
        ("single+features", 1, n, True),
    ):
        r = bench_ingest.run_once(settings, count, batch, opts["machines"], features)
        out[mode] = {
            "samples_per_s": r["samples_per_s"],
            "cpu_us_per_sample": cpu["s"] * 1e6 / (count * batch),
        }
    return out


def _cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scorer():
    import resource
    from pathlib import Path

    import bench_scorer
    from plantwatch.settings import load_settings

    mine(bench_scorer)
    wait, at = bench_scorer._wait_assigned, {}

    def watched(procs, logs, partitions):
        # the scorer's CPU when its first assignment is logged (imports and model load
        # done): polled every 5 ms, finer than the bench's own wait
        while not all("score: assigned" in log.read_text() for log in logs):
            if any(p.poll() is not None for p in procs):
                break
            time.sleep(0.005)
        wait(procs, logs, partitions)
        at["s"] = sum(_cpu_s(p.pid) for p in procs)

    def children():  # CPU of the waited-for children: the scorer, once it exited
        used = resource.getrusage(resource.RUSAGE_CHILDREN)
        return used.ru_utime + used.ru_stime

    bench_scorer._wait_assigned = watched
    before = children()
    r = bench_scorer.load_test(
        load_settings(), Path(opts["model"]), opts["machines"], opts["steps"], [], backlog=True
    )
    return {
        "predictions_per_s": r["predictions_per_s"],
        "cpu_us_per_record": (children() - before - at["s"]) * 1e6 / r["records"],
        "predictions": r["predictions"],
        "records": r["records"],
    }


def model():
    from pathlib import Path

    import bench_scorer
    from models.network import DEFAULT_ARCHITECTURE

    mine(bench_scorer)
    path = bench_scorer.make_model(Path(opts["model"]), DEFAULT_ARCHITECTURE, opts["steps"])
    return {"model": str(path)}


def alerting():
    import tempfile
    from pathlib import Path

    import alerting.service as service
    import bench_alerting
    from plantwatch.settings import load_settings

    mine(bench_alerting, service)
    process, span = service.AlertingService.process, {}

    def timed(self, *args, **kwargs):
        span.setdefault("start", time.process_time())
        try:
            return process(self, *args, **kwargs)
        finally:
            span["end"] = time.process_time()

    service.AlertingService.process = timed
    n = opts["backlog"]
    with tempfile.TemporaryDirectory() as tmp:
        r = bench_alerting.drain(load_settings(), n, opts["machines"], Path(tmp) / "d.sqlite")
    return {
        "predictions_per_s": n / r["seconds"],
        "points_per_s": r["points_per_s"],
        "cpu_us_per_prediction": (span["end"] - span["start"]) * 1e6 / n,
    }


print(json.dumps(globals()[stage]()))
"""


def _harness(tree: Path, stage: str, opts: dict[str, Any]) -> dict[str, Any]:
    """Run one stage's harness in ``tree``; its JSON line."""
    done = subprocess.run(
        [sys.executable, "-c", _HARNESS, stage, json.dumps(opts)],
        cwd=tree,
        env=dict(os.environ, PYTHONPATH=str(tree), TF_CPP_MIN_LOG_LEVEL="3"),
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(
            f"compare_stages: the {stage} harness failed in {tree} (exit {done.returncode}):\n"
            + done.stderr[-4000:]
        )
    return json.loads(done.stdout.strip().splitlines()[-1])


def _flat(stage: str, got: dict[str, Any]) -> dict[str, float]:
    """``{"<stage>[ <mode>]": {figure: value}}`` flattened to ``{"<key> <figure>": value}``."""
    if stage == "ingest":
        return {f"ingest {mode} {k}": v for mode, fig in got.items() for k, v in fig.items()}
    return {f"{stage} {k}": v for k, v in got.items() if k not in ("predictions", "records")}


def _line(stage: str, got: dict[str, Any]) -> str:
    if stage == "ingest":
        return ", ".join(
            f"{m} {got[m]['samples_per_s']:,.0f}/s {got[m]['cpu_us_per_sample']:.1f} us"
            for m in INGEST_MODES
        )
    rate, cpu = got["predictions_per_s"], next(v for k, v in got.items() if k.startswith("cpu"))
    return f"{rate:,.0f} predictions/s, {cpu:.1f} us CPU per record"


def _describe(tree: Path, rev: str) -> str:
    """``<commit>`` of ``rev`` in ``tree``, ``+ changes`` when it is HEAD and not clean."""

    def git(*cmd: str) -> str:
        return subprocess.run(
            ["git", *cmd], cwd=tree, capture_output=True, text=True, check=False
        ).stdout.strip()

    dirty = rev == "HEAD" and git("status", "--porcelain", "--untracked-files=no")
    return git("rev-parse", "--short", rev) + (" + uncommitted changes" if dirty else "")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the pairs; print a table and write JSON."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--baseline", default="0240c56", help="commit before the redesign")
    parser.add_argument(
        "--current",
        type=Path,
        default=ROOT,
        help="tree to compare (default: this working tree)",
    )
    parser.add_argument("--pairs", "--runs", type=int, default=5)
    parser.add_argument("--stages", default=",".join(STAGES), help="some of ingest,scorer,alerting")
    parser.add_argument(
        "--messages", type=int, default=60_000, help="ingest: messages of the single modes"
    )
    parser.add_argument("--batch", type=int, default=20, help="ingest: samples per batch message")
    parser.add_argument(
        "--batch-messages",
        type=int,
        default=10_000,
        help="ingest: messages of the batch mode (the rate counts from the first handed-on "
        "batch, up to 2,000 messages: give several times that)",
    )
    parser.add_argument("--machines", type=int, default=1000, help="ingest: machines")
    parser.add_argument(
        "--scorer-machines",
        type=int,
        default=3000,
        help=f"scorer: machines in the backlog ({SCORER_STEPS} feature steps each)",
    )
    parser.add_argument("--backlog", type=int, default=60_000, help="alerting: predictions")
    parser.add_argument("--alert-machines", type=int, default=200, help="alerting: machines")
    parser.add_argument("--out", type=Path, default=ROOT / "bench/results/redesign.json")
    args = parser.parse_args(argv)
    stages = [s for s in STAGES if s in args.stages.split(",")]
    if not stages or set(args.stages.split(",")) - set(STAGES):
        parser.error(f"--stages {args.stages}: expected some of {','.join(STAGES)}")
    current = args.current.resolve()
    before, started = machine(), time.monotonic()
    runs: dict[str, dict[str, list[float]]] = {"baseline": {}, "current": {}}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "baseline"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(base), args.baseline],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        try:
            trees = {"baseline": base, "current": current}
            opts: dict[str, dict[str, dict[str, Any]]] = {}
            for name, tree in trees.items():
                opts[name] = {
                    "ingest": {
                        "messages": args.messages,
                        "batch": args.batch,
                        "batch_messages": args.batch_messages,
                        "machines": args.machines,
                    },
                    "alerting": {"backlog": args.backlog, "machines": args.alert_machines},
                }
                if "scorer" in stages:  # each tree's own model (same seed: same weights)
                    model = {"model": f"{tmp}/model-{name}", "steps": SCORER_STEPS}
                    opts[name]["scorer"] = {
                        **_harness(tree, "model", model),
                        "machines": args.scorer_machines,
                        "steps": SCORER_STEPS,
                    }
            for pair in range(args.pairs):
                order = list(trees.items())
                for stage in stages:
                    for name, tree in order if pair % 2 == 0 else order[::-1]:
                        took = time.monotonic()
                        got = _harness(tree, stage, opts[name][stage])
                        took = time.monotonic() - took
                        for key, value in _flat(stage, got).items():
                            runs[name].setdefault(key, []).append(value)
                        print(
                            f"pair {pair + 1} {stage} {name}: {_line(stage, got)} ({took:.0f} s)",
                            file=sys.stderr,
                            flush=True,
                        )
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(base)],
                cwd=ROOT,
                check=False,
                capture_output=True,
            )
    result: dict[str, Any] = run_header(before, args.pairs) | {
        "baseline": _describe(ROOT, args.baseline),
        "current": _describe(current, "HEAD") + (" working tree" if current == ROOT else ""),
        "seconds": round(time.monotonic() - started),
        "config": {
            "stages": stages,
            "ingest": {
                "messages": args.messages,
                "batch": args.batch,
                "batch_messages": args.batch_messages,
                "machines": args.machines,
            },
            "scorer": {"machines": args.scorer_machines, "steps": SCORER_STEPS},
            "alerting": {"backlog": args.backlog, "machines": args.alert_machines},
        },
        "figures": {},
    }
    for key, old in runs["baseline"].items():
        new = runs["current"][key]
        higher = key.endswith(THROUGHPUT) or key.endswith("points_per_s")
        ratio = statistics.median(new) / statistics.median(old)
        result["figures"][key] = {
            "baseline": summarize(old),
            "current": summarize(new),
            "ratio": ratio,
            "pair_ratio_median": statistics.median(n / o for n, o in zip(new, old, strict=True)),
            # best against best (max rate, min CPU): what interference from other load, which
            # only ever slows a run, moves least
            "best_ratio": max(new) / max(old) if higher else min(new) / min(old),
            "better": "higher" if higher else "lower",
            "within_5pct": ratio >= 0.95 if higher else ratio <= 1.05,
        }
        f = result["figures"][key]
        unit = "/s" if higher else " us"
        digits = 0 if higher else 2
        print(
            f"redesign {key:<40} baseline ({args.baseline}) "
            f"{f['baseline']['median']:>10,.{digits}f}{unit}, current "
            f"{f['current']['median']:>10,.{digits}f}{unit}: {ratio:.3f}x (per pair "
            f"{f['pair_ratio_median']:.3f}x, best {f['best_ratio']:.3f}x; "
            f"{'within' if f['within_5pct'] else 'OUTSIDE'} 5%)"
        )
    print(
        f"redesign: medians of {args.pairs} pairs, {result['seconds']} s; {result['busy']}",
        flush=True,
    )
    write_result(args.out, result)
    return result


if __name__ == "__main__":
    main()
