"""The prediction record: one scored window of one machine on ``predictions`` (key = equipment_id).

::

    {"v": 1, "equipment_id": "pump-17", "window_end": 1795922100000, "probability": 0.83,
     "threshold": 0.41, "model_version": "m-20261129-3f2a9c0e", "horizon_steps": 30,
     "horizon_ms": 1800000, "steps": 50, "top_sensors": [["vibration_rms", 0.61], ...]}

``window_end`` is the ``step_end`` (epoch ms) of the window's last feature step; it is the
prediction's own time (InfluxDB point time) and, with ``equipment_id`` and
``model_version``, its identity: a replay writes the same record again. ``probability`` is
the calibrated probability that the machine fails within ``horizon_steps`` steps
(``horizon_ms`` milliseconds) after ``window_end``; ``threshold`` is the model's alert
threshold on it. ``steps`` is how many real (not padded) steps the window held.
``top_sensors`` lists up to a few ``[sensor, share]`` pairs, the sensors that contributed
most to the score (shares are non-negative and sum to at most 1).

:func:`decode_prediction` returns a parsed record or a reason, never raises.

>>> raw = encode_prediction(Prediction("m-1", 60000, 0.25, 0.5, "v1", 30, 1800000, 12,
...                                    (("temp", 0.75),)))
>>> raw
b'{"v":1,"equipment_id":"m-1","window_end":60000,"probability":0.25,"threshold":0.5,\
"model_version":"v1","horizon_steps":30,"horizon_ms":1800000,"steps":12,\
"top_sensors":[["temp",0.75]]}'
>>> decode_prediction(raw)[0] == Prediction("m-1", 60000, 0.25, 0.5, "v1", 30, 1800000, 12,
...                                          (("temp", 0.75),))
True
>>> decode_prediction(b'{"v":1,"equipment_id":"m-1","window_end":1,"probability":1.5}')[1]
"field 'probability': value 1.5 is not a probability: expected a number in [0, 1]"
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import orjson

PREDICTION_VERSION = 1


@dataclass(frozen=True)
class Prediction:
    """A decoded prediction record (see the module doc for the meaning of each field)."""

    equipment_id: str
    window_end: int
    probability: float
    threshold: float
    model_version: str
    horizon_steps: int
    horizon_ms: int
    steps: int
    top_sensors: tuple[tuple[str, float], ...] = ()


def encode_prediction(p: Prediction) -> bytes:
    """The message value of one prediction."""
    return orjson.dumps(
        {
            "v": PREDICTION_VERSION,
            "equipment_id": p.equipment_id,
            "window_end": p.window_end,
            "probability": p.probability,
            "threshold": p.threshold,
            "model_version": p.model_version,
            "horizon_steps": p.horizon_steps,
            "horizon_ms": p.horizon_ms,
            "steps": p.steps,
            "top_sensors": [[name, share] for name, share in p.top_sensors],
        }
    )


def _int(doc: dict[str, Any], name: str, minimum: int) -> int | str:
    value = doc.get(name)
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        return f"field {name!r}: value {value!r} is not valid: expected an integer >= {minimum}"
    return value


def _prob(doc: dict[str, Any], name: str) -> float | str:
    value = doc.get(name)
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number and math.isfinite(value) and 0.0 <= value <= 1.0:  # type: ignore[arg-type,operator]
        return float(value)  # type: ignore[arg-type]
    return f"field {name!r}: value {value!r} is not a probability: expected a number in [0, 1]"


def _top(value: Any) -> tuple[tuple[str, float], ...] | str:
    bad = (
        f"field 'top_sensors': value {value!r} is not valid: "
        "expected a list of [sensor name, share >= 0] pairs"
    )
    if not isinstance(value, list):
        return bad
    out: list[tuple[str, float]] = []
    for item in value:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
            return bad
        share = item[1]
        if not isinstance(share, int | float) or isinstance(share, bool):
            return bad
        if not math.isfinite(share) or share < 0:
            return bad
        out.append((item[0], float(share)))
    return tuple(out)


def decode_prediction(raw: bytes | None) -> tuple[Prediction | None, str | None]:
    """Parse a prediction record; ``(record, None)`` or ``(None, reason)``."""
    if raw is None:
        return None, "message has no value (a tombstone)"
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return None, f"not JSON: {exc}"
    if not isinstance(doc, dict):
        return None, "not a JSON object"
    if doc.get("v") != PREDICTION_VERSION:
        return None, (
            f"field 'v': value {doc.get('v')!r} is not supported: expected {PREDICTION_VERSION}"
        )
    eid = doc.get("equipment_id")
    if not isinstance(eid, str) or not eid:
        return None, "field 'equipment_id' is missing or not a non-empty string"
    window_end = _int(doc, "window_end", 0)
    if isinstance(window_end, str):
        return None, window_end
    probability = _prob(doc, "probability")
    if isinstance(probability, str):
        return None, probability
    threshold = _prob(doc, "threshold")
    if isinstance(threshold, str):
        return None, threshold
    version = doc.get("model_version")
    if not isinstance(version, str) or not version:
        return None, "field 'model_version' is missing or not a non-empty string"
    ints: list[int] = []
    for name, minimum in (("horizon_steps", 1), ("horizon_ms", 1), ("steps", 1)):
        got = _int(doc, name, minimum)
        if isinstance(got, str):
            return None, got
        ints.append(got)
    top = _top(doc.get("top_sensors", []))
    if isinstance(top, str):
        return None, top
    horizon_steps, horizon_ms, steps = ints
    record = Prediction(
        eid, window_end, probability, threshold, version, horizon_steps, horizon_ms, steps, top
    )
    return record, None
