"""A fast path for decoding feature records on the scorer's hot loop.

:func:`decode_fast` accepts exactly what :func:`pipeline.featurerecords.decode_feature` accepts
and returns the same record. Binary records go straight to
:func:`~pipeline.featurerecords.decode_binary`; for JSON ones it checks the common well-formed
case with a few type tests (the values' types as one set) and hands everything else to
``decode_feature``, which gives the reason. ``tests/models/test_featuredecode.py`` checks
both agree.

>>> from pipeline.featurerecords import encode_feature
>>> import numpy as np
>>> decode_fast(encode_feature("m", 0, 10, "c", np.array([1.0, np.nan])))[0].values.tolist()
[1.0, nan]
>>> decode_fast(b'{"v": 1}')[1]
"field 'equipment_id' is missing or not a non-empty string"
"""

from __future__ import annotations

import numpy as np
import orjson

from pipeline.featurerecords import MAGIC, FeatureRecord, decode_binary, decode_feature

_NUMBERS = frozenset({int, float, type(None)})


def decode_fast(raw: bytes | None) -> tuple[FeatureRecord | None, str | None]:
    """Parse a feature record; ``(record, None)`` or ``(None, reason)``."""
    if raw is not None and raw[:4] == MAGIC:
        return decode_binary(raw)
    try:
        doc = orjson.loads(raw) if raw is not None else None
    except orjson.JSONDecodeError:
        return decode_feature(raw)
    if type(doc) is dict and doc.get("v") == 1:
        eid, cfg, values = doc.get("equipment_id"), doc.get("config"), doc.get("values")
        start, end = doc.get("step_start"), doc.get("step_end")
        if (
            type(eid) is str
            and eid
            and type(start) is int
            and type(end) is int
            and start < end
            and type(cfg) is str
            and cfg
            and type(values) is list
            and values
            and set(map(type, values)) <= _NUMBERS
        ):
            try:
                arr = np.array(values, dtype=np.float64)
            except (OverflowError, ValueError, TypeError):
                return decode_feature(raw)
            if not np.isinf(arr).any():
                return FeatureRecord(eid, start, end, cfg, arr), None
    return decode_feature(raw)
