"""Label events: a closed ticket's outcome on ``maintenance.feedback`` (key = equipment_id).

::

    {"v": 1, "equipment_id": "pump-17", "incident_key": "pump-17:1795922100000",
     "window_start": 1795922100000, "window_end": 1795925700000, "ts": 1795925700000,
     "outcome": "confirmed", "note": "outer race spalled"}

``window_start``/``window_end`` bound the incident in prediction time (the end is when it
returned to OK, or the close time if it had not); ``ts`` is the time the label applies
to, ``window_end``. ``plantwatch tickets export-feedback --out FILE.csv`` writes closed
tickets as the ``equipment_id,ts,outcome`` CSV that ``plantwatch fine-tune --feedback``
reads (:mod:`models.feedback`).

>>> e = label_event("m-1", "m-1:10", 10, 50, "false-alarm", "")
>>> decode_label(encode_label(e)) == e
True
"""

from __future__ import annotations

from typing import Any

import orjson

from alerting.errors import TicketError

OUTCOMES = ("confirmed", "false-alarm", "no-fault-found")


def label_event(
    equipment_id: str, incident_key: str, start_ms: int, end_ms: int, outcome: str, note: str
) -> dict[str, Any]:
    """The label event of one closed ticket.

    Raises:
        TicketError: the outcome is not one of :data:`OUTCOMES`.
    """
    if outcome not in OUTCOMES:
        raise TicketError(
            f"outcome {outcome!r} is not valid: expected one of {', '.join(OUTCOMES)}"
        )
    return {
        "v": 1,
        "equipment_id": equipment_id,
        "incident_key": incident_key,
        "window_start": start_ms,
        "window_end": end_ms,
        "ts": end_ms,
        "outcome": outcome,
        "note": note,
    }


def encode_label(event: dict[str, Any]) -> bytes:
    """The message value of a label event."""
    return orjson.dumps(event)


def decode_label(raw: bytes) -> dict[str, Any]:
    """Parse a label event.

    Raises:
        TicketError: not a v1 label event.
    """
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise TicketError(f"label event is not JSON: {exc}") from None
    if not isinstance(doc, dict) or doc.get("v") != 1 or doc.get("outcome") not in OUTCOMES:
        raise TicketError("not a v1 label event with a known outcome")
    return doc
