"""The physics of the simulated fleet: regimes, noise, degradation, failures and repairs.

Pure and vectorised across machines: each :meth:`Plant.step` advances every machine by
one sampling period with a handful of numpy operations and returns a :class:`Frame`.
Nothing here knows about messages or injected faults; the simulator builds those on top,
from a separate random stream, so the physics of a seed is the same with or without faults.

>>> from ingest.simulator import SimulatorConfig
>>> plant = Plant(SimulatorConfig(machines=4, seed=1, start_ms=0), np.random.default_rng(1))
>>> plant.ids, plant.types
(('pump-0000', 'pump-0001', 'compressor-0002', 'fan-0003'), ('pump', 'pump', 'compressor', 'fan'))
>>> frame = plant.step()
>>> frame.ts.tolist(), frame.values.shape
([0, 250, 500, 750], (4, 12))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from ingest.assets import REGIMES, tables
from ingest.events import EventKind, MaintenanceEvent

if TYPE_CHECKING:
    from ingest.simulator import SimulatorConfig

#: Chance per machine and step that the operating regime changes.
REGIME_SWITCH_P = 1 / 400
_LIFE_SIGMA = 0.35


@dataclass(frozen=True, slots=True)
class Frame:
    """The fleet at one step.

    Attributes:
        step: the step index (0 at ``start_ms``).
        ts: (M,) event time of each machine's sample, epoch ms.
        running: (M,) whether the machine produces telemetry (False while under repair).
        values: (M, S) readings, rounded to 3 decimals (0 for sensors a type lacks).
        regime: (M,) operating regime index into :data:`ingest.assets.REGIMES`.
        events: failures and repairs at this step.
    """

    step: int
    ts: npt.NDArray[np.int64]
    running: npt.NDArray[np.bool_]
    values: npt.NDArray[np.float64]
    regime: npt.NDArray[np.intp]
    events: list[MaintenanceEvent]


def random_streams(seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    """Two independent random streams from one seed: the physics', and the faults'."""
    physics, faults = np.random.SeedSequence(seed).spawn(2)
    return np.random.default_rng(physics), np.random.default_rng(faults)


def allocate(machines: int, weights: tuple[float, ...]) -> list[int]:
    """Machines per asset type, proportional to ``weights`` (largest remainder).

    >>> allocate(10, (0.5, 0.3, 0.2)), allocate(2, (0.5, 0.3, 0.2))
    ([5, 3, 2], [1, 1, 0])
    """
    share = np.asarray(weights, dtype=np.float64) / sum(weights) * machines
    counts = np.floor(share).astype(int)
    order = np.argsort(-(share - counts), kind="stable")
    counts[order[: machines - int(counts.sum())]] += 1
    return [int(c) for c in counts]


class Plant:
    """Every machine's hidden state, advanced one step at a time.

    Machines are numbered in blocks by asset type (``pump-0000`` ...), sampled every
    ``interval_ms`` with a fixed phase each so that their event times interleave.

    Args:
        config: the simulation settings.
        rng: the random stream of the physics (regimes, noise, lives, failure modes).

    Attributes:
        ids: equipment id per machine.
        types: asset type name per machine.
        sites: site per machine.
        kind: (M,) row of each machine's asset type in :attr:`tables`.
        tables: the asset types as arrays.
    """

    def __init__(self, config: SimulatorConfig, rng: np.random.Generator) -> None:
        names = tuple(name for name, _ in config.asset_mix)
        self.tables = tables(names)
        counts = allocate(config.machines, tuple(w for _, w in config.asset_mix))
        kind = np.repeat(np.arange(len(names)), counts)
        m, s = config.machines, len(self.tables.sensors)
        self.types = tuple(names[k] for k in kind)
        self.ids = tuple(f"{names[k]}-{i:04d}" for i, k in enumerate(kind))
        self.sites = tuple(f"site-{i % config.sites + 1}" for i in range(m))
        self._config = config
        self._rng = rng
        self.kind = kind
        self._rows = np.arange(m)
        self._ts0 = config.start_ms + (self._rows * config.interval_ms) // m
        self._step = 0
        tab = self.tables
        self._base = tab.base[kind]
        self._noise = tab.noise[kind]
        self._n_modes = np.array([len(modes) for modes in tab.modes])[kind]
        self._bias = rng.normal(0.0, 2.0, (m, s)) * self._noise
        self.regime = rng.integers(0, len(REGIMES), m)
        self.mode = np.zeros(m, dtype=np.intp)
        self.life = np.zeros(m)
        self._effect = np.zeros((m, s))
        self._shape = np.ones(m)
        self.age = np.zeros(m)
        self.down = np.zeros(m, dtype=np.int64)
        self._renew(self._rows)
        self.age = np.floor(rng.random(m) * 0.9 * self.life)

    def _renew(self, rows: npt.NDArray[np.intp]) -> None:
        """A fresh life for ``rows``: new failure mode and life length, age 0."""
        rng, kind = self._rng, self.kind[rows]
        self.mode[rows] = np.floor(rng.random(rows.size) * self._n_modes[rows]).astype(np.intp)
        z = rng.standard_normal(rows.size)
        life = self._config.mean_life_steps * np.exp(_LIFE_SIGMA * z - _LIFE_SIGMA**2 / 2)
        self.life[rows] = np.maximum(np.round(life), 2.0)
        self._effect[rows] = self.tables.effects[kind, self.mode[rows]]
        self._shape[rows] = self.tables.shapes[kind, self.mode[rows]]
        self.age[rows] = 0.0

    def _events(
        self, rows: npt.NDArray[np.intp], ts: list[int], kind: EventKind
    ) -> list[MaintenanceEvent]:
        modes = self.tables.modes
        return [
            MaintenanceEvent(
                self.ids[i], ts[i], kind, modes[self.kind[i]][self.mode[i]], "simulator"
            )
            for i in rows.tolist()
        ]

    def step(self) -> Frame:
        """Advance every machine by one sampling period."""
        config, rng, t = self._config, self._rng, self._step
        self._step += 1
        ts = self._ts0 + t * config.interval_ms
        events: list[MaintenanceEvent] = []
        down = self.down
        if down.any():
            was_down = down > 0
            down[was_down] -= 1
            repaired = np.flatnonzero(was_down & (down == 0))
            if repaired.size:
                events += self._events(repaired, ts.tolist(), "repair")
                self._renew(repaired)
        running = down == 0
        failing = np.flatnonzero(running & (self.age >= self.life))
        if failing.size:
            events += self._events(failing, ts.tolist(), "failure")
            down[failing] = config.repair_steps
            running[failing] = False
        switch = np.flatnonzero(rng.random(self.regime.size) < REGIME_SWITCH_P)
        if switch.size:
            shift = rng.integers(1, len(REGIMES), switch.size)
            self.regime[switch] = (self.regime[switch] + shift) % len(REGIMES)
        health = np.minimum(self.age / self.life, 1.0) ** self._shape
        values = self._base[self._rows, self.regime] + self._bias
        values += rng.standard_normal(values.shape) * self._noise
        values += health[:, None] * self._effect
        self.age += running
        return Frame(t, ts, running, np.round(values, 3), self.regime.copy(), events)
