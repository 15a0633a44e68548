"""What a feature vector is made of: the windowing configuration.

A :class:`WindowConfig` fixes the sensors, the step (tumbling window) length, an optional
hopping window of several steps, the aggregates, the grace for out-of-order readings and
the gap and data-quality rules. It is serializable, and its :meth:`fingerprint` travels
with every feature record so that a consumer can check it computes with the same rules.

>>> cfg = WindowConfig(sensors=("temp", "rpm"), step_ms=60_000)
>>> cfg.feature_names()[:4]
['temp__mean', 'temp__std', 'temp__min', 'temp__max']
>>> len(cfg.feature_names()) == 2 * cfg.per_sensor
True
>>> WindowConfig.from_dict(cfg.to_dict()) == cfg
True
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import asdict, dataclass, field
from typing import Any

AGGREGATES = ("mean", "std", "min", "max", "last", "slope", "count")
DERIVED = ("delta", "since_last")
FLAGS = ("filled", "stuck", "out_of_range")
_SENSOR_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


class FeatureConfigError(ValueError):
    """A windowing or feature setting is wrong; the message names it."""


@dataclass(frozen=True)
class WindowConfig:
    """Rules that turn readings into one feature vector per machine per step.

    Attributes:
        sensors: the sensors, in feature order. Readings of other sensors are ignored.
        step_ms: length of one step (tumbling window), in ms of event time.
        window_steps: hopping window: aggregates cover the last ``window_steps`` steps,
            advancing one step at a time (1 = tumbling).
        aggregates: per-sensor aggregates, a subset of :data:`AGGREGATES`, in order.
        derived: per-sensor derived features, a subset of :data:`DERIVED`: ``delta`` is the
            change of the mean since the previous step; ``since_last`` the seconds from the
            sensor's last reading to the step's end, saturating at ``max_fill_steps + 2``
            steps (also for a sensor never read), so that features depend on a bounded
            history.
        grace_ms: a step closes once its machine's newest reading is this far past the
            step's end; readings for a closed step are late.
        max_fill_steps: an empty step repeats the sensor's last value for at most this
            many steps (flagged ``filled``); beyond that its values are missing (NaN).
        max_gap_steps: steps are emitted for at most this many steps after a machine's
            last reading; deeper in a silence the sequence breaks instead of producing
            that many empty steps (at least ``window_steps + max_fill_steps + 1``).
        stuck_min_count: a step with at least this many readings, all equal, is ``stuck``.
        ranges: plausible (low, high) per sensor; a step outside is ``out_of_range``.
    """

    sensors: tuple[str, ...]
    step_ms: int = 60_000
    window_steps: int = 1
    aggregates: tuple[str, ...] = AGGREGATES
    derived: tuple[str, ...] = DERIVED
    grace_ms: int = 120_000
    max_fill_steps: int = 3
    max_gap_steps: int = 1440
    stuck_min_count: int = 3
    ranges: dict[str, tuple[float, float]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.sensors:
            raise FeatureConfigError("sensors must name at least one sensor, got ()")
        bad = [s for s in self.sensors if not _SENSOR_RE.match(s)]
        if bad:
            raise FeatureConfigError(f"sensors: {bad[0]!r} is not a valid sensor name")
        if len(set(self.sensors)) != len(self.sensors):
            raise FeatureConfigError(f"sensors must be unique, got {list(self.sensors)}")
        limits: tuple[tuple[str, int], ...] = (
            ("step_ms", 1),
            ("window_steps", 1),
            ("grace_ms", 0),
            ("max_fill_steps", 0),
            ("max_gap_steps", 1),
            ("stuck_min_count", 2),
        )
        for name, low in limits:
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise FeatureConfigError(f"{name} must be an integer >= {low}, got {value!r}")
        for group, allowed in (("aggregates", AGGREGATES), ("derived", DERIVED)):
            chosen = getattr(self, group)
            unknown = [a for a in chosen if a not in allowed]
            if unknown or len(set(chosen)) != len(chosen):
                raise FeatureConfigError(
                    f"{group} must be distinct names from {', '.join(allowed)}, got {list(chosen)}"
                )
        if not self.aggregates:
            raise FeatureConfigError("aggregates must name at least one aggregate, got ()")
        lookback = self.window_steps + self.max_fill_steps + 1
        if self.max_gap_steps < lookback:
            raise FeatureConfigError(
                f"max_gap_steps must be >= window_steps + max_fill_steps + 1 = {lookback}, "
                f"got {self.max_gap_steps}"
            )
        for sensor, bounds in self.ranges.items():
            if sensor not in self.sensors:
                raise FeatureConfigError(f"ranges: {sensor!r} is not one of the sensors")
            lo, hi = bounds
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise FeatureConfigError(
                    f"ranges[{sensor!r}] must be finite low < high, got {bounds}"
                )

    @property
    def per_sensor(self) -> int:
        """Features per sensor."""
        return len(self.aggregates) + len(self.derived) + len(FLAGS)

    def feature_names(self) -> list[str]:
        """Names of the vector's entries, ``<sensor>__<feature>``."""
        parts = (*self.aggregates, *self.derived, *FLAGS)
        return [f"{s}__{p}" for s in self.sensors for p in parts]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        data = asdict(self)
        data["sensors"] = list(self.sensors)
        data["aggregates"] = list(self.aggregates)
        data["derived"] = list(self.derived)
        data["ranges"] = {k: list(v) for k, v in sorted(self.ranges.items())}
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WindowConfig:
        """Inverse of :meth:`to_dict`; raises FeatureConfigError on a bad dict."""
        try:
            return cls(
                sensors=tuple(data["sensors"]),
                step_ms=data["step_ms"],
                window_steps=data["window_steps"],
                aggregates=tuple(data["aggregates"]),
                derived=tuple(data["derived"]),
                grace_ms=data["grace_ms"],
                max_fill_steps=data["max_fill_steps"],
                max_gap_steps=data["max_gap_steps"],
                stuck_min_count=data["stuck_min_count"],
                ranges={k: (float(v[0]), float(v[1])) for k, v in data.get("ranges", {}).items()},
            )
        except (KeyError, TypeError, IndexError) as exc:
            raise FeatureConfigError(f"not a window configuration: {exc!r}") from None

    def fingerprint(self) -> str:
        """A short hash of the configuration (equal configs, equal fingerprints)."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]
