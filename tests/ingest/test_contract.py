"""The telemetry contract: every bad input refused with a precise reason, never an exception."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.contract import (
    DEFAULT_LIMITS,
    REASONS,
    Limits,
    Rejection,
    Telemetry,
    encode,
    encode_batch,
    parse_ts,
    validate,
)

NOW = 1_700_000_000_000


def _msg(**fields: object) -> bytes:
    doc: dict[str, object] = {"equipment_id": "pump-17", "ts": NOW, "readings": {"temp": 71.5}}
    doc.update(fields)
    return json.dumps({k: v for k, v in doc.items() if v is not ...}).encode()


def _reject(raw: bytes, limits: Limits = DEFAULT_LIMITS) -> Rejection:
    records, rejection = validate(raw, NOW, limits)
    assert records == []
    assert rejection is not None
    assert rejection.reason in REASONS
    return rejection


def test_single_message_is_parsed() -> None:
    raw = _msg(site="plant-a", asset_type="pump", seq=7, ts="2023-11-14T22:13:20.250+00:00")
    records, rejection = validate(raw, NOW)
    assert rejection is None
    assert records == [Telemetry("pump-17", NOW + 250, {"temp": 71.5}, "plant-a", "pump", 7)]


def test_batch_message_is_parsed_in_order() -> None:
    samples = [Telemetry("fan-1", NOW + i, {"rpm": float(i), "amps": 2}) for i in range(3)]
    records, rejection = validate(encode_batch(samples), NOW)
    assert rejection is None
    assert [r.ts_ms for r in records] == [NOW, NOW + 1, NOW + 2]
    assert records[2].readings == {"rpm": 2.0, "amps": 2.0}


def test_encode_round_trips() -> None:
    record = Telemetry("c-9", NOW, {"p": 1.5}, "s", "compressor", 3)
    assert validate(encode(record), NOW) == ([record], None)


@pytest.mark.parametrize(
    ("raw", "reason", "fragment"),
    [
        (b"not json at all", "not_json", "not JSON"),
        (b"", "not_json", "not JSON"),
        (b"[1, 2]", "not_object", "JSON list"),
        (b'"text"', "not_object", "JSON str"),
        (_msg(equipment_id=...), "missing_field", "'equipment_id' is missing"),
        (_msg(equipment_id=""), "invalid_equipment_id", "non-empty string"),
        (_msg(equipment_id=42), "invalid_equipment_id", "42 (int)"),
        (_msg(equipment_id="p" * 129), "invalid_equipment_id", "129 characters"),
        (_msg(equipment_id="pump\n17"), "invalid_equipment_id", "characters outside"),
        (_msg(equipment_id="pump\x0017"), "invalid_equipment_id", "characters outside"),
        (_msg(ts=...), "missing_field", "'ts' is missing"),
        (_msg(ts="yesterday"), "invalid_ts", "'yesterday'"),
        (_msg(ts="2023-11-14T22:13:20"), "invalid_ts", "with zone"),
        (_msg(ts=1.7e12), "invalid_ts", "(float)"),
        (_msg(ts=True), "invalid_ts", "(bool)"),
        (_msg(ts=NOW + 3_600_000), "ts_out_of_range", "in the future"),
        (_msg(ts=NOW - 400 * 86_400_000), "ts_out_of_range", "days in the past"),
        (_msg(readings=...), "missing_field", "'readings' is missing"),
        (_msg(readings=[1, 2]), "invalid_readings", "is not an object"),
        (_msg(readings="hot"), "invalid_readings", "is not an object"),
        (_msg(readings={}), "no_readings", "at least one reading"),
        (_msg(readings={"temp": "hot"}), "invalid_reading", "'readings.temp': value 'hot' (str)"),
        (_msg(readings={"temp": None}), "invalid_reading", "value null (null)"),
        (_msg(readings={"temp": True}), "invalid_reading", "(bool)"),
        (_msg(readings={"temp": {"v": 1}}), "invalid_reading", "(dict)"),
        (_msg(readings={"bad name": 1}), "invalid_readings", "sensor name"),
        (_msg(site=3), "invalid_field", "'site'"),
        (_msg(seq=-1), "invalid_field", "'seq'"),
        (_msg(v=2), "unsupported_version", "expected 1"),
        (_msg(colour="red"), "unknown_field", "'colour'"),
        (_msg(samples=[]), "invalid_batch", ""),
    ],
)
def test_bad_input_gets_a_precise_reason(raw: bytes, reason: str, fragment: str) -> None:
    rejection = _reject(raw)
    assert rejection.reason == reason, rejection
    assert fragment in rejection.detail, rejection.detail


@pytest.mark.parametrize("literal", [b"NaN", b"Infinity", b"-Infinity", b"1e999"])
def test_non_finite_readings_are_refused_precisely(literal: bytes) -> None:
    raw = b'{"equipment_id": "p", "ts": %d, "readings": {"temp": %s}}' % (NOW, literal)
    rejection = _reject(raw)
    assert rejection.reason == "invalid_reading"
    assert "not finite" in rejection.detail


def test_oversized_message() -> None:
    raw = _msg(readings={f"s{i}": float(i) for i in range(200)})
    rejection = _reject(raw, Limits(max_bytes=1000))
    assert rejection.reason == "too_large"
    assert "at most 1000" in rejection.detail


def test_batch_with_one_bad_sample_is_refused_whole_naming_it() -> None:
    doc = {
        "equipment_id": "p",
        "samples": [{"ts": NOW, "readings": {"a": 1}}, {"ts": NOW, "readings": {"a": "x"}}],
    }
    rejection = _reject(orjson.dumps(doc))
    assert rejection.reason == "invalid_reading"
    assert "samples[1].readings.a" in rejection.detail


def test_parse_ts_accepts_offsets_and_z() -> None:
    assert parse_ts("2023-11-14T23:13:20+01:00", "ts") == parse_ts("2023-11-14T22:13:20Z", "ts")


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
NEAR_VALID = st.fixed_dictionaries(
    {
        "equipment_id": st.one_of(st.text(max_size=140), st.integers(), st.none()),
        "ts": st.one_of(
            st.integers(min_value=NOW - 10**11, max_value=NOW + 10**10),
            st.text(max_size=40),
            st.floats(),
            st.none(),
        ),
        "readings": st.one_of(
            st.dictionaries(st.text(max_size=10), JSONISH, max_size=5),
            JSONISH,
        ),
    },
    optional={"site": JSONISH, "seq": JSONISH, "v": JSONISH, "samples": JSONISH},
)


def _check_total(raw: bytes) -> None:
    records, rejection = validate(raw, NOW)
    if rejection is None:
        assert records, "accepted without samples"
        for r in records:
            assert r.readings
            assert all(isinstance(v, float) for v in r.readings.values())
    else:
        assert records == []
        assert rejection.reason in REASONS
        assert rejection.detail


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_never_raise(raw: bytes) -> None:
    _check_total(raw)


@settings(max_examples=3000, deadline=None)
@given(NEAR_VALID)
def test_near_valid_json_never_raises(doc: dict[str, object]) -> None:
    _check_total(json.dumps(doc, allow_nan=True).encode())


@settings(max_examples=1000, deadline=None)
@given(JSONISH)
def test_any_json_never_raises(doc: object) -> None:
    _check_total(json.dumps(doc, allow_nan=True).encode())


# --- issue 26: what passed validation must also pass every sink -------------------------
@pytest.mark.parametrize(
    ("raw", "reason", "words"),
    [
        # `$` matched before a final newline; InfluxDB then refused the line.
        (_msg(equipment_id="pump-1\n"), "invalid_equipment_id", "'pump-1\\n'"),
        (_msg(readings={"temp\n": 1.0}), "invalid_readings", "'temp\\n'"),
        (_msg(site="plant-a\n"), "invalid_field", "'plant-a\\n'"),
        (_msg(asset_type="pump\n"), "invalid_field", "asset_type"),
        # A final backslash escapes line protocol's separator; others are not given back
        # as they were written.
        (_msg(site="plant-a\\"), "invalid_field", "backslashes"),
        (_msg(site="plant\\a"), "invalid_field", "backslashes"),
        (_msg(site="a\u2028b"), "invalid_field", "control characters"),
        (_msg(site="a\x85b"), "invalid_field", "control characters"),
        # Lone surrogates: orjson refuses them, the standard library's fallback read them.
        (_msg(site="\ud800"), "invalid_field", "surrogates"),
        (_msg(asset_type="x\udfff"), "invalid_field", "surrogates"),
    ],
)
def test_strings_a_sink_would_refuse_are_refused(raw: bytes, reason: str, words: str) -> None:
    rejection = _reject(raw)
    assert rejection.reason == reason
    assert words in rejection.detail


def test_punctuation_and_unicode_in_a_site_are_data() -> None:
    records, rejection = validate(_msg(site='=a,b c "#ä😀\ufffe'), NOW)
    assert rejection is None
    assert records[0].site == '=a,b c "#ä😀\ufffe'


@pytest.mark.parametrize("digits", [309, 400, 4000])
def test_a_huge_integer_reading_is_refused_not_raised(digits: int) -> None:
    raw = b'{"equipment_id":"p1","ts":%d,"readings":{"t":%s}}' % (NOW, b"9" * digits)
    rejection = _reject(raw)
    assert rejection.reason in {"invalid_reading", "not_json"}
    assert "readings.t" in rejection.detail or "not JSON" in rejection.detail


def test_a_large_but_finite_integer_reading_is_a_float() -> None:
    raw = b'{"equipment_id":"p1","ts":%d,"readings":{"t":%s}}' % (NOW, b"9" * 300)
    records, rejection = validate(raw, NOW)
    assert rejection is None
    assert records[0].readings["t"] == float("9" * 300)


@pytest.mark.parametrize("ts", [10**24, 10**400, -1, -(10**30)])
def test_timestamps_are_bounded_before_any_arithmetic(ts: int) -> None:
    raw = b'{"equipment_id":"p1","ts":%d,"readings":{"t":NaN}}' % ts  # NaN: the slow path
    rejection = _reject(raw)
    assert rejection.reason == "ts_out_of_range"
    assert "1970-01-01..2262-04-11" in rejection.detail
    raw = b'{"equipment_id":"p1","ts":%d,"readings":{"t":1}}' % ts
    assert _reject(raw).reason in {"ts_out_of_range", "invalid_ts"}


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-le", "utf-32", "latin-1"])
def test_json_that_is_not_utf8_is_refused(codec: str) -> None:
    raw = '{"equipment_id":"pump-ä","ts":%d,"readings":{"t":1}}'.replace("%d", str(NOW))
    rejection = _reject(raw.encode(codec))
    assert rejection.reason == "not_json"


def test_a_utf8_bom_is_refused() -> None:
    rejection = _reject(b"\xef\xbb\xbf" + _msg())
    assert rejection.reason == "not_json"
