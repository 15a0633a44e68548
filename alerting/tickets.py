"""Maintenance tickets: what one carries and the JSON document that every sink gets.

A ticket is opened when an incident enters the ticket level (CRITICAL by default) and is
not silenced; its incident key is the idempotency key everywhere (the store's UNIQUE
column, the webhook's ``Idempotency-Key`` header, the Kafka record's header).

The document (``v`` 1) is shaped like the create call of common ticket systems: a
``title``, a ``description``, a ``priority`` and a ``labels`` list, plus plantwatch's
own fields::

    {"v": 1, "ticket_id": 7, "incident_key": "pump-17:1795922100000",
     "equipment_id": "pump-17", "title": "...", "description": "...", "priority": "critical",
     "labels": ["plantwatch", "pump"], "status": "open", "level": "CRITICAL",
     "opened_at": "2026-11-29T08:35:00Z", "incident_start": "...",
     "risk": {"probability": 0.91, "trend_per_hour": 0.12, "recent": [[ms, p], ...]},
     "top_sensors": [{"sensor": "vibration_rms", "share": 0.61}], "model_version": "m-...",
     "flux_query": "from(bucket: ...) ..."}
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from alerting.state import MachineState


def iso(ms: int) -> str:
    """Epoch ms as an ISO 8601 UTC time.

    >>> iso(0)
    '1970-01-01T00:00:00Z'
    """
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def flux_history(bucket: str, equipment_id: str, start_ms: int, stop_ms: int) -> str:
    """A Flux query showing the machine's risk and alerts around the incident."""
    eid = equipment_id.replace("\\", "\\\\").replace('"', '\\"')
    return (
        f'from(bucket: "{bucket}") |> range(start: {iso(start_ms - 86_400_000)}, '
        f"stop: {iso(stop_ms + 3_600_000)}) "
        f'|> filter(fn: (r) => (r._measurement == "failure_risk" or r._measurement == "alerts") '
        f'and r.equipment_id == "{eid}") |> filter(fn: (r) => r._field == "probability")'
    )


def new_ticket(
    st: MachineState, level: str, time_ms: int, model_version: str, bucket: str, wall_ms: int
) -> dict[str, Any]:
    """The store row of a ticket opened for ``st``'s incident at ``time_ms``."""
    start = st.incident_start if st.incident_start is not None else time_ms
    return {
        "incident_key": st.key(),
        "equipment_id": st.equipment_id,
        "status": "open",
        "level": level,
        "incident_start_ms": start,
        "opened_ms": time_ms,
        "probability": st.history[-1][1] if st.history else 0.0,
        "trend_per_hour": round(st.trend_per_hour(), 6),
        "top_sensors": orjson.dumps(st.top).decode(),
        "model_version": model_version,
        "flux": flux_history(bucket, st.equipment_id, start, time_ms),
        "created_wall_ms": wall_ms,
        "recent": st.history,
    }


def document(row: dict[str, Any], asset_type: str) -> dict[str, Any]:
    """The JSON document of a ticket row, as sinks receive it."""
    top = [{"sensor": s, "share": v} for s, v in orjson.loads(row["top_sensors"])]
    sensors = ", ".join(f"{t['sensor']} ({t['share']:.0%})" for t in top) or "none reported"
    p = float(row["probability"])
    trend = float(row["trend_per_hour"])
    title = f"{row['equipment_id']}: failure risk {row['level']} ({p:.0%})"
    description = (
        f"Machine {row['equipment_id']} entered {row['level']} at {iso(row['opened_ms'])} "
        f"(incident since {iso(row['incident_start_ms'])}). Failure probability now {p:.2f}, "
        f"trend {trend:+.3f}/h. Top contributing sensors: {sensors}. "
        f"Incident key {row['incident_key']}. History (Flux): {row['flux']}"
    )
    return {
        "v": 1,
        "ticket_id": row["id"],
        "incident_key": row["incident_key"],
        "equipment_id": row["equipment_id"],
        "title": title,
        "description": description,
        "priority": "critical" if row["level"] == "CRITICAL" else "high",
        "labels": ["plantwatch", asset_type],
        "status": row["status"],
        "level": row["level"],
        "opened_at": iso(row["opened_ms"]),
        "incident_start": iso(row["incident_start_ms"]),
        "risk": {"probability": p, "trend_per_hour": trend, "recent": row.get("recent", [])},
        "top_sensors": top,
        "model_version": row["model_version"],
        "flux_query": row["flux"],
    }
