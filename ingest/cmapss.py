"""NASA C-MAPSS turbofan data: loading with precise errors, and mapping to telemetry.

The files (``train_FD001.txt``, ``test_FD001.txt``, ``RUL_FD001.txt``) are whitespace
separated numbers, 26 per row: ``unit cycle setting_1..setting_3 s1..s21``. Parsing is
vectorised with pandas; only when pandas or a check fails is the file read again line by
line, to name the first bad line, column and value in a :class:`CmapssFormatError`.

Replay maps unit ``u`` to equipment id ``f"{prefix}-{u:03d}"`` and cycle ``c`` to event time
``start_ms + (c - 1) * cycle_ms``; a training engine fails at its last cycle (test histories
are cut off before failure, so they carry no failure).

>>> df = pandas.DataFrame({"unit": [2, 1, 1], "cycle": [1, 1, 2]} | {n: 0.5 for n in READINGS})
>>> [(r.equipment_id, r.ts_ms, r.seq) for r in to_telemetry(df, start_ms=0, cycle_ms=600_000)]
[('engine-001', 0, 1), ('engine-002', 0, 1), ('engine-001', 600000, 2)]
>>> [(e.equipment_id, e.ts_ms, e.kind) for e in failure_events(df, 0, 600_000)]
[('engine-002', 0, 'failure'), ('engine-001', 600000, 'failure')]
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Literal, NamedTuple, NoReturn

import numpy as np
import numpy.typing as npt
import pandas

from ingest.contract import Telemetry
from ingest.events import MaintenanceEvent
from pipeline.errors import PlantwatchError

#: The 3 operating settings and 21 sensors, in file order (the readings of each sample).
READINGS: tuple[str, ...] = (*(f"setting_{i}" for i in (1, 2, 3)), *(f"s{i}" for i in range(1, 22)))
#: All 26 columns of a C-MAPSS data file, in file order.
COLUMNS: tuple[str, ...] = ("unit", "cycle", *READINGS)

_NUMBER_RE = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")
_MAX_INT = 2**31 - 1
_EXPECTED_ROW = "26 numbers: unit cycle setting_1..setting_3 s1..s21"


class CmapssFormatError(PlantwatchError):
    """A C-MAPSS file is missing or not in the expected format.

    Attributes:
        file: the file.
        line: 1-based line number of the problem, or None for the whole file.
        column: name of the offending column (``unit``, ``s7``, ``rul``), or None.
        value: the offending text as written in the file, or None.
        expected: what would have been accepted.
    """

    def __init__(
        self,
        file: Path,
        line: int | None,
        column: str | None,
        value: str | None,
        problem: str,
        expected: str,
    ) -> None:
        self.file = file
        self.line = line
        self.column = column
        self.value = value
        self.expected = expected
        where = str(file)
        if line is not None:
            where += f", line {line}"
        if column is not None:
            where += f", column {column!r}"
        super().__init__(f"{where}: {problem}: expected {expected}")


class CmapssSplit(NamedTuple):
    """One C-MAPSS subset: training histories, censored test histories, their true RUL."""

    train: pandas.DataFrame
    test: pandas.DataFrame
    rul: pandas.Series[int]


def split_of(path: str | Path) -> Literal["train", "test"] | None:
    """Whether a file holds run-to-failure (``train``) or censored (``test``) histories.

    >>> split_of("data/train_FD001.txt"), split_of("test_FD001.txt"), split_of("x.txt")
    ('train', 'test', None)
    """
    name = Path(path).name
    if name.startswith("train_"):
        return "train"
    if name.startswith("test_"):
        return "test"
    return None


def _numbers(path: Path, columns: tuple[str, ...], expected_row: str) -> pandas.DataFrame:
    """Read a whitespace-separated numeric file into float64 columns, or name the bad line."""
    if not path.is_file():
        problem = "is a directory" if path.is_dir() else "no such file"
        raise CmapssFormatError(path, None, None, None, problem, "a C-MAPSS text file")
    try:
        frame = pandas.read_csv(path, sep=r"\s+", header=None, dtype="float64", engine="c")
    except (ValueError, OSError) as exc:  # ParserError, EmptyDataError, decoding errors
        _find_bad_line(path, columns, expected_row, str(exc))
    values = frame.to_numpy()
    if frame.shape[1] != len(columns) or not len(frame) or not np.isfinite(values).all():
        _find_bad_line(path, columns, expected_row, "pandas read it differently")
    frame.columns = pandas.Index(columns)
    return frame


def _rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Line number and fields of each non-blank line (what pandas reads as rows): error path."""
    with path.open(encoding="utf-8", errors="replace") as lines:
        for number, line in enumerate(lines, start=1):
            if tokens := line.split():
                yield number, tokens


def _find_bad_line(
    path: Path, columns: tuple[str, ...], expected_row: str, fallback: str
) -> NoReturn:
    """The slow path: raise for the first line that is not ``len(columns)`` numbers."""
    seen = False
    for number, tokens in _rows(path):
        seen = True
        if len(tokens) != len(columns):
            problem = f"the line has {len(tokens)} values"
            raise CmapssFormatError(path, number, None, None, problem, expected_row)
        for name, token in zip(columns, tokens, strict=True):
            if not _NUMBER_RE.match(token):
                problem = f"value {token!r} is not a number"
                raise CmapssFormatError(path, number, name, token, problem, "a finite number")
    if not seen:
        raise CmapssFormatError(path, None, None, None, "the file is empty", expected_row)
    raise CmapssFormatError(path, None, None, None, f"unreadable ({fallback})", expected_row)


def _line_of_row(path: Path, row: int) -> tuple[int, list[str]]:
    """Line number and fields of the ``row``-th (0-based) row: error path only."""
    return next(itertools.islice(_rows(path), row, None))


def _integers(path: Path, frame: pandas.DataFrame, columns: tuple[str, ...], low: int) -> None:
    """Check that ``columns`` hold integers >= ``low`` and convert them to int64 in place."""
    for name in columns:
        values = frame[name].to_numpy()
        bad = (values != np.floor(values)) | (values < low) | (values > _MAX_INT)
        if bad.any():
            line, tokens = _line_of_row(path, int(np.argmax(bad)))
            token = tokens[list(frame.columns).index(name)]
            what = "a positive integer" if low > 0 else "a non-negative integer"
            problem = f"value {token!r} is not valid"
            raise CmapssFormatError(path, line, name, token, problem, what)
        frame[name] = values.astype(np.int64)


def load_cmapss(path: str | Path) -> pandas.DataFrame:
    """Load one C-MAPSS data file (``train_FD001.txt`` or ``test_FD001.txt``).

    Args:
        path: the file.

    Returns:
        One row per engine cycle, in file order: ``unit`` and ``cycle`` (int64), then
        ``setting_1..setting_3`` and ``s1..s21`` (float64).

    Raises:
        CmapssFormatError: the file is missing or empty, a line does not hold 26 numbers,
            a unit or cycle is not a positive integer, an engine's rows are not together
            or its cycles do not increase.
    """
    path = Path(path)
    frame = _numbers(path, COLUMNS, _EXPECTED_ROW)
    _integers(path, frame, ("unit", "cycle"), low=1)
    unit = frame["unit"].to_numpy()
    cycle = frame["cycle"].to_numpy()
    same = unit[1:] == unit[:-1]
    backwards = same & (cycle[1:] <= cycle[:-1])
    if backwards.any():
        row = int(np.argmax(backwards)) + 1
        line, tokens = _line_of_row(path, row)
        problem = f"cycle {tokens[1]} of unit {unit[row]} follows its cycle {cycle[row - 1]}"
        raise CmapssFormatError(path, line, "cycle", tokens[1], problem, "increasing cycles")
    starts = np.flatnonzero(np.r_[True, ~same])
    repeated = pandas.Series(unit[starts]).duplicated().to_numpy()
    if repeated.any():
        row = int(starts[np.argmax(repeated)])
        line, tokens = _line_of_row(path, row)
        problem = f"unit {unit[row]} appears again after other units"
        raise CmapssFormatError(path, line, "unit", tokens[0], problem, "each unit's rows together")
    return frame


def load_rul(path: str | Path) -> pandas.Series[int]:
    """Load ``RUL_FDxxx.txt``: the true remaining cycles after each test engine's last cycle.

    Returns:
        One int64 per test engine, named ``rul``, indexed by unit 1..n (line order).

    Raises:
        CmapssFormatError: the file is missing or empty, or a line is not one
            non-negative integer.
    """
    path = Path(path)
    frame = _numbers(path, ("rul",), "one non-negative integer per line (one per test engine)")
    _integers(path, frame, ("rul",), low=0)
    rul = frame["rul"]
    rul.index = pandas.RangeIndex(1, len(rul) + 1, name="unit")
    return rul


def load_split(directory: str | Path, subset: str = "FD001") -> CmapssSplit:
    """Load ``train_<subset>.txt``, ``test_<subset>.txt`` and ``RUL_<subset>.txt``.

    Raises:
        CmapssFormatError: as the loaders do, or if the RUL file does not hold one line
            per test engine.
    """
    directory = Path(directory)
    train = load_cmapss(directory / f"train_{subset}.txt")
    test = load_cmapss(directory / f"test_{subset}.txt")
    rul_path = directory / f"RUL_{subset}.txt"
    rul = load_rul(rul_path)
    engines = test["unit"].nunique()
    if len(rul) != engines:
        problem = f"{len(rul)} values for the {engines} engines of test_{subset}.txt"
        raise CmapssFormatError(rul_path, None, None, None, problem, "one line per engine")
    return CmapssSplit(train, test, rul)


def _event_times(df: pandas.DataFrame, start_ms: int, cycle_ms: int) -> npt.NDArray[np.int64]:
    if cycle_ms <= 0:
        raise ValueError(f"cycle_ms must be positive. Received: cycle_ms={cycle_ms}")
    cycles = df["cycle"].to_numpy(dtype=np.int64)
    return start_ms + (cycles - 1) * cycle_ms


def equipment_id(prefix: str, unit: int) -> str:
    """The equipment id of a C-MAPSS unit.

    >>> equipment_id("engine", 7)
    'engine-007'
    """
    return f"{prefix}-{unit:03d}"


def to_telemetry(
    df: pandas.DataFrame,
    start_ms: int,
    cycle_ms: int,
    prefix: str = "engine",
    asset_type: str | None = "turbofan",
    site: str | None = None,
) -> Iterator[Telemetry]:
    """One telemetry sample per row, in event-time order across engines (ties by unit).

    Args:
        df: rows as :func:`load_cmapss` returns them.
        start_ms: event time of cycle 1, epoch ms.
        cycle_ms: event time between two cycles, ms.
        prefix: equipment id prefix (``engine`` gives ``engine-001``).
        asset_type: the samples' asset type.
        site: the samples' site, if any.

    Returns:
        Samples with the 3 settings and 21 sensors as readings and the cycle as ``seq``.
    """
    ts = _event_times(df, start_ms, cycle_ms)
    units = df["unit"].to_numpy(dtype=np.int64)
    order = np.lexsort((units, ts))
    rows = df[list(READINGS)].to_numpy(dtype=np.float64)[order].tolist()
    cycles = df["cycle"].to_numpy(dtype=np.int64)[order].tolist()
    ids = {u: equipment_id(prefix, u) for u in np.unique(units).tolist()}

    def samples() -> Iterator[Telemetry]:
        for unit, when, cycle, row in zip(
            units[order].tolist(), ts[order].tolist(), cycles, rows, strict=True
        ):
            readings = dict(zip(READINGS, row, strict=True))
            yield Telemetry(ids[unit], when, readings, site, asset_type, cycle)

    return samples()


def failure_events(
    df: pandas.DataFrame, start_ms: int, cycle_ms: int, prefix: str = "engine"
) -> list[MaintenanceEvent]:
    """A failure at each engine's last cycle, in event-time order (ties by unit).

    Only for training (run-to-failure) data: test histories end before failure.
    """
    last = df.groupby("unit", sort=True)["cycle"].max()
    ts = _event_times(last.to_frame(), start_ms, cycle_ms)
    units = last.index.to_numpy(dtype=np.int64)
    order = np.lexsort((units, ts))
    return [
        MaintenanceEvent(equipment_id(prefix, unit), when, "failure", "cmapss", "cmapss")
        for unit, when in zip(units[order].tolist(), ts[order].tolist(), strict=True)
    ]
