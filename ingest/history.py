"""Offline history of the simulated fleet as DataFrames (for training), without faults.

>>> from ingest.simulator import SimulatorConfig
>>> telemetry, events = history(SimulatorConfig(machines=3, start_ms=0), steps=2)
>>> telemetry[["equipment_id", "ts", "asset_type", "regime"]].shape, list(events.columns)
((6, 4), ['equipment_id', 'ts', 'kind', 'mode'])
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ingest.assets import REGIMES
from ingest.plant import Plant, random_streams

if TYPE_CHECKING:
    import pandas as pd

    from ingest.simulator import SimulatorConfig


def history(config: SimulatorConfig, steps: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Clean telemetry and events of ``steps`` steps as DataFrames, for offline training.

    No faults are applied; the readings equal those of the valid messages of the same
    config (the physics does not depend on the faults).

    Returns:
        ``(telemetry, events)``: telemetry has columns equipment_id, ts (epoch ms),
        asset_type, site, one column per sensor of the fleet (NaN where a machine's type
        lacks the sensor) and regime (low, normal, high); events has equipment_id, ts,
        kind (failure, repair) and mode.
    """
    import pandas as pd

    plant = Plant(config, random_streams(config.seed)[0])
    tab = plant.tables
    kinds = plant.kind.tolist()
    present = np.zeros((config.machines, len(tab.sensors)), dtype=bool)
    for i, k in enumerate(kinds):
        present[i, tab.columns[k]] = True
    rows, values, ts, regime, evs = [], [], [], [], []
    for _ in range(steps):
        frame = plant.step()
        on = np.flatnonzero(frame.running)
        rows.append(on)
        values.append(np.where(present[on], frame.values[on], np.nan))
        ts.append(frame.ts[on])
        regime.append(frame.regime[on])
        evs.extend(frame.events)
    idx = np.concatenate(rows) if rows else np.zeros(0, dtype=np.intp)
    table = np.concatenate(values) if values else np.zeros((0, len(tab.sensors)))
    telemetry = pd.DataFrame(
        {
            "equipment_id": np.asarray(plant.ids, dtype=object)[idx],
            "ts": np.concatenate(ts) if ts else np.zeros(0, dtype=np.int64),
            "asset_type": np.asarray(plant.types, dtype=object)[idx],
            "site": np.asarray(plant.sites, dtype=object)[idx],
            **{name: table[:, j] for j, name in enumerate(tab.sensors)},
            "regime": np.asarray(REGIMES, dtype=object)[
                np.concatenate(regime) if regime else np.zeros(0, dtype=np.intp)
            ],
        }
    )
    events_df = pd.DataFrame(
        {
            "equipment_id": [e.equipment_id for e in evs],
            "ts": np.array([e.ts_ms for e in evs], dtype=np.int64),
            "kind": [e.kind for e in evs],
            "mode": [e.mode for e in evs],
        }
    )
    return telemetry, events_df
