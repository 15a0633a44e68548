"""Data loaders: C-MAPSS text files and the generic history format (telemetry + events).

A data source is written ``cmapss:DIR[:FD00N]`` (``train_FD00N.txt``, ``test_FD00N.txt``,
``RUL_FD00N.txt`` of one of the four subsets; FD001 by default, or the directory's only
subset: :func:`cmapss_source`) or ``history:FILE`` (CSV or Parquet telemetry with ``equipment_id``,
``ts`` as integer epoch ms and one numeric column per sensor, as the simulator's
:func:`ingest.history.history` writes it) plus an events table (``equipment_id``, ``ts``,
``kind`` in failure/repair). Malformed input raises :class:`~models.errors.DataError`
naming the file, the column and the problem.

C-MAPSS maps unit ``u`` to ``engine-{u:03d}`` and cycle ``c`` to ``ts = (c - 1) * step_ms``;
a training engine fails at its last cycle.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from ingest.cmapss import READINGS, load_split
from models.errors import DataError

EVENT_KINDS = ("failure", "repair")


@dataclass(frozen=True)
class History:
    """Telemetry and ground truth of a fleet, plus (C-MAPSS only) the censored test part.

    Attributes:
        telemetry: ``equipment_id``, ``ts`` (int64 ms), one column per sensor.
        events: ``equipment_id``, ``ts`` (int64 ms), ``kind``.
        files: the files read (their bytes make the training data fingerprint).
        test: C-MAPSS test telemetry (histories cut before failure), else None.
        test_rul: C-MAPSS remaining cycles after each test engine's last cycle, by equipment id.
    """

    telemetry: pd.DataFrame
    events: pd.DataFrame
    files: tuple[Path, ...]
    test: pd.DataFrame | None = None
    test_rul: pd.Series | None = None


def cmapss_telemetry(rows: pd.DataFrame, step_ms: int) -> pd.DataFrame:
    """C-MAPSS rows (unit, cycle, readings) as telemetry (equipment_id, ts, readings).

    >>> rows = pd.DataFrame({"unit": [1, 1], "cycle": [1, 2]} | {r: 0.0 for r in READINGS})
    >>> cmapss_telemetry(rows, 600_000)[["equipment_id", "ts"]].values.tolist()
    [['engine-001', 0], ['engine-001', 600000]]
    """
    out = pd.DataFrame(
        {
            "equipment_id": [f"engine-{int(u):03d}" for u in rows["unit"]],
            "ts": (rows["cycle"].to_numpy(dtype=np.int64) - 1) * step_ms,
        }
    )
    for name in READINGS:
        out[name] = rows[name].to_numpy(dtype=np.float64)
    return out


def load_cmapss_history(directory: str | Path, step_ms: int, subset: str = "FD001") -> History:
    """C-MAPSS train (failures at each engine's last cycle), test and RUL as a History."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DataError(f"{directory}: not a directory holding C-MAPSS train/test/RUL files")
    split = load_split(directory, subset)
    telemetry = cmapss_telemetry(split.train, step_ms)
    last = telemetry.groupby("equipment_id", sort=True)["ts"].max()
    events = pd.DataFrame(
        {"equipment_id": last.index.astype(str), "ts": last.to_numpy(np.int64), "kind": "failure"}
    )
    test = cmapss_telemetry(split.test, step_ms)
    rul = pd.Series(
        split.rul.to_numpy(dtype=np.int64),
        index=[f"engine-{int(u):03d}" for u in split.rul.index],
        name="rul",
    )
    files = tuple(directory / f"{p}_{subset}.txt" for p in ("train", "test", "RUL"))
    return History(telemetry, events, files, test, rul)


def _read_table(path: Path, what: str) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"{path}: no such {what} file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            frame = pd.read_parquet(path)
        elif suffix == ".csv":
            frame = pd.read_csv(path)
        else:
            raise DataError(f"{path}: {what} must be a .csv or .parquet file, got {suffix!r}")
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the {what} file is empty") from None
    except (ValueError, OSError) as exc:
        raise DataError(f"{path}: cannot read the {what} file: {exc}") from exc
    if frame.empty:
        raise DataError(f"{path}: the {what} file has no rows")
    return frame


def _check_id_ts(frame: pd.DataFrame, path: Path, what: str) -> None:
    for column in ("equipment_id", "ts"):
        if column not in frame.columns:
            raise DataError(
                f"{path}: the {what} file has no column {column!r} "
                f"(columns: {', '.join(map(str, frame.columns))})"
            )
    if not pd.api.types.is_integer_dtype(frame["ts"]):
        bad = frame["ts"].iloc[0]
        raise DataError(
            f"{path}: column 'ts' must hold integer epoch milliseconds, "
            f"got dtype {frame['ts'].dtype} (first value {bad!r})"
        )
    if frame["equipment_id"].isna().any():
        raise DataError(f"{path}: column 'equipment_id' has empty values")


def load_history_files(
    telemetry_path: str | Path, events_path: str | Path, sensors: tuple[str, ...]
) -> History:
    """Read generic history telemetry and events, checking columns and types.

    Args:
        telemetry_path: CSV or Parquet telemetry.
        events_path: CSV or Parquet events.
        sensors: the sensors of the features configuration; at least one must be present
            and every present one must be numeric.

    Raises:
        DataError: missing/empty file, missing column, wrong type, unknown event kind.
    """
    tpath, epath = Path(telemetry_path), Path(events_path)
    telemetry = _read_table(tpath, "telemetry")
    _check_id_ts(telemetry, tpath, "telemetry")
    present = [s for s in sensors if s in telemetry.columns]
    if not present:
        raise DataError(
            f"{tpath}: none of the configured sensors is a column "
            f"(expected some of {', '.join(sensors)})"
        )
    for sensor in present:
        if not pd.api.types.is_numeric_dtype(telemetry[sensor]):
            bad = telemetry[sensor].iloc[0]
            raise DataError(
                f"{tpath}: sensor column {sensor!r} must be numeric, "
                f"got dtype {telemetry[sensor].dtype} (first value {bad!r})"
            )
    events = _read_table(epath, "events")
    _check_id_ts(events, epath, "events")
    if "kind" not in events.columns:
        raise DataError(f"{epath}: the events file has no column 'kind'")
    unknown = ~events["kind"].isin(EVENT_KINDS)
    if unknown.any():
        raise DataError(
            f"{epath}: column 'kind': value {events['kind'][unknown].iloc[0]!r} is not valid: "
            f"expected one of {', '.join(EVENT_KINDS)}"
        )
    telemetry = telemetry.assign(equipment_id=telemetry["equipment_id"].astype(str))
    events = events.assign(equipment_id=events["equipment_id"].astype(str))
    return History(telemetry, events[["equipment_id", "ts", "kind"]], (tpath, epath))


def default_events_path(telemetry_path: Path) -> Path:
    """``events.<ext>`` next to the telemetry file (the simulator's layout)."""
    for name in (
        f"{telemetry_path.stem}.events{telemetry_path.suffix}",
        "events.parquet",
        "events.csv",
    ):
        candidate = telemetry_path.with_name(name)
        if candidate.is_file():
            return candidate
    return telemetry_path.with_name(f"events{telemetry_path.suffix}")


CMAPSS_SUBSETS = ("FD001", "FD002", "FD003", "FD004")
"""The four C-MAPSS subsets (operating conditions x failure modes: 1x1, 6x1, 1x2, 6x2)."""


def cmapss_source(rest: str) -> tuple[Path, str]:
    """The directory and subset of ``cmapss:DIR[:FD00N]`` (``rest`` is what follows ``cmapss:``).

    Without a subset: FD001 when the directory has its training file, else the one subset
    it has; a directory with several (and no FD001) must name one.

    >>> cmapss_source("data/cmapss:fd002")
    (PosixPath('data/cmapss'), 'FD002')
    """
    head, sep, tail = rest.rpartition(":")
    if sep and tail.upper().startswith("FD"):
        if tail.upper() not in CMAPSS_SUBSETS:
            raise DataError(
                f"data source cmapss:{rest}: subset {tail!r} is not one of "
                f"{', '.join(CMAPSS_SUBSETS)}"
            )
        return Path(head), tail.upper()
    directory = Path(rest)
    found = [s for s in CMAPSS_SUBSETS if (directory / f"train_{s}.txt").is_file()]
    if len(found) <= 1 or "FD001" in found:
        return directory, found[0] if len(found) == 1 else "FD001"
    raise DataError(
        f"data source cmapss:{rest}: the directory holds the subsets {', '.join(found)}; "
        f"name one, e.g. cmapss:{rest}:{found[0]}"
    )


def load_source(
    source: str, step_ms: int, sensors: tuple[str, ...], events: str | Path | None = None
) -> History:
    """Load ``cmapss:DIR[:FD00N]`` or ``history:FILE`` (events from ``events`` or next to FILE)."""
    kind, sep, rest = source.partition(":")
    if not sep or not rest or kind not in ("cmapss", "history"):
        raise DataError(f"data source {source!r} is not valid: expected cmapss:DIR or history:FILE")
    if kind == "cmapss":
        directory, subset = cmapss_source(rest)
        return load_cmapss_history(directory, step_ms, subset)
    path = Path(rest)
    return load_history_files(path, Path(events) if events else default_events_path(path), sensors)


def drop_readings(history: History, fraction: float, seed: int) -> History:
    """The history with ``fraction`` of its telemetry rows removed at random (seeded).

    Training augmentation: a stream loses readings (malformed or too-late messages are
    dead-lettered), and the feature step turns each loss into a filled step (last value
    repeated, ``filled`` = 1, a longer ``since_last``). Clean history has such steps only
    where a machine stopped for a repair, so a model trained on it alone can mistake one
    lost reading for a failure (docs/models.md).

    >>> h = History(pd.DataFrame({"equipment_id": ["m"] * 1000, "ts": range(1000)}),
    ...             pd.DataFrame(columns=["equipment_id", "ts", "kind"]), ())
    >>> len(drop_readings(h, 0.1, seed=0).telemetry), drop_readings(h, 0.0, seed=0) is h
    (911, True)
    """
    if not 0.0 <= fraction < 1.0:
        raise DataError(f"drop_readings: value {fraction} is not a fraction in [0, 1)")
    if fraction == 0.0:
        return history
    keep = np.random.default_rng(seed).random(len(history.telemetry)) >= fraction
    return replace(history, telemetry=history.telemetry[keep].reset_index(drop=True))


def fingerprint(files: tuple[Path, ...]) -> str:
    """sha256 over the bytes of the files, in order: identifies the training data."""
    import hashlib

    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode())
        with path.open("rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()
