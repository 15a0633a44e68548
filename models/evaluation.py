"""Metrics, threshold choice, calibration and lead time.

Scores are probabilities after Platt calibration (``sigmoid(a * logit + b)``, fitted on
validation windows); the alert threshold is chosen on validation windows (max F1, or the
highest threshold that reaches a target recall) and saved with the model.

>>> y = np.array([0, 0, 1, 1.0]); p = np.array([0.1, 0.6, 0.7, 0.9])
>>> choose_threshold(y, p)
0.7
>>> m = binary_metrics(y, p, 0.7)
>>> m["f1"], m["confusion"]
(1.0, [[2, 0], [0, 2]])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

F = NDArray[np.floating[Any]]


def sigmoid(z: F) -> NDArray[np.float64]:
    """Numerically stable logistic function."""
    z = np.asarray(z, dtype=np.float64)
    out: NDArray[np.float64] = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    e = np.exp(z[~pos])
    out[~pos] = e / (1.0 + e)
    return out


def fit_calibration(logits: F, y: F) -> tuple[float, float]:
    """Platt scaling ``(a, b)`` fitted on validation logits (a > 0 keeps the ranking)."""
    from sklearn.linear_model import LogisticRegression

    if len(np.unique(y)) < 2:
        return 1.0, 0.0
    lr = LogisticRegression(C=1e4).fit(np.asarray(logits, np.float64).reshape(-1, 1), y)
    a, b = float(lr.coef_[0, 0]), float(lr.intercept_[0])
    return (a, b) if a > 0 else (1.0, 0.0)


def share_weights(y: F, positive_share: float) -> NDArray[np.float64]:
    """Window weights that make the positives ``positive_share`` of the total weight."""
    y = np.asarray(y)
    n_pos, n_neg = int(np.sum(y == 1)), int(np.sum(y != 1))
    if not 0.0 < positive_share < 1.0 or n_pos == 0 or n_neg == 0:
        raise ValueError(
            f"positive_share {positive_share!r}: expected a share in (0, 1) and windows of "
            f"both classes (got {n_pos} positive, {n_neg} negative)"
        )
    return np.where(y == 1, positive_share / n_pos, (1.0 - positive_share) / n_neg)


def choose_threshold(
    y: F,
    p: F,
    target_recall: float | None = None,
    tolerance: float = 0.01,
    positive_share: float | None = None,
) -> float:
    """The alert threshold from validation windows.

    Max F1: the F1 curve is flat near its maximum and its argmax jumps with a few
    validation machines, so the threshold is the median of all thresholds whose F1 is
    within ``tolerance`` of the maximum (0 gives the plain argmax). With
    ``target_recall``: the highest threshold that reaches that recall. With
    ``positive_share``: F1 as if positives were that share of the windows (the windows
    are weighted, :func:`share_weights`); the F1-best threshold depends on that mix.
    """
    from sklearn.metrics import precision_recall_curve

    weights = None if positive_share is None else share_weights(y, positive_share)
    precision, recall, thresholds = precision_recall_curve(y, p, sample_weight=weights)
    precision, recall = precision[:-1], recall[:-1]
    if target_recall is not None:
        ok = np.flatnonzero(recall >= target_recall)
        return float(thresholds[ok[-1]]) if len(ok) else float(thresholds[0])
    f1 = 2 * precision * recall / np.maximum(precision + recall, 1e-12)
    near = np.flatnonzero(f1 >= f1.max() - tolerance)
    return float(np.median(thresholds[near]))


def binary_metrics(y: F, p: F, threshold: float) -> dict[str, Any]:
    """Accuracy, precision, recall, F1, ROC-AUC, PR-AUC, Brier, confusion [[tn, fp], [fn, tp]]."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    y = np.asarray(y).astype(int)
    pred = (np.asarray(p) >= threshold).astype(int)
    tp = int(np.sum((pred == 1) & (y == 1)))
    tn = int(np.sum((pred == 0) & (y == 0)))
    fp = int(np.sum((pred == 1) & (y == 0)))
    fn = int(np.sum((pred == 0) & (y == 1)))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    both = len(np.unique(y)) == 2
    return {
        "n": len(y),
        "positives": int(y.sum()),
        "accuracy": (tp + tn) / max(len(y), 1),
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "roc_auc": float(roc_auc_score(y, p)) if both else float("nan"),
        "pr_auc": float(average_precision_score(y, p)) if both else float("nan"),
        "brier": float(np.mean((np.asarray(p, np.float64) - y) ** 2)),
        "confusion": [[tn, fp], [fn, tp]],
    }


def lead_times(
    index: pd.DataFrame,
    p: F,
    threshold: float,
    failure_ts: Mapping[str, int | Sequence[int]],
    step_ms: int,
) -> dict[str, float]:
    """Steps between the first alert before each failure and that failure.

    ``failure_ts`` gives each machine's failure time, or all its failure times. For every
    failure with scored windows since the machine's previous failure, the lead time is
    ``(failure - step_start of the first window at or above the threshold since the
    previous failure) / step_ms``; a failure with no such window counts as missed.

    >>> idx = pd.DataFrame({"equipment_id": ["m"] * 6, "step_start": [0, 1, 2, 3, 4, 5]})
    >>> lead_times(idx, np.array([0.9, 0, 0, 0, 0.9, 0]), 0.5, {"m": [2, 5]}, 1)["lead_mean"]
    1.5

    Returns:
        ``lead_median``, ``lead_mean``, ``lead_min``, ``detected``, ``missed``.
    """
    leads: list[float] = []
    missed = 0
    ids = index["equipment_id"].astype(str)
    rows_of = ids.groupby(ids.to_numpy(), sort=False).indices  # each machine's rows, once
    all_starts = index["step_start"].to_numpy(dtype=np.int64)
    all_above = np.asarray(p) >= threshold
    for eid, when in failure_ts.items():
        times = sorted([when] if isinstance(when, int | np.integer) else [int(t) for t in when])
        mine = rows_of.get(eid)
        if mine is None:  # no scored window of this machine
            continue
        starts, above = all_starts[mine], all_above[mine]
        previous = None
        for ts in times:
            rows = starts <= ts
            if previous is not None:
                rows &= starts > previous
            previous = ts
            if not rows.any():
                continue
            hits = starts[rows & above]
            if len(hits):
                leads.append((ts - int(hits.min())) / step_ms)
            else:
                missed += 1
    arr = np.array(leads) if leads else np.array([np.nan])
    return {
        "lead_median": float(np.median(arr)),
        "lead_mean": float(np.mean(arr)),
        "lead_min": float(np.min(arr)),
        "detected": float(len(leads)),
        "missed": float(missed),
    }
