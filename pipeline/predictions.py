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

:func:`decode_prediction` returns a parsed record or a reason, never raises. It accepts only
what every consumer can carry, InfluxDB's line protocol included: ``equipment_id`` by the
telemetry contract's rule (:mod:`pipeline.names`: 1-128 characters of ``A-Z a-z 0-9
. _ : / @ -``, starting with a letter or digit), ``model_version`` 1-128 characters without
white space, control characters, surrogates or backslashes (InfluxDB stores a tag's
escaped backslash doubled, and refuses one at its end), sensor names of ``top_sensors`` as
the contract's sensor names (at most 256 of them), finite numbers only, and times and
integers in ``0..MAX_TS_MS`` (:data:`pipeline.names.MAX_TS_MS`, the end of InfluxDB's time
range in milliseconds), compared before any arithmetic.

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
import re
from dataclasses import dataclass
from typing import Any

import orjson

# The telemetry contract's rules (matched with fullmatch), shared rather than copied.
from pipeline.names import ID_RE, MAX_EQUIPMENT_ID, MAX_SENSORS, MAX_TS_MS, SENSOR_RE

PREDICTION_VERSION = 1
MAX_ID = MAX_EQUIPMENT_ID
MAX_TOP = MAX_SENSORS
MAX_VERSION = 128
# A tag value that InfluxDB gives back as written: no white space, control characters
# (C0, DEL, C1), surrogates or backslashes (an escaped one is stored doubled, a final one
# makes the line unparsable).
_VERSION_RE = re.compile(r"[^\s\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\\]+")


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


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
    """An integer in ``minimum..MAX_TS_MS`` (compared before any arithmetic)."""
    value = doc.get(name)
    if isinstance(value, int) and not isinstance(value, bool) and minimum <= value <= MAX_TS_MS:
        return value
    return (
        f"field {name!r}: value {_short(value)} is not valid: expected an integer in "
        f"{minimum}..{MAX_TS_MS}"
    )


def _finite(value: Any) -> float | None:
    """``value`` as a float if it is a finite number (never raises on a huge integer)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if isinstance(value, int):
        return float(value) if -MAX_TS_MS <= value <= MAX_TS_MS else None
    return value if math.isfinite(value) else None


def _prob(doc: dict[str, Any], name: str) -> float | str:
    value = _finite(doc.get(name))
    if value is not None and 0.0 <= value <= 1.0:
        return value
    return (
        f"field {name!r}: value {_short(doc.get(name))} is not a probability: "
        "expected a number in [0, 1]"
    )


def _top(value: Any) -> tuple[tuple[str, float], ...] | str:
    bad = (
        f"field 'top_sensors': value {_short(value)} is not valid: expected a list of at most "
        f"{MAX_TOP} [sensor name, share >= 0] pairs, names of 1-64 characters of A-Z a-z 0-9 "
        "_ . - starting with a letter or _"
    )
    if not isinstance(value, list) or len(value) > MAX_TOP:
        return bad
    out: list[tuple[str, float]] = []
    for item in value:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], str)):
            return bad
        name, share = item[0], _finite(item[1])
        if len(name) > 64 or not SENSOR_RE.fullmatch(name) or share is None or share < 0:
            return bad
        out.append((name, share))
    return tuple(out)


def check_equipment_id(value: str) -> str | None:
    """Why ``value`` is not an equipment id that every stage can carry; None if it is.

    The telemetry contract's rule (:mod:`pipeline.names`), which also makes it a valid
    InfluxDB tag value and Kafka key.

    >>> check_equipment_id("pump-17") is None, check_equipment_id("pump 17") is None
    (True, False)
    """
    if 0 < len(value) <= MAX_ID and ID_RE.fullmatch(value):
        return None
    if not value:
        return "field 'equipment_id' is missing or not a non-empty string"
    return (
        f"field 'equipment_id': value {_short(value)} is not valid: expected 1-{MAX_ID} "
        "characters of A-Z a-z 0-9 ._:/@- starting with a letter or digit"
    )


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
    if not isinstance(eid, str):
        return None, "field 'equipment_id' is missing or not a non-empty string"
    bad_id = check_equipment_id(eid)
    if bad_id is not None:
        return None, bad_id
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
    if len(version) > MAX_VERSION or not _VERSION_RE.fullmatch(version):
        return None, (
            f"field 'model_version': value {_short(version)} is not valid: expected 1-"
            f"{MAX_VERSION} characters without white space, control characters, surrogates "
            "or backslashes"
        )
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
