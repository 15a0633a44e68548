"""The plant simulator: telemetry messages, injected faults and ground-truth events.

Pure: no Kafka and no clock. Everything follows from a :class:`SimulatorConfig` (seed and
start time included), so one config always yields the same messages, byte for byte. The
physics (:mod:`ingest.plant`) and the faults (:mod:`ingest.faults`) draw from separate
random streams: switching faults on changes the messages, never the machines' lives.

Each :class:`SimMessage` says what ``ingest.contract.validate`` will make of it:
``"valid"``, ``"duplicate"`` (an exact re-delivery of an earlier valid message) or the
reason code of the rejection, as long as it is validated within 90 days after its event
time (and no more than 10 minutes before it).

>>> config = SimulatorConfig(machines=3, seed=7, start_ms=1_700_000_000_000)
>>> first = next(messages(config))
>>> first.key, first.expect, first.ts_ms
(b'pump-0000', 'valid', 1700000000000)
>>> list(orjson.loads(first.value))
['v', 'equipment_id', 'site', 'asset_type', 'ts', 'readings', 'seq']
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from ingest.assets import ASSET_TYPES
from ingest.events import MaintenanceEvent
from ingest.faults import FaultRates, Faults, Injector, malformed
from ingest.history import history
from ingest.plant import Plant, random_streams

__all__ = [
    "FaultRates",
    "SimMessage",
    "Simulator",
    "SimulatorConfig",
    "Tick",
    "events",
    "history",
    "messages",
    "plan_steps",
    "stream",
    "ticks",
]

_DEFAULT_MIX = (("pump", 0.5), ("compressor", 0.3), ("fan", 0.2))
MAX_BATCH = 1000


def _check_int(name: str, value: Any, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    if high is not None and value > high:
        raise ValueError(f"{name} must be <= {high}, got {value}")


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """What to simulate (validated on construction; errors name the field and the value).

    Attributes:
        machines: number of machines in the fleet.
        seed: seed of every random choice.
        start_ms: event time of the first step, epoch ms.
        interval_ms: sampling period of each machine.
        asset_mix: (asset type, weight) pairs; types from :data:`ingest.assets.ASSET_TYPES`.
        sites: machines are spread round-robin over ``site-1`` .. ``site-<sites>``.
        faults: the fraction of each injected fault.
        mean_life_steps: mean steps from a repair to the next failure.
        repair_steps: steps without telemetry between a failure and its repair.
        out_of_order_max_delay: most later messages an out-of-order message waits for.
        batch_size: samples per message (1: single-sample messages).
    """

    machines: int = 100
    seed: int = 0
    start_ms: int = 1_700_000_000_000
    interval_ms: int = 1000
    asset_mix: tuple[tuple[str, float], ...] = _DEFAULT_MIX
    sites: int = 3
    faults: FaultRates = field(default_factory=FaultRates)
    mean_life_steps: int = 5000
    repair_steps: int = 60
    out_of_order_max_delay: int = 3
    batch_size: int = 1

    def __post_init__(self) -> None:
        _check_int("machines", self.machines, 1, 1_000_000)
        _check_int("seed", self.seed, 0)
        _check_int("start_ms", self.start_ms, 0)
        _check_int("interval_ms", self.interval_ms, 1)
        _check_int("sites", self.sites, 1, 1000)
        _check_int("mean_life_steps", self.mean_life_steps, 10)
        _check_int("repair_steps", self.repair_steps, 1)
        _check_int("out_of_order_max_delay", self.out_of_order_max_delay, 1, 1000)
        _check_int("batch_size", self.batch_size, 1, MAX_BATCH)
        if not isinstance(self.faults, FaultRates):
            raise TypeError(f"faults must be a FaultRates, got {self.faults!r}")
        if not self.asset_mix:
            raise ValueError("asset_mix must name at least one asset type, got ()")
        names = [name for name, _ in self.asset_mix]
        for name, weight in self.asset_mix:
            if name not in ASSET_TYPES:
                raise ValueError(
                    f"asset_mix: unknown asset type {name!r}, expected one of "
                    f"{', '.join(ASSET_TYPES)}"
                )
            if isinstance(weight, bool) or not (
                isinstance(weight, int | float) and math.isfinite(weight) and weight > 0
            ):
                raise ValueError(f"asset_mix: weight of {name!r} must be > 0, got {weight!r}")
        if len(set(names)) != len(names):
            raise ValueError(f"asset_mix names a type twice, got {tuple(names)}")


@dataclass(frozen=True, slots=True)
class SimMessage:
    """One telemetry message to publish (Kafka key, value and timestamp).

    Attributes:
        key: the machine's equipment id (the Kafka key), also for malformed messages.
        value: the message bytes.
        ts_ms: event time of its (last) sample, for the Kafka record timestamp.
        expect: ``"valid"``, ``"duplicate"``, or the reason code ``validate`` rejects it with.
        samples: samples the message carries (the batch size for a full batch).
    """

    key: bytes
    value: bytes
    ts_ms: int
    expect: str
    samples: int = 1


@dataclass(frozen=True, slots=True)
class Tick:
    """Everything one step produced: ground-truth events first, then telemetry messages."""

    step: int
    messages: list[SimMessage]
    events: list[MaintenanceEvent]


class Simulator:
    """The fleet and its message stream, one step (sampling period) at a time.

    Args:
        config: what to simulate.
    """

    def __init__(self, config: SimulatorConfig) -> None:
        physics, faults = random_streams(config.seed)
        self.config = config
        self.plant = plant = Plant(config, physics)
        tab = plant.tables
        kinds = plant.kind.tolist()
        self._injector = (
            Injector(
                config.faults,
                [tab.columns[k] for k in kinds],
                tab.scale[kinds],
                config.out_of_order_max_delay,
                faults,
            )
            if config.faults.any
            else None
        )
        self._keys = [eid.encode() for eid in plant.ids]
        self._heads = [
            orjson.dumps({"v": 1, "equipment_id": e, "site": s, "asset_type": t})[:-1]
            for e, s, t in zip(plant.ids, plant.sites, plant.types, strict=True)
        ]
        bounds = np.cumsum([0] + [kinds.count(k) for k in range(len(tab.types))])
        self._blocks = [
            (int(bounds[k]), int(bounds[k + 1]), tab.columns[k], tab.names[k])
            for k in range(len(tab.types))
            if bounds[k + 1] > bounds[k]
        ]
        self._seq = np.zeros(config.machines, dtype=np.int64)
        self._buffers: list[list[dict[str, Any]]] = [[] for _ in range(config.machines)]
        self._pending: dict[int, list[SimMessage]] = {}
        self._malformed = 0
        self._step = 0

    def _single(self, i: int, ts: int, readings: dict[str, float], seq: int) -> SimMessage:
        value = self._heads[i] + b',"ts":%d,"readings":%b,"seq":%d}' % (
            ts,
            orjson.dumps(readings),
            seq,
        )
        return SimMessage(self._keys[i], value, ts, "valid")

    def _flush(self, i: int) -> SimMessage:
        samples, self._buffers[i] = self._buffers[i], []
        value = self._heads[i] + b',"samples":%b}' % orjson.dumps(samples)
        return SimMessage(self._keys[i], value, samples[-1]["ts"], "valid", len(samples))

    def _deliver(self, out: list[SimMessage], message: SimMessage, delay: int, again: int) -> None:
        """Send ``message`` now or ``delay`` messages late, and maybe once more later."""
        span = self.config.batch_size
        due = self._step + delay * span
        if delay:
            self._pending.setdefault(due, []).append(message)
        else:
            out.append(message)
        if again >= 0:
            copy = SimMessage(
                message.key, message.value, message.ts_ms, "duplicate", message.samples
            )
            if again == 0 and not delay:
                out.append(copy)
            else:
                self._pending.setdefault(due + again * span, []).append(copy)

    def _special(
        self, out: list[SimMessage], i: int, f: Faults, doc: dict[str, Any], cols: Any
    ) -> None:
        """The slow path for a machine with faults at this step."""
        if f.malformed[i]:
            raw, reason = malformed(dict(self._heads_doc(i), **doc), self._malformed)
            self._malformed += 1
            out.append(SimMessage(self._keys[i], raw, doc["ts"], reason))
            return
        readings = doc["readings"]
        if f.missing[i].any():
            gone = f.missing[i, cols].tolist()
            readings = {k: v for (k, v), g in zip(readings.items(), gone, strict=True) if not g}
            if not readings:
                return
        delay, again = int(f.delay[i]), int(f.again[i])
        if self.config.batch_size == 1:
            message = self._single(i, doc["ts"], readings, doc["seq"])
            self._deliver(out, message, delay, again)
            return
        self._buffers[i].append({"ts": doc["ts"], "readings": readings, "seq": doc["seq"]})
        if len(self._buffers[i]) >= self.config.batch_size:
            self._deliver(out, self._flush(i), delay, again)

    def _heads_doc(self, i: int) -> dict[str, Any]:
        return {
            "v": 1,
            "equipment_id": self.plant.ids[i],
            "site": self.plant.sites[i],
            "asset_type": self.plant.types[i],
        }

    def step(self) -> Tick:
        """Advance one sampling period: the events and the messages it produced."""
        frame = self.plant.step()
        values, running = frame.values, frame.running
        f = self._injector.step(values, running) if self._injector else None
        if f is not None:
            values = f.values
            emit = running & ~f.skip
            special = (
                f.malformed | f.missing.any(axis=1) | (f.delay > 0) | (f.again >= 0)
            ).tolist()
        else:
            emit = running
            special = [False] * running.size
        ts, seq, on = frame.ts.tolist(), self._seq.tolist(), emit.tolist()
        self._seq += running
        out: list[SimMessage] = []
        batch = self.config.batch_size
        for lo, hi, cols, names in self._blocks:
            for i, row in zip(range(lo, hi), values[lo:hi, cols].tolist(), strict=True):
                if not on[i]:
                    if batch > 1 and self._buffers[i] and not running[i]:
                        out.append(self._flush(i))
                    continue
                readings = dict(zip(names, row, strict=True))
                if special[i] and f is not None:
                    doc = {"ts": ts[i], "readings": readings, "seq": seq[i]}
                    self._special(out, i, f, doc, cols)
                elif batch == 1:
                    out.append(self._single(i, ts[i], readings, seq[i]))
                else:
                    buffer = self._buffers[i]
                    buffer.append({"ts": ts[i], "readings": readings, "seq": seq[i]})
                    if len(buffer) >= batch:
                        out.append(self._flush(i))
        out.extend(self._pending.pop(self._step, ()))
        self._step += 1
        return Tick(frame.step, out, frame.events)

    def finish(self) -> Tick:
        """End a finite run: partial batches, then every message still held back."""
        out = [self._flush(i) for i, buffer in enumerate(self._buffers) if buffer]
        for due in sorted(self._pending):
            out.extend(self._pending.pop(due))
        return Tick(self._step, out, [])


def ticks(config: SimulatorConfig, steps: int | None = None) -> Iterator[Tick]:
    """The run step by step: endless when ``steps`` is None, else ends with a final drain."""
    sim = Simulator(config)
    done = 0
    while steps is None or done < steps:
        yield sim.step()
        done += 1
    yield sim.finish()


def messages(config: SimulatorConfig, steps: int | None = None) -> Iterator[SimMessage]:
    """The telemetry messages of the run, in delivery order."""
    for tick in ticks(config, steps):
        yield from tick.messages


def stream(
    config: SimulatorConfig, steps: int | None = None
) -> Iterator[SimMessage | MaintenanceEvent]:
    """Events and telemetry interleaved in time: each step's events before its messages."""
    for tick in ticks(config, steps):
        yield from tick.events
        yield from tick.messages


def events(config: SimulatorConfig, steps: int) -> Iterator[MaintenanceEvent]:
    """The failures and repairs of the first ``steps`` steps (cheaper than a full run)."""
    plant = Plant(config, random_streams(config.seed)[0])
    for _ in range(steps):
        yield from plant.step().events


def plan_steps(config: SimulatorConfig, count: int) -> int:
    """Steps that (generously) suffice for ``count`` messages, to place the run in time.

    >>> plan_steps(SimulatorConfig(machines=100), 10_000)
    131
    """
    alive = config.mean_life_steps / (config.mean_life_steps + config.repair_steps)
    per_step = config.machines * alive * (1 - config.faults.dropout / 2) / config.batch_size
    slack = (config.out_of_order_max_delay + 1) * config.batch_size
    return math.ceil(count / (0.8 * per_step)) + slack
