"""Orchestration shared by the CLI and the benchmark: data -> spec -> labelled windows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from features.config import WindowConfig
from features.spec import FeatureSpec
from models.data import History
from models.errors import DataError
from models.labels import split_machines
from models.windows import StepParts, Steps, Windows, fit, make_windows, step_features


@dataclass(frozen=True)
class Prepared:
    """A fitted spec and the labelled windows of the training and validation machines."""

    spec: FeatureSpec
    train: Windows
    val: Windows
    horizon_steps: int
    min_steps: int
    age_scale: float | None = None

    @property
    def n_inputs(self) -> int:
        """Features per step given to the model (the spec's, plus the age feature)."""
        return self.spec.n_features + (self.age_scale is not None)


def prepare(
    history: History,
    window: WindowConfig,
    sequence_length: int,
    horizon_steps: int,
    validation_fraction: float = 0.2,
    seed: int = 0,
    min_steps: int = 1,
    age_feature: bool = False,
    aux_horizons: tuple[int, ...] = (),
    split: tuple[list[str], list[str]] | None = None,
) -> Prepared:
    """Split machines (seeded), fit the spec on training machines, build labelled windows.

    With ``age_feature`` each step also carries its age (steps since its segment started)
    divided by the mean segment length of the training machines (stored with the model).
    ``split`` gives the (training, validation) machine ids instead of the seeded split,
    e.g. to refit on every machine of an earlier split.
    """
    if horizon_steps < 1:
        raise DataError(f"horizon must be >= 1 step. Received: horizon={horizon_steps}")
    if min_steps < 1 or min_steps > sequence_length:
        raise DataError(
            f"min_steps must be in [1, {sequence_length}]. Received: min_steps={min_steps}"
        )
    parts = StepParts.build(history.telemetry, window)
    failed = set(history.events.loc[history.events["kind"] == "failure", "equipment_id"])
    machines = parts.machines()
    if not failed & set(machines):
        raise DataError("no machine in the telemetry has a failure event: nothing to learn from")
    if split is None:
        train_ids, val_ids = split_machines(machines, validation_fraction, seed)
    else:
        train_ids, val_ids = split
        unknown = sorted((set(train_ids) | set(val_ids)) - set(machines))
        if unknown or set(train_ids) & set(val_ids) or not train_ids or not val_ids:
            raise DataError(
                "split must be two non-empty, disjoint lists of machines in the telemetry. "
                f"Received: {len(train_ids)} and {len(val_ids)} machines"
                + (f", unknown {unknown[:5]}" if unknown else "")
            )
    train_steps, val_steps = parts.split(train_ids, val_ids)  # memory: the steps once
    spec = fit(train_steps, window, sequence_length)
    age_scale = None
    if age_feature:
        keys = train_steps.index["equipment_id"].astype(str) + train_steps.index["segment"].astype(
            str
        )
        age_scale = float(keys.value_counts().mean())
    events = history.events
    train = make_windows(
        train_steps,
        spec,
        events,
        horizon_steps,
        min_steps,
        age_scale=age_scale,
        aux_horizons=aux_horizons,
    )
    val = make_windows(val_steps, spec, events, horizon_steps, min_steps, age_scale=age_scale)
    return Prepared(spec, train, val, horizon_steps, min_steps, age_scale)


def labelled_windows(
    history: History,
    spec: FeatureSpec,
    horizon_steps: int,
    min_steps: int,
    age_scale: float | None = None,
) -> tuple[Windows, dict[str, list[int]]]:
    """All labelled windows of a history and each machine's failure times (for evaluation)."""
    steps = step_features(history.telemetry, spec.window)
    windows = make_windows(
        steps, spec, history.events, horizon_steps, min_steps, age_scale=age_scale
    )
    fails = history.events[history.events["kind"] == "failure"]
    return windows, failure_times(fails)


def failure_times(failures: pd.DataFrame) -> dict[str, list[int]]:
    """Each machine's failure times (sorted) from an events frame of failures."""
    out: dict[str, list[int]] = {}
    for e, t in zip(failures["equipment_id"], failures["ts"], strict=True):
        out.setdefault(str(e), []).append(int(t))
    return {e: sorted(ts) for e, ts in out.items()}


PROTOCOL_MIN_CYCLES = 50
"""The published protocol scores test engines with at least this many cycles (93 of 100)."""


def cmapss_test(
    history: History,
    spec: FeatureSpec,
    horizon_steps: int,
    min_steps: int,
    age_scale: float | None = None,
) -> tuple[Windows, Windows, dict[str, int]]:
    """The C-MAPSS test protocol.

    Returns:
        ``(last, every, failure_ts)``: the last window of each test engine with at least
        ``PROTOCOL_MIN_CYCLES`` (50) cycles, whatever the model's L (a longer window is
        zero-padded and masked in front, a shorter one sees only its last L cycles),
        labelled positive iff its RUL <= H; every window of the test engines
        (for lead times); each test engine's failure time, ``last ts + RUL * step``.
    """
    if history.test is None or history.test_rul is None:
        raise DataError("the data source has no C-MAPSS test part")
    step_ms = spec.window.step_ms
    per_engine = history.test.groupby("equipment_id")["ts"]
    last_ts, cycles = per_engine.max(), per_engine.size()
    rul = history.test_rul.to_dict()
    fail_ts = {str(e): int(t + rul[str(e)] * step_ms) for e, t in last_ts.items()}
    events = pd.DataFrame(
        {"equipment_id": list(fail_ts), "ts": list(fail_ts.values()), "kind": "failure"}
    )
    steps: Steps = step_features(history.test, spec.window)
    every = make_windows(
        steps, spec, events, horizon_steps, min_steps, censor=False, age_scale=age_scale
    )
    is_last = every.index["step_start"].to_numpy() == every.index["equipment_id"].map(
        last_ts
    ).to_numpy(dtype=np.int64)
    long_enough = (
        every.index["equipment_id"].map(cycles).to_numpy(dtype=np.int64) >= PROTOCOL_MIN_CYCLES
    )
    return every.select(is_last & long_enough), every, fail_ts
