"""The feature record: one step of one machine on the ``features`` topic (key = equipment_id).

::

    {"v": 1, "equipment_id": "pump-17", "step_start": 1795922040000, "step_end": 1795922100000,
     "config": "3f2a9c0e51b7d4a6", "values": [71.2, 0.4, null, ...]}

``config`` is the :meth:`~features.config.WindowConfig.fingerprint` of the rules that made
``values`` (one per :meth:`~features.config.WindowConfig.feature_names`, ``null`` where
missing). :func:`decode_feature` returns a parsed record or a reason, never raises.

>>> import numpy as np
>>> raw = encode_feature("m-1", 0, 60000, "abc", np.array([1.5, np.nan]))
>>> raw
b'{"v":1,"equipment_id":"m-1","step_start":0,"step_end":60000,"config":"abc","values":[1.5,null]}'
>>> rec, reason = decode_feature(raw)
>>> rec.values.tolist()[0], reason
(1.5, None)
>>> decode_feature(b'{"v": 1}')[1]
"field 'equipment_id' is missing or not a non-empty string"
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import orjson
from numpy.typing import NDArray

F64 = NDArray[np.float64]


@dataclass(frozen=True)
class FeatureRecord:
    """A decoded feature record."""

    equipment_id: str
    step_start: int
    step_end: int
    config: str
    values: F64


def encode_feature(
    equipment_id: str, step_start: int, step_end: int, config: str, values: F64
) -> bytes:
    """The message value of one step's features (NaN written as null)."""
    return orjson.dumps(
        {
            "v": 1,
            "equipment_id": equipment_id,
            "step_start": step_start,
            "step_end": step_end,
            "config": config,
            "values": [None if v != v else float(v) for v in values.tolist()],
        }
    )


def decode_feature(raw: bytes | None) -> tuple[FeatureRecord | None, str | None]:
    """Parse a feature record; ``(record, None)`` or ``(None, reason)``."""
    if raw is None:
        return None, "message has no value (a tombstone)"
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return None, f"not JSON: {exc}"
    if not isinstance(doc, dict):
        return None, "not a JSON object"
    if doc.get("v") != 1:
        return None, f"field 'v': value {doc.get('v')!r} is not supported: expected 1"
    eid = doc.get("equipment_id")
    if not isinstance(eid, str) or not eid:
        return None, "field 'equipment_id' is missing or not a non-empty string"
    start, end = doc.get("step_start"), doc.get("step_end")
    bad = f"fields 'step_start'/'step_end': {start!r}/{end!r}: expected ms, start < end"
    if not isinstance(start, int) or not isinstance(end, int) or isinstance(start, bool):
        return None, bad
    if end <= start:
        return None, bad
    config = doc.get("config")
    if not isinstance(config, str) or not config:
        return None, "field 'config' is missing: expected the feature rules' fingerprint"
    values = doc.get("values")
    if not isinstance(values, list) or not values:
        return None, "field 'values' is missing or empty: expected an array of numbers/null"
    try:
        arr = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    except (TypeError, ValueError):
        return None, "field 'values' holds something other than numbers and null"
    if np.isinf(arr).any() or any(isinstance(v, bool) for v in values):
        return None, "field 'values' holds an infinite or boolean value"
    return FeatureRecord(eid, start, end, config, arr), None
