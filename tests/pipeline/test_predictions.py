"""The prediction record's decoder refuses, with a reason, what an output could not carry.

Whatever :func:`pipeline.predictions.decode_prediction` accepts, the alerting stage writes to
InfluxDB's line protocol (tags ``equipment_id`` and ``model_version``, the time
``window_end``) and does arithmetic on; anything else must be a reason (a dead letter),
never an exception and never a line that InfluxDB refuses.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from alerting.influx import alert_line, risk_line, ticket_line
from alerting.state import AlertEvent
from ingest.contract import MAX_TS_MS
from pipeline.predictions import Prediction, decode_prediction

VALID: dict[str, Any] = {
    "v": 1,
    "equipment_id": "pump-17",
    "window_end": 1_795_922_100_000,
    "probability": 0.83,
    "threshold": 0.41,
    "model_version": "m-20261129-3f2a9c0e",
    "horizon_steps": 30,
    "horizon_ms": 1_800_000,
    "steps": 50,
    "top_sensors": [["vibration_rms", 0.61]],
}


def _decode(**change: Any) -> tuple[Any, str | None]:
    return decode_prediction(json.dumps({**VALID, **change}).encode())


@pytest.mark.parametrize(
    ("field", "value", "said"),
    [
        ("equipment_id", "pump-17\n", "field 'equipment_id': value 'pump-17\\n' is not valid"),
        ("equipment_id", "pump 17", "expected 1-128 characters of A-Z a-z 0-9 ._:/@-"),
        ("equipment_id", "-pump", "starting with a letter or digit"),
        ("equipment_id", "p" * 129, "expected 1-128 characters"),
        ("equipment_id", "pump\u2028", "is not valid"),
        ("equipment_id", "", "missing or not a non-empty string"),
        ("model_version", "m 1", "without white space"),
        ("model_version", "m-1\\", "or backslashes"),  # InfluxDB: "invalid tag format"
        ("model_version", "m\\1", "or backslashes"),  # InfluxDB would store it doubled
        ("model_version", "m-1\x85", "control characters"),
        ("model_version", "m-\ud800", "not JSON"),  # orjson refuses a lone surrogate
        ("model_version", "m" * 129, "field 'model_version'"),
        ("window_end", -1, f"expected an integer in 0..{MAX_TS_MS}"),
        ("window_end", MAX_TS_MS + 1, f"expected an integer in 0..{MAX_TS_MS}"),
        ("window_end", 2**64 - 1, f"expected an integer in 0..{MAX_TS_MS}"),
        ("horizon_ms", 2**63, "field 'horizon_ms'"),
        ("steps", 0, "field 'steps'"),
        ("probability", 2**64 - 1, "is not a probability"),
        ("threshold", -(2**63), "is not a probability"),
        ("top_sensors", [["vibration rms", 0.5]], "names of 1-64 characters"),
        ("top_sensors", [["v\n", 0.5]], "field 'top_sensors'"),
        ("top_sensors", [["v", 2**64 - 1]], "field 'top_sensors'"),
        ("top_sensors", [["v", 0.1]] * 257, "at most 256"),
    ],
)
def test_what_an_output_could_not_carry_is_refused_with_a_reason(
    field: str, value: Any, said: str
) -> None:
    record, reason = _decode(**{field: value})
    assert record is None
    assert reason is not None
    assert said in reason, reason


@pytest.mark.parametrize("number", ["1" + "0" * 400, "1e400", "-1e400", "18446744073709551616"])
@pytest.mark.parametrize("field", ["window_end", "probability", "steps"])
def test_huge_numbers_are_reasons_never_exceptions(field: str, number: str) -> None:
    raw = json.dumps({**VALID, field: "X"}).replace('"X"', number)
    record, reason = decode_prediction(raw.encode())
    assert record is None
    assert reason


def test_the_edges_of_what_is_accepted_make_lines_influx_takes() -> None:
    record, reason = _decode(
        equipment_id="a" + "._:/@-" * 21,
        model_version='m=1,\u00e9"x',
        window_end=MAX_TS_MS,
        top_sensors=[["_a.b-c", 0], ["Z9", 1]],
    )
    assert reason is None
    assert record is not None
    line = risk_line(record, "OK")
    assert "\n" not in line
    assert line.endswith(f" {MAX_TS_MS}")
    assert 'model_version=m\\=1\\,\u00e9"x ' in line


@pytest.mark.parametrize(
    "line",
    [
        risk_line(Prediction("m", 60_000, 0.25, 0.5, "m-1", 30, 1_800_000, 12), "OK"),
        risk_line(Prediction("m", 60_000, 0.25, 0.5, "m-1", 30, 1_800_000, 12), None),
        ticket_line("m", "open", 7, "m:60000", "", 60_000),
        alert_line(AlertEvent("m", 60_000, "nodata", "OK", "NODATA", "m:0", "", 0.0)),
    ],
)
def test_no_point_has_an_empty_string_field(line: str) -> None:
    # Found by tests/test_fuzz_stages.py: InfluxDB 2.8 reads a series' string values back
    # in the wrong places once an empty one follows a non-empty one.
    assert '=""' not in line
    assert line.split(" ")[1]  # still a field set
