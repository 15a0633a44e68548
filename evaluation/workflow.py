"""The train / evaluate / fine-tune workflows behind the CLI (no click here)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from features.config import WindowConfig
from features.core import silent_steps
from features.spec import FeatureSpec
from models.artifact import ModelMeta, load_artifact, save_artifact
from models.data import History, drop_readings, fingerprint, load_source
from models.ensemble import MEMBER_SEED_STEP, prepare_folds, train_ensemble, train_members
from models.errors import DataError, FeedbackError
from models.evaluation import binary_metrics, choose_threshold, fit_calibration, lead_times, sigmoid
from models.feedback import feedback_labels, load_feedback
from models.labels import window_labels
from models.network import (
    DEFAULT_ARCHITECTURE,
    DEFAULT_AUX,
    aux_horizons,
    build_model,
)
from models.pipeline import cmapss_test, failure_times, prepare
from models.training import TrainConfig, predict_logits, setup_device, train
from models.windows import Windows, make_windows, step_features

log = logging.getLogger(__name__)

# Fraction of readings removed from history: data before training (see train_artifact).
DEFAULT_LOST_READINGS = 0.02


def train_artifact(
    *,
    data: str,
    events: Path | None,
    window: WindowConfig,
    horizon_steps: int,
    out: Path,
    created_at: str,
    sequence_length: int = 50,
    min_steps: int = 10,
    architecture: str = DEFAULT_ARCHITECTURE,
    units: int = 32,
    age_feature: bool = False,
    aux: str = DEFAULT_AUX,
    epochs: int = 40,
    patience: int = 10,
    batch_size: int = 256,
    learning_rate: float = 1e-3,
    weight_decay: float = 1e-4,
    validation_fraction: float = 0.2,
    folds: int = 1,
    members: int = 1,
    target_recall: float | None = None,
    lost_readings: float | None = None,
    seed: int = 0,
    verbose: int = 1,
) -> dict[str, Any]:
    """Train, calibrate and threshold on validation machines, save the artifact.

    ``lost_readings`` removes that fraction of the telemetry rows at random before the
    split (:func:`models.data.drop_readings`), so that the model learns what a lost or
    late reading looks like in a stream; None: :data:`DEFAULT_LOST_READINGS` for
    ``history:`` data, 0 for ``cmapss:`` (complete cycles, no filled steps).

    With ``folds`` K > 1 the machines are split in K folds (:mod:`models.ensemble`):
    calibration and threshold come from the out-of-fold scores of every machine, and the
    artifact serves the K members as one model (mean logit). With ``members`` M > 1 the
    split is the usual one and M copies of the network are trained from seeds
    ``seed + 1000 k`` (:func:`models.ensemble.train_members`), served the same way.

    With ``aux`` ``sparse`` or ``dense`` the network also learns failure within other
    horizons (:func:`models.network.aux_horizons`); the artifact keeps the single H logit.

    Returns:
        The metrics saved with the model: ``validation`` (and ``test`` for C-MAPSS).
    """
    if members < 1 or (members > 1 and folds > 1):
        raise DataError(
            "members must be >= 1, and folds and members cannot both be > 1. "
            f"Received: folds={folds}, members={members}"
        )
    history = load_source(data, window.step_ms, window.sensors, events)
    if lost_readings is None:
        lost_readings = 0.0 if history.test is not None else DEFAULT_LOST_READINGS
    history = drop_readings(history, lost_readings, seed)  # telemetry only, not C-MAPSS test
    aux_h = aux_horizons(horizon_steps, aux)
    device = setup_device(seed)
    config = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        patience=patience,
        seed=seed,
        verbose=verbose,
    )

    def build(n_inputs: int, k: int = 0) -> Any:
        return build_model(
            sequence_length,
            n_inputs,
            architecture,
            units,
            seed=seed + MEMBER_SEED_STEP * k,
            aux_outputs=len(aux_h),
            name=f"member{k}" if folds > 1 or members > 1 else None,
        )

    if folds > 1:
        prepared: Any = prepare_folds(
            history, window, sequence_length, horizon_steps, folds, seed, min_steps,
            age_feature, aux_h,
        )  # fmt: skip
    else:
        prepared = prepare(
            history, window, sequence_length, horizon_steps, validation_fraction, seed,
            min_steps, age_feature, aux_h,
        )  # fmt: skip
    history = replace(history, telemetry=history.telemetry.iloc[:0])  # memory: in windows now
    if folds > 1:
        ensemble = train_ensemble(prepared, lambda k: build(prepared.n_inputs, k), config, device)
    else:  # one model, or M members on the same split
        ensemble = train_members(
            lambda k: build(prepared.n_inputs, k), prepared.train, prepared.val, config,
            members, device,
        )  # fmt: skip
    model = ensemble.model
    run = {"folds": folds, "ensemble_members": members, "seed": seed, "lost": lost_readings}
    calibration, threshold, metrics = _judged_on_validation(
        ensemble, history, window.step_ms, target_recall, run
    )
    meta = ModelMeta(
        horizon_steps,
        min_steps,
        threshold,
        calibration,
        architecture,
        fingerprint(history.files),
        created_at,
        metrics,
        prepared.age_scale,
    )
    if history.test is not None:
        metrics["test"] = _cmapss_metrics(model, history, prepared.spec, meta)
    save_artifact(out, model, prepared.spec, meta)
    _training_plot(metrics["training"]["history"], out / "plots")
    return metrics


def _judged_on_validation(
    ensemble: Any,
    history: History,
    step_ms: int,
    target_recall: float | None,
    run: dict[str, Any],
) -> tuple[tuple[float, float], float, dict[str, Any]]:
    """Calibration, threshold and metrics from the validation (or out-of-fold) windows.

    ``run``: the training run's ``folds``, ``ensemble_members``, ``seed`` and ``lost``
    (readings), recorded with the metrics.
    """
    model, val, val_logits, results = (
        ensemble.model,
        ensemble.oof,
        ensemble.oof_logits,
        ensemble.results,
    )
    calibration = fit_calibration(val_logits, val.y)
    p_val = sigmoid(calibration[0] * val_logits + calibration[1])
    threshold = choose_threshold(val.y, p_val, target_recall)
    fails = history.events[history.events["kind"] == "failure"]
    val_ids = set(val.machines())
    val_fail = {e: ts for e, ts in failure_times(fails).items() if e in val_ids}
    metrics: dict[str, Any] = {
        "validation": binary_metrics(val.y, p_val, threshold)
        | lead_times(val.index, p_val, threshold, val_fail, step_ms),
        "training": {
            "history": results[0].history,
            "best_epoch": results[0].best_epoch,
            "seconds": sum(r.seconds for r in results),
            "device": results[0].device,
            "precision": results[0].precision,
            "params": model.count_params(),
            "folds": run["folds"],
            "ensemble_members": run["ensemble_members"],
            "members": [{"epochs": len(r.history), "best_epoch": r.best_epoch} for r in results],
            "val_windows": len(val),
            "seed": run["seed"],
            "lost_readings": run["lost"],
            "validation_machines": sorted(val_ids),
        },
    }
    return calibration, threshold, metrics


def _training_plot(history: list[dict[str, float]], directory: Path) -> None:
    from evaluation.plots import training_curves

    if history:
        directory.mkdir(parents=True, exist_ok=True)
        training_curves(history, directory / "training_curves.png")


def _proba(model: Any, windows: Windows, meta: ModelMeta) -> np.ndarray:
    a, b = meta.calibration
    return sigmoid(a * predict_logits(model, windows) + b)


def _cmapss_metrics(model: Any, history: History, spec: Any, meta: ModelMeta) -> dict[str, Any]:
    last, every, fail_ts = cmapss_test(
        history, spec, meta.horizon_steps, meta.min_steps, meta.age_scale
    )
    p = _proba(model, last, meta)
    positives = set(last.index["equipment_id"][last.y == 1])
    p_every = _proba(model, every, meta)
    return binary_metrics(last.y, p, meta.threshold) | lead_times(
        every.index,
        p_every,
        meta.threshold,
        {e: t for e, t in fail_ts.items() if e in positives},
        spec.window.step_ms,
    )


def evaluate_artifact(
    model_dir: Path,
    data: str,
    events: Path | None,
    window: WindowConfig,
    plots: Path | None,
    *,
    rules: Any = None,
    max_lead_steps: int | None = None,
    lost_readings: float = 0.0,
    seed: int = 0,
    levels: Sequence[float] = (),
) -> dict[str, Any]:
    """Metrics of a saved model on a data source (C-MAPSS protocol for cmapss: data).

    For ``history:`` data also the tickets that the alert ``rules`` (default
    :class:`alerting.rules.Rules`) would open from the scores the scorer would emit (every
    window but those ending in a silent step, :func:`features.core.silent_steps`), against the
    failures (:func:`evaluation.tickets.ticket_metrics`, a ticket counts for a failure that
    follows within ``max_lead_steps``, default 2 H). ``lost_readings`` scores the data as
    a stream that lost that fraction of its readings (seeded by ``seed``). With
    ``levels``, ``tickets_by_level`` holds the same ticket figures with the rules' ticket
    level at each of those probabilities (:meth:`alerting.rules.Rules.at_level`).
    """
    if data.startswith("cmapss:") and lost_readings > 0:
        raise DataError(
            f"lost readings {lost_readings} apply to history: data only; the C-MAPSS test "
            "protocol scores the published test files as they are"
        )
    if data.startswith("cmapss:") and levels:
        raise DataError(
            "ticket levels apply to history: data only; the C-MAPSS test protocol scores "
            "one window per engine and opens no tickets"
        )
    artifact = load_artifact(model_dir, window)
    meta, spec = artifact.meta, artifact.spec
    history = drop_readings(
        load_source(data, window.step_ms, window.sensors, events), lost_readings, seed
    )
    fail_ts: Mapping[str, int | Sequence[int]]
    tickets: dict[str, Any] | None = None
    by_level: list[dict[str, Any]] = []
    if history.test is not None:
        windows, every, fail_ts = cmapss_test(
            history, spec, meta.horizon_steps, meta.min_steps, meta.age_scale
        )
        fail_ts = {
            e: t
            for e, t in fail_ts.items()
            if e in set(windows.index["equipment_id"][windows.y == 1])
        }
        y, index = windows.y, every.index
        p, p_every = artifact.predict_proba(windows), artifact.predict_proba(every)
    else:
        # every window once: the labelled ones (make_windows with events keeps exactly
        # these) make the metrics, and those the scorer emits (not the silent steps of a
        # machine that is down or lost its messages) the tickets
        stream, emitted = scored_windows(history.telemetry, spec, meta)
        p_stream = artifact.predict_proba(stream)
        labels, keep = window_labels(
            stream.index, history.events, meta.horizon_steps * spec.window.step_ms
        )
        fail_ts = failure_times(history.events[history.events["kind"] == "failure"])
        y, p = labels[keep], p_stream[keep]
        index, p_every = stream.index[keep].reset_index(drop=True), p
        from alerting.rules import Rules

        rules = rules or Rules()
        variants = [rules.at_level(level) for level in levels]
        tickets, *at_levels = _tickets(
            meta.horizon_steps, stream.index[emitted], p_stream[emitted], history.events,
            [rules, *variants], max_lead_steps, spec.window.step_ms,
        )  # fmt: skip
        by_level = [
            {"level": level, "reset": at.ticket_reset} | figures
            for level, at, figures in zip(levels, variants, at_levels, strict=True)
        ]
        del stream
    metrics = binary_metrics(y, p, meta.threshold) | lead_times(
        index, p_every, meta.threshold, fail_ts, spec.window.step_ms
    )
    metrics["lost_readings"] = lost_readings
    if tickets is not None:
        metrics["tickets"] = tickets
        if levels:
            metrics["tickets_by_level"] = by_level
    metrics["threshold"] = meta.threshold
    if plots is not None:
        from evaluation import plots as plot

        plots.mkdir(parents=True, exist_ok=True)
        _training_plot(meta.metrics.get("training", {}).get("history", []), plots)
        if len(np.unique(y)) == 2:
            plot.pr_curve(y, p, meta.threshold, plots / "pr_curve.png")
        plot.calibration_curve(y, p, plots / "calibration.png")
        plot.risk_over_time(
            index,
            p_every,
            meta.threshold,
            fail_ts,
            spec.window.step_ms,
            plots / "risk_over_time.png",
        )
    return metrics


def scored_windows(
    telemetry: pd.DataFrame, spec: FeatureSpec, meta: ModelMeta
) -> tuple[Windows, NDArray[np.bool_]]:
    """Every window of a telemetry history, unlabelled, and which of them the scorer emits.

    The scorer emits a window when its last step had a reading
    (:func:`features.core.silent_steps`): not while a machine is down between a failure and
    its repair, nor for a step whose messages were all lost.
    """
    steps = step_features(telemetry, spec.window)
    heard = ~silent_steps(steps.X, spec.window)
    stream = make_windows(
        steps, spec, None, meta.horizon_steps, meta.min_steps, age_scale=meta.age_scale
    )
    return stream, heard[stream.end]


def _tickets(
    horizon_steps: int,
    index: Any,
    probabilities: np.ndarray,
    events: Any,
    rules_each: list[Any],
    max_lead_steps: int | None,
    step_ms: int,
) -> list[dict[str, Any]]:
    from evaluation.tickets import ticket_metrics_each

    lead = 2 * horizon_steps if max_lead_steps is None else max_lead_steps
    if lead < 1:
        raise ValueError(f"max_lead_steps must be >= 1. Received: max_lead_steps={lead}")
    return ticket_metrics_each(index, probabilities, events, rules_each, lead * step_ms, step_ms)


def fine_tune_artifact(
    model_dir: Path,
    feedback_path: Path,
    data: str,
    events: Path | None,
    window: WindowConfig,
    out: Path,
    *,
    created_at: str,
    learning_rate: float = 1e-4,
    epochs: int = 5,
    seed: int = 0,
    verbose: int = 1,
) -> int:
    """Fine-tune on feedback-labelled windows with the training core; returns windows used."""
    artifact = load_artifact(model_dir, window)
    meta, spec = artifact.meta, artifact.spec
    feedback = load_feedback(feedback_path)
    history = load_source(data, window.step_ms, window.sensors, events)
    steps = step_features(history.telemetry, spec.window)
    windows = make_windows(
        steps, spec, None, meta.horizon_steps, meta.min_steps, age_scale=meta.age_scale
    )
    y, used = feedback_labels(windows.index, feedback, meta.horizon_steps * spec.window.step_ms)
    if not used.any():
        raise FeedbackError(
            f"{feedback_path}: no window of the data matches the feedback's machines and times"
        )
    labelled = replace(windows, y=y).select(used)
    config = TrainConfig(
        epochs=epochs,
        learning_rate=learning_rate,
        seed=seed,
        verbose=verbose,
        patience=epochs,
        batch_size=min(256, len(labelled)),
    )
    device = setup_device(seed)
    result = train(artifact.model, labelled, labelled, config, device=device)
    metrics = dict(meta.metrics)
    metrics["fine_tune"] = {
        "windows": len(labelled),
        "positives": int(labelled.y.sum()),
        "history": result.history,
        "base": str(model_dir),
        "base_fingerprint": meta.fingerprint,
    }
    new_meta = replace(
        meta,
        metrics=metrics,
        created_at=created_at,
        fingerprint=fingerprint((*history.files, Path(feedback_path))),
    )
    save_artifact(out, artifact.model, spec, new_meta)
    return len(labelled)
