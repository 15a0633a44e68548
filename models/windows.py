"""From telemetry to labelled model input windows (L steps x F features, with a mask).

The pipeline is the features package's: :func:`features.offline.step_features_frame`
(complete histories), :func:`features.spec.fit_spec` on the training machines only,
:func:`features.spec.normalize`, :func:`features.spec.sequences`; then
:func:`models.labels.window_labels`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from features.config import WindowConfig
from features.offline import step_features_frame
from features.spec import FeatureSpec, fit_spec, normalize, sequences
from models.errors import DataError
from models.labels import window_labels

F64 = NDArray[np.float64]


@dataclass(frozen=True)
class Windows:
    """Model inputs and labels.

    Attributes:
        x: (N, L, F) float32 normalized features, zero where masked.
        mask: (N, L) bool, True for real steps (short histories are padded in front).
        y: (N,) float32 labels (NaN where unknown, e.g. scoring without events).
        index: per window its last step: ``equipment_id``, ``step_start``, ``step_end``.
        aux: (N, K) labels for K auxiliary horizons (training only), or None.
    """

    x: NDArray[np.float32]
    mask: NDArray[np.bool_]
    y: NDArray[np.float32]
    index: pd.DataFrame
    aux: NDArray[np.float32] | None = None

    def __len__(self) -> int:
        return len(self.y)

    def inputs(self) -> dict[str, NDArray[np.float32] | NDArray[np.bool_]]:
        """The model's input dict."""
        return {"features": self.x, "mask": self.mask}

    def select(self, rows: NDArray[np.bool_] | NDArray[np.intp]) -> Windows:
        """A subset of the windows."""
        return Windows(
            self.x[rows],
            self.mask[rows],
            self.y[rows],
            self.index.iloc[rows].reset_index(drop=True),
            None if self.aux is None else self.aux[rows],
        )

    def machines(self) -> list[str]:
        """The machines present, sorted."""
        return sorted(self.index["equipment_id"].astype(str).unique())


@dataclass(frozen=True)
class Steps:
    """Step features of a fleet: X (steps, features) and its index."""

    X: F64
    index: pd.DataFrame

    def of(self, machines: list[str]) -> Steps:
        """The steps of some machines."""
        rows = self.index["equipment_id"].isin(machines).to_numpy()
        return Steps(self.X[rows], self.index.iloc[rows].reset_index(drop=True))


def step_features(telemetry: pd.DataFrame, window: WindowConfig) -> Steps:
    """Feature vectors of every step of complete histories."""
    X, index = step_features_frame(telemetry, window, complete=True)
    if len(X) == 0:
        raise DataError("the telemetry yields no feature steps (no readings of the sensors?)")
    return Steps(X, index)


def fit(steps: Steps, window: WindowConfig, sequence_length: int) -> FeatureSpec:
    """Fit the feature spec (normalization) on training steps only."""
    return fit_spec(steps.X, window, sequence_length=sequence_length)


def step_age(index: pd.DataFrame) -> NDArray[np.float64]:
    """Steps since the start of each row's machine segment (0 for the first step).

    >>> step_age(pd.DataFrame({"equipment_id": ["a", "a", "b"], "segment": [0, 0, 1]})).tolist()
    [0.0, 1.0, 0.0]
    """
    keys = index["equipment_id"].astype(str) + "\x00" + index["segment"].astype(str)
    counts = keys.groupby(keys, sort=False).cumcount().to_numpy()
    return np.asarray(counts, dtype=np.float64)


def make_windows(
    steps: Steps,
    spec: FeatureSpec,
    events: pd.DataFrame | None,
    horizon_steps: int,
    min_steps: int = 1,
    censor: bool = True,
    age_scale: float | None = None,
    aux_horizons: tuple[int, ...] = (),
) -> Windows:
    """Windows ending at every step, labelled from events (None: labels NaN, nothing dropped).

    With ``age_scale``, one feature is appended to each step: its age (steps since its
    segment started, e.g. the C-MAPSS cycle - 1) divided by ``age_scale``. With
    ``aux_horizons`` (steps), ``aux`` holds the labels for those horizons too (uncensored;
    the rows kept are those of the main horizon).
    """
    Z = normalize(spec, steps.X)
    if age_scale is not None:
        Z = np.concatenate([Z, (step_age(steps.index) / age_scale)[:, None]], axis=1)
    # float32 before windowing: the (N, L, F) array is built once, at half the size
    S, mask, index = sequences(
        Z.astype(np.float32), steps.index, spec.sequence_length, min_steps=min_steps
    )
    if events is None:
        y = np.full(len(index), np.nan, dtype=np.float32)
        keep = np.ones(len(index), dtype=bool)
    else:
        horizon_ms = horizon_steps * spec.window.step_ms
        y, keep = window_labels(index, events, horizon_ms, censor=censor)
    aux = None
    if events is not None and aux_horizons:
        step_ms = spec.window.step_ms
        aux = np.stack(
            [window_labels(index, events, h * step_ms, censor=False)[0] for h in aux_horizons],
            axis=1,
        )
    windows = Windows(S.astype(np.float32, copy=False), mask, y, index, aux)
    return windows if keep.all() else windows.select(keep)
