"""Benchmark on C-MAPSS FD001 with the published protocol, over several seeds.

Protocol (``../shared/data/cmapss/README.md``): H = 30 cycles; the test score is the last
window of each of the 93 test engines with >= 50 cycles (25 positive), whatever the
model's L (the default 100: engines with 50-99 cycles are padded in front and masked).
Everything (early stopping, calibration, threshold) is chosen on validation engines split
by engine from the training file with the run's seed; the test set is only scored.

Usage::

    .venv/bin/python bench/bench_cmapss.py --seeds 0 1 2 3 4 --out bench/results/cmapss.json

Defaults are the configuration chosen on validation (``gru-stats``: GRU(32) beside window
statistics, L = 100, step-age feature, dense auxiliary horizons, AdamW 1e-3 with cosine
decay, patience 10, a 20 % validation hold-out); the earlier default is
``--arch gru --L 50 --aux none``. ``--folds 5`` is K-fold by engine:
threshold and calibration on the out-of-fold scores of all 100 training engines, served as
a 5-member ensemble (``bench/results/cmapss_folds5.json``; 5x the training and inference
cost, same median F1, better worst seed and Brier score, see ``docs/models.md``);
``--members 3`` trains three copies from seeds seed + 1000 k on the same split, early-stopped
on the same validation engines and served as one model (``bench/results/cmapss_members3.json``);
``--aux``, ``--arch`` (e.g. ``gru-stats``), ``--units``, ``--L``, ``--select-rho`` and
``--no-age`` give the variants measured in ``docs/models.md``.

Besides the test metrics, each seed reports validation-only figures used to choose
variants: ``val_pr_auc``, ``val_near_roc_auc`` (windows within 10 cycles of H, where the
test errors are) and the protocol simulated on the validation engines
(``val_protocol_f1``, ``val_protocol_share_096``: how often 25 + 68 drawn windows reach
F1 0.96 at the chosen threshold), and ``rule_holdout_f1``: each ``--threshold-rule``
chosen on half the validation engines and scored on the other half (the test F1 of both
rules is in ``rule_test``; ``bench/results/cmapss_threshold_rule.json``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from models.data import load_cmapss_history
from models.ensemble import MEMBER_SEED_STEP, prepare_folds, train_ensemble, train_members
from models.evaluation import (
    binary_metrics,
    choose_threshold,
    fit_calibration,
    lead_times,
    share_weights,
    sigmoid,
)
from models.network import ARCHITECTURES, AUX_MODES, aux_horizons, build_model
from models.pipeline import PROTOCOL_MIN_CYCLES, cmapss_test, prepare
from models.training import TrainConfig, predict_logits, setup_device
from plantwatch.presets import PRESETS

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cmapss"
METRICS = (
    "accuracy",
    "precision",
    "recall",
    "f1",
    "roc_auc",
    "pr_auc",
    "brier",
    "brier_raw",
    "lead_median",
    "missed",
    "val_pr_auc",
    "val_near_roc_auc",
    "val_near_roc_auc_c100",
    "val_protocol_f1",
    "val_protocol_share_096",
    "threshold",
    "epochs",
    "train_seconds",
    "windows_per_s",
)


def cycles(history: Any, windows: Any, step_ms: int) -> tuple[np.ndarray, np.ndarray]:
    """Per window of a training-file engine: (its last cycle, cycles left to the failure)."""
    fails = history.events[history.events["kind"] == "failure"].set_index("equipment_id")["ts"]
    start = windows.index["step_start"].to_numpy(dtype=np.int64)
    ends = windows.index["equipment_id"].map(fails).to_numpy(dtype=np.int64)
    return start // step_ms + 1, (ends - start) // step_ms


def near_boundary_roc_auc(
    history: Any,
    val: Any,
    p: np.ndarray,
    horizon: int,
    step_ms: int,
    band: int = 10,
    min_cycle: int = 1,
) -> float:
    """ROC-AUC among the validation windows within ``band`` cycles of the horizon.

    The test errors are engines a few cycles either side of H; this is the validation
    metric that looks at that zone alone (windows with H - band <= remaining <= H + band,
    ending at cycle >= ``min_cycle``; ``bench/cmapss_independent.py --seeds`` scores the
    same windows of the same validation engines with min_cycle 100).
    """
    cycle, remaining = cycles(history, val, step_ms)
    near = (np.abs(remaining - horizon) <= band) & (cycle >= min_cycle)
    return float(roc_auc_score(val.y[near], p[near]))


def protocol_f1_draws(
    history: Any,
    val: Any,
    p: np.ndarray,
    threshold: float,
    horizon: int,
    step_ms: int,
    seed: int,
    draws: int = 2000,
) -> tuple[float, float]:
    """The test protocol simulated on the validation engines: (median F1, share >= 0.96).

    Each draw takes 25 positive and 68 negative windows (the protocol's counts) at cycle
    >= 50 of the validation engines, with replacement, and scores them at the threshold.
    Optimistic, since the threshold was chosen on these engines; it tells how often a
    model of this quality reaches the bar on a 93-window test set.
    """
    cycle, remaining = cycles(history, val, step_ms)
    eligible = cycle >= PROTOCOL_MIN_CYCLES
    pos = np.flatnonzero(eligible & (remaining <= horizon))
    neg = np.flatnonzero(eligible & (remaining > horizon))
    rng = np.random.default_rng(seed)
    alert = p >= threshold
    tp = alert[rng.choice(pos, (draws, 25))].sum(axis=1)
    fp = alert[rng.choice(neg, (draws, 68))].sum(axis=1)
    f1 = 2 * tp / (2 * tp + fp + (25 - tp))
    return float(np.median(f1)), float(np.mean(f1 >= 0.96 - 1e-9))


PROTOCOL_SHARE = 25 / 93  # the protocol's positives among its test windows (README)
THRESHOLD_RULES = ("all-windows", "protocol-mix")


def rule_threshold(rule: str, y: np.ndarray, p: np.ndarray, cycle: np.ndarray) -> float:
    """The threshold by one rule: max F1 over all windows, or at the protocol's mix.

    ``protocol-mix``: the windows ending at cycle >= 50 (as the protocol's), positives
    weighted to 25 of every 93 (``PROTOCOL_SHARE``).
    """
    if rule == "all-windows":
        return choose_threshold(y, p)
    eligible = cycle >= PROTOCOL_MIN_CYCLES
    return choose_threshold(y[eligible], p[eligible], positive_share=PROTOCOL_SHARE)


def mix_f1(y: np.ndarray, alert: np.ndarray) -> float:
    """F1 with the positives weighted to the protocol's share of the windows."""
    w = share_weights(y, PROTOCOL_SHARE)
    tp, fp = w[(y == 1) & alert].sum(), w[(y != 1) & alert].sum()
    fn = w[(y == 1) & ~alert].sum()
    return float(2 * tp / (2 * tp + fp + fn)) if tp + fp + fn else 0.0


def holdout_rule_check(
    history: Any,
    val: Any,
    p: np.ndarray,
    step_ms: int,
    seed: int,
    halvings: int = 50,
) -> dict[str, float]:
    """Each threshold rule chosen on half the validation engines, scored on the other half.

    ``halvings`` random 10 + 10 splits of the validation engines, both directions; the
    score is :func:`mix_f1` over the held-out half's windows at cycle >= 50. Returns the
    mean per rule: a validation-only comparison of the rules (``docs/models.md``).
    """
    cycle, _ = cycles(history, val, step_ms)
    y = np.asarray(val.y)
    engine = val.index["equipment_id"].astype(str).to_numpy()
    engines = np.unique(engine)
    rng = np.random.default_rng(seed)
    scores: dict[str, list[float]] = {rule: [] for rule in THRESHOLD_RULES}
    for _ in range(halvings):
        order = rng.permutation(engines)
        half = len(order) // 2
        for fit, held in ((order[:half], order[half:]), (order[half:], order[:half])):
            on_fit = np.isin(engine, fit)
            on_held = np.isin(engine, held) & (cycle >= PROTOCOL_MIN_CYCLES)
            for rule in THRESHOLD_RULES:
                t = rule_threshold(rule, y[on_fit], p[on_fit], cycle[on_fit])
                scores[rule].append(mix_f1(y[on_held], p[on_held] >= t))
    return {rule: float(np.mean(v)) for rule, v in scores.items()}


def select_inputs(history: Any, train: Any, min_rho: float, step_ms: int, age: bool) -> Any:
    """The input columns to keep: |Spearman rho| with the remaining cycles >= ``min_rho``.

    Computed on the training windows' last steps only; the age column is always kept.
    """
    from scipy.stats import spearmanr

    _, remaining = cycles(history, train, step_ms)
    last = train.steps[train.end]  # each window's last step
    keep = []
    for j in range(last.shape[1]):
        column = last[:, j]
        is_age = age and j == last.shape[1] - 1
        if is_age or (column.std() > 0 and abs(spearmanr(column, remaining)[0]) >= min_rho):
            keep.append(j)
    return np.array(keep)


def _columns(w: Any, keep: Any) -> Any:
    return dataclasses.replace(w, steps=np.ascontiguousarray(w.steps[:, keep]))


def run_seed(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """Train on one seed's engine split, score the test protocol, time inference."""
    window = PRESETS["cmapss"]
    history = load_cmapss_history(args.data, window.step_ms)
    aux = aux_horizons(args.H, args.aux)
    device = setup_device(seed)
    config = TrainConfig(
        epochs=args.epochs,
        seed=seed,
        learning_rate=args.lr,
        batch_size=args.batch_size,
        schedule=args.schedule,
        patience=args.patience,
        verbose=args.verbose,
    )

    def build(n_inputs: int, k: int = 0) -> Any:
        return build_model(
            args.L,
            n_inputs,
            args.arch,
            args.units,
            args.dropout,
            seed + MEMBER_SEED_STEP * k,
            aux_outputs=len(aux),
            name=f"member{k}",
        )

    if args.folds > 1:
        folds = prepare_folds(
            history, window, args.L, args.H, args.folds, seed, args.min_steps, args.age, aux
        )
        ensemble = train_ensemble(folds, lambda k: build(folds.n_inputs, k), config, device)
        spec, min_steps, age_scale = folds.spec, folds.min_steps, folds.age_scale
    else:
        prep = prepare(
            history, window, args.L, args.H, args.val_fraction, seed, args.min_steps, args.age, aux
        )
        n_inputs, train_w, val_w = prep.n_inputs, prep.train, prep.val
        if args.select_rho:
            keep = select_inputs(history, prep.train, args.select_rho, window.step_ms, args.age)
            train_w, val_w, n_inputs = _columns(train_w, keep), _columns(val_w, keep), len(keep)
            print(f"seed {seed}: {len(keep)} of {prep.n_inputs} inputs kept: {keep.tolist()}")
        ensemble = train_members(
            lambda k: build(n_inputs, k), train_w, val_w, config, args.members, device
        )
        spec, min_steps, age_scale = prep.spec, prep.min_steps, prep.age_scale
    model, val, val_logits = ensemble.model, ensemble.oof, ensemble.oof_logits
    result = ensemble.results[0]
    result.seconds = sum(r.seconds for r in ensemble.results)
    epochs = sum(len(r.history) for r in ensemble.results)
    a, b = fit_calibration(val_logits, val.y)
    p_val = sigmoid(a * val_logits + b)
    val_cycle, _ = cycles(history, val, window.step_ms)
    thresholds = {r: rule_threshold(r, val.y, p_val, val_cycle) for r in THRESHOLD_RULES}
    threshold = thresholds[args.threshold_rule]
    last, every, fail_ts = cmapss_test(history, spec, args.H, min_steps, age_scale)
    if args.select_rho:
        last, every = _columns(last, keep), _columns(every, keep)
    logits = predict_logits(model, last)
    p = sigmoid(a * logits + b)
    m = binary_metrics(last.y, p, threshold)
    m["rule_holdout_f1"] = holdout_rule_check(history, val, p_val, window.step_ms, seed)
    m["rule_threshold"] = thresholds
    m["rule_test"] = {
        r: {
            k: v
            for k, v in binary_metrics(last.y, p, t).items()
            if k in ("f1", "precision", "recall", "confusion")
        }
        for r, t in thresholds.items()
    }
    wrong = (p >= threshold) != (last.y == 1)
    m["errors"] = [
        (str(e), int(history.test_rul[e]), round(float(q), 3))
        for e, q in zip(last.index["equipment_id"][wrong], p[wrong], strict=True)
    ]
    m["brier_raw"] = float(np.mean((sigmoid(logits) - last.y) ** 2))
    p_every = sigmoid(a * predict_logits(model, every) + b)
    positives = set(last.index["equipment_id"][last.y == 1])
    m |= lead_times(
        every.index,
        p_every,
        threshold,
        {e: t for e, t in fail_ts.items() if e in positives},
        window.step_ms,
    )
    m["val_pr_auc"] = binary_metrics(val.y, p_val, threshold)["pr_auc"]
    m["val_near_roc_auc"] = near_boundary_roc_auc(history, val, p_val, args.H, window.step_ms)
    m["val_near_roc_auc_c100"] = near_boundary_roc_auc(
        history, val, p_val, args.H, window.step_ms, min_cycle=100
    )
    m["val_protocol_f1"], m["val_protocol_share_096"] = protocol_f1_draws(
        history, val, p_val, threshold, args.H, window.step_ms, seed
    )
    m["threshold"] = threshold
    m["epochs"] = epochs
    m["train_seconds"] = result.seconds
    m["params"] = model.count_params()
    big = every.select(np.resize(np.arange(len(every)), 20_000))
    predict_logits(model, big.select(np.arange(2048)), batch_size=2048)
    rates = []
    for _ in range(args.timing_passes):
        start = time.perf_counter()
        predict_logits(model, big, batch_size=2048)
        rates.append(len(big) / (time.perf_counter() - start))
    m["windows_per_s"] = statistics.median(rates)
    m["windows_per_s_passes"] = rates
    m["device"], m["precision_policy"] = result.device, result.precision
    m["seed"] = seed
    m["n_val"], m["n_test"] = len(val), len(last)
    return m


def main() -> None:
    """Run the seeds, print every metric's min/median/max, write --out JSON."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        help="directory with train/test/RUL_FD001.txt (default: ../shared/data/cmapss)",
    )
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0, 1, 2, 3, 4],
        help="one run per seed: its engine split, initial weights and batch order",
    )
    parser.add_argument("--arch", default="gru-stats", choices=ARCHITECTURES, help="network")
    parser.add_argument("--units", type=int, default=32, help="recurrent units")
    parser.add_argument("--dropout", type=float, default=0.1, help="dropout rate")
    parser.add_argument("--epochs", type=int, default=40, help="most epochs per run")
    parser.add_argument(
        "--patience",
        type=int,
        default=10,
        help="epochs without a better validation PR-AUC before early stopping",
    )
    parser.add_argument("--lr", type=float, default=1e-3, help="AdamW learning rate")
    parser.add_argument("--batch-size", type=int, default=256, help="training batch size")
    parser.add_argument(
        "--min-steps",
        type=int,
        default=10,
        help="windows with fewer real cycles (masked) are left out",
    )
    parser.add_argument(
        "--val-fraction",
        type=float,
        default=0.2,
        help="share of the training engines held out for validation (by engine)",
    )
    parser.add_argument(
        "--folds",
        type=int,
        default=1,
        help="K > 1: K-fold by engine, threshold on out-of-fold scores, K-member ensemble",
    )
    parser.add_argument(
        "--members",
        type=int,
        default=1,
        help="M > 1: M copies of the model trained on the same engines from seeds "
        "seed + 1000 k, early-stopped on the same validation engines, served as one model "
        "(mean logit)",
    )
    parser.add_argument("--L", type=int, default=100, help="window length in cycles")
    parser.add_argument(
        "--H", type=int, default=30, help="horizon in cycles (the protocol's is 30)"
    )
    parser.add_argument(
        "--age",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="add the normalized cycle (step age) feature",
    )
    parser.add_argument(
        "--select-rho",
        type=float,
        default=0.0,
        help="keep only inputs with |Spearman rho| >= this with the remaining cycles on the "
        "training windows (single model only; 0 = all inputs)",
    )
    parser.add_argument(
        "--aux",
        choices=AUX_MODES,
        default="dense",
        help="auxiliary horizon outputs (models.network.aux_horizons); dense: every 5 cycles "
        "up to 125 (ordinal supervision)",
    )
    parser.add_argument(
        "--schedule",
        default="cosine",
        choices=["cosine", "constant"],
        help="learning-rate schedule over the epochs",
    )
    parser.add_argument(
        "--threshold-rule",
        choices=THRESHOLD_RULES,
        default="all-windows",
        help="how the alert threshold is chosen on the validation engines: max F1 over all "
        "their windows, or over those at cycle >= 50 weighted to the protocol's 25 of 93 "
        "positives (both are reported per seed, with a held-out comparison on validation)",
    )
    parser.add_argument(
        "--timing-passes",
        type=int,
        default=5,
        help="timed passes over 20,000 windows (batch 2048) per seed; windows_per_s is "
        "their median",
    )
    parser.add_argument(
        "--verbose", type=int, default=0, help="Keras progress output (0: none, 1: bar)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="write config, summary and runs as JSON here"
    )
    args = parser.parse_args()
    if args.select_rho and args.folds > 1:
        parser.error("--select-rho is for the single model (--folds 1)")
    if args.members < 1:
        parser.error(f"--members must be >= 1. Received: {args.members}")
    if args.members > 1 and args.folds > 1:
        parser.error("--members is for the hold-out split (--folds 1); --folds K is K members")
    runs = []
    for seed in args.seeds:
        m = run_seed(args, seed)
        runs.append(m)
        print(
            json.dumps(
                {k: m[k] for k in ("seed", *METRICS, "confusion", "params", "errors")},
                default=float,
            )
        )
    summary = {
        k: {
            "min": min(r[k] for r in runs),
            "median": statistics.median(r[k] for r in runs),
            "max": max(r[k] for r in runs),
        }
        for k in METRICS
    }
    print(f"{'metric':<14}{'min':>12}{'median':>12}{'max':>12}")
    for k, s in summary.items():
        print(f"{k:<14}{s['min']:>12.4f}{s['median']:>12.4f}{s['max']:>12.4f}")
    print(
        f"params {runs[0]['params']}, device {runs[0]['device']}, precision {runs[0]['precision_policy']}"
    )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        args.out.write_text(
            json.dumps(
                {"config": config, "summary": summary, "runs": runs}, indent=1, default=float
            )
        )


if __name__ == "__main__":
    main()
