"""The fitted feature spec: windowing rules + regimes + normalization, saved with a model.

A :class:`FeatureSpec` is fitted on training step features (:func:`fit_spec`). It holds the
:class:`~features.config.WindowConfig`, the sequence length ``L``, the operating regimes
(k-means centres over the step means of some operating-setting sensors, as fleets such as
C-MAPSS FD002/FD004 run under several conditions) and per-regime mean and standard
deviation of every feature. It serializes to JSON, and :meth:`FeatureSpec.check` refuses a
configuration that differs, naming what differs.

>>> import numpy as np, pandas as pd
>>> from features.config import WindowConfig
>>> cfg = WindowConfig(sensors=("a",), step_ms=1000, aggregates=("mean",), derived=())
>>> X = np.array([[1.0, 0, 0, 0], [3.0, 0, 0, 0]])
>>> spec = fit_spec(X, cfg, sequence_length=2)
>>> normalize(spec, X)[:, 0].tolist()
[-1.0, 1.0]
>>> FeatureSpec.from_json(spec.to_json()) == spec
True
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from features.config import FeatureConfigError, WindowConfig

F64 = NDArray[np.float64]
SPEC_VERSION = 1
_STATS_COLUMNS = 16  # columns per block of fit statistics (memory: a block's temporaries)


class FeatureSpecMismatch(FeatureConfigError):
    """A model's feature spec does not match the features being computed."""


@dataclass(frozen=True)
class FeatureSpec:
    """Everything needed to turn step features into model input, fitted on training data.

    Attributes:
        window: the windowing rules the features were computed with.
        sequence_length: L, steps per model input sequence.
        regime_sensors: sensors whose step means define the operating regime (may be empty).
        regime_centers: k-means centres in standardized regime space, one row per regime.
        regime_scale: (mean, std) per regime sensor used to standardize before assignment.
        mean: per regime, the mean of each feature, (regimes, features).
        std: per regime, the standard deviation of each feature (never 0), (regimes, features).
    """

    window: WindowConfig
    sequence_length: int
    regime_sensors: tuple[str, ...]
    regime_centers: tuple[tuple[float, ...], ...]
    regime_scale: tuple[tuple[float, float], ...]
    mean: tuple[tuple[float, ...], ...]
    std: tuple[tuple[float, ...], ...]

    @property
    def n_features(self) -> int:
        """Features per step."""
        return len(self.window.feature_names())

    @property
    def n_regimes(self) -> int:
        """Operating regimes (1 when not regime-normalized)."""
        return len(self.mean)

    def to_json(self) -> str:
        """JSON text of the spec."""
        return json.dumps(
            {
                "version": SPEC_VERSION,
                "window": self.window.to_dict(),
                "feature_names": self.window.feature_names(),
                "sequence_length": self.sequence_length,
                "regime_sensors": list(self.regime_sensors),
                "regime_centers": [list(c) for c in self.regime_centers],
                "regime_scale": [list(c) for c in self.regime_scale],
                "mean": [list(m) for m in self.mean],
                "std": [list(s) for s in self.std],
            },
            indent=1,
        )

    @classmethod
    def from_json(cls, text: str) -> FeatureSpec:
        """Parse :meth:`to_json` output; raises FeatureConfigError naming what is wrong."""
        try:
            data: dict[str, Any] = json.loads(text)
        except ValueError as exc:
            raise FeatureConfigError(f"feature spec is not JSON: {exc}") from None
        if data.get("version") != SPEC_VERSION:
            raise FeatureConfigError(
                f"feature spec version {data.get('version')!r} is not supported: "
                f"expected {SPEC_VERSION}"
            )
        try:
            spec = cls(
                window=WindowConfig.from_dict(data["window"]),
                sequence_length=int(data["sequence_length"]),
                regime_sensors=tuple(data["regime_sensors"]),
                regime_centers=tuple(tuple(float(v) for v in c) for c in data["regime_centers"]),
                regime_scale=tuple((float(a), float(b)) for a, b in data["regime_scale"]),
                mean=tuple(tuple(float(v) for v in m) for m in data["mean"]),
                std=tuple(tuple(float(v) for v in s) for s in data["std"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise FeatureConfigError(f"feature spec is incomplete or malformed: {exc!r}") from None
        if data.get("feature_names") not in (None, spec.window.feature_names()):
            raise FeatureConfigError("feature spec: feature_names do not match its window rules")
        if any(len(m) != spec.n_features for m in (*spec.mean, *spec.std)):
            raise FeatureConfigError("feature spec: statistics do not have one value per feature")
        return spec

    def fingerprint(self) -> str:
        """A short hash of the whole spec."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    def check(self, window: WindowConfig) -> None:
        """Refuse features computed with other rules than this spec was fitted on.

        Raises:
            FeatureSpecMismatch: naming the first setting that differs and both values.
        """
        if window == self.window:
            return
        mine, theirs = self.window.to_dict(), window.to_dict()
        for key in mine:
            if mine[key] != theirs.get(key):
                raise FeatureSpecMismatch(
                    f"feature setting {key!r} differs: the model was trained with "
                    f"{mine[key]!r}, the features are computed with {theirs.get(key)!r}"
                )
        raise FeatureSpecMismatch("feature settings differ")


def _regime_inputs(X: F64, window: WindowConfig, sensors: tuple[str, ...]) -> F64:
    names = window.feature_names()
    missing = [s for s in sensors if f"{s}__mean" not in names]
    if missing:
        raise FeatureConfigError(
            f"regime sensor {missing[0]!r} needs the 'mean' aggregate and to be one of the sensors"
        )
    cols = [names.index(f"{s}__mean") for s in sensors]
    return X[:, cols]


def fit_spec(
    X: F64,
    window: WindowConfig,
    sequence_length: int,
    regime_sensors: tuple[str, ...] = (),
    n_regimes: int = 1,
    seed: int = 0,
) -> FeatureSpec:
    """Fit regimes (k-means) and per-regime normalization on training step features."""
    if sequence_length < 1:
        raise FeatureConfigError(f"sequence_length must be >= 1, got {sequence_length}")
    if X.ndim != 2 or X.shape[1] != len(window.feature_names()) or len(X) == 0:
        raise FeatureConfigError(
            f"expected step features shaped (steps > 0, {len(window.feature_names())}), "
            f"got {X.shape}"
        )
    centers: tuple[tuple[float, ...], ...] = ((),)
    scale: tuple[tuple[float, float], ...] = ()
    regimes = np.zeros(len(X), dtype=np.intp)
    if regime_sensors and n_regimes > 1:
        from sklearn.cluster import KMeans

        raw = _regime_inputs(X, window, regime_sensors)
        ok = ~np.isnan(raw).any(axis=1)
        mu, sd = np.nanmean(raw[ok], axis=0), np.nanstd(raw[ok], axis=0)
        sd = np.where(sd > 0, sd, 1.0)
        km = KMeans(n_clusters=n_regimes, n_init=10, random_state=seed).fit((raw[ok] - mu) / sd)
        centers = tuple(tuple(float(v) for v in c) for c in km.cluster_centers_)
        scale = tuple((float(a), float(b)) for a, b in zip(mu, sd, strict=True))
        regimes = _nearest((raw - mu) / sd, np.array(centers))
    elif n_regimes > 1:
        raise FeatureConfigError("n_regimes > 1 needs regime_sensors")
    means, stds = [], []
    for r in range(len(centers)):
        rows = X if len(centers) == 1 else X[regimes == r]
        m, s = _column_stats(rows) if len(rows) else (np.zeros(X.shape[1]), np.ones(X.shape[1]))
        m = np.where(np.isnan(m), 0.0, m)
        s = np.where(np.isnan(s) | (s < 1e-9), 1.0, s)
        means.append(tuple(float(v) for v in m))
        stds.append(tuple(float(v) for v in s))
    return FeatureSpec(
        window,
        sequence_length,
        regime_sensors if n_regimes > 1 else (),
        centers if n_regimes > 1 else ((),),
        scale,
        tuple(means),
        tuple(stds),
    )


def _column_stats(rows: F64) -> tuple[F64, F64]:
    """``nanmean`` and ``nanstd`` of each column, a block of columns at a time.

    The temporaries (NaN-free copies, deviations) are a block's size, not the steps'.
    Each column's sums still run down its rows in the same order, so the numbers are
    those of one call over all columns.
    """
    means, stds = np.empty(rows.shape[1]), np.empty(rows.shape[1])
    # Blocks of equal width (never one column alone, which numpy would sum pairwise).
    n_blocks = max(1, -(-rows.shape[1] // _STATS_COLUMNS))
    for cols in np.array_split(np.arange(rows.shape[1]), n_blocks):
        a, b = int(cols[0]), int(cols[-1]) + 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column: NaN, handled
            means[a:b] = np.nanmean(rows[:, a:b], axis=0)
            stds[a:b] = np.nanstd(rows[:, a:b], axis=0)
    return means, stds


def _nearest(points: F64, centers: F64) -> NDArray[np.intp]:
    filled = np.where(np.isnan(points), 0.0, points)
    d = ((filled[:, None, :] - centers[None, :, :]) ** 2).sum(axis=-1)
    nearest: NDArray[np.intp] = np.argmin(d, axis=1).astype(np.intp)
    return nearest


def assign_regimes(spec: FeatureSpec, X: F64) -> NDArray[np.intp]:
    """The operating regime of each step (all 0 without regimes)."""
    if spec.n_regimes == 1:
        return np.zeros(len(X), dtype=np.intp)
    raw = _regime_inputs(X, spec.window, spec.regime_sensors)
    mu = np.array([a for a, _ in spec.regime_scale])
    sd = np.array([b for _, b in spec.regime_scale])
    return _nearest((raw - mu) / sd, np.array(spec.regime_centers))


def normalize(spec: FeatureSpec, X: F64) -> F64:
    """Standardize each step with its regime's statistics; missing values become 0."""
    regimes = assign_regimes(spec, X)
    mean, std = np.array(spec.mean), np.array(spec.std)
    Z = (X - mean[regimes]) / std[regimes]
    return np.where(np.isnan(Z), 0.0, Z)


def sequence_bounds(
    index: pd.DataFrame, length: int, min_steps: int = 1
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """Where each sequence ending at a step lies in the step rows, without building it.

    Args:
        index: ``equipment_id``, ``segment`` per step row, grouped by machine and segment
            and in time order within each (as the feature paths return them).
        length: L.
        min_steps: leave out sequences with fewer real steps than this.

    Returns:
        ``(end, first)`` of the sequences kept: the row of each one's last step and the
        first row of its machine segment (rows before it are padding). Sequence ``i`` is
        ``gather(Z, end[i:i+1], first[i:i+1], length)``; its index row is ``index.iloc[end[i]]``.

    >>> idx = pd.DataFrame({"equipment_id": ["a", "a", "b"], "segment": 0})
    >>> [r.tolist() for r in sequence_bounds(idx, length=2)]
    [[0, 1, 2], [0, 0, 2]]
    """
    n = len(index)
    if n == 0:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    group = (index["equipment_id"].astype(str) + "\x00" + index["segment"].astype(str)).to_numpy()
    new = np.r_[True, group[1:] != group[:-1]]
    rows = np.arange(n, dtype=np.int64)
    first = np.maximum.accumulate(np.where(new, rows, 0))
    keep = np.minimum(rows - first + 1, length) >= min_steps
    return rows[keep], first[keep]


def sequence_rows(
    end: NDArray[np.int64], first: NDArray[np.int64], length: int
) -> tuple[NDArray[np.int64], NDArray[np.bool_]]:
    """The step rows of the sequences ``(end, first)`` (N, L) and their mask (real steps).

    >>> [a.tolist() for a in sequence_rows(np.array([1]), np.array([1]), 3)]
    [[[-1, 0, 1]], [[False, False, True]]]
    """
    rows = end[:, None] - (length - 1) + np.arange(length)[None, :]
    return rows, rows >= first[:, None]


def gather(
    Z: NDArray[Any],
    end: NDArray[np.int64],
    first: NDArray[np.int64],
    length: int,
    out: NDArray[Any] | None = None,
) -> tuple[NDArray[Any], NDArray[np.bool_]]:
    """The sequences ``(end, first)`` of :func:`sequence_bounds` as arrays.

    Args:
        Z: step features (S, F).
        end: the row of each sequence's last step.
        first: the first row of each sequence's machine segment.
        length: L.
        out: an (N, L, F) array of Z's dtype to fill (reused across calls, it saves the
            page faults of a new large array each time).

    Returns:
        ``(S, mask)``: S is (N, L, F) in Z's dtype with zero padding at the front of
        short histories, mask is (N, L) True for real steps.
    """
    rows, mask = sequence_rows(end, first, length)
    # rows before 0 clip to row 0; padding rows are zeroed below
    S = np.take(Z, rows, axis=0, out=out, mode="clip")
    short = ~mask[:, 0]  # padding is in front: a sequence is short iff its first step is
    if short.any():
        S[short] *= mask[short][..., None]
    return S, mask


def sequences(
    Z: F64, index: pd.DataFrame, length: int, min_steps: int = 1
) -> tuple[F64, NDArray[np.bool_], pd.DataFrame]:
    """The last ``length`` steps of each machine segment ending at each step.

    Args:
        Z: normalized step features, rows in the order of ``index``.
        index: ``equipment_id``, ``segment``, ``step_start`` per row, grouped by machine
            and segment and in time order within each (as the feature paths return them).
        length: L.
        min_steps: drop sequences with fewer real steps than this.

    Returns:
        ``(S, mask, seq_index)``: S is (N, L, F) with zero padding at the front of short
        histories, mask is (N, L) True for real steps, seq_index the index rows of the
        sequences' last steps.
    """
    if len(Z) != len(index):
        raise FeatureConfigError(f"Z has {len(Z)} rows but index has {len(index)}")
    if len(Z) == 0:
        return (
            np.empty((0, length, Z.shape[1] if Z.ndim == 2 else 0)),
            np.empty((0, length), bool),
            index,
        )
    end, first = sequence_bounds(index, length, min_steps)
    S, mask = gather(Z, end, first, length)
    return S, mask, index.iloc[end].reset_index(drop=True)
