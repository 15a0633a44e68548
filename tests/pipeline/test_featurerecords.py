"""The binary feature record (``pipeline.featurerecords``): exact round trips, clear refusals."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from models.featuredecode import decode_fast
from pipeline.featurerecords import MAGIC, decode_feature, encode_feature


def _raw(
    *,
    start: int = 0,
    end: int = 60_000,
    config: bytes = b"abc",
    eid: bytes = b"pump-1",
    values: bytes = np.array([1.0, np.nan]).tobytes(),
    n: int | None = None,
) -> bytes:
    count = len(values) // 8 if n is None else n
    head = struct.pack("<4sqqHBH", MAGIC, start, end, count, len(config), len(eid))
    return head + config + eid + values


finite_or_nan = arrays(
    np.float64,
    st.integers(1, 300),
    elements=st.floats(allow_infinity=False, allow_nan=True, width=64),
)


@settings(max_examples=200)
@given(
    finite_or_nan,
    st.text(min_size=1, max_size=40),
    st.integers(-(2**62), 2**62),
    st.integers(1, 2**40),
)
def test_binary_round_trip_is_exact(values: np.ndarray, eid: str, start: int, span: int) -> None:
    raw = encode_feature(eid, start, start + span, "f81734d798bae40f", values)
    record, reason = decode_feature(raw)
    assert reason is None
    assert record is not None
    assert (record.equipment_id, record.step_start, record.step_end, record.config) == (
        eid,
        start,
        start + span,
        "f81734d798bae40f",
    )
    # bit for bit: -0.0, subnormals and NaN positions survive
    assert record.values.tobytes() == values.astype("<f8").tobytes()
    fast = decode_fast(raw)[0]
    assert fast is not None
    assert fast.values.tobytes() == record.values.tobytes()


def test_both_encodings_decode_to_the_same_record() -> None:
    values = np.array([1.5, np.nan, -3.25, 0.0, 1e300])
    binary = decode_feature(encode_feature("m-1", 10, 20, "cfg", values))[0]
    json = decode_feature(encode_feature("m-1", 10, 20, "cfg", values, encoding="json"))[0]
    assert binary is not None
    assert json is not None
    assert (binary.equipment_id, binary.step_start, binary.step_end, binary.config) == (
        json.equipment_id,
        json.step_start,
        json.step_end,
        json.config,
    )
    np.testing.assert_array_equal(binary.values, json.values)
    assert len(encode_feature("m-1", 10, 20, "cfg", np.zeros(144))) < 0.6 * len(
        encode_feature("m-1", 10, 20, "cfg", np.random.default_rng(0).normal(size=144), "json")
    )


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (MAGIC + b"\x00" * 3, "7 bytes: expected a 25-byte header"),
        (_raw()[:-1], "49 bytes: expected 50 (25 + config 3 + equipment_id 6 + 2 values x 8)"),
        (_raw() + b"\x00", "51 bytes: expected 50"),
        (_raw(n=3), "3 values x 8"),
        (_raw(start=5, end=5), "'step_start'/'step_end': 5/5"),
        (_raw(config=b""), "'config' is missing"),
        (_raw(eid=b""), "'equipment_id' is missing"),
        (_raw(values=b""), "'values' is missing or empty"),
        (_raw(eid=b"\xff\xfe"), "'equipment_id': value b'\\xff\\xfe' is not UTF-8"),
        (_raw(config=b"\xc3\xa9"), "'config': value b'\\xc3\\xa9' is not ASCII"),
        (_raw(values=np.array([1.0, np.inf]).tobytes()), "infinite"),
        (_raw(values=np.array([-np.inf]).tobytes()), "infinite"),
    ],
)
def test_bad_binary_records_get_a_reason(raw: bytes, fragment: str) -> None:
    for decode in (decode_feature, decode_fast):
        record, reason = decode(raw)
        assert record is None
        assert reason is not None
        assert fragment in reason, reason


def test_encoding_refuses_what_the_layout_cannot_hold() -> None:
    with pytest.raises(ValueError, match="config 256 bytes"):
        encode_feature("m", 0, 1, "c" * 256, np.zeros(1))
    with pytest.raises(ValueError, match="65536 values"):
        encode_feature("m", 0, 1, "c", np.zeros(65_536))


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_random_bytes_after_the_magic_never_raise(tail: bytes) -> None:
    for decode in (decode_feature, decode_fast):
        record, reason = decode(MAGIC + tail)
        assert (record is None) != (reason is None)
