"""An independent check of how separable the C-MAPSS FD001 test boundary is (analysis, not `make bench`).

A model of another family, a gradient-boosted RUL regressor (scikit-learn's
HistGradientBoostingRegressor, piecewise target capped at 125 cycles) on hand-made features
of the 14 informative sensors (means of the last 5 and 15 cycles, 30-cycle slopes, cycle
count; with ``--context 100`` also the 100-cycle slopes and the 50-cycle means):

1. out-of-fold on the training engines (5 folds by engine): PR-AUC of "fails within H" and
   ROC-AUC among windows within 10 cycles of H, the zone of the test errors;
2. fitted on all training engines: the predicted RUL of the test engines nearest the
   boundary, and the best F1 over *every* threshold on the 93 protocol windows, an upper
   bound for that model that no threshold chosen without the test labels can beat.

    .venv/bin/python bench/cmapss_independent.py [--context 50|100]

With ``--seeds 0 1 2 3 4`` it instead scores, per seed, the validation engines of
``bench_cmapss.py``'s split of that seed (``models.labels.split_machines``, 20 %): the
ROC-AUC among their windows ending at cycle >= 100 within 10 cycles of H, the same
windows as ``bench_cmapss.py``'s ``val_near_roc_auc_c100``, for both contexts.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.metrics import average_precision_score, roc_auc_score

from models.data import load_cmapss_history
from models.pipeline import PROTOCOL_MIN_CYCLES

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cmapss"
SENSORS = [f"s{i}" for i in (2, 3, 4, 7, 8, 9, 11, 12, 13, 14, 15, 17, 20, 21)]


def by_engine(frame: pd.DataFrame) -> dict[int, np.ndarray]:
    """Unit number -> that engine's SENSORS, one row per cycle (the loader's frames)."""
    return {
        int(str(e).rsplit("-", 1)[1]): rows[SENSORS].to_numpy()
        for e, rows in frame.groupby("equipment_id", sort=True)
    }


def _slope(z: np.ndarray) -> np.ndarray:
    x = np.arange(len(z)) - (len(z) - 1) / 2
    return np.asarray((x[:, None] * (z - z.mean(axis=0))).sum(axis=0) / (x**2).sum())


def features(rows: np.ndarray, mu: np.ndarray, sd: np.ndarray, context: int) -> np.ndarray:
    """One engine history up to a cycle -> a feature vector."""
    z = (rows - mu) / sd
    parts = [z[-5:].mean(axis=0), z[-15:].mean(axis=0), _slope(z[-30:]), [len(rows) / 200]]
    if context >= 100:
        parts += [_slope(z[-100:]), z[-50:].mean(axis=0)]
    return np.concatenate(parts)


def windows(
    engines: dict[int, np.ndarray], mu: np.ndarray, sd: np.ndarray, context: int, first: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Feature rows of every window ending at cycle >= first: (unit, X, remaining)."""
    rows = [
        (u, features(d[:end], mu, sd, context), len(d) - end)
        for u, d in engines.items()
        for end in range(first, len(d) + 1)
    ]
    return (
        np.array([r[0] for r in rows]),
        np.array([r[1] for r in rows]),
        np.array([r[2] for r in rows]),
    )


def per_seed(
    engines: dict[int, np.ndarray], mu: np.ndarray, sd: np.ndarray, seeds: list[int], horizon: int
) -> None:
    """Near-boundary ROC-AUC on each seed's validation engines, both contexts."""
    from models.labels import split_machines

    for context in (50, 100):
        unit, X, remaining = windows(engines, mu, sd, context, 100)
        scores = []
        for seed in seeds:
            _, val = split_machines([f"engine-{u:03d}" for u in engines], 0.2, seed)
            held = np.isin(unit, [int(e[-3:]) for e in val])
            model = HistGradientBoostingRegressor(max_iter=300, learning_rate=0.05, random_state=0)
            model.fit(X[~held], np.minimum(remaining[~held], 125))
            guess = model.predict(X[held])
            near = np.abs(remaining[held] - horizon) <= 10
            label = remaining[held][near] <= horizon
            scores.append(float(roc_auc_score(label, -guess[near])))
        print(
            f"context {context}: validation near-boundary ROC-AUC (cycle >= 100) per seed "
            f"{', '.join(f'{v:.4f}' for v in scores)}; median {np.median(scores):.4f}"
        )


def main() -> None:
    """Print the out-of-fold and the test-boundary figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--context", type=int, default=50, choices=[50, 100])
    parser.add_argument("--H", type=int, default=30)
    parser.add_argument("--seeds", type=int, nargs="*", default=None)
    args = parser.parse_args()
    history = load_cmapss_history(args.data, 1)
    assert history.test is not None
    assert history.test_rul is not None
    mu = history.telemetry[SENSORS].to_numpy().mean(axis=0)
    sd = history.telemetry[SENSORS].to_numpy().std(axis=0)
    engines = by_engine(history.telemetry)
    if args.seeds:
        per_seed(engines, mu, sd, args.seeds, args.H)
        return
    first = args.context  # windows from this cycle on, so both contexts see the same ones
    unit, X, remaining = windows(engines, mu, sd, args.context, first)
    order = np.random.default_rng(0).permutation(np.arange(1, 101))
    predicted = np.empty(len(unit))
    for fold in np.array_split(order, 5):
        held = np.isin(unit, fold)
        model = HistGradientBoostingRegressor(max_iter=300, learning_rate=0.05, random_state=0)
        model.fit(X[~held], np.minimum(remaining[~held], 125))
        predicted[held] = model.predict(X[held])
    label = remaining <= args.H
    near = np.abs(remaining - args.H) <= 10
    print(
        f"context {args.context}: out-of-fold PR-AUC {average_precision_score(label, -predicted):.4f}, "
        f"ROC-AUC within 10 cycles of H {roc_auc_score(label[near], -predicted[near]):.4f} "
        f"({len(unit)} windows, cycle >= {first})"
    )
    model = HistGradientBoostingRegressor(max_iter=300, learning_rate=0.05, random_state=0)
    model.fit(X, np.minimum(remaining, 125))
    tests = by_engine(history.test)
    units = [u for u, rows in tests.items() if len(rows) >= PROTOCOL_MIN_CYCLES]
    Xt = np.array([features(tests[u], mu, sd, args.context) for u in units])
    true = np.array([history.test_rul[f"engine-{u:03d}"] for u in units])
    guess = model.predict(Xt)
    positive = true <= args.H
    best = max(
        2 * (positive & (guess <= t)).sum() / ((guess <= t).sum() + positive.sum())
        for t in np.unique(guess)
    )
    print(
        f"test: {len(units)} engines, {positive.sum()} positive; best F1 over every threshold {best:.3f}"
    )
    print("test engines within 10 cycles of H: engine, true RUL, predicted RUL")
    for i in np.argsort(true):
        if abs(true[i] - args.H) <= 10:
            print(f"  engine-{units[i]:03d}  {int(true[i]):>3}  {guess[i]:6.1f}")


if __name__ == "__main__":
    main()
