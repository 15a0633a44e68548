"""Telemetry contract v1: the JSON that sensors publish, its validation and its encoding.

Validation is a pure function of the message bytes and the current time: it returns the
parsed samples, or a :class:`Rejection` that names the field, the value and what was
expected. Valid input raises no exception on the way (decoding uses orjson); see
``docs/telemetry.md`` for the contract with examples.

>>> records, rejection = validate(
...     b'{"equipment_id": "pump-17", "ts": 1700000000000, "readings": {"temp": 71.5}}',
...     now_ms=1700000000000,
... )
>>> rejection is None, records[0].equipment_id, records[0].readings
(True, 'pump-17', {'temp': 71.5})
>>> bad = b'{"equipment_id": "pump-17", "ts": 1700000000000, "readings": {"temp": "hot"}}'
>>> validate(bad, now_ms=1700000000000)[1].detail
"field 'readings.temp': value 'hot' (str) is not a number: expected a finite number"
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from pipeline.names import ID_RE, MAX_EQUIPMENT_ID, MAX_SENSORS, MAX_TS_MS, SENSOR_RE

SCHEMA_VERSION = 1

# Matched with fullmatch (pipeline.names).
_ID_RE = ID_RE
_SENSOR_RE = SENSOR_RE
# Text that every sink can carry and give back as it was: no control characters (C0, DEL,
# C1, the line and paragraph separators), no surrogates, and no backslash (InfluxDB keeps
# a tag value's backslashes as written and reads one before a separator as an escape).
_TEXT_RE = re.compile(r"[^\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff\\]*")
_ALLOWED_TOP = frozenset(
    {"v", "equipment_id", "ts", "readings", "samples", "site", "asset_type", "seq"}
)
_ALLOWED_SAMPLE = frozenset({"ts", "readings", "seq"})
_FLOAT_MAX = int(sys.float_info.max)
# Sensor names already found valid: a fleet uses a few hundred, and a set look-up is cheaper
# than the regular expression on every reading. Bounded, so hostile names cannot grow it.
_SENSORS_SEEN: set[str] = set()
_SENSORS_SEEN_MAX = 4096


def _valid_sensor(name: str) -> bool:
    if len(name) > 64 or not _SENSOR_RE.fullmatch(name):
        return False
    if len(_SENSORS_SEEN) < _SENSORS_SEEN_MAX:
        _SENSORS_SEEN.add(name)
    return True


#: Every reason code a Rejection can carry (the DLQ and the metrics use these).
REASONS = (
    "too_large",
    "not_json",
    "not_object",
    "unsupported_version",
    "unknown_field",
    "missing_field",
    "invalid_equipment_id",
    "invalid_ts",
    "ts_out_of_range",
    "invalid_readings",
    "invalid_reading",
    "no_readings",
    "invalid_field",
    "invalid_batch",
)


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds that validation enforces (all configurable).

    Attributes:
        max_bytes: largest message accepted.
        max_equipment_id: longest equipment_id.
        max_sensors: most readings in one sample.
        max_samples: most samples in one batch message.
        max_past_ms: how far before now an event time may lie.
        max_future_ms: how far after now an event time may lie (clock skew).
    """

    max_bytes: int = 1_000_000
    max_equipment_id: int = MAX_EQUIPMENT_ID
    max_sensors: int = MAX_SENSORS
    max_samples: int = 10_000
    max_past_ms: int = 90 * 24 * 3600 * 1000
    max_future_ms: int = 10 * 60 * 1000


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True, slots=True)
class Telemetry:
    """One validated sample of one machine.

    Attributes:
        equipment_id: the machine (also the Kafka key).
        ts_ms: event time, epoch milliseconds UTC.
        readings: sensor name -> finite float.
        site: optional plant or site name.
        asset_type: optional asset type (pump, compressor, ...).
        seq: optional sender sequence number.
    """

    equipment_id: str
    ts_ms: int
    readings: dict[str, float]
    site: str | None = None
    asset_type: str | None = None
    seq: int | None = None


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a message was refused: a reason code from :data:`REASONS` and a precise detail."""

    reason: str
    detail: str


def _short(value: Any) -> str:
    text = (
        "null" if value is None else str(value).lower() if isinstance(value, bool) else repr(value)
    )
    return text if len(text) <= 60 else text[:57] + "..."


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def parse_ts(value: Any, field: str) -> int | Rejection:
    """Event time as epoch milliseconds, from RFC 3339 (with zone) or integer epoch ms.

    >>> parse_ts("2023-11-14T22:13:20Z", "ts")
    1700000000000
    >>> parse_ts(1700000000000, "ts")
    1700000000000
    >>> parse_ts("2023-11-14 22:13:20", "ts").reason
    'invalid_ts'
    """
    if isinstance(value, int) and not isinstance(value, bool):
        if 0 <= value <= MAX_TS_MS:
            return value
        return Rejection(
            "ts_out_of_range",
            f"field {field!r}: value {_short(value)} is outside 1970-01-01..2262-04-11: "
            "expected epoch milliseconds of a time near now",
        )
    if isinstance(value, str) and 10 <= len(value) <= 40:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
        if parsed is not None and parsed.tzinfo is not None and "T" in value.upper():
            return int(parsed.timestamp() * 1000)
    return Rejection(
        "invalid_ts",
        f"field {field!r}: value {_short(value)} ({_kind(value)}) is not a time: expected an "
        "RFC 3339 string with zone (2024-05-01T12:00:00.250Z) or integer epoch milliseconds",
    )


def _check_readings(value: Any, field: str, limits: Limits) -> dict[str, float] | Rejection:
    if not isinstance(value, dict):
        return Rejection(
            "invalid_readings",
            f"field {field!r}: value {_short(value)} ({_kind(value)}) is not an object: "
            "expected sensor name -> finite number",
        )
    if not value:
        return Rejection("no_readings", f"field {field!r} is empty: expected at least one reading")
    if len(value) > limits.max_sensors:
        return Rejection(
            "invalid_readings",
            f"field {field!r} has {len(value)} readings: expected at most {limits.max_sensors}",
        )
    out: dict[str, float] = {}
    for name, reading in value.items():
        if name not in _SENSORS_SEEN and not _valid_sensor(name):
            return Rejection(
                "invalid_readings",
                f"field {field!r}: sensor name {_short(name)} is not valid: expected 1-64 "
                "characters of letters, digits, _ . - starting with a letter or _",
            )
        if type(reading) is float:
            if not math.isfinite(reading):
                return Rejection(
                    "invalid_reading",
                    f"field '{field}.{name}': value {reading!r} is not finite: "
                    "expected a finite number",
                )
            out[name] = reading
        elif type(reading) is int:
            if not -_FLOAT_MAX <= reading <= _FLOAT_MAX:  # float() would overflow
                return Rejection(
                    "invalid_reading",
                    f"field '{field}.{name}': value {_short(reading)} is out of range: "
                    "expected a finite number (at most about 1.8e308 in magnitude)",
                )
            out[name] = float(reading)
        else:
            return Rejection(
                "invalid_reading",
                f"field '{field}.{name}': value {_short(reading)} ({_kind(reading)}) "
                "is not a number: expected a finite number",
            )
    return out


def _check_text(doc: Mapping[str, Any], key: str) -> str | Rejection | None:
    value = doc.get(key)
    if value is None:
        return None
    if isinstance(value, str) and 0 < len(value) <= 128 and _TEXT_RE.fullmatch(value):
        return value
    return Rejection(
        "invalid_field",
        f"field {key!r}: value {_short(value)} ({_kind(value)}) is not valid: expected a string "
        "of 1-128 characters without control characters, surrogates or backslashes",
    )


def _check_seq(value: Any, field: str) -> int | Rejection | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return Rejection(
        "invalid_field",
        f"field {field!r}: value {_short(value)} ({_kind(value)}) is not valid: "
        "expected a non-negative integer",
    )


def _check_equipment_id(doc: Mapping[str, Any], limits: Limits) -> str | Rejection:
    if "equipment_id" not in doc:
        return Rejection(
            "missing_field", "field 'equipment_id' is missing: expected the machine's id"
        )
    value = doc["equipment_id"]
    if not isinstance(value, str) or not value:
        return Rejection(
            "invalid_equipment_id",
            f"field 'equipment_id': value {_short(value)} ({_kind(value)}) is not valid: "
            "expected a non-empty string",
        )
    if len(value) > limits.max_equipment_id:
        return Rejection(
            "invalid_equipment_id",
            f"field 'equipment_id' is {len(value)} characters long: expected at most "
            f"{limits.max_equipment_id}",
        )
    if not _ID_RE.fullmatch(value):
        return Rejection(
            "invalid_equipment_id",
            f"field 'equipment_id': value {_short(value)} has characters outside A-Z a-z 0-9 "
            "and . _ : / @ - (or starts with one of the punctuation marks)",
        )
    return value


def _sample(
    doc: Mapping[str, Any],
    field: str,
    head: tuple[str, str | None, str | None],
    now_ms: int,
    limits: Limits,
) -> Telemetry | Rejection:
    prefix = f"{field}." if field else ""
    if "ts" not in doc:
        return Rejection(
            "missing_field",
            f"field '{prefix}ts' is missing: expected the event time "
            "(RFC 3339 with zone, or epoch milliseconds)",
        )
    ts = parse_ts(doc["ts"], prefix + "ts")
    if isinstance(ts, Rejection):
        return ts
    if not now_ms - limits.max_past_ms <= ts <= now_ms + limits.max_future_ms:
        return Rejection(
            "ts_out_of_range",
            f"field '{prefix}ts': value {_short(doc['ts'])} is {_describe_offset(ts - now_ms)}: "
            f"expected between {limits.max_past_ms // 1000}s before and "
            f"{limits.max_future_ms // 1000}s after now",
        )
    if "readings" not in doc:
        return Rejection(
            "missing_field",
            f"field '{prefix}readings' is missing: "
            "expected an object of sensor name -> finite number",
        )
    readings = _check_readings(doc["readings"], prefix + "readings", limits)
    if isinstance(readings, Rejection):
        return readings
    seq = _check_seq(doc.get("seq"), prefix + "seq")
    if isinstance(seq, Rejection):
        return seq
    equipment_id, site, asset_type = head
    return Telemetry(equipment_id, ts, readings, site, asset_type, seq)


def _fallback(raw: bytes, exc: orjson.JSONDecodeError) -> Any:
    """Off the hot path: what orjson refused, read by the standard library for a reason.

    It also reads NaN/Infinity literals and huge integers, so such a message gets a precise
    reason instead of "not JSON". The bytes must be UTF-8 (no BOM, no UTF-16): the
    standard library would guess other encodings from raw bytes.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        return Rejection(
            "not_json",
            f"message is not UTF-8: byte 0x{raw[bad.start]:02x} at position {bad.start}: "
            "expected JSON encoded as UTF-8",
        )
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return Rejection("not_json", f"message is not JSON: {exc}")


def _describe_offset(delta_ms: int) -> str:
    seconds = abs(delta_ms) // 1000
    when = "in the future" if delta_ms > 0 else "in the past"
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} days {when}"
    return f"{seconds}s {when}"


def validate(
    raw: bytes, now_ms: int, limits: Limits = DEFAULT_LIMITS
) -> tuple[list[Telemetry], Rejection | None]:
    """Validate one Kafka message value.

    Args:
        raw: the message value as received.
        now_ms: the current time (epoch ms), injected so that validation is pure.
        limits: bounds to enforce.

    Returns:
        ``(samples, None)`` for a valid single or batch message, or ``([], rejection)``.
        A batch is accepted or refused whole, so a dead letter always holds every sample
        of a refused message.
    """
    if len(raw) > limits.max_bytes:
        return [], Rejection(
            "too_large",
            f"message is {len(raw)} bytes: expected at most {limits.max_bytes}",
        )
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        doc = _fallback(raw, exc)
        if isinstance(doc, Rejection):
            return [], doc
    if not isinstance(doc, dict):
        return [], Rejection("not_object", f"message is JSON {_kind(doc)}: expected a JSON object")
    version = doc.get("v", SCHEMA_VERSION)
    if version != SCHEMA_VERSION or isinstance(version, bool):
        return [], Rejection(
            "unsupported_version",
            f"field 'v': value {_short(version)} is not supported: expected {SCHEMA_VERSION}",
        )
    unknown = doc.keys() - _ALLOWED_TOP
    if unknown:
        return [], Rejection(
            "unknown_field",
            f"field {sorted(unknown)[0]!r} is not part of telemetry v{SCHEMA_VERSION}: expected "
            f"only {', '.join(sorted(_ALLOWED_TOP))}",
        )
    equipment_id = _check_equipment_id(doc, limits)
    if isinstance(equipment_id, Rejection):
        return [], equipment_id
    site = _check_text(doc, "site")
    if isinstance(site, Rejection):
        return [], site
    asset_type = _check_text(doc, "asset_type")
    if isinstance(asset_type, Rejection):
        return [], asset_type
    head = (equipment_id, site, asset_type)
    if "samples" not in doc:
        one = _sample(doc, "", head, now_ms, limits)
        return ([], one) if isinstance(one, Rejection) else ([one], None)
    return _batch(doc, head, now_ms, limits)


def _batch(
    doc: Mapping[str, Any],
    head: tuple[str, str | None, str | None],
    now_ms: int,
    limits: Limits,
) -> tuple[list[Telemetry], Rejection | None]:
    samples = doc["samples"]
    if "ts" in doc or "readings" in doc or "seq" in doc:
        return [], Rejection(
            "invalid_batch",
            "a batch message carries 'samples' and no top-level 'ts', 'readings' or 'seq'",
        )
    if not isinstance(samples, list) or not samples:
        return [], Rejection(
            "invalid_batch",
            f"field 'samples': value {_short(samples)} ({_kind(samples)}) is not valid: "
            "expected a non-empty array of {ts, readings[, seq]} objects",
        )
    if len(samples) > limits.max_samples:
        return [], Rejection(
            "invalid_batch",
            f"field 'samples' has {len(samples)} entries: expected at most {limits.max_samples}",
        )
    out: list[Telemetry] = []
    for i, sample in enumerate(samples):
        field = f"samples[{i}]"
        if not isinstance(sample, dict):
            return [], Rejection(
                "invalid_batch",
                f"field {field!r}: value {_short(sample)} ({_kind(sample)}) is not an object",
            )
        extra = sample.keys() - _ALLOWED_SAMPLE
        if extra:
            return [], Rejection(
                "unknown_field",
                f"field '{field}.{sorted(extra)[0]}' is not part of a sample: expected only "
                "ts, readings, seq",
            )
        one = _sample(sample, field, head, now_ms, limits)
        if isinstance(one, Rejection):
            return [], one
        out.append(one)
    return out, None


def _common(equipment_id: str, site: str | None, asset_type: str | None) -> dict[str, Any]:
    doc: dict[str, Any] = {"v": SCHEMA_VERSION, "equipment_id": equipment_id}
    if site is not None:
        doc["site"] = site
    if asset_type is not None:
        doc["asset_type"] = asset_type
    return doc


def encode(record: Telemetry) -> bytes:
    """The single-sample message for ``record`` (what producers send).

    >>> encode(Telemetry("pump-1", 1700000000000, {"temp": 70.0}))
    b'{"v":1,"equipment_id":"pump-1","ts":1700000000000,"readings":{"temp":70.0}}'
    """
    doc = _common(record.equipment_id, record.site, record.asset_type)
    doc["ts"] = record.ts_ms
    doc["readings"] = record.readings
    if record.seq is not None:
        doc["seq"] = record.seq
    return orjson.dumps(doc)


def encode_batch(records: Sequence[Telemetry]) -> bytes:
    """One batch message for several samples of one machine.

    Raises:
        ValueError: if ``records`` is empty or mixes machines.
    """
    if not records:
        raise ValueError("encode_batch needs at least one record")
    first = records[0]
    if any(r.equipment_id != first.equipment_id for r in records):
        raise ValueError("encode_batch: all records must be of one equipment_id")
    doc = _common(first.equipment_id, first.site, first.asset_type)
    samples: list[dict[str, Any]] = []
    for r in records:
        sample: dict[str, Any] = {"ts": r.ts_ms, "readings": r.readings}
        if r.seq is not None:
            sample["seq"] = r.seq
        samples.append(sample)
    doc["samples"] = samples
    return orjson.dumps(doc)
