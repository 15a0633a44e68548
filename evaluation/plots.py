"""PNG plots: training curves, PR curve, calibration curve, risk over time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def training_curves(history: list[dict[str, float]], path: Path) -> Path:
    """Training loss, validation loss and validation PR-AUC per epoch."""
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.5))
    epochs = [h["epoch"] for h in history]
    ax1.plot(epochs, [h["loss"] for h in history], label="train loss")
    ax1.plot(epochs, [h["val_loss"] for h in history], label="validation loss")
    ax1.set_xlabel("epoch")
    ax1.legend()
    ax2.plot(epochs, [h["val_pr_auc"] for h in history], color="C2")
    ax2.set_xlabel("epoch")
    ax2.set_ylabel("validation PR-AUC")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def pr_curve(y: NDArray[Any], p: NDArray[Any], threshold: float, path: Path) -> Path:
    """Precision-recall curve with the operating point marked."""
    from sklearn.metrics import precision_recall_curve

    plt = _pyplot()
    precision, recall, _ = precision_recall_curve(y, p)
    pred = p >= threshold
    tp = float(np.sum(pred & (y == 1)))
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot(recall, precision)
    ax.scatter(
        [tp / max(float(np.sum(y == 1)), 1.0)],
        [tp / max(float(np.sum(pred)), 1.0)],
        color="C3",
        label=f"threshold {threshold:.3f}",
    )
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def calibration_curve(y: NDArray[Any], p: NDArray[Any], path: Path, bins: int = 10) -> Path:
    """Observed failure frequency against predicted probability, in equal-width bins."""
    plt = _pyplot()
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges) - 1, 0, bins - 1)
    xs, ys = [], []
    for b in range(bins):
        sel = which == b
        if sel.any():
            xs.append(float(np.mean(p[sel])))
            ys.append(float(np.mean(y[sel])))
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    ax.plot(xs, ys, marker="o")
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("observed frequency")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def risk_over_time(
    index: pd.DataFrame,
    p: NDArray[Any],
    threshold: float,
    failures: Mapping[str, int | Sequence[int]],
    step_ms: int,
    path: Path,
    machines: int = 4,
) -> Path:
    """Risk of a few machines over time (in steps), failures marked by vertical lines."""
    plt = _pyplot()
    ids = index["equipment_id"].astype(str).to_numpy()
    chosen = [m for m in sorted(failures) if (ids == m).any()][:machines]
    fig, ax = plt.subplots(figsize=(8, 3.5))
    for k, m in enumerate(chosen):
        rows = ids == m
        t = index["step_start"].to_numpy()[rows] / step_ms
        ax.plot(t, p[rows], color=f"C{k}", label=m)
        when = failures[m]
        for ts in [when] if isinstance(when, int | np.integer) else when:
            ax.axvline(int(ts) / step_ms, color=f"C{k}", linestyle="--")
    ax.axhline(threshold, color="black", linewidth=0.8, label="threshold")
    ax.set_xlabel("step")
    ax.set_ylabel("failure risk")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
