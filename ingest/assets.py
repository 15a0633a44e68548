"""The simulated fleet's asset types: their sensors, operating regimes and failure modes.

Each asset type has 4-8 sensors whose baselines depend on the operating regime (low,
normal, high load), Gaussian noise, and failure modes. A failure mode shifts a few
sensors by ``effect * h`` where the hidden health index ``h = (age / life) ** shape``
grows from 0 after a repair to 1 at the failure.

:func:`tables` turns a tuple of asset types into the arrays that the simulator
indexes with numpy, one row per type and one column per sensor of the whole fleet.

>>> t = tables(("pump", "fan"))
>>> t.sensors[:3], t.base.shape, [len(c) for c in t.columns]
(('vibration_rms', 'bearing_temp', 'discharge_pressure'), (2, 3, 9), [6, 5])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

#: Operating regimes, in the order of each sensor's ``base`` triple.
REGIMES = ("low", "normal", "high")


@dataclass(frozen=True, slots=True)
class Sensor:
    """One sensor of an asset type.

    Attributes:
        name: the reading's name in telemetry.
        base: mean value in each regime of :data:`REGIMES`.
        noise: standard deviation of the Gaussian noise.
    """

    name: str
    base: tuple[float, float, float]
    noise: float


@dataclass(frozen=True, slots=True)
class FailureMode:
    """How one failure mode shows in the sensors.

    Attributes:
        name: the mode, as it appears in failure and repair events.
        effects: (sensor name, shift at the moment of failure) pairs.
        shape: exponent of the health index; above 1 the drift starts slowly and accelerates.
    """

    name: str
    effects: tuple[tuple[str, float], ...]
    shape: float


@dataclass(frozen=True, slots=True)
class AssetType:
    """A kind of machine: its sensors and the ways it fails."""

    name: str
    sensors: tuple[Sensor, ...]
    modes: tuple[FailureMode, ...]


_BEARING = "bearing_wear"

ASSET_TYPES: dict[str, AssetType] = {
    "pump": AssetType(
        "pump",
        (
            Sensor("vibration_rms", (1.2, 1.8, 2.6), 0.12),
            Sensor("bearing_temp", (45.0, 55.0, 68.0), 0.8),
            Sensor("discharge_pressure", (3.2, 5.0, 6.8), 0.08),
            Sensor("flow_rate", (60.0, 110.0, 150.0), 2.0),
            Sensor("motor_current", (18.0, 28.0, 39.0), 0.5),
            Sensor("efficiency", (0.70, 0.78, 0.74), 0.006),
        ),
        (
            FailureMode(_BEARING, (("vibration_rms", 4.0), ("bearing_temp", 9.0)), 2.5),
            FailureMode(
                "seal_leak",
                (("discharge_pressure", -1.6), ("flow_rate", -25.0), ("motor_current", 2.0)),
                1.2,
            ),
            FailureMode(
                "overheating",
                (("bearing_temp", 25.0), ("efficiency", -0.12), ("motor_current", 5.0)),
                2.0,
            ),
        ),
    ),
    "compressor": AssetType(
        "compressor",
        (
            Sensor("vibration_rms", (2.0, 2.8, 3.6), 0.15),
            Sensor("discharge_temp", (70.0, 85.0, 98.0), 1.0),
            Sensor("discharge_pressure", (6.5, 8.0, 9.5), 0.1),
            Sensor("suction_pressure", (1.0, 1.0, 0.95), 0.03),
            Sensor("oil_temp", (50.0, 58.0, 66.0), 0.6),
            Sensor("motor_current", (40.0, 55.0, 72.0), 0.8),
            Sensor("efficiency", (0.80, 0.86, 0.83), 0.005),
        ),
        (
            FailureMode(_BEARING, (("vibration_rms", 5.0), ("oil_temp", 6.0)), 2.5),
            FailureMode(
                "valve_leak",
                (("discharge_pressure", -1.8), ("discharge_temp", 12.0), ("efficiency", -0.08)),
                1.5,
            ),
            FailureMode(
                "overheating",
                (("discharge_temp", 30.0), ("oil_temp", 18.0), ("efficiency", -0.10)),
                2.0,
            ),
        ),
    ),
    "fan": AssetType(
        "fan",
        (
            Sensor("vibration_rms", (0.8, 1.3, 2.0), 0.08),
            Sensor("motor_temp", (35.0, 45.0, 58.0), 0.7),
            Sensor("airflow", (8.0, 14.0, 20.0), 0.3),
            Sensor("motor_current", (5.0, 9.0, 14.0), 0.2),
            Sensor("speed_rpm", (600.0, 1000.0, 1450.0), 5.0),
        ),
        (
            FailureMode(_BEARING, (("vibration_rms", 3.5), ("motor_temp", 5.0)), 2.5),
            FailureMode(
                "imbalance",
                (("vibration_rms", 2.5), ("speed_rpm", -40.0), ("motor_current", 1.5)),
                1.5,
            ),
            FailureMode(
                "belt_slip",
                (("speed_rpm", -250.0), ("airflow", -5.0), ("motor_current", -2.0)),
                1.0,
            ),
        ),
    ),
}


@dataclass(frozen=True, slots=True)
class Tables:
    """The asset types of a fleet as arrays (T types, R regimes, S sensors, F modes).

    Attributes:
        types: the asset type names, in row order.
        sensors: every sensor name of the fleet, in column order (first seen first).
        columns: per type, the columns of its own sensors.
        names: per type, its sensor names (in the order of ``columns``).
        base: (T, R, S) baseline per type, regime and sensor (0 where a type lacks it).
        noise: (T, S) noise standard deviation.
        scale: (T, S) a typical magnitude per sensor, used to size spikes.
        effects: (T, F, S) shift at failure per type, mode and sensor.
        shapes: (T, F) health-index exponent per type and mode.
        modes: per type, its failure mode names.
    """

    types: tuple[str, ...]
    sensors: tuple[str, ...]
    columns: tuple[npt.NDArray[np.intp], ...]
    names: tuple[tuple[str, ...], ...]
    base: npt.NDArray[np.float64]
    noise: npt.NDArray[np.float64]
    scale: npt.NDArray[np.float64]
    effects: npt.NDArray[np.float64]
    shapes: npt.NDArray[np.float64]
    modes: tuple[tuple[str, ...], ...]


def tables(types: tuple[str, ...]) -> Tables:
    """The arrays for a fleet of the asset types named in ``types`` (keys of ASSET_TYPES)."""
    kinds = [ASSET_TYPES[name] for name in types]
    sensors: list[str] = []
    for kind in kinds:
        sensors.extend(s.name for s in kind.sensors if s.name not in sensors)
    col = {name: j for j, name in enumerate(sensors)}
    n_modes = max(len(kind.modes) for kind in kinds)
    base = np.zeros((len(kinds), len(REGIMES), len(sensors)))
    noise = np.zeros((len(kinds), len(sensors)))
    effects = np.zeros((len(kinds), n_modes, len(sensors)))
    shapes = np.ones((len(kinds), n_modes))
    for t, kind in enumerate(kinds):
        for sensor in kind.sensors:
            base[t, :, col[sensor.name]] = sensor.base
            noise[t, col[sensor.name]] = sensor.noise
        for f, mode in enumerate(kind.modes):
            shapes[t, f] = mode.shape
            for name, shift in mode.effects:
                effects[t, f, col[name]] = shift
    return Tables(
        types=tuple(types),
        sensors=tuple(sensors),
        columns=tuple(np.array([col[s.name] for s in k.sensors], dtype=np.intp) for k in kinds),
        names=tuple(tuple(s.name for s in k.sensors) for k in kinds),
        base=base,
        noise=noise,
        scale=np.abs(base[:, 1, :]) + 10 * noise,
        effects=effects,
        shapes=shapes,
        modes=tuple(tuple(m.name for m in k.modes) for k in kinds),
    )
