"""Maintenance events (ground truth): failures and repairs on the ``maintenance.events`` topic.

The simulator and the C-MAPSS replay publish them; training reads them as labels.
Message value (Kafka key = equipment_id)::

    {"v": 1, "equipment_id": "pump-17", "ts": 1700000000000, "kind": "failure",
     "mode": "bearing_wear", "source": "simulator"}

>>> event = MaintenanceEvent("pump-17", 1700000000000, "failure", "bearing_wear", "simulator")
>>> decode_event(encode_event(event)) == event
True
>>> try:
...     decode_event(b'{"v": 1, "equipment_id": "p", "ts": 1, "kind": "explosion"}')
... except ValueError as exc:
...     print(exc)
field 'kind': value 'explosion' is not valid: expected one of failure, repair
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, cast

import orjson

EventKind = Literal["failure", "repair"]
KINDS: tuple[EventKind, ...] = ("failure", "repair")


@dataclass(frozen=True, slots=True)
class MaintenanceEvent:
    """A failure or a repair of one machine at an event time (epoch ms)."""

    equipment_id: str
    ts_ms: int
    kind: EventKind
    mode: str | None = None
    source: str | None = None


def encode_event(event: MaintenanceEvent) -> bytes:
    """The message value for ``event``."""
    doc: dict[str, Any] = {
        "v": 1,
        "equipment_id": event.equipment_id,
        "ts": event.ts_ms,
        "kind": event.kind,
    }
    if event.mode is not None:
        doc["mode"] = event.mode
    if event.source is not None:
        doc["source"] = event.source
    return orjson.dumps(doc)


def decode_event(raw: bytes) -> MaintenanceEvent:
    """Parse a message value; raises ValueError naming the field, value and expectation."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"maintenance event is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError("maintenance event is not a JSON object")
    eid, ts, kind = doc.get("equipment_id"), doc.get("ts"), doc.get("kind")
    if not isinstance(eid, str) or not eid:
        raise ValueError(f"field 'equipment_id': value {eid!r} is not valid: expected a string")
    if not isinstance(ts, int) or isinstance(ts, bool):
        raise ValueError(f"field 'ts': value {ts!r} is not valid: expected epoch milliseconds")
    if kind not in KINDS:
        raise ValueError(
            f"field 'kind': value {kind!r} is not valid: expected one of {', '.join(KINDS)}"
        )
    mode, source = doc.get("mode"), doc.get("source")
    return MaintenanceEvent(
        eid,
        ts,
        cast(EventKind, kind),
        mode if isinstance(mode, str) else None,
        source if isinstance(source, str) else None,
    )
