"""Named feature configurations: what `--features-config plant|cmapss` means.

``plant`` fits the simulator's fleet (1 Hz sampling, one-minute steps); ``cmapss`` fits
the C-MAPSS replay (one reading per engine cycle; the step is the replay's cycle period,
10 minutes by default). Anything else is read as a JSON file holding a
:class:`~features.config.WindowConfig` (``WindowConfig.to_dict()``).
"""

from __future__ import annotations

import json
from pathlib import Path

from features.config import FeatureConfigError, WindowConfig

PLANT_SENSORS = (
    "vibration_rms",
    "bearing_temp",
    "discharge_pressure",
    "flow_rate",
    "motor_current",
    "efficiency",
    "suction_pressure",
    "discharge_temp",
    "oil_temp",
    "speed_rpm",
    "airflow",
    "motor_temp",
)
CMAPSS_SENSORS = tuple(f"setting_{i}" for i in (1, 2, 3)) + tuple(f"s{i}" for i in range(1, 22))

PRESETS: dict[str, WindowConfig] = {
    "plant": WindowConfig(sensors=PLANT_SENSORS, step_ms=60_000, grace_ms=120_000),
    "cmapss": WindowConfig(
        sensors=CMAPSS_SENSORS,
        step_ms=600_000,
        grace_ms=0,
        aggregates=("mean",),
        derived=(),
        max_fill_steps=0,
    ),
}


def load_window_config(name_or_path: str) -> WindowConfig:
    """A preset by name, or a WindowConfig JSON file.

    Raises:
        FeatureConfigError: unknown preset, unreadable file or invalid configuration.
    """
    if name_or_path in PRESETS:
        return PRESETS[name_or_path]
    path = Path(name_or_path)
    if not path.is_file():
        raise FeatureConfigError(
            f"features config {name_or_path!r} is neither a preset "
            f"({', '.join(PRESETS)}) nor a JSON file"
        )
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise FeatureConfigError(f"features config {path}: cannot read JSON: {exc}") from None
    if not isinstance(data, dict):
        raise FeatureConfigError(f"features config {path}: expected a JSON object")
    return WindowConfig.from_dict(data)
