from __future__ import annotations

import numpy as np
import pytest

from models.featuredecode import decode_fast
from pipeline.featurerecords import decode_feature, encode_feature

GOOD = encode_feature("m-1", 0, 60000, "abc", np.array([1.5, np.nan, -3.0]))
GOOD_JSON = encode_feature("m-1", 0, 60000, "abc", np.array([1.5, np.nan, -3.0]), encoding="json")


@pytest.mark.parametrize(
    "raw",
    [
        GOOD,
        GOOD_JSON,
        b'{"v":1,"equipment_id":"m","step_start":0,"step_end":10,"config":"c","values":[1,null,2]}',
        None,
        b"{not json",
        b"[1]",
        b'{"v":2}',
        b'{"v":1,"equipment_id":"","step_start":0,"step_end":10,"config":"c","values":[1]}',
        b'{"v":1,"equipment_id":"m","step_start":10,"step_end":10,"config":"c","values":[1]}',
        b'{"v":1,"equipment_id":"m","step_start":true,"step_end":10,"config":"c","values":[1]}',
        b'{"v":1,"equipment_id":"m","step_start":0,"step_end":10.0,"config":"c","values":[1]}',
        b'{"v":1,"equipment_id":"m","step_start":0,"step_end":10,"config":"","values":[1]}',
        b'{"v":1,"equipment_id":"m","step_start":0,"step_end":10,"config":"c","values":[]}',
        b'{"v":1,"equipment_id":"m","step_start":0,"step_end":10,"config":"c","values":[true]}',
        b'{"v":1,"equipment_id":"m","step_start":0,"step_end":10,"config":"c","values":["1"]}',
        b'{"v":1,"equipment_id":"m","step_start":0,"step_end":10,"config":"c","values":[1e999]}',
        b'{"v":1,"equipment_id":"m","step_start":0,"step_end":10,"config":"c","values":{"a":1}}',
    ],
)
def test_fast_path_agrees_with_the_codec(raw: bytes | None) -> None:
    fast, slow = decode_fast(raw), decode_feature(raw)
    assert fast[1] == slow[1]
    if slow[0] is None:
        assert fast[0] is None
    else:
        assert fast[0] is not None
        assert (fast[0].equipment_id, fast[0].step_start, fast[0].step_end, fast[0].config) == (
            slow[0].equipment_id,
            slow[0].step_start,
            slow[0].step_end,
            slow[0].config,
        )
        np.testing.assert_array_equal(fast[0].values, slow[0].values)
        assert fast[0].values.dtype == slow[0].values.dtype


_HEAD = b'{"v":1,"equipment_id":"m","config":"c",'


@pytest.mark.parametrize(
    ("raw", "said"),
    [
        # found by tests/test_fuzz_stages.py: numpy took these, both decoders passed them
        (_HEAD + b'"step_start":0,"step_end":true,"values":[1]}', "'step_start'/'step_end'"),
        (_HEAD + b'"step_start":0,"step_end":10,"values":["1.5"]}', "other than numbers"),
        (_HEAD + b'"step_start":0,"step_end":10,"values":["nan", 1]}', "other than numbers"),
        (_HEAD + b'"step_start":0,"step_end":10,"values":[" 2 "]}', "other than numbers"),
        (_HEAD + b'"step_start":0,"step_end":10,"values":[1, false]}', "boolean"),
    ],
)
def test_json_values_and_times_of_other_types_are_refused(raw: bytes, said: str) -> None:
    for decode in (decode_fast, decode_feature):
        record, reason = decode(raw)
        assert record is None
        assert reason is not None
        assert said in reason, reason


def test_integers_of_64_bits_are_values() -> None:
    raw = _HEAD + b'"step_start":0,"step_end":10,"values":[18446744073709551615, -1, null]}'
    for decode in (decode_fast, decode_feature):
        record, reason = decode(raw)
        assert reason is None
        assert record is not None
        assert record.values[:2].tolist() == [2.0**64, -1.0]
