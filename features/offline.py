"""Offline path: a history DataFrame -> one feature vector per machine per closed step.

Vectorised: readings are sorted once, summarised per (machine, step) with numpy
``reduceat``, laid out as dense step arrays per machine segment, and finished by the same
:func:`features.core.step_features` that the streaming path calls, one step at a time
across all segments at once (a loop over steps, never over rows).

>>> import pandas as pd
>>> from features.config import WindowConfig
>>> cfg = WindowConfig(sensors=("t",), step_ms=1000, grace_ms=0, aggregates=("mean", "count"),
...                    derived=())
>>> df = pd.DataFrame({"equipment_id": ["m1"] * 4, "ts": [0, 500, 1200, 2100],
...                    "t": [1.0, 3.0, 5.0, 7.0]})
>>> X, index = step_features_frame(df, cfg)
>>> X[:, :2].tolist(), index["step_start"].tolist()
([[2.0, 2.0], [5.0, 1.0]], [0, 1000])
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from features.config import FeatureConfigError, WindowConfig
from features.core import (
    C_TY,
    LAST,
    LAST_N,
    LAST_T,
    M2,
    M2_T,
    MAX,
    MEAN,
    MEAN_T,
    MIN,
    WIDTH,
    Carry,
    N,
    empty_partials,
    step_features,
    window_partials,
)

F64 = NDArray[np.float64]
I64 = NDArray[np.int64]
_CHUNK = 256


def _partials_by_group(ts: I64, group_start_ms: I64, values: F64, starts: NDArray[np.intp]) -> F64:
    """Partials of sorted readings for groups beginning at ``starts`` (two-pass moments)."""
    valid = ~np.isnan(values)
    y = np.where(valid, values, 0.0)
    t = np.broadcast_to(((ts - group_start_ms) / 1000.0)[:, None], values.shape)
    tv = np.where(valid, t, 0.0)
    out = np.empty((len(starts), values.shape[1], WIDTH))
    add = np.add.reduceat
    group_of_row = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, len(ts))))
    n = add(valid.astype(np.float64), starts, axis=0)
    safe = np.where(n > 0, n, 1.0)
    mean = add(y, starts, axis=0) / safe
    mean_t = add(tv, starts, axis=0) / safe
    dy = np.where(valid, values - mean[group_of_row], 0.0)
    dt = np.where(valid, t - mean_t[group_of_row], 0.0)
    out[..., N] = n
    out[..., MEAN] = mean
    out[..., M2] = add(dy * dy, starts, axis=0)
    out[..., MEAN_T] = mean_t
    out[..., M2_T] = add(dt * dt, starts, axis=0)
    out[..., C_TY] = add(dt * dy, starts, axis=0)
    out[..., MIN] = np.minimum.reduceat(np.where(valid, values, np.inf), starts, axis=0)
    out[..., MAX] = np.maximum.reduceat(np.where(valid, values, -np.inf), starts, axis=0)
    last_t = np.maximum.reduceat(np.where(valid, t, -np.inf), starts, axis=0)
    out[..., LAST_T] = last_t
    at_last = valid & (t == last_t[group_of_row])
    count_last = add(at_last.astype(np.float64), starts, axis=0)
    out[..., LAST_N] = count_last
    with np.errstate(invalid="ignore", divide="ignore"):
        out[..., LAST] = np.where(
            count_last > 0, add(np.where(at_last, values, 0.0), starts, axis=0) / count_last, np.nan
        )
    return out


def _check_frame(df: pd.DataFrame, config: WindowConfig) -> None:
    missing = [c for c in ("equipment_id", "ts") if c not in df.columns]
    if missing:
        raise FeatureConfigError(f"history is missing column {missing[0]!r}")
    if not pd.api.types.is_integer_dtype(df["ts"]):
        raise FeatureConfigError(
            f"history column 'ts' must hold integer epoch milliseconds, got dtype {df['ts'].dtype}"
        )


def step_features_frame(
    df: pd.DataFrame, config: WindowConfig, complete: bool = False
) -> tuple[F64, pd.DataFrame]:
    """Feature vectors of every closed step of every machine in a history.

    Args:
        df: one row per reading time: ``equipment_id``, ``ts`` (epoch ms, int) and one
            column per sensor (NaN where a sensor has no reading; absent sensors count
            as never read). Non-finite values are treated as missing.
        config: the feature rules.
        complete: the history is complete (e.g. a run to failure): every step up to each
            segment's last reading counts as closed. By default only the steps that the
            streaming path would have closed are returned (those ending at least
            ``grace_ms`` before the segment's newest reading), so both paths agree.

    Returns:
        ``(X, index)``: X is (steps, features) float64 with NaN for missing values; index
        has columns ``equipment_id``, ``step_start``, ``step_end`` (ms), ``segment``, in
        the order of X (by machine, then time).
    """
    _check_frame(df, config)
    values = np.full((len(df), len(config.sensors)), np.nan)
    for i, sensor in enumerate(config.sensors):
        if sensor in df.columns:
            column = pd.to_numeric(df[sensor], errors="coerce").to_numpy(dtype=np.float64)
            values[:, i] = np.where(np.isfinite(column), column, np.nan)
    ids = df["equipment_id"].astype(str).to_numpy()
    ts = df["ts"].to_numpy(dtype=np.int64)
    keep = ~np.isnan(values).all(axis=1)
    ids, ts, values = ids[keep], ts[keep], values[keep]
    names = config.feature_names()
    if len(ts) == 0:
        return np.empty((0, len(names))), _index([], [], [], config)

    codes, machines = pd.factorize(ids, sort=True)
    order = np.lexsort((ts, codes))
    codes, ts, values = codes[order], ts[order], values[order]
    step = ts // config.step_ms

    # Runs: readings no more than max_gap_steps apart. A run's steps are emitted up to
    # max_gap_steps after its last reading (if closed); deeper in a silence nothing is,
    # and the next run starts fresh (equivalent, since features have bounded history).
    new_machine = np.r_[True, codes[1:] != codes[:-1]]
    jump = np.r_[False, np.diff(step) > config.max_gap_steps] & ~new_machine
    segment_id = np.cumsum(new_machine | jump) - 1
    seg_first = np.flatnonzero(new_machine | jump)
    seg_code = codes[seg_first]
    seg_start_step = step[seg_first]
    seg_last_read = np.maximum.reduceat(step, seg_first)
    machine_first = np.flatnonzero(new_machine)
    machine_max_ts = np.maximum.reduceat(ts, machine_first)
    if complete:
        machine_closed = machine_max_ts // config.step_ms
    else:
        machine_closed = (machine_max_ts - config.grace_ms) // config.step_ms - 1
    seg_last_closed = np.minimum(seg_last_read + config.max_gap_steps, machine_closed[seg_code])
    seg_len = np.maximum(seg_last_closed - seg_start_step + 1, 0)

    # Partials per (segment, step) with readings.
    group_start = np.r_[True, (segment_id[1:] != segment_id[:-1]) | (step[1:] != step[:-1])]
    starts = np.flatnonzero(group_start)
    partials = _partials_by_group(ts, step * config.step_ms, values, starts)
    g_segment = segment_id[starts]
    g_offset = step[starts] - seg_start_step[g_segment]

    blocks: list[F64] = []
    rows: list[tuple[NDArray[np.intp], I64]] = []
    by_length = np.argsort(-seg_len, kind="stable")
    for chunk in np.array_split(by_length, max(1, -(-len(by_length) // _CHUNK))):
        chunk = chunk[seg_len[chunk] > 0]
        if len(chunk) == 0:
            continue
        X, valid = _segment_features(
            chunk, seg_len, seg_start_step, g_segment, g_offset, partials, config
        )
        blocks.append(X[valid])
        seg_of = np.repeat(chunk, seg_len[chunk])
        offs = np.concatenate([np.arange(seg_len[s]) for s in chunk])
        rows.append((seg_of, offs))
    del partials  # memory: the steps are held at most twice from here (X, X[final])
    if not blocks:
        return np.empty((0, len(names))), _index([], [], [], config)
    X = np.concatenate(blocks)
    blocks.clear()
    seg_of = np.concatenate([r[0] for r in rows])
    offs = np.concatenate([r[1] for r in rows])
    step_start = (seg_start_step[seg_of] + offs) * config.step_ms
    final = np.lexsort((step_start, seg_code[seg_of]))
    code, step_start = seg_code[seg_of][final], step_start[final]
    # A segment is a run of consecutive emitted steps (sequences never span a break).
    breaks = np.r_[True, (code[1:] != code[:-1]) | (np.diff(step_start) != config.step_ms)]
    index = _index(machines[code], step_start, np.cumsum(breaks) - 1, config)
    return X[final], index


def _segment_features(
    chunk: NDArray[np.intp],
    seg_len: I64,
    seg_start_step: I64,
    g_segment: NDArray[np.intp],
    g_offset: I64,
    partials: F64,
    config: WindowConfig,
) -> tuple[F64, NDArray[np.bool_]]:
    """Scan the steps of a chunk of segments; returns vectors (B*T_max, F) and validity."""
    b, t_max, s = len(chunk), int(seg_len[chunk].max()), len(config.sensors)
    w = config.window_steps
    dense = empty_partials((b, t_max + w - 1, s))
    position = np.full(len(seg_len), -1)
    position[chunk] = np.arange(b)
    mine = (position[g_segment] >= 0) & (g_offset < seg_len[g_segment])
    dense[position[g_segment[mine]], g_offset[mine] + w - 1] = partials[mine]
    carry = Carry.fresh((b, s))
    out = np.empty((b, t_max, s * config.per_sensor))
    step_s = config.step_ms / 1000.0
    for k in range(t_max):
        window = window_partials(dense[:, k : k + w], step_s)
        start_ms = ((seg_start_step[chunk] + k) * config.step_ms).astype(np.int64)
        out[:, k], carry = step_features(window, dense[:, k + w - 1], start_ms, carry, config)
    valid = np.arange(t_max)[None, :] < seg_len[chunk][:, None]
    return out, valid


def _index(ids: object, starts: object, segments: object, config: WindowConfig) -> pd.DataFrame:
    start = np.asarray(starts, dtype=np.int64)
    return pd.DataFrame(
        {
            "equipment_id": np.asarray(ids, dtype=object),
            "step_start": start,
            "step_end": start + config.step_ms,
            "segment": np.asarray(segments, dtype=np.int64),
        }
    )
