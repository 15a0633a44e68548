r"""Is another training procedure worth it? A validation-only (nested) check.

The chosen C-MAPSS procedure trains on 80 engines and early-stops, calibrates and picks
the threshold on the other 20. The alternatives judged here:

* ``--procedure refit``: train the same model again, from the same seed, on all the
  engines for the chosen number of epochs E and serve it with that calibration and
  threshold: 25 % more engines, but a threshold chosen for another model.
* ``--procedure folds``: K members, each trained on K - 1 folds of the engines and
  early-stopped on its own, calibration and threshold on the out-of-fold scores of every
  engine, served as the mean logit (``plantwatch train --folds K``).

This script judges them without the test set. On each seed the bench's split gives 20
outer validation engines that no procedure sees; the 80 others are what the procedures
get. P0 (the current procedure) trains on 64 of them and chooses E, calibration and
threshold on the other 16 (the split made the same way); P1 refits on all 80 for E
epochs with P0's calibration and threshold, or is the K-fold ensemble of the 80 (K = 4:
members on 60, as K = 5 on 100 trains members on 80). Both are scored on the 20 outer
engines: PR-AUC, near-boundary ROC-AUC (bench_cmapss.near_boundary_roc_auc) and F1 at
their threshold. The adoption rules were written before the first run of each
(docs/models.md, "Refit" and "K-fold ensemble of the chosen model").

Usage::

    .venv/bin/python bench/cmapss_nested_check.py --procedure refit --seeds 0 1 2 3 4 \
        --out bench/results/cmapss_refit_check.json
    .venv/bin/python bench/cmapss_nested_check.py --procedure folds --folds 4 \
        --out bench/results/cmapss_folds_check.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_cmapss import DEFAULT_DATA, near_boundary_roc_auc

from models.data import load_cmapss_history
from models.ensemble import MEMBER_SEED_STEP, Folds, prepare_folds, train_ensemble
from models.evaluation import binary_metrics, choose_threshold, fit_calibration, sigmoid
from models.labels import split_machines
from models.network import aux_horizons, build_model
from models.pipeline import Prepared, labelled_windows, prepare
from models.training import TrainConfig, predict_logits, setup_device, train
from models.windows import Windows
from plantwatch.presets import PRESETS

H, L, MIN_STEPS, VAL_FRACTION = 30, 100, 10, 0.2


def windows_of(history: Any, engines: list[str], prep: Prepared | Folds) -> Windows:
    """The labelled windows of ``engines`` under ``prep``'s spec and age scale."""
    sub = history_of(history, engines)
    return labelled_windows(sub, prep.spec, H, MIN_STEPS, prep.age_scale)[0]


def history_of(history: Any, engines: list[str]) -> Any:
    """``history`` with the telemetry and events of ``engines`` only."""
    keep = history.telemetry["equipment_id"].astype(str).isin(engines)
    events = history.events[history.events["equipment_id"].astype(str).isin(engines)]
    return dataclasses.replace(history, telemetry=history.telemetry[keep], events=events)


def scores(history: Any, val: Windows, p: np.ndarray, threshold: float) -> dict[str, float]:
    """PR-AUC, near-boundary ROC-AUC and F1 at ``threshold`` on the outer engines."""
    m = binary_metrics(val.y, p, threshold)
    step_ms = PRESETS["cmapss"].step_ms
    return {
        "pr_auc": float(m["pr_auc"]),
        "near_roc_auc": near_boundary_roc_auc(history, val, p, H, step_ms),
        "f1": float(m["f1"]),
    }


def run_seed(history: Any, seed: int, epochs: int, procedure: str, folds: int) -> dict[str, Any]:
    """P0 and P1 (the ``procedure``) on one seed's nested split."""
    window = PRESETS["cmapss"]
    machines = sorted(set(history.telemetry["equipment_id"].astype(str)))
    outer_train, outer_val = split_machines(machines, VAL_FRACTION, seed)
    inner_train, inner_val = split_machines(outer_train, VAL_FRACTION, seed)
    aux = aux_horizons(H, "dense")
    device = setup_device(seed)
    config = TrainConfig(epochs=epochs, seed=seed, verbose=0)

    def build(n_inputs: int, k: int = 0) -> Any:
        member_seed = seed + MEMBER_SEED_STEP * k
        return build_model(
            L, n_inputs, "gru-stats", 32, 0.1, member_seed, aux_outputs=len(aux), name=f"m{k}"
        )

    def fit(prep: Prepared, val: Windows | None, cfg: TrainConfig) -> tuple[Any, Any]:
        model = build(prep.n_inputs)
        return model, train(model, prep.train, val, cfg, device=device)

    common = {"seed": seed, "min_steps": MIN_STEPS, "age_feature": True, "aux_horizons": aux}
    p0 = prepare(history, window, L, H, split=(inner_train, inner_val), **common)
    m0, r0 = fit(p0, p0.val, config)
    logits = predict_logits(m0, p0.val)
    a, b = fit_calibration(logits, p0.val.y)
    threshold = choose_threshold(p0.val.y, sigmoid(a * logits + b))
    outer0 = windows_of(history, outer_val, p0)
    s0 = scores(history, outer0, sigmoid(a * predict_logits(m0, outer0) + b), threshold)

    if procedure == "refit":
        p1 = prepare(history, window, L, H, split=(outer_train, outer_val), **common)
        m1, r1 = fit(p1, None, dataclasses.replace(config, epochs=r0.best_epoch))
        threshold1 = threshold
        s1 = scores(history, p1.val, sigmoid(a * predict_logits(m1, p1.val) + b), threshold)
        seconds1, epochs1 = r1.seconds, len(r1.history)
    else:
        k_folds = prepare_folds(
            history_of(history, outer_train), window, L, H, folds, seed, MIN_STEPS, True, aux
        )
        ensemble = train_ensemble(k_folds, lambda k: build(k_folds.n_inputs, k), config, device)
        a1, b1 = fit_calibration(ensemble.oof_logits, ensemble.oof.y)
        threshold1 = choose_threshold(ensemble.oof.y, sigmoid(a1 * ensemble.oof_logits + b1))
        outer1 = windows_of(history, outer_val, k_folds)
        p = sigmoid(a1 * predict_logits(ensemble.model, outer1) + b1)
        s1 = scores(history, outer1, p, threshold1)
        seconds1 = sum(r.seconds for r in ensemble.results)
        epochs1 = sum(len(r.history) for r in ensemble.results)
    return {
        "procedure": procedure,
        "seed": seed,
        "outer_val": outer_val,
        "inner_val": inner_val,
        "best_epoch": r0.best_epoch,
        "threshold": threshold,
        "threshold_p1": threshold1,
        "p0": s0 | {"train_seconds": r0.seconds, "epochs": len(r0.history)},
        "p1": s1 | {"train_seconds": seconds1, "epochs": epochs1},
        "delta": {k: s1[k] - s0[k] for k in s0},
    }


def verdict(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The rule written before the first run of each procedure (docs/models.md)."""
    deltas = {k: [r["delta"][k] for r in runs] for k in ("pr_auc", "near_roc_auc", "f1")}
    median = {k: statistics.median(v) for k, v in deltas.items()}
    checks = {
        "median_pr_auc_gain_ge_0.001": median["pr_auc"] >= 0.001,
        "pr_auc_better_on_4_of_5": sum(d > 0 for d in deltas["pr_auc"]) >= 4,
        "median_near_roc_auc_not_lower": median["near_roc_auc"] >= 0,
        "median_f1_not_lower": median["f1"] >= 0,
    }
    return {"median_delta": median, "checks": checks, "adopt": all(checks.values())}


def main() -> None:
    """Run the seeds, print each and the verdict, write --out JSON."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="C-MAPSS directory")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--procedure", choices=["refit", "folds"], required=True)
    parser.add_argument("--folds", type=int, default=4, help="K of --procedure folds")
    parser.add_argument("--epochs", type=int, default=40, help="most epochs per training")
    parser.add_argument("--out", type=Path, default=None, help="write the runs as JSON here")
    args = parser.parse_args()
    history = load_cmapss_history(args.data, PRESETS["cmapss"].step_ms)
    runs, start = [], time.perf_counter()
    for seed in args.seeds:
        run = run_seed(history, seed, args.epochs, args.procedure, args.folds)
        runs.append(run)
        print(json.dumps({k: run[k] for k in ("seed", "best_epoch", "p0", "p1", "delta")}))
    result = {"runs": runs, "verdict": verdict(runs), "seconds": time.perf_counter() - start}
    print(json.dumps(result["verdict"], indent=1))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1, default=float))


if __name__ == "__main__":
    main()
