"""K-fold training by machine: out-of-fold validation for every machine, and an ensemble.

With K folds the training machines are split into K groups (seeded, by machine, never by
row). Member k trains on the other K-1 groups and early-stops on group k, so every
machine is scored once by a model that never saw it: calibration and the alert threshold
are chosen on those out-of-fold scores of all machines instead of on one 20 % hold-out
(a threshold from a few validation machines jumps with the split). The K members are
then served as one Keras model whose logit is the mean of the members' logits.

:func:`train_members` is the other ensemble: M copies of one network trained on the same
machines from M seeds (weights and batch order), each early-stopped on the same validation
machines and served the same way, so it is judged on validation exactly as one model is.

The feature spec (normalization, regimes) is fitted on all training machines: it uses no
labels, and one spec is what a served model needs.

>>> fold_machines(["a", "b", "c", "d", "e"], 2, seed=0)
[['c', 'd', 'e'], ['a', 'b']]
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
from numpy.typing import NDArray

from features.config import WindowConfig
from features.spec import FeatureSpec
from models import backend
from models.backend import Model
from models.data import History
from models.errors import DataError
from models.network import serving_model
from models.training import TrainConfig, TrainResult, predict_logits, train
from models.windows import Windows, fit, make_windows, step_features

log = logging.getLogger(__name__)


def fold_machines(machines: list[str], folds: int, seed: int) -> list[list[str]]:
    """Split machine ids into ``folds`` groups of near-equal size, seeded."""
    unique = sorted({str(m) for m in machines})
    if not 2 <= folds <= len(unique):
        raise DataError(
            f"folds must be between 2 and the number of machines ({len(unique)}). "
            f"Received: folds={folds}"
        )
    order = np.random.default_rng(seed).permutation(len(unique))
    return [sorted(unique[i] for i in part) for part in np.array_split(order, folds)]


@dataclass(frozen=True)
class Folds:
    """One spec and the labelled windows of every training machine, grouped in folds."""

    spec: FeatureSpec
    windows: Windows
    groups: list[list[str]]
    horizon_steps: int
    min_steps: int
    age_scale: float | None = None

    @property
    def n_inputs(self) -> int:
        """Features per step given to the model (the spec's, plus the age feature)."""
        return self.spec.n_features + (self.age_scale is not None)

    def split(self, k: int) -> tuple[Windows, Windows]:
        """``(train, validation)`` windows of fold ``k``."""
        held = self.windows.index["equipment_id"].astype(str).isin(self.groups[k]).to_numpy()
        return self.windows.select(~held), self.windows.select(held)


def prepare_folds(
    history: History,
    window: WindowConfig,
    sequence_length: int,
    horizon_steps: int,
    folds: int,
    seed: int = 0,
    min_steps: int = 1,
    age_feature: bool = False,
    aux_horizons: tuple[int, ...] = (),
) -> Folds:
    """Fit the spec on all machines, build labelled windows, group machines in folds."""
    if horizon_steps < 1:
        raise DataError(f"horizon must be >= 1 step. Received: horizon={horizon_steps}")
    steps = step_features(history.telemetry, window)
    machines = sorted(steps.index["equipment_id"].astype(str).unique())
    failed = set(history.events.loc[history.events["kind"] == "failure", "equipment_id"])
    if not failed & set(machines):
        raise DataError("no machine in the telemetry has a failure event: nothing to learn from")
    groups = fold_machines(machines, folds, seed)
    spec = fit(steps, window, sequence_length)
    age_scale = None
    if age_feature:
        keys = steps.index["equipment_id"].astype(str) + steps.index["segment"].astype(str)
        age_scale = float(keys.value_counts().mean())
    windows = make_windows(
        steps,
        spec,
        history.events,
        horizon_steps,
        min_steps,
        age_scale=age_scale,
        aux_horizons=aux_horizons,
    )
    return Folds(spec, windows, groups, horizon_steps, min_steps, age_scale)


@dataclass
class Ensemble:
    """The trained members served as one model, and their out-of-fold scores."""

    model: Model
    oof_logits: NDArray[np.float32]
    oof: Windows
    results: list[TrainResult] = field(default_factory=list)


def average_model(members: list[Model]) -> Model:
    """One model whose logit is the mean of the members' logits (same inputs).

    Members need distinct names (``build_model(..., name=...)``).
    """
    keras = backend.keras()
    first = serving_model(members[0])
    shape = {t.name: tuple(t.shape[1:]) for t in first.inputs}
    inputs = {
        "features": keras.Input(shape["features"], name="features"),
        "mask": keras.Input(shape["mask"], name="mask", dtype="bool"),
    }
    logits = [serving_model(m)(inputs) for m in members]
    logit = keras.layers.Average(name="mean_logit")(logits) if len(logits) > 1 else logits[0]
    return keras.Model(inputs, logit, name=f"plantwatch_ensemble{len(members)}")


def train_ensemble(
    folds: Folds,
    build: Callable[[int], Model],
    config: TrainConfig,
    device: tuple[str, str] | None = None,
) -> Ensemble:
    """Train one member per fold (``build(k)`` makes member k), keep out-of-fold logits."""
    members: list[Model] = []
    results: list[TrainResult] = []
    oof_logits: list[NDArray[np.float32]] = []
    oof_parts: list[Windows] = []
    for k in range(len(folds.groups)):
        train_w, val_w = folds.split(k)
        log.info(
            "fold %d/%d: %d training windows, %d validation windows (%d machines)",
            k + 1,
            len(folds.groups),
            len(train_w),
            len(val_w),
            len(folds.groups[k]),
        )
        model = build(k)
        results.append(train(model, train_w, val_w, config, device=device))
        member = serving_model(model)
        members.append(member)
        oof_logits.append(predict_logits(member, val_w))
        oof_parts.append(val_w)
    oof = Windows.concat(oof_parts)
    return Ensemble(average_model(members), np.concatenate(oof_logits), oof, results)


MEMBER_SEED_STEP = 1000  # member k of seed s: seed s + 1000 k (weights and batch order)


def train_members(
    build: Callable[[int], Model],
    train_w: Windows,
    val_w: Windows,
    config: TrainConfig,
    members: int,
    device: tuple[str, str] | None = None,
) -> Ensemble:
    """Train ``members`` copies of one network on the same windows, served as one model.

    ``build(k)`` makes member k (its weights seeded ``config.seed + 1000 k`` by the
    caller); its batch order and dropout are seeded the same way. Every member
    early-stops on ``val_w``, and the returned logits are the mean model's on ``val_w``.
    With one member this is plain training: the model is served as it is.
    """
    if members < 1:
        raise DataError(f"members must be >= 1. Received: members={members}")
    trained: list[Model] = []
    results: list[TrainResult] = []
    for k in range(members):
        if members > 1:
            log.info("member %d/%d", k + 1, members)
        model = build(k)
        member_config = replace(config, seed=config.seed + MEMBER_SEED_STEP * k)
        results.append(train(model, train_w, val_w, member_config, device=device))
        trained.append(serving_model(model))
    model = trained[0] if members == 1 else average_model(trained)
    return Ensemble(model, predict_logits(model, val_w), val_w, results)
