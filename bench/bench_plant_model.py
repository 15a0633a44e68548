"""Which model for plant data: variants compared on simulated fleets, by windows and tickets.

The C-MAPSS choice (``bench_cmapss.py``) was made on 100 turbofan engines; this benchmark
asks the same question for the plant the simulator models (pumps, compressors, fans; one
reading per minute = one feature step, the ``plant`` feature preset, a mean life of 300
steps between repairs, 30 steps of repair), through exactly what the CLI runs:
``evaluation.workflow.train_artifact`` (machine split, training, calibration and threshold on
the validation machines) and ``evaluate_artifact`` on a *second fleet* simulated with
another seed (never seen in training).

Windows are not what users get: the alerting service opens tickets from each machine's
stream of scores, and a stream loses readings (malformed or too-late messages are
dead-lettered; the feature step fills the gap). So every model is also judged by its
tickets (``evaluation.tickets``: the default alert rules replayed over every window's score,
tickets against failures, a ticket counting for a failure within 2 H) on the second
fleet twice: ``clean`` and ``lost1`` (1% of its readings removed at random, about what
the demo's 1% malformed and 2% out-of-order messages cost). The ticket figures choose the
plant default (a rule written before the runs; ``docs/models.md``), so the second fleet
is used to choose among the variants here; the demo's fleet (seed 7) is the check that
was not looked at.

Variants: architecture, L, auxiliary horizons and ``lost2`` (2% of the training
readings removed at random, ``plantwatch train --lost-readings``; the others train on
clean history).

Per variant and seed: validation PR-AUC / F1 / lead time,
the second fleet's PR-AUC, ROC-AUC, F1, precision, recall, Brier score, median lead time
and missed failures, tickets / false alarms / ticket precision / failures caught /
ticket recall / ticket F1 per condition, parameters, training seconds and served
throughput (the saved artifact's ``predict_proba`` at batch 2048 on this machine's CPU).

Usage::

    .venv/bin/python bench/bench_plant_model.py --seeds 0 1 2 --out bench/results/plant_model.json

The fleets (``--machines`` x ``--steps``, seeds ``--train-fleet-seed`` and
``--test-fleet-seed``) are the demo's size by default and are written once to
``--work`` (a temporary directory unless given).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
from _common import machine, run_header, summarize, write_result

from alerting.rules import Rules
from evaluation.workflow import evaluate_artifact, train_artifact
from models.artifact import load_artifact
from models.data import History, load_history_files
from models.pipeline import labelled_windows
from plantwatch.presets import PRESETS

WINDOW = PRESETS["plant"]
# name -> architecture, L, auxiliary horizons, fraction of training readings removed
VARIANTS = {
    "gru-L50": ("gru", 50, "none", 0.0),
    "gru-L50-lost2": ("gru", 50, "none", 0.02),
    "gru-L50-dense": ("gru", 50, "dense", 0.0),
    "gru-stats-L50-dense": ("gru-stats", 50, "dense", 0.0),
    "gru-stats-L50-dense-lost2": ("gru-stats", 50, "dense", 0.02),
    "gru-stats-L100-dense": ("gru-stats", 100, "dense", 0.0),
}
DEFAULT_VARIANTS = ["gru-L50", "gru-L50-lost2", "gru-stats-L50-dense", "gru-stats-L50-dense-lost2"]
# the stream conditions the tickets are replayed under: clean, and the demo's loss level
TICKET_KEYS = (
    "tickets",
    "false_alarms",
    "ticket_precision",
    "caught",
    "ticket_recall",
    "ticket_f1",
)
LOST = {"clean": 0.0, "lost1": 0.01}
METRICS = (
    "val_pr_auc",
    "val_f1",
    "val_lead_median",
    "test_pr_auc",
    "test_roc_auc",
    "test_f1",
    "test_precision",
    "test_recall",
    "test_brier",
    "test_lead_median",
    "test_missed",
    *(f"{c}_{k}" for c in LOST for k in TICKET_KEYS),
    "train_seconds",
    "windows_per_s",
)


def simulate(directory: Path, machines: int, steps: int, seed: int) -> tuple[Path, Path]:
    """Write one simulated fleet's clean history (telemetry, events) as Parquet, once."""
    from ingest.history import history
    from ingest.simulator import SimulatorConfig

    tpath, epath = directory / "telemetry.parquet", directory / "events.parquet"
    if not (tpath.exists() and epath.exists()):
        directory.mkdir(parents=True, exist_ok=True)
        config = SimulatorConfig(
            machines=machines,
            seed=seed,
            start_ms=0,
            interval_ms=WINDOW.step_ms,
            mean_life_steps=300,
            repair_steps=30,
        )
        telemetry, events = history(config, steps)
        telemetry.to_parquet(tpath)
        events.to_parquet(epath)
    return tpath, epath


def throughput(model_dir: Path, history: History, horizon: int, n: int = 20_000) -> float:
    """Windows per second of the saved artifact's calibrated scores at batch 2048."""
    artifact = load_artifact(model_dir, WINDOW)
    meta = artifact.meta
    windows, _ = labelled_windows(history, artifact.spec, horizon, meta.min_steps, meta.age_scale)
    big = windows.select(np.resize(np.arange(len(windows)), n))
    artifact.predict_proba(big.select(np.arange(2048)))  # warm-up (graph tracing)
    start = time.perf_counter()
    artifact.predict_proba(big)
    return n / (time.perf_counter() - start)


def lossy(model_dir: Path, fleet: tuple[Path, Path], fraction: float) -> dict[str, Any]:
    """The metrics (tickets included) of the fleet scored as a stream that lost readings."""
    data = f"history:{fleet[0]}"
    return evaluate_artifact(model_dir, data, fleet[1], WINDOW, None, lost_readings=fraction)


def run(
    args: argparse.Namespace,
    name: str,
    seed: int,
    train_fleet: tuple[Path, Path],
    test_fleet: tuple[Path, Path],
    test_history: History,
) -> dict[str, Any]:
    """Train one variant with one seed on the training fleet, score the other fleet."""
    architecture, length, aux, lost = VARIANTS[name]
    out = args.work / "models" / f"{name}-seed{seed}"
    metrics = train_artifact(
        data=f"history:{train_fleet[0]}",
        events=train_fleet[1],
        window=WINDOW,
        horizon_steps=args.horizon,
        out=out,
        created_at="bench",
        sequence_length=length,
        architecture=architecture,
        aux=aux,
        epochs=args.epochs,
        lost_readings=lost,
        seed=seed,
        verbose=0,
    )
    val, training = metrics["validation"], metrics["training"]
    test = evaluate_artifact(out, f"history:{test_fleet[0]}", test_fleet[1], WINDOW, None)
    m: dict[str, Any] = {"variant": name, "seed": seed}
    m |= {f"val_{k}": val.get(k) for k in ("pr_auc", "f1", "lead_median")}
    m |= {
        f"test_{k}": test.get(k)
        for k in ("pr_auc", "roc_auc", "f1", "precision", "recall", "brier", "lead_median")
    }
    m["test_missed"] = test.get("missed")
    for condition, fraction in LOST.items():
        t = test["tickets"] if fraction == 0.0 else lossy(out, test_fleet, fraction)["tickets"]
        m |= {f"{condition}_{k}": t[k] for k in TICKET_KEYS}
    m["test_confusion"] = test.get("confusion")
    m["threshold"] = test["threshold"]
    m["train_seconds"] = training["seconds"]
    m["epochs"] = len(training["history"])
    m["params"] = training["params"]
    m["windows_per_s"] = throughput(out, test_history, args.horizon)
    return m


def summary(runs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Median, min and max of every metric over the seeds (a metric no seed has is left out)."""
    values = {k: [r[k] for r in runs if r[k] is not None] for k in METRICS}
    return {k: summarize(v) for k, v in values.items() if v}


def main() -> None:
    """Simulate both fleets, run every variant and seed, print the table, write --out."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=DEFAULT_VARIANTS)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--machines", type=int, default=30, help="machines per fleet")
    parser.add_argument("--steps", type=int, default=1200, help="one-minute steps per fleet")
    parser.add_argument("--train-fleet-seed", type=int, default=101)
    parser.add_argument("--test-fleet-seed", type=int, default=202)
    parser.add_argument("--horizon", type=int, default=30, help="H in steps")
    parser.add_argument("--epochs", type=int, default=15, help="most epochs (the demo's 15)")
    parser.add_argument("--work", type=Path, default=None, help="fleets and models go here")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    before = machine()
    with tempfile.TemporaryDirectory(prefix="plantwatch-bench-") as tmp:
        args.work = args.work or Path(tmp)
        started = time.perf_counter()
        train_fleet = simulate(
            args.work / "train-fleet", args.machines, args.steps, args.train_fleet_seed
        )
        test_fleet = simulate(
            args.work / "test-fleet", args.machines, args.steps, args.test_fleet_seed
        )
        print(f"fleets simulated in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        test_history = load_history_files(*test_fleet, WINDOW.sensors)  # for throughput
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in args.variants}
        total, done = len(args.variants) * len(args.seeds), 0
        # seed-major order: the variants of one seed run side by side, so a busy spell of
        # the machine falls on all of them rather than on one variant's timings
        for seed in args.seeds:
            for name in args.variants:
                m = run(args, name, seed, train_fleet, test_fleet, test_history)
                runs[name].append(m)
                done += 1
                print(json.dumps(m, default=float), flush=True)
                print(
                    f"[{done}/{total}] {name} seed {seed}: val PR-AUC {m['val_pr_auc']:.4f}, "
                    f"{m['train_seconds']:.0f} s, {time.perf_counter() - started:.0f} s so far",
                    file=sys.stderr,
                )
    summaries = {name: summary(r) for name, r in runs.items()}
    shown = ("val_pr_auc", "test_pr_auc", "clean_false_alarms", "clean_caught")
    shown += ("lost1_false_alarms", "lost1_caught", "lost1_ticket_f1", "windows_per_s")
    print(f"medians over seeds {args.seeds}")
    print(f"{'variant':<26}{'params':>8}" + "".join(f"{k:>19}" for k in shown))
    for name, s in summaries.items():
        cells = "".join(
            f"{'-' if k not in s else format(s[k]['median'], '.4g'):>19}" for k in shown
        )
        print(f"{name:<26}{runs[name][0]['params']:>8}{cells}")
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    config["work"] = None
    config["alert_rules"] = asdict(Rules())  # what the tickets were replayed with
    write_result(
        args.out,
        {
            **run_header(before, len(args.seeds)),
            "config": config,
            "summary": summaries,
            "per_run": runs,
        },
    )


if __name__ == "__main__":
    main()
