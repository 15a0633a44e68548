"""A model ready to serve: loaded, checked, warmed up, scoring fixed-shape batches.

Every model call gets a batch of one of a few pinned sizes (:func:`buckets`, up to the
maximum batch), padded with empty windows, so the backend compiles each shape once and a
window's result does not depend on how many others share its call (checked in
``tests/models/test_servable.py``: a window scores bit-identically alone, in a full
batch, at any position).

Attribution is occlusion over sensor groups: for a window, each sensor's features are
replaced by their normalized mean (0) over the whole window, and the drop of the logit is
that sensor's contribution; shares are the clipped (>= 0) drops divided by their sum, the
top :data:`TOP_K` are kept (floored to 4 decimals, so they sum to at most 1). A window
whose drops are not all finite (features near float32's limit overflow a logit: its shares
would be NaN) gets no top sensors, as one whose logit no sensor lowers. It costs one
extra window per sensor and is only computed for windows whose probability reaches
``attribution_fraction`` x the alert threshold; others get an empty ``top_sensors``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from features.config import WindowConfig
from models import backend
from models.artifact import Artifact, load_artifact
from models.buffers import age_column
from models.errors import ArtifactError
from models.evaluation import sigmoid
from models.registry import artifact_version

TOP_K = 3
F32 = NDArray[np.float32]


def buckets(max_batch: int) -> tuple[int, ...]:
    """Pinned batch sizes: powers of 4 from 16 below ``max_batch``, then ``max_batch``.

    >>> buckets(1), buckets(64), buckets(1000)
    ((1,), (16, 64), (16, 64, 256, 1000))
    """
    sizes = [b for b in (4**k for k in range(2, 12)) if b < max_batch]
    return (*sizes, max_batch)


@dataclass
class Servable:
    """A loaded artifact with its version, scoring on one device.

    Attributes:
        artifact: the model, spec and meta.
        version: the artifact's content version (:func:`models.registry.artifact_version`).
        path: where it was loaded from.
        device: the Keras device name (``cpu:0``, ``gpu:0``).
        max_batch: the largest batch of one model call.
    """

    artifact: Artifact
    version: str
    path: Path
    device: str
    max_batch: int

    def __post_init__(self) -> None:
        names = self.artifact.spec.window.feature_names()
        self.sizes = buckets(self.max_batch)
        self.groups = [
            (s, np.array([i for i, n in enumerate(names) if n.split("__", 1)[0] == s]))
            for s in self.artifact.spec.window.sensors
        ]
        self.calls = 0
        self.call_seconds = 0.0
        self._padded: dict[tuple[int, ...], tuple[F32, NDArray[np.bool_]]] = {}

    @property
    def length(self) -> int:
        """L."""
        return self.artifact.spec.sequence_length

    def inputs(self, x: F32, mask: NDArray[np.bool_], ages: NDArray[np.int64]) -> F32:
        """The model's feature input: ``x`` plus the age column when the model has one."""
        scale = self.artifact.meta.age_scale
        if scale is None:
            return x
        return np.concatenate([x, age_column(ages, mask, scale)[..., None]], axis=2)

    def logits(self, x: F32, mask: NDArray[np.bool_]) -> F32:
        """Logits of N windows in calls of pinned sizes (padded with empty windows).

        A call that fills its size takes its slice of ``x`` as it is (with no copy at all
        when ``x`` is 64-byte aligned, :func:`models.backend.host_input`); a shorter one is
        copied into a padded buffer kept per shape and reused. So one thread at a time: the
        scorer's model thread, or the loader warming up a new model.
        """
        out = np.empty(len(x), dtype=np.float32)
        for lo in range(0, len(x), self.max_batch):
            n = min(self.max_batch, len(x) - lo)
            size = next(b for b in self.sizes if b >= n)
            if n == size:
                bx, bm = x[lo : lo + n], mask[lo : lo + n]
            else:
                bx, bm = self._pad_buffers(size, x.shape[1:])
                bx[:n], bm[:n] = x[lo : lo + n], mask[lo : lo + n]
                bx[n:], bm[n:] = 0.0, False
            out[lo : lo + n] = self._call(bx, bm)[:n]
        return out

    def _call(self, bx: F32, bm: NDArray[np.bool_]) -> F32:
        """One model call on a batch of a pinned size."""
        keras = backend.keras()
        start = time.perf_counter()
        with keras.device(self.device):
            got = self.artifact.model.predict_on_batch(
                {"features": backend.host_input(bx, self.device), "mask": bm}
            )
        if isinstance(got, dict):
            got = got["logit"]
        self.call_seconds += time.perf_counter() - start
        self.calls += 1
        return np.asarray(got, dtype=np.float32).reshape(-1)

    def _pad_buffers(self, size: int, tail: tuple[int, ...]) -> tuple[F32, NDArray[np.bool_]]:
        key = (size, *tail)
        if key not in self._padded:
            self._padded[key] = (
                backend.aligned_empty((size, *tail)),
                np.zeros((size, tail[0]), bool),
            )
        return self._padded[key]

    def probability(self, logits: F32) -> NDArray[np.float64]:
        """Calibrated probabilities."""
        a, b = self.artifact.meta.calibration
        return sigmoid(a * logits.astype(np.float64) + b)

    def attribute(
        self, x: F32, mask: NDArray[np.bool_], logits: F32
    ) -> list[tuple[tuple[str, float], ...]]:
        """Top sensors of each window by occlusion (see the module doc)."""
        n, groups = len(x), self.groups
        if n == 0:
            return []
        occluded = self._occluded(x, mask)
        with np.errstate(invalid="ignore", over="ignore"):  # inf - inf: no top sensors below
            drops = np.maximum((logits[:, None] - occluded).astype(np.float64), 0.0)
        out: list[tuple[tuple[str, float], ...]] = []
        for row in drops:
            total = row.sum()
            if not 0 < total < math.inf:  # nothing dropped, or a logit beyond float32: none
                out.append(())
                continue
            order = np.argsort(-row, kind="stable")[:TOP_K]
            top = [(groups[i][0], math.floor(row[i] / total * 1e4) / 1e4) for i in order]
            out.append(tuple((s, v) for s, v in top if v > 0))
        return out

    def _occluded(self, x: F32, mask: NDArray[np.bool_]) -> F32:
        """(N, sensors) logits of each window with each sensor's features zeroed.

        The copies are written straight into the padded call buffers, a whole number of
        windows per call (each window's copies side by side), not built and then copied.
        """
        n, g_count = len(x), len(self.groups)
        if g_count > self.max_batch:  # not even one window's copies fit in one call
            occluded = np.empty((n * g_count, *x.shape[1:]), np.float32)
            self._fill_copies(occluded.reshape(n, g_count, *x.shape[1:]), x)
            return self.logits(occluded, np.repeat(mask, g_count, 0)).reshape(n, g_count)
        per_call = self.max_batch // g_count
        out = np.empty((n, g_count), np.float32)
        for lo in range(0, n, per_call):
            k = min(per_call, n - lo)
            rows = k * g_count
            size = next(b for b in self.sizes if b >= rows)
            bx, bm = self._pad_buffers(size, x.shape[1:])
            self._fill_copies(bx[:rows].reshape(k, g_count, *x.shape[1:]), x[lo : lo + k])
            bm[:rows].reshape(k, g_count, -1)[:] = mask[lo : lo + k, None]
            bx[rows:], bm[rows:] = 0.0, False
            out[lo : lo + k] = self._call(bx, bm)[:rows].reshape(k, g_count)
        return out

    def _fill_copies(self, copies: F32, x: F32) -> None:
        """``copies[i, g]`` = window ``x[i]`` with sensor group g's features zeroed."""
        copies[:] = x[:, None]
        for g, (_, cols) in enumerate(self.groups):
            copies[:, g, :, cols] = 0.0

    def warm_up(self) -> None:
        """One call per pinned size on empty windows (compiles every shape now)."""
        f = self.artifact.spec.n_features + (self.artifact.meta.age_scale is not None)
        for size in self.sizes:
            self.logits(
                np.zeros((size, self.length, f), np.float32), np.zeros((size, self.length), bool)
            )
        self.calls, self.call_seconds = 0, 0.0


def load_servable(path: Path, window: WindowConfig, device: str, max_batch: int) -> Servable:
    """Load, check against the feature rules, warm up.

    Raises:
        ArtifactError: unreadable, other feature rules (``ArtifactMismatch``), or the model
            does not take this spec's windows (the warm-up call fails).
    """
    version = artifact_version(path)
    keras = backend.keras()
    with keras.device(device):
        artifact = load_artifact(path, window)
    servable = Servable(artifact, version, Path(path), device, max_batch)
    try:
        servable.warm_up()
    except Exception as exc:  # any backend error means: cannot serve it
        raise ArtifactError(
            f"{path}: the model cannot score this spec's windows ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''})"
        ) from exc
    return servable


def describe(servable: Servable) -> dict[str, Any]:
    """What a log line says about a model."""
    meta = servable.artifact.meta
    return {
        "version": servable.version,
        "L": servable.length,
        "horizon_steps": meta.horizon_steps,
        "min_steps": meta.min_steps,
        "threshold": meta.threshold,
        "age": meta.age_scale is not None,
    }
