"""Fixtures for the model tests: a small simulated fleet written as history files."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
# A third-party warning the tests cannot avoid (TensorFlow's numpy-2 array protocol when
# Keras saves weights); ignored for the tests of this directory only, not in pyproject.
_THIRD_PARTY = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark this directory's tests (setup included) with the narrow warning filter."""
    for item in items:
        if HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(_THIRD_PARTY)


@pytest.fixture(scope="session")
def sim_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Telemetry and events parquet files of 24 simulated machines, one reading per minute."""
    from ingest.history import history
    from ingest.simulator import SimulatorConfig

    config = SimulatorConfig(
        machines=24, seed=3, start_ms=0, interval_ms=60_000, mean_life_steps=250
    )
    telemetry, events = history(config, steps=900)
    directory = tmp_path_factory.mktemp("sim")
    tpath, epath = directory / "telemetry.parquet", directory / "events.parquet"
    telemetry.to_parquet(tpath)
    events.to_parquet(epath)
    return tpath, epath
