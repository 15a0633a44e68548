"""The arithmetic shared by the offline and the streaming path.

Readings of one sensor in one step are summarised by *partials* that merge by addition
(count, sums, min, max, last): both paths build partials their own way (a pandas
group-by, or incremental updates) and then call the same two functions, so training and
serving compute identical features:

- :func:`window_partials` merges the partials of the last ``window_steps`` steps;
- :func:`step_features` turns merged partials plus the carried state of each machine
  into the feature vector of one step, and returns the new carried state;
- :func:`silent_steps` tells, from the vectors alone, which steps had no reading at all.

Times inside partials are seconds since the start of their step, so sums stay small.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from features.config import FLAGS, WindowConfig

F64 = NDArray[np.float64]

# Layout of the last axis of a partials array: count, mean and centred second moments
# of value and time and their co-moment (merged with Chan et al.'s parallel formulas, which
# stay accurate where raw sums of squares cancel), extremes, and LAST: the mean of the
# readings at the latest time LAST_T (LAST_N of them), so ties do not depend on order.
N, MEAN, M2, MIN, MAX, LAST, LAST_T, LAST_N, MEAN_T, M2_T, C_TY = range(11)
WIDTH = 11


def merge_moments(a: F64, b: F64) -> None:
    """Merge the moments of partials ``b`` into ``a`` in place (count, means, M2s, co-moment).

    Extremes and LAST are left to the caller.
    """
    na, nb = a[..., N], b[..., N]
    n = na + nb
    safe = np.where(n > 0, n, 1.0)
    dy = b[..., MEAN] - a[..., MEAN]
    dt = b[..., MEAN_T] - a[..., MEAN_T]
    w = na * nb / safe
    both = (na > 0) & (nb > 0)
    a[..., M2] = np.where(both, a[..., M2] + b[..., M2] + dy * dy * w, a[..., M2] + b[..., M2])
    a[..., M2_T] = np.where(
        both, a[..., M2_T] + b[..., M2_T] + dt * dt * w, a[..., M2_T] + b[..., M2_T]
    )
    a[..., C_TY] = np.where(
        both, a[..., C_TY] + b[..., C_TY] + dt * dy * w, a[..., C_TY] + b[..., C_TY]
    )
    a[..., MEAN] = np.where(
        nb > 0, np.where(na > 0, a[..., MEAN] + dy * nb / safe, b[..., MEAN]), a[..., MEAN]
    )
    a[..., MEAN_T] = np.where(
        nb > 0, np.where(na > 0, a[..., MEAN_T] + dt * nb / safe, b[..., MEAN_T]), a[..., MEAN_T]
    )
    a[..., N] = n


def empty_partials(shape: tuple[int, ...]) -> F64:
    """Partials of no readings: zero sums, +inf/-inf extremes, NaN last.

    >>> p = empty_partials((2,))
    >>> p.shape, float(p[0, MIN]), float(p[0, MAX])
    ((2, 11), inf, -inf)
    """
    p = np.zeros((*shape, WIDTH))  # n = 0, zero means and moments
    p[..., MIN] = np.inf
    p[..., MAX] = -np.inf
    p[..., LAST] = np.nan
    p[..., LAST_T] = -np.inf
    return p


def window_partials(steps: F64, step_s: float) -> F64:
    """Merge partials over the step axis (axis -3) into one window.

    Args:
        steps: partials shaped (..., W, S, WIDTH), oldest step first.
        step_s: step length in seconds (times are re-based to the window start).

    Returns:
        Partials shaped (..., S, WIDTH) with times relative to the first step's start.
    """
    w = steps.shape[-3]
    shift = (np.arange(w, dtype=np.float64) * step_s)[:, None]  # (W, 1)
    n = steps[..., N]
    out = steps[..., 0, :, :].copy()
    for j in range(1, w):
        part = steps[..., j, :, :].copy()
        part[..., MEAN_T] += shift[j]
        merge_moments(out, part)
    out[..., MIN] = steps[..., MIN].min(axis=-2)
    out[..., MAX] = steps[..., MAX].max(axis=-2)
    last_t = np.where(n > 0, steps[..., LAST_T] + shift, -np.inf)
    newest = np.argmax(last_t, axis=-2)  # the most recent step with readings
    out[..., LAST_T] = np.take_along_axis(last_t, newest[..., None, :], axis=-2)[..., 0, :]
    out[..., LAST] = np.take_along_axis(steps[..., LAST], newest[..., None, :], axis=-2)[..., 0, :]
    out[..., LAST_N] = np.take_along_axis(steps[..., LAST_N], newest[..., None, :], axis=-2)[
        ..., 0, :
    ]
    return out


@dataclass
class Carry:
    """What each machine carries from one step to the next, per sensor.

    Attributes:
        last_value: the sensor's most recent reading (NaN if none yet).
        last_ts_ms: event time of that reading (NaN if none yet).
        gap_run: steps in a row without a reading.
        prev_mean: the (possibly filled) mean of the previous step (NaN if none).
    """

    last_value: F64
    last_ts_ms: F64
    gap_run: F64
    prev_mean: F64

    @classmethod
    def fresh(cls, shape: tuple[int, ...]) -> Carry:
        """The state of machines that have not been seen yet."""
        nan = np.full(shape, np.nan)
        return cls(nan.copy(), nan.copy(), np.zeros(shape), nan.copy())

    def take(self, rows: NDArray[np.intp]) -> Carry:
        """The carried state of some machines (first axis)."""
        return Carry(
            self.last_value[rows], self.last_ts_ms[rows], self.gap_run[rows], self.prev_mean[rows]
        )

    def put(self, rows: NDArray[np.intp], other: Carry) -> None:
        """Store the carried state of some machines."""
        self.last_value[rows] = other.last_value
        self.last_ts_ms[rows] = other.last_ts_ms
        self.gap_run[rows] = other.gap_run
        self.prev_mean[rows] = other.prev_mean


def step_features(
    window: F64,
    newest: F64,
    step_start_ms: NDArray[np.int64],
    carry: Carry,
    config: WindowConfig,
) -> tuple[F64, Carry]:
    """Feature vectors of one step for a batch of machines.

    Args:
        window: merged partials of the window ending with this step, (B, S, WIDTH).
        newest: partials of this step alone, (B, S, WIDTH) (for the carried state).
        step_start_ms: start of this step per machine, (B,).
        carry: state carried from the previous step, arrays (B, S).
        config: the feature rules.

    Returns:
        ``(vectors (B, S * config.per_sensor), new_carry)``; missing values are NaN.
    """
    n = window[..., N]
    has = n > 0
    safe_n = np.where(has, n, 1.0)
    mean = np.where(has, window[..., MEAN], np.nan)
    std = np.where(has, np.sqrt(np.maximum(window[..., M2], 0.0) / safe_n), np.nan)
    constant = window[..., MAX] == window[..., MIN]  # exact in any order: no spread, no trend
    std = np.where(constant, 0.0, std)
    spread = window[..., M2_T]
    # Readings at two or more distinct times: event times have ms resolution, so a real
    # spread is >= 5e-7 s^2; below 1e-9 it is rounding noise of identical times.
    ok = (spread > 1e-9) & ~constant
    slope = np.where(ok, window[..., C_TY] / np.where(ok, spread, 1.0), 0.0)
    slope = np.where(has, slope, np.nan)
    low = np.where(has, window[..., MIN], np.nan)
    high = np.where(has, window[..., MAX], np.nan)
    last = np.where(has, window[..., LAST], np.nan)

    # Gaps: repeat the last known value for a few steps, flagged; then missing.
    step_has = newest[..., N] > 0
    gap_run = np.where(step_has, 0.0, carry.gap_run + 1)
    can_fill = ~has & (gap_run <= config.max_fill_steps) & ~np.isnan(carry.last_value)
    filled = can_fill.astype(np.float64)
    for values in (mean, low, high, last):
        np.copyto(values, carry.last_value, where=can_fill)
    std = np.where(can_fill, 0.0, std)
    slope = np.where(can_fill, 0.0, slope)

    end_ms = (step_start_ms + config.step_ms).astype(np.float64)[:, None]
    last_value = np.where(step_has, newest[..., LAST], carry.last_value)
    last_ts = np.where(
        step_has,
        step_start_ms.astype(np.float64)[:, None] + newest[..., LAST_T] * 1000.0,
        carry.last_ts_ms,
    )
    columns: dict[str, F64] = {
        "mean": mean,
        "std": std,
        "min": low,
        "max": high,
        "last": last,
        "slope": slope,
        "count": n,
        "delta": mean - carry.prev_mean,
        "since_last": np.fmin((end_ms - last_ts) / 1000.0, _since_cap(config)),
        "filled": filled,
        "stuck": ((n >= config.stuck_min_count) & (window[..., MAX] == window[..., MIN])).astype(
            np.float64
        ),
        "out_of_range": _out_of_range(window, config),
    }
    parts = [columns[name] for name in (*config.aggregates, *config.derived, *FLAGS)]
    vectors = np.stack(parts, axis=-1).reshape(window.shape[0], -1)
    return vectors, Carry(last_value, last_ts, gap_run, mean.copy())


def silent_steps(vectors: F64, config: WindowConfig) -> NDArray[np.bool_]:
    """Which step vectors (rows) had no reading of any sensor in their window.

    Such a step is emitted all the same (gaps are explicit: filled for ``max_fill_steps``,
    then missing), e.g. while a machine is down between a failure and its repair, or when
    its messages were lost. A sensor had no reading when it is flagged ``filled`` or its
    first aggregate is missing (NaN; a ``count`` of 0 when that is the first aggregate).
    The scorer does not score a silent step, and ``plantwatch evaluate`` replays tickets
    without them, the same way.

    >>> config = WindowConfig(sensors=("a", "b"), aggregates=("mean",), derived=())
    >>> nan = float("nan")
    >>> rows = [[1.0, 0, 0, 0, nan, 0, 0, 0], [1.0, 1, 0, 0, 2.0, 1, 0, 0], [nan, 0, 0, 0] * 2]
    >>> silent_steps(np.array(rows), config).tolist()  # mean, filled, stuck, out_of_range
    [False, True, True]
    """
    per_sensor = vectors.reshape(len(vectors), len(config.sensors), config.per_sensor)
    first = per_sensor[..., 0]
    empty = (first == 0.0) if config.aggregates[0] == "count" else np.isnan(first)
    filled = per_sensor[..., len(config.aggregates) + len(config.derived)] == 1.0
    silent: NDArray[np.bool_] = np.all(empty | filled, axis=1)
    return silent


def _since_cap(config: WindowConfig) -> float:
    """Where ``since_last`` saturates (seconds).

    Beyond the fill horizon the exact age no longer matters, and capping it keeps every
    feature a function of a bounded history, which is what makes replay exact.
    """
    return (config.max_fill_steps + 2) * config.step_ms / 1000.0


def _out_of_range(window: F64, config: WindowConfig) -> F64:
    flags = np.zeros(window.shape[:-1])
    for i, sensor in enumerate(config.sensors):
        bounds = config.ranges.get(sensor)
        if bounds is not None:
            has = window[:, i, N] > 0
            flags[:, i] = has & ((window[:, i, MIN] < bounds[0]) | (window[:, i, MAX] > bounds[1]))
    return flags
