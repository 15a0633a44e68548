"""Fuzzing every consumer's decode path: random bytes and near-valid JSON.

Each decoder must either accept a record or give a reason (which the services put on the
dead-letter record); none may raise anything else or hang. Near-valid inputs start from a
valid record of each kind and replace, drop or add one field with an arbitrary JSON value.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alerting.errors import TicketError
from alerting.feedback import decode_label
from ingest.contract import validate
from ingest.events import decode_event
from models.featuredecode import decode_fast
from pipeline.featurerecords import decode_feature
from pipeline.predictions import decode_prediction

NOW = 1_795_000_000_000

VALID: dict[str, dict[str, Any]] = {
    "telemetry": {
        "v": 1,
        "equipment_id": "pump-1",
        "ts": NOW - 1000,
        "readings": {"vibration_rms": 1.5, "bearing_temp": 60.0},
    },
    "feature": {
        "v": 1,
        "equipment_id": "pump-1",
        "step_start": 0,
        "step_end": 60000,
        "config": "abc",
        "values": [1.0, None, 2.5],
    },
    "prediction": {
        "v": 1,
        "equipment_id": "pump-1",
        "window_end": 60000,
        "probability": 0.4,
        "threshold": 0.5,
        "model_version": "m-1",
        "horizon_steps": 30,
        "horizon_ms": 1800000,
        "steps": 12,
        "top_sensors": [["vibration_rms", 0.5]],
    },
    "event": {"v": 1, "equipment_id": "pump-1", "ts": NOW, "kind": "failure"},
    "label": {
        "v": 1,
        "equipment_id": "pump-1",
        "incident_key": "pump-1:1",
        "window_start": 1,
        "window_end": 2,
        "ts": 2,
        "outcome": "confirmed",
        "note": "",
    },
}

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)


def _decode(kind: str, raw: bytes) -> tuple[bool, str | None]:
    """(accepted, reason) of one decoder; only the documented ways of refusing count."""
    if kind == "telemetry":
        samples, rejection = validate(raw, NOW)
        return bool(samples), None if rejection is None else rejection.reason
    if kind == "feature":
        record, reason = decode_feature(raw)
        fast, fast_reason = decode_fast(raw)
        assert (record is None) == (fast is None), (raw, reason, fast_reason)
        return record is not None, reason
    if kind == "prediction":
        prediction, reason = decode_prediction(raw)
        return prediction is not None, reason
    try:
        if kind == "event":
            decode_event(raw)
        else:
            decode_label(raw)
    except (ValueError, TicketError) as exc:
        return False, str(exc)
    return True, None


def _check(kind: str, raw: bytes) -> None:
    accepted, reason = _decode(kind, raw)
    assert accepted or (reason and reason.strip()), f"{kind}: refused without a reason: {raw!r}"


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(VALID)), st.binary(max_size=300))
def test_random_bytes_are_refused_with_a_reason(kind: str, raw: bytes) -> None:
    _check(kind, raw)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(sorted(VALID)),
    st.data(),
    st.sampled_from(["replace", "drop", "add"]),
    json_values,
)
def test_near_valid_records_are_accepted_or_refused_with_a_reason(
    kind: str, data: st.DataObject, how: str, value: Any
) -> None:
    doc = dict(VALID[kind])
    key = data.draw(st.sampled_from(sorted(doc)))
    if how == "replace":
        doc[key] = value
    elif how == "drop":
        del doc[key]
    else:
        doc[data.draw(st.text(min_size=1, max_size=10))] = value
    _check(kind, json.dumps(doc).encode())  # stdlib: integers beyond 64 bits too


@given(st.sampled_from(sorted(VALID)))
def test_the_valid_records_are_accepted(kind: str) -> None:
    assert _decode(kind, orjson.dumps(VALID[kind]))[0]
