"""C-MAPSS loading (hand-made files and the real FD001), mapping to telemetry, failures."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from ingest.cmapss import (
    COLUMNS,
    READINGS,
    CmapssFormatError,
    failure_events,
    load_cmapss,
    load_rul,
    load_split,
    split_of,
    to_telemetry,
)
from ingest.contract import validate
from ingest.events import MaintenanceEvent
from pipeline.errors import PlantwatchError
from plantwatch.cli import cli
from tests.conftest import CMAPSS

needs_cmapss = pytest.mark.skipif(not CMAPSS.exists(), reason="../shared/data/cmapss not present")

MINUTE = 60_000


def row(unit: int | str, cycle: int | str, *, sensor: float = 0.0) -> str:
    """A C-MAPSS line: distinct values per column, like the real files (two trailing spaces)."""
    values = [f"{0.001 * i + sensor:.4f}" for i in range(24)]
    return " ".join([str(unit), str(cycle), *values]) + "  "


def write(tmp_path: Path, text: str, name: str = "train_tiny.txt") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def lines(*rows: str) -> str:
    return "\n".join(rows) + "\n"


# --- parsing ---------------------------------------------------------------------------


def test_parses_columns_types_and_values(tmp_path: Path) -> None:
    path = write(tmp_path, lines(row(1, 1), row(1, 2, sensor=1), "", row(2, 1)))
    df = load_cmapss(path)
    assert list(df.columns) == list(COLUMNS) == ["unit", "cycle", *READINGS]
    assert READINGS[:3] == ("setting_1", "setting_2", "setting_3")
    assert READINGS[3:] == tuple(f"s{i}" for i in range(1, 22))
    assert df["unit"].dtype == "int64"
    assert df["cycle"].dtype == "int64"
    assert all(df[c].dtype == "float64" for c in READINGS)
    assert df[["unit", "cycle"]].to_numpy().tolist() == [[1, 1], [1, 2], [2, 1]]
    assert df.loc[1, "setting_1"] == 1.0
    assert df.loc[0, "s21"] == pytest.approx(0.023)


@pytest.mark.parametrize(
    ("text", "line", "column", "value", "fragment"),
    [
        (lines(row(1, 1), row(1, 2).rsplit(" ", 3)[0]), 2, None, None, "has 25 values"),
        (lines(row(1, 1) + " 9", row(1, 2)), 1, None, None, "has 27 values"),
        (lines(row(1, 1), "", row(1, 2) + " 9"), 3, None, None, "has 27 values"),
        (lines(row(1, 1), row(1, 2).replace("0.0100", "x.1")), 2, "s8", "x.1", "not a number"),
        (lines(row(1, 1), "  ", row(1, 2).replace("0.0200", "nan")), 3, "s18", "nan", "number"),
        (lines(row(1, 1).replace("0.0030", "1,5")), 1, "s1", "1,5", "not a number"),
        (lines(row(1, 1), row(1, 3), "", row(1, 2)), 4, "cycle", "2", "follows its cycle 3"),
        (lines(row(1, 1), row(1, 1)), 2, "cycle", "1", "increasing cycles"),
        (lines(row(1, 1), row(2, 1), row(1, 2)), 3, "unit", "1", "appears again"),
        (lines(row(1, 1), row("1.5", 2)), 2, "unit", "1.5", "a positive integer"),
        (lines(row(1, 0)), 1, "cycle", "0", "a positive integer"),
    ],
)
def test_malformed_file_names_line_column_and_value(
    tmp_path: Path, text: str, line: int, column: str | None, value: str | None, fragment: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(CmapssFormatError) as info:
        load_cmapss(path)
    err = info.value
    assert (err.file, err.line, err.column, err.value) == (path, line, column, value)
    assert isinstance(err, PlantwatchError)
    message = str(err)
    assert message.startswith(f"{path}, line {line}")
    assert fragment in message
    assert ": expected " in message
    assert "\n" not in message


@pytest.mark.parametrize("text", ["", "\n  \n"])
def test_empty_file(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(CmapssFormatError, match="the file is empty: expected 26 numbers") as info:
        load_cmapss(path)
    assert info.value.line is None


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(CmapssFormatError, match=r"nope\.txt: no such file"):
        load_cmapss(tmp_path / "nope.txt")
    with pytest.raises(CmapssFormatError, match="is a directory"):
        load_cmapss(tmp_path)


def test_non_utf8_bytes_are_a_bad_value(tmp_path: Path) -> None:
    path = tmp_path / "train_bytes.txt"
    path.write_bytes(row(1, 1).replace("0.0050", "0.0\xff5").encode("latin-1") + b"\n")
    with pytest.raises(CmapssFormatError, match="line 1, column 's3'"):
        load_cmapss(path)


def test_rul(tmp_path: Path) -> None:
    rul = load_rul(write(tmp_path, "112\n98\n\n69\n", "RUL_X.txt"))
    assert rul.tolist() == [112, 98, 69]
    assert rul.index.tolist() == [1, 2, 3]
    assert rul.dtype == "int64"
    assert rul.name == "rul"


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("112\n-1\n", 2, "value '-1' is not valid: expected a non-negative integer"),
        ("112\n7.5\n", 2, "value '7.5' is not valid"),
        ("112 3\n", 1, "has 2 values: expected one non-negative integer per line"),
        ("112\nabc\n", 2, "value 'abc' is not a number"),
    ],
)
def test_bad_rul(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    path = write(tmp_path, text, "RUL_X.txt")
    with pytest.raises(CmapssFormatError, match=f"line {line}.*{fragment}"):
        load_rul(path)
    with pytest.raises(CmapssFormatError, match="the file is empty"):
        load_rul(write(tmp_path, "", "RUL_Y.txt"))


def test_split_checks_rul_against_test_engines(tmp_path: Path) -> None:
    write(tmp_path, lines(row(1, 1), row(1, 2), row(2, 1)), "train_FDX.txt")
    write(tmp_path, lines(row(1, 1), row(2, 1), row(3, 1)), "test_FDX.txt")
    write(tmp_path, "5\n6\n", "RUL_FDX.txt")
    with pytest.raises(CmapssFormatError, match=r"2 values for the 3 engines of test_FDX\.txt"):
        load_split(tmp_path, "FDX")
    write(tmp_path, "5\n6\n7\n", "RUL_FDX.txt")
    train, test, rul = load_split(tmp_path, "FDX")
    assert (len(train), len(test), rul.tolist()) == (3, 3, [5, 6, 7])


# --- telemetry and failures -------------------------------------------------------------


def test_telemetry_maps_units_cycles_and_readings(tmp_path: Path) -> None:
    df = load_cmapss(write(tmp_path, lines(row(7, 1), row(7, 2, sensor=2.5), row(12, 1))))
    start = 1_700_000_000_000
    out = list(to_telemetry(df, start, 10 * MINUTE, prefix="fd001", site="lab"))
    assert [(r.equipment_id, r.ts_ms, r.seq) for r in out] == [
        ("fd001-007", start, 1),
        ("fd001-012", start, 1),
        ("fd001-007", start + 10 * MINUTE, 2),
    ]
    second = out[2]
    assert list(second.readings) == list(READINGS)
    assert second.readings["setting_1"] == 2.5
    assert second.readings["s21"] == pytest.approx(2.523)
    assert (second.asset_type, second.site) == ("turbofan", "lab")
    for record, (_, source) in zip(out, df.iloc[[0, 2, 1]].iterrows(), strict=True):
        assert record.readings == {name: source[name] for name in READINGS}


def test_telemetry_is_in_event_time_order_across_engines(tmp_path: Path) -> None:
    # Engine 3 is listed first and is longer; ties on event time go by unit.
    rows = [row(3, c) for c in range(1, 6)] + [row(1, c) for c in range(1, 3)] + [row(2, 4)]
    df = load_cmapss(write(tmp_path, lines(*rows)))
    out = list(to_telemetry(df, 0, MINUTE))
    keys = [(r.ts_ms, r.equipment_id) for r in out]
    assert keys == sorted(keys)
    assert [r.equipment_id[-1] + str(r.seq) for r in out] == [
        "11", "31", "12", "32", "33", "24", "34", "35"
    ]  # fmt: skip


def test_failures_at_each_engines_last_cycle_in_time_order(tmp_path: Path) -> None:
    rows = [row(1, c) for c in range(1, 4)] + [row(2, c) for c in range(1, 3)] + [row(3, 3)]
    df = load_cmapss(write(tmp_path, lines(*rows)))
    events = failure_events(df, 1000, MINUTE, prefix="engine")
    assert events == [
        MaintenanceEvent("engine-002", 1000 + MINUTE, "failure", "cmapss", "cmapss"),
        MaintenanceEvent("engine-001", 1000 + 2 * MINUTE, "failure", "cmapss", "cmapss"),
        MaintenanceEvent("engine-003", 1000 + 2 * MINUTE, "failure", "cmapss", "cmapss"),
    ]


def test_only_training_files_have_failures(tmp_path: Path) -> None:
    assert split_of("x/train_FD001.txt") == "train"
    assert split_of(Path("test_FD001.txt")) == "test"
    assert split_of("RUL_FD001.txt") is None
    path = write(tmp_path, lines(row(1, 1), row(1, 2)), "test_FDX.txt")
    result = CliRunner().invoke(cli, ["replay", "cmapss", str(path), "--failures"])
    assert result.exit_code == 2
    assert "test_FDX.txt holds censored histories" in result.stderr


def test_bad_cycle_period_cycle_span_and_engines_are_refused(tmp_path: Path) -> None:
    path = write(tmp_path, lines(*(row(1, c) for c in range(1, 101))))
    runner = CliRunner()
    cases = {
        ("--cycle-period", "7x"): "'7x' is not a duration",
        ("--cycle-period", "1d"): "days old when sent",
        ("--engines", "2"): "units [2] are not in train_tiny.txt",
        ("--engines", "1-a"): "'1-a' is not a unit or a range",
        ("--start", "yesterday"): "'yesterday' is not a time",
        ("--prefix", "-x"): "field 'equipment_id'",
        ("--speed", "0"): "--speed",
    }
    for args, fragment in cases.items():
        result = runner.invoke(cli, ["replay", "cmapss", str(path), *args])
        assert result.exit_code == 2, args
        assert fragment in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
    result = runner.invoke(cli, ["replay", "cmapss", str(tmp_path / "nope.txt")])
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0
    assert "nope.txt: no such file" in result.stderr


# --- the real FD001 files ---------------------------------------------------------------


@needs_cmapss
def test_real_files_match_their_checksums() -> None:
    sums = dict(reversed(line.split()) for line in (CMAPSS / "SHA256SUMS").read_text().splitlines())
    for name in ("train_FD001.txt", "test_FD001.txt", "RUL_FD001.txt"):
        assert hashlib.sha256((CMAPSS / name).read_bytes()).hexdigest() == sums[name], name


@needs_cmapss
def test_real_training_file() -> None:
    df = load_cmapss(CMAPSS / "train_FD001.txt")
    assert df.shape == (20631, 26)
    text = (CMAPSS / "train_FD001.txt").read_text().splitlines()
    exact = [[float(v) for v in line.split()] for line in text]
    assert df.to_numpy(dtype=float).tolist() == exact  # parsed exactly as Python reads them
    assert df["unit"].nunique() == 100
    assert sorted(df["unit"].unique().tolist()) == list(range(1, 101))
    last = df.groupby("unit")["cycle"].max()
    assert (df.groupby("unit")["cycle"].min() == 1).all()
    assert (df.groupby("unit").size() == last).all()  # cycles 1..n without gaps
    start = 1_700_000_000_000
    events = failure_events(df, start, 10 * MINUTE)
    assert len(events) == 100
    for event in events:
        unit = int(event.equipment_id.split("-")[1])
        assert event.ts_ms == start + (last[unit] - 1) * 10 * MINUTE
        assert event.kind == "failure"
    assert [e.ts_ms for e in events] == sorted(e.ts_ms for e in events)
    records = list(to_telemetry(df, start, 10 * MINUTE))
    assert len(records) == 20631
    assert len({(r.equipment_id, r.seq) for r in records}) == 20631
    stamps = [r.ts_ms for r in records]
    assert stamps == sorted(stamps)
    ending = {e.equipment_id: e.ts_ms for e in events}
    assert all(r.ts_ms <= ending[r.equipment_id] for r in records)


@needs_cmapss
def test_real_split_and_telemetry_pass_the_contract() -> None:
    train, test, rul = load_split(CMAPSS)
    assert len(test) == 13096
    assert test["unit"].nunique() == len(rul) == 100
    assert rul.loc[1] == 112
    now = 1_700_000_000_000
    start = now - (int(train["cycle"].max()) - 1) * 10 * MINUTE
    from ingest.contract import encode

    for record in list(to_telemetry(train, start, 10 * MINUTE))[::997]:
        samples, rejection = validate(encode(record), now_ms=now)
        assert rejection is None
        assert samples == [record]


def test_dataframe_input_is_not_modified(tmp_path: Path) -> None:
    df = load_cmapss(write(tmp_path, lines(row(2, 1), row(1, 1))))
    before = df.copy()
    list(to_telemetry(df, 0, MINUTE))
    failure_events(df, 0, MINUTE)
    pd.testing.assert_frame_equal(df, before)
