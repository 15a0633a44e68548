"""Pure parts of `plantwatch history` / `status`: Flux text, time options, frame merging."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.errors import OptionError
from plantwatch.cli import cli
from plantwatch.fleet import machines_from_rows, stage_groups
from plantwatch.flux import flux_params, flux_string, parse_every, parse_range, parse_when
from plantwatch.history import HistoryQuery, bounds_flux, history_flux, merge_history
from plantwatch.historyview import summary_lines, write_csv
from plantwatch.settings import load_settings

NOW = datetime(2025, 1, 8, tzinfo=UTC)
T = [datetime(2025, 1, 1, 0, m, tzinfo=UTC) for m in range(4)]


@pytest.mark.parametrize(
    ("raw", "flux"),
    [
        ("pump-1", '"pump-1"'),
        ('a"b', '"a\\"b"'),
        ("back\\slash", '"back\\\\slash"'),
        ("${danger}", '"\\${danger}"'),
        ("two\nlines", '"two\\nlines"'),
    ],
)
def test_flux_string_escapes(raw: str, flux: str) -> None:
    assert flux_string(raw) == flux


def test_user_input_appears_only_escaped_in_params() -> None:
    evil = 'x") |> drop(columns: ["_value"]) //'
    query = HistoryQuery(evil, T[0], T[3], sensors=('t"1',), every=timedelta(minutes=1))
    text = history_flux(query, "plantwatch")
    params_line = next(line for line in text.splitlines() if line.startswith("params = "))
    assert text.count(evil) == 0
    assert flux_string(evil) in params_line
    assert flux_string('t"1') in params_line
    assert "every: 60s" in params_line
    assert "start: 2025-01-01T00:00:00.000000Z" in params_line
    assert "r.equipment_id == params.eid" in text
    assert "contains(value: r._field, set: params.sensors)" in text
    assert flux_string(evil) in bounds_flux(evil, "plantwatch")


def test_raw_history_has_no_window_and_no_sensor_filter() -> None:
    text = history_flux(HistoryQuery("p", T[0], T[1]), "b")
    assert "aggregateWindow" not in text
    assert "params.sensors" not in text


def test_flux_params_refuses_bad_names() -> None:
    with pytest.raises(ValueError, match="identifier"):
        flux_params({"a b": "x"})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", NOW - timedelta(minutes=30)),
        ("12h", NOW - timedelta(hours=12)),
        ("7d", NOW - timedelta(days=7)),
        ("2w", NOW - timedelta(weeks=2)),
        ("2025-01-03", datetime(2025, 1, 3, tzinfo=UTC)),
        ("2025-01-03T06:30:00+02:00", datetime(2025, 1, 3, 4, 30, tzinfo=UTC)),
        ("2025-01-03T06:30Z", datetime(2025, 1, 3, 6, 30, tzinfo=UTC)),
    ],
)
def test_parse_when(text: str, expected: datetime) -> None:
    assert parse_when(text, NOW) == expected


@pytest.mark.parametrize("text", ["", "7", "7 days", "0d", "-1d", "yesterday", "2025-13-01"])
def test_bad_since_names_option_value_and_expectation(text: str) -> None:
    with pytest.raises(OptionError) as info:
        parse_when(text, NOW)
    assert str(info.value).startswith(f"invalid option --since={text!r}: expected a duration")


def test_range_must_start_before_it_ends() -> None:
    assert parse_range("1d", None, NOW) == (NOW - timedelta(days=1), NOW)
    with pytest.raises(OptionError, match=r"--since='2025-02-01'.*before --until"):
        parse_range("2025-02-01", "2025-01-01", NOW)
    with pytest.raises(OptionError, match="--until='soon'"):
        parse_range("1d", "soon", NOW)


def test_parse_every() -> None:
    assert parse_every("raw") is None
    assert parse_every("5m") == timedelta(minutes=5)
    with pytest.raises(OptionError, match="--every='often'"):
        parse_every("often")


def _rows(*rows: tuple[datetime, str, object], **tags: str) -> list[dict[str, object]]:
    return [{"_time": t, "_field": f, "_value": v, **tags} for t, f, v in rows]


def test_merge_puts_everything_on_one_time_axis() -> None:
    frame = merge_history(
        _rows((T[0], "temp", 70.0), (T[1], "temp", 71.0), (T[1], "risk", 5.0)),
        _rows((T[1], "probability", 0.8), (T[1], "threshold", 0.5), (T[1], "level", "CRITICAL"))
        + _rows((T[1], "unknown_field", 1.0)),
        _rows((T[1], "from_level", "OK"), (T[1], "to_level", "CRITICAL"), level="CRITICAL")
        + _rows((T[1], "from_level", "CRITICAL"), (T[1], "to_level", "NODATA"), level="NODATA"),
        _rows((T[2], "ticket_id", 3), (T[2], "outcome", ""), status="open"),
    )
    assert list(frame.columns) == [
        "risk (sensor)",
        "temp",
        "risk",
        "threshold",
        "level",
        "top_sensors",
        "alert",
        "ticket",
    ]
    assert [str(t) for t in frame.index] == [str(t) for t in T[:3]]
    assert frame["temp"].tolist()[:2] == [70.0, 71.0]
    assert frame.loc[T[1], "risk"] == 0.8
    assert frame.loc[T[1], "risk (sensor)"] == 5.0
    assert frame.loc[T[1], "alert"] == "CRITICAL->NODATA; OK->CRITICAL"
    assert frame.loc[T[2], "ticket"] == "#3 open"
    assert str(frame["risk"].dtype) == "float64"


def test_merge_of_nothing_is_empty() -> None:
    frame = merge_history([], [], [], [])
    assert frame.empty
    assert list(frame.columns) == ["risk", "threshold", "level", "top_sensors", "alert", "ticket"]


def test_csv_and_summary(tmp_path: Path) -> None:
    frame = merge_history(
        _rows((T[0], "temp", 70.0)),
        _rows((T[1], "probability", 0.25), (T[1], "threshold", 0.5), (T[1], "level", "OK")),
        [],
        [],
    )
    path = tmp_path / "h.csv"
    write_csv(frame, path)
    assert path.read_text() == (
        "time,temp,risk,threshold,level,top_sensors,alert,ticket\n"
        "2025-01-01T00:00:00.000Z,70.0,,,,,,\n"
        "2025-01-01T00:01:00.000Z,,0.25,0.5,OK,,,\n"
    )
    text = "\n".join(summary_lines(frame, "p-1", "raw readings", levels="levels (rules)"))
    assert "equipment p-1: 2 rows from 2025-01-01T00:00:00.000Z" in text
    assert "latest 0.250 (level OK) at 2025-01-01T00:01:00.000Z" in text
    assert "\n  levels (rules)\n" in text
    assert "model threshold 0.500 (the model's own, chosen on its validation windows; it " in text
    assert "alerts: 0" in text
    assert "tickets: 0" in text


def test_latest_risk_rows_fold_per_machine() -> None:
    machines = machines_from_rows(
        [
            {
                "equipment_id": "a",
                "_field": "probability",
                "_value": 0.4,
                "_time": T[1],
                "model_version": "m",
            },
            {"equipment_id": "a", "_field": "level", "_value": "OK", "_time": T[1]},
            {"equipment_id": "b", "_field": "threshold", "_value": 0.5, "_time": T[0]},
        ]
    )
    assert (machines["a"].risk, machines["a"].level, machines["a"].time) == (
        0.4,
        "OK",
        "2025-01-01T00:01:00.000Z",
    )
    assert machines["b"].risk is None
    assert machines["b"].threshold == 0.5


def test_stage_groups_come_from_settings() -> None:
    settings = load_settings({"ingest_group": "my-ingest"}, read_env=False)
    groups = stage_groups(settings, ["extra", "my-ingest", "extra"])
    assert groups[0] == ("ingest", "my-ingest")
    assert [s for s, _ in groups] == ["ingest", "scorer", "alerting", "other"]


@pytest.mark.parametrize(
    "args",
    [
        ["history", "p-1", "--since", "3x"],
        ["history", "p-1", "--every", "sometimes"],
        ["status", "--since", "3x"],
    ],
)
def test_bad_options_are_one_line_exit_2(args: list[str]) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("plantwatch: error: invalid option --")


@pytest.mark.parametrize("command", [["history", "p-1"], ["status"]])
def test_unreachable_influxdb_names_the_setting(command: list[str]) -> None:
    result = CliRunner().invoke(cli, ["--influx-url", "http://127.0.0.1:9", *command])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert "cannot reach InfluxDB at http://127.0.0.1:9" in lines[0]
    assert "PLANTWATCH_INFLUX_URL" in lines[0]


def test_help_explains_every_option() -> None:
    for command in ("history", "status"):
        result = CliRunner().invoke(cli, [command, "--help"])
        assert result.exit_code == 0
        for option in {
            "history": ["--since", "--until", "--sensor", "--every", "--csv", "--plot"],
            "status": ["--since", "--group", "--json"],
        }[command]:
            assert option in result.output
