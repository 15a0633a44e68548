"""Training augmentation: readings removed at random, as a stream loses them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.config import WindowConfig
from models.data import History, drop_readings
from models.errors import DataError
from models.windows import step_features

MIN = 60_000


def fleet() -> History:
    ts = np.arange(200) * MIN
    telemetry = pd.DataFrame(
        {"equipment_id": ["m"] * 200, "ts": ts, "t": np.linspace(0.0, 1.0, 200)}
    )
    events = pd.DataFrame({"equipment_id": ["m"], "ts": [150 * MIN], "kind": ["failure"]})
    return History(telemetry, events, ())


def test_seeded_rows_only_events_untouched() -> None:
    h = fleet()
    a, b, c = drop_readings(h, 0.1, 1), drop_readings(h, 0.1, 1), drop_readings(h, 0.1, 2)
    assert a.telemetry.equals(b.telemetry)
    assert not a.telemetry.equals(c.telemetry)
    assert 0 < len(h.telemetry) - len(a.telemetry) < 40
    assert set(a.telemetry["ts"]) <= set(h.telemetry["ts"])
    assert a.events is h.events
    assert a.files == h.files


def test_a_lost_reading_becomes_a_filled_step() -> None:
    window = WindowConfig(sensors=("t",), step_ms=MIN, grace_ms=0)
    h = fleet()
    lost = drop_readings(h, 0.1, 1)
    clean, holed = step_features(h.telemetry, window), step_features(lost.telemetry, window)
    filled = holed.X[:, window.feature_names().index("t__filled")]
    assert len(holed.X) == len(clean.X)  # one step per minute still; the hole is filled
    assert 0 < filled.sum() <= len(h.telemetry) - len(lost.telemetry)


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 2.0])
def test_fraction_out_of_range(fraction: float) -> None:
    with pytest.raises(DataError, match=rf"drop_readings: value {fraction} is not a fraction"):
        drop_readings(fleet(), fraction, 0)
