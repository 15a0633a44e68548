"""Benchmark: what ``plantwatch train`` and ``plantwatch evaluate`` cost as the history grows.

For each fleet (``--fleets`` as MACHINESxSTEPS of simulated one-minute history, the
``plant`` preset, ``plantwatch simulate --history-out`` seed 11, mean life 300 steps) and
each of ``--runs`` runs, the CLI runs as a child process:

1. ``plantwatch train --data history:FLEET --horizon 30 --epochs E`` (the default
   network and settings otherwise);
2. ``plantwatch evaluate`` of that artifact on the same history (every window scored,
   tickets replayed).

Per run it records the peak resident memory (VmHWM, polled every 0.2 s, so a run that is
killed still has a figure), the wall seconds, the training seconds per epoch that the
artifact records, and the validation PR-AUC. A run above ``--max-rss-gb`` is killed and
recorded as such (the machine has 24 GiB; the kernel would kill it a little later).

With ``--checkout NAME=DIR`` (repeatable) each checkout's code is run in turn within each
run (``PYTHONPATH=DIR``, this virtual environment), so before / after figures are measured
side by side on the same fleets; the default is this tree alone.

    .venv/bin/python bench/bench_training.py --out bench/results/training.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _common import fmt, machine, proc_memory, run_header, summarize, write_result

ROOT = Path(__file__).resolve().parents[1]


def simulate(work: Path, machines: int, steps: int) -> Path:
    """Write (once) the fleet's history and return the telemetry path."""
    path = work / f"fleet-{machines}x{steps}.parquet"
    if not path.exists():
        subprocess.run(
            [sys.executable, "-m", "plantwatch", "simulate", "--history-out", str(path),
             "--machines", str(machines), "--steps", str(steps), "--seed", "11",
             "--interval-ms", "60000", "--mean-life-steps", "300", "--repair-steps", "30"],
            check=True, cwd=ROOT, capture_output=True,
        )  # fmt: skip
    return path


def measured(cmd: list[str], code: Path, log: Path, max_rss: int) -> dict[str, Any]:
    """Run ``cmd`` with ``code`` first on the path; peak RSS, seconds, exit, killed."""
    env = os.environ | {"PYTHONPATH": str(code), "TF_CPP_MIN_LOG_LEVEL": "2"}
    start, peak, killed = time.perf_counter(), 0, False
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=code, env=env, stdout=out, stderr=subprocess.STDOUT)
        while proc.poll() is None:
            with contextlib.suppress(OSError):  # it may have just exited
                peak = max(peak, proc_memory(proc.pid).get("VmHWM", 0))
            if peak > max_rss and not killed:
                proc.send_signal(signal.SIGKILL)
                killed = True
            time.sleep(0.2)
    return {
        "seconds": time.perf_counter() - start,
        "peak_rss_gb": peak / 2**30,
        "exit": proc.returncode,
        "killed_above_limit": killed,
    }


def one(fleet: Path, code: Path, work: Path, tag: str, args: argparse.Namespace) -> dict[str, Any]:
    """Train then evaluate with one checkout's code."""
    model = work / f"model-{tag}"
    limit = int(args.max_rss_gb * 2**30)
    train = measured(
        [sys.executable, "-m", "plantwatch", "train", "--data", f"history:{fleet}",
         "--horizon", "30", "--epochs", str(args.epochs), "--out", str(model)],
        code, work / f"train-{tag}.log", limit,
    )  # fmt: skip
    row: dict[str, Any] = {"train": train}
    if train["exit"] == 0:
        spec = json.loads((model / "spec.json").read_text())["metrics"]
        epochs = len(spec["training"]["history"])
        train["seconds_per_epoch"] = spec["training"]["seconds"] / epochs
        train["val_pr_auc"] = spec["validation"]["pr_auc"]
        row["evaluate"] = measured(
            [sys.executable, "-m", "plantwatch", "evaluate", "--model", str(model),
             "--data", f"history:{fleet}"],
            code, work / f"evaluate-{tag}.log", limit,
        )  # fmt: skip
    return row


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over the runs of each figure (runs that failed are counted, not averaged)."""
    out: dict[str, Any] = {}
    for stage in ("train", "evaluate"):
        done = [r[stage] for r in rows if stage in r]
        ok = [d for d in done if d["exit"] == 0]
        out[stage] = {"runs": len(done), "failed": len(done) - len(ok)}
        peaks = [d["peak_rss_gb"] for d in done]
        if peaks:
            out[stage]["peak_rss_gb"] = summarize(peaks)
        for key in ("seconds", "seconds_per_epoch", "val_pr_auc"):
            values = [d[key] for d in ok if key in d]
            if values:
                out[stage][key] = summarize(values)
    return out


def main() -> int:
    """Measure every fleet with every checkout, print a summary, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--fleets",
        nargs="+",
        default=["100x1500", "400x1500"],
        metavar="MxS",
        help="simulated fleets, MACHINES x one-minute STEPS each (default: 100x1500 400x1500)",
    )
    parser.add_argument("--epochs", type=int, default=2, help="training epochs (default: 2)")
    parser.add_argument("--runs", type=int, default=3, help="runs per fleet (default: 3)")
    parser.add_argument(
        "--max-rss-gb",
        type=float,
        default=16.0,
        help="kill a run whose peak resident memory passes this (default: 16)",
    )
    parser.add_argument(
        "--checkout",
        action="append",
        default=[],
        metavar="NAME=DIR",
        help="run this checkout's code too (repeatable; runs alternate); default: this tree",
    )
    parser.add_argument(
        "--work", type=Path, default=None, help="folder for histories and artifacts (default: temp)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="write the results as JSON here (default: only the printed table)",
    )
    args = parser.parse_args()
    checkouts = {"this": ROOT}
    if args.checkout:
        checkouts = {}
        for item in args.checkout:
            name, sep, path = item.partition("=")
            if not sep or not (Path(path) / "models").is_dir():
                parser.error(f"--checkout {item!r}: expected NAME=DIR of a plantwatch checkout")
            checkouts[name] = Path(path).resolve()
    before = machine()
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-training-"))
    work.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "epochs": args.epochs,
        "checkouts": {k: str(v) for k, v in checkouts.items()},
    }
    for spec in args.fleets:
        machines, _, steps = spec.partition("x")
        fleet = simulate(work, int(machines), int(steps))
        rows: dict[str, list[dict[str, Any]]] = {name: [] for name in checkouts}
        for run in range(args.runs):
            for name, code in checkouts.items():
                row = one(fleet, code, work, f"{spec}-{name}-{run}", args)
                rows[name].append(row)
                t = row["train"]
                print(f"{spec} {name} run {run + 1}: train peak {t['peak_rss_gb']:.2f} GB, "
                      f"{t['seconds']:.0f} s, exit {t['exit']}"
                      + (" (killed above the limit)" if t["killed_above_limit"] else ""),
                      flush=True)  # fmt: skip
        result[spec] = {name: summary(r) | {"rows": r} for name, r in rows.items()}
        for name in checkouts:
            s = result[spec][name]
            for stage in ("train", "evaluate"):
                if "peak_rss_gb" in s[stage]:
                    print(f"  {spec} {name} {stage}: peak RSS "
                          f"{fmt(s[stage]['peak_rss_gb'], 'GB', 2)}, failed "
                          f"{s[stage]['failed']}/{s[stage]['runs']}")  # fmt: skip
    write_result(args.out, run_header(before, args.runs) | result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
