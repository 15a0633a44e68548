"""From telemetry to labelled model input windows (L steps x F features, with a mask).

The pipeline is the features package's: :func:`features.offline.step_features_frame`
(complete histories), :func:`features.spec.fit_spec` on the training machines only,
:func:`features.spec.normalize`, :func:`features.spec.sequence_bounds`; then
:func:`models.labels.window_labels`. A :class:`Windows` keeps the normalized steps and
where each window lies in them; the (N, L, F) inputs are gathered batch by batch
(:func:`features.spec.gather`), so a fleet's history costs its steps, not L times them.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from features.config import WindowConfig
from features.offline import step_features_frame
from features.spec import (
    FeatureSpec,
    fit_spec,
    gather,
    normalize,
    sequence_bounds,
    sequence_rows,
)
from models.errors import DataError
from models.labels import window_labels

F64 = NDArray[np.float64]

_NORMALIZE_ROWS = 65_536
_STEP_ROWS = 1 << 18  # readings per step_features part (its temporaries are ~3x)


@dataclass(frozen=True)
class Windows:
    """Model inputs and labels, gathered from the step features when needed.

    A window is the ``length`` rows of ``steps`` ending at row ``end``; rows before
    ``first`` (where its machine segment starts) are padding: zero and masked. Only the
    step array is held, so memory grows with the steps (S x F), not with the windows
    times L; :meth:`inputs` builds the (n, L, F) input of some windows, and training and
    scoring go through long sets in batches.

    Attributes:
        steps: (S, F) float32 normalized step features, shared by selections.
        end: (N,) row in ``steps`` of each window's last step.
        first: (N,) first row of each window's machine segment.
        length: L.
        y: (N,) float32 labels (NaN where unknown, e.g. scoring without events).
        index: per window its last step: ``equipment_id``, ``step_start``, ``step_end``.
        aux: (N, K) labels for K auxiliary horizons (training only), or None.
    """

    steps: NDArray[np.float32]
    end: NDArray[np.int64]
    first: NDArray[np.int64]
    length: int
    y: NDArray[np.float32]
    index: pd.DataFrame
    aux: NDArray[np.float32] | None = None

    @classmethod
    def from_arrays(
        cls,
        x: NDArray[np.float32],
        mask: NDArray[np.bool_],
        y: NDArray[np.float32],
        index: pd.DataFrame,
        aux: NDArray[np.float32] | None = None,
    ) -> Windows:
        """Windows from built (N, L, F) inputs whose masks pad in front only."""
        n, length = mask.shape
        real = mask.sum(axis=1)
        if not np.array_equal(mask, np.arange(length)[None, :] >= (length - real)[:, None]):
            raise ValueError("mask must be False only for leading (padding) steps")
        end = np.arange(n, dtype=np.int64) * length + length - 1
        steps = np.where(mask[..., None], x, 0.0).astype(np.float32).reshape(n * length, -1)
        return cls(steps, end, end - real + 1, length, y, index, aux)

    def __len__(self) -> int:
        return len(self.y)

    @property
    def n_features(self) -> int:
        """F: features per step."""
        return int(self.steps.shape[1])

    @property
    def mask(self) -> NDArray[np.bool_]:
        """(N, L) True for real steps (short histories are padded in front)."""
        return sequence_rows(self.end, self.first, self.length)[1]

    @property
    def x(self) -> NDArray[np.float32]:
        """(N, L, F) inputs of every window, built now: for small sets (tests, plots)."""
        x, _ = gather(self.steps, self.end, self.first, self.length)
        return x

    def inputs(
        self,
        rows: slice | NDArray[np.intp] | None = None,
        out: NDArray[np.float32] | None = None,
    ) -> dict[str, NDArray[np.float32] | NDArray[np.bool_]]:
        """The model's input dict of the windows ``rows`` (default all), built now.

        ``out``: an (n, L, F) float32 array to build the features in (see
        :func:`features.spec.gather`); it is overwritten by the next call that reuses it.
        """
        pick = slice(None) if rows is None else rows
        x, mask = gather(self.steps, self.end[pick], self.first[pick], self.length, out)
        return {"features": x, "mask": mask}

    def select(self, rows: NDArray[np.bool_] | NDArray[np.intp]) -> Windows:
        """A subset of the windows (sharing the step array)."""
        return replace(
            self,
            end=self.end[rows],
            first=self.first[rows],
            y=self.y[rows],
            index=self.index.iloc[rows].reset_index(drop=True),
            aux=None if self.aux is None else self.aux[rows],
        )

    @classmethod
    def concat(cls, parts: list[Windows]) -> Windows:
        """The windows of ``parts`` in order; they must share one step array."""
        base = parts[0]
        if any(p.steps is not base.steps or p.length != base.length for p in parts):
            raise ValueError("Windows.concat: the parts must share one step array and L")
        aux = [p.aux for p in parts if p.aux is not None]
        return replace(
            base,
            end=np.concatenate([p.end for p in parts]),
            first=np.concatenate([p.first for p in parts]),
            y=np.concatenate([p.y for p in parts]),
            index=pd.concat([p.index for p in parts], ignore_index=True),
            aux=np.concatenate(aux) if len(aux) == len(parts) else None,
        )

    def machines(self) -> list[str]:
        """The machines present, sorted."""
        return sorted(self.index["equipment_id"].astype(str).unique())


@dataclass(frozen=True)
class Steps:
    """Step features of a fleet: X (steps, features) and its index."""

    X: F64
    index: pd.DataFrame


def step_features(telemetry: pd.DataFrame, window: WindowConfig) -> Steps:
    """Feature vectors of every step of complete histories.

    Built for groups of machines of about ``_STEP_ROWS`` readings at a time (machines are
    independent), so the builder's temporaries stay bounded; the result is the same as
    one call over the whole history, segment numbers included.
    """
    return StepParts.build(telemetry, window).steps()


@dataclass
class StepParts:
    """Step features built for groups of machines, not yet put together.

    :meth:`steps` puts them into one array, :meth:`split` into one per set of machines
    (training and validation machines): the parts are copied into a buffer whose pages
    are written only as each part arrives, and each part is freed once copied, so the
    whole costs about its steps once, not twice (a concatenation, or a split by copying
    rows).
    """

    parts: list[tuple[F64, pd.DataFrame]]
    index: pd.DataFrame  # all steps, segment numbers running on across parts

    @classmethod
    def build(cls, telemetry: pd.DataFrame, window: WindowConfig) -> StepParts:
        """Build every part; refuses a history that yields no steps."""
        parts = [
            step_features_frame(part, window, complete=True) for part in _machine_parts(telemetry)
        ]
        index = _renumbered([i for _, i in parts])
        if len(index) == 0:
            raise DataError("the telemetry yields no feature steps (no readings of the sensors?)")
        return cls(parts, index)

    def machines(self) -> list[str]:
        """The machines with steps, sorted."""
        return sorted(self.index["equipment_id"].astype(str).unique())

    def steps(self) -> Steps:
        """All the steps in one array (consumes the parts)."""
        if len(self.parts) == 1:
            X, _ = self.parts.pop()
            return Steps(X, self.index)
        return self._assemble([np.ones(len(self.index), dtype=bool)], [self.index])[0]

    def split(self, *groups: list[str]) -> list[Steps]:
        """The steps of each set of machines, in their order among all steps.

        The sets' arrays are consecutive slices of one buffer (consumes the parts).
        """
        ids = self.index["equipment_id"].astype(str)
        masks = [ids.isin(g).to_numpy() for g in groups]
        return self._assemble(masks, [self.index.iloc[m].reset_index(drop=True) for m in masks])

    def _assemble(self, masks: list[NDArray[np.bool_]], indexes: list[pd.DataFrame]) -> list[Steps]:
        width = self.parts[0][0].shape[1]
        sizes = [int(m.sum()) for m in masks]
        buffer = np.empty((sum(sizes), width))  # its pages are written as the parts arrive
        starts = np.r_[0, np.cumsum(sizes)[:-1]].astype(int).tolist()
        at, row = list(starts), 0
        while self.parts:
            X, _ = self.parts.pop(0)
            for g, mask in enumerate(masks):
                mine = mask[row : row + len(X)]
                n = int(mine.sum())
                buffer[at[g] : at[g] + n] = X if n == len(X) else X[mine]
                at[g] += n
            row += len(X)
            del X  # memory: each part is freed once copied
        return [
            Steps(buffer[a : a + n], index)
            for a, n, index in zip(starts, sizes, indexes, strict=True)
        ]


def _machine_parts(telemetry: pd.DataFrame) -> list[pd.DataFrame]:
    """The telemetry in groups of whole machines, in sorted id order.

    Each group holds about ``_STEP_ROWS`` readings (at least one machine); a small history,
    or one without a machine column (refused by the builder), is one group.
    """
    if len(telemetry) <= _STEP_ROWS or "equipment_id" not in telemetry.columns:
        return [telemetry]
    codes, _ = pd.factorize(telemetry["equipment_id"].astype(str), sort=True)
    order = np.argsort(codes, kind="stable")
    ends = np.cumsum(np.bincount(codes))  # where each machine's readings end in ``order``
    parts, start = [], 0
    while start < len(order):
        within = int(np.searchsorted(ends, start + _STEP_ROWS, "right"))  # ends[:within] fit
        if within > 0 and ends[within - 1] > start:
            stop = int(ends[within - 1])
        else:  # the next machine alone is larger: it is a group of its own
            stop = int(ends[np.searchsorted(ends, start, "right")])
        parts.append(telemetry.iloc[order[start:stop]])
        start = stop
    return parts


def _renumbered(indexes: list[pd.DataFrame]) -> pd.DataFrame:
    """The parts' step indexes as one, segment numbers running on across parts."""
    if len(indexes) == 1:
        return indexes[0]
    offset, out = 0, []
    for index in indexes:
        out.append(index.assign(segment=index["segment"] + offset))
        if len(index):
            offset += int(index["segment"].max()) + 1
    return pd.concat(out, ignore_index=True)


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
    # normalized chunk by chunk (row by row, the same numbers) into one float32 array: the
    # history is held once more, at half its size, not as float64 temporaries
    width = spec.n_features + (age_scale is not None)
    Z = np.empty((len(steps.X), width), dtype=np.float32)
    for start in range(0, len(Z), _NORMALIZE_ROWS):
        rows = slice(start, start + _NORMALIZE_ROWS)
        Z[rows, : spec.n_features] = normalize(spec, steps.X[rows])
    if age_scale is not None:
        Z[:, -1] = step_age(steps.index) / age_scale
    end, first = sequence_bounds(steps.index, spec.sequence_length, min_steps=min_steps)
    index = steps.index.iloc[end].reset_index(drop=True)
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
    windows = Windows(Z, end, first, spec.sequence_length, y, index, aux)
    return windows if keep.all() else windows.select(keep)
