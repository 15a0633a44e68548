"""One machine's history on one time axis: sensors, risk, alerts and tickets.

Reads the measurements that plantwatch writes (``telemetry``, ``failure_risk``,
``alerts``, ``tickets``) with one Flux program and merges them into a DataFrame indexed
by UTC time, with one column per sensor and the columns :data:`EVENT_COLUMNS`. No click
here: the command lives in :mod:`plantwatch.cli.history`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from pipeline.errors import EmptyRangeError, OptionError, UnknownEquipmentError
from plantwatch.flux import flux_params, flux_time
from plantwatch.settings import Settings

if TYPE_CHECKING:
    import pandas as pd

MEASUREMENTS = ("telemetry", "failure_risk", "alerts", "tickets")
EVENT_COLUMNS = ("risk", "threshold", "level", "top_sensors", "alert", "ticket")
_RISK_FIELDS = {
    "probability": "risk",
    "threshold": "threshold",
    "level": "level",
    "top_sensors": "top_sensors",
}

_BODY = """
from(bucket: params.bucket)
  |> range(start: params.start, stop: params.stop)
  |> filter(fn: (r) => r._measurement == "telemetry" and r.equipment_id == params.eid)
  {sensor_filter}
  |> group(columns: ["_field"])
  {window}
  |> keep(columns: ["_time", "_field", "_value"])
  |> yield(name: "telemetry")
from(bucket: params.bucket)
  |> range(start: params.start, stop: params.stop)
  |> filter(fn: (r) => r._measurement == "failure_risk" and r.equipment_id == params.eid)
  |> keep(columns: ["_time", "_field", "_value", "model_version"])
  |> yield(name: "failure_risk")
from(bucket: params.bucket)
  |> range(start: params.start, stop: params.stop)
  |> filter(fn: (r) => r._measurement == "alerts" and r.equipment_id == params.eid)
  |> keep(columns: ["_time", "_field", "_value", "level"])
  |> yield(name: "alerts")
from(bucket: params.bucket)
  |> range(start: params.start, stop: params.stop)
  |> filter(fn: (r) => r._measurement == "tickets" and r.equipment_id == params.eid)
  |> keep(columns: ["_time", "_field", "_value", "status"])
  |> yield(name: "tickets")
"""

_SENSOR_KEYS = """
schema.fieldKeys(bucket: params.bucket, start: 0,
  predicate: (r) => r._measurement == "telemetry" and r.equipment_id == params.eid)
  |> yield(name: "sensors")
"""

_BOUNDS = """
import "influxdata/influxdb/schema"
{params}
data = from(bucket: params.bucket)
  |> range(start: 0)
  |> filter(fn: (r) => r.equipment_id == params.eid)
  |> filter(fn: (r) => contains(value: r._measurement, set: params.measurements))
  |> keep(columns: ["_time"])
  |> group()
data |> min(column: "_time") |> yield(name: "first")
data |> max(column: "_time") |> yield(name: "last")
schema.tagValues(bucket: params.bucket, tag: "equipment_id", start: 0) |> yield(name: "known")
"""


@dataclass(frozen=True)
class HistoryQuery:
    """What to read: one machine over ``[start, stop)``.

    Attributes:
        equipment_id: the machine.
        start: first instant (UTC).
        stop: end of the range, exclusive (UTC).
        sensors: sensor (field) names to read; empty for all.
        every: mean per window of this length (time = window end), or None for raw.
    """

    equipment_id: str
    start: datetime
    stop: datetime
    sensors: tuple[str, ...] = ()
    every: timedelta | None = None


def history_flux(query: HistoryQuery, bucket: str) -> str:
    """The Flux program for a history query; user values appear only in ``params``."""
    params: dict[str, Any] = {
        "bucket": bucket,
        "eid": query.equipment_id,
        "start": query.start,
        "stop": query.stop,
    }
    sensor_filter = ""
    if query.sensors:
        params["sensors"] = list(query.sensors)
        sensor_filter = "|> filter(fn: (r) => contains(value: r._field, set: params.sensors))"
    window = ""
    if query.every is not None:
        params["every"] = query.every
        window = "|> aggregateWindow(every: params.every, fn: mean, createEmpty: false)"
    body = _BODY.format(sensor_filter=sensor_filter, window=window)
    head = 'import "influxdata/influxdb/schema"\n' if query.sensors else ""
    return head + flux_params(params) + "\n" + body + (_SENSOR_KEYS if query.sensors else "")


def bounds_flux(equipment_id: str, bucket: str) -> str:
    """Flux for the first and last data time of a machine, and all known machines."""
    params = {"bucket": bucket, "eid": equipment_id, "measurements": list(MEASUREMENTS)}
    return _BOUNDS.format(params=flux_params(params))


def _text(values: Iterable[str]) -> str:
    return "; ".join(dict.fromkeys(v for v in values if v))


def alert_text(fields: Mapping[str, Any], level: str | None = None) -> str:
    """One alert transition as text.

    >>> alert_text({"from_level": "OK", "to_level": "WARNING", "reason": "p=0.7"})
    'OK->WARNING (p=0.7)'
    """
    to = fields.get("to_level") or level or "?"
    text = f"{fields.get('from_level') or '?'}->{to}"
    return f"{text} ({fields['reason']})" if fields.get("reason") else text


def ticket_text(fields: Mapping[str, Any], status: str | None) -> str:
    """One ticket change as text.

    >>> ticket_text({"ticket_id": 12, "outcome": ""}, "open")
    '#12 open'
    >>> ticket_text({"ticket_id": 12, "outcome": "real_fault"}, "closed")
    '#12 closed (real_fault)'
    """
    text = f"#{fields.get('ticket_id', '?')} {status or '?'}"
    return f"{text} ({fields['outcome']})" if fields.get("outcome") else text


def _by_time(rows: Iterable[Mapping[str, Any]], key: str) -> dict[tuple[Any, Any], dict[str, Any]]:
    """Group ``(_time, rows[key])`` -> ``{field: value}`` (one event per time and tag)."""
    out: dict[tuple[Any, Any], dict[str, Any]] = {}
    for row in rows:
        out.setdefault((row["_time"], row.get(key)), {})[row["_field"]] = row["_value"]
    return out


def merge_history(
    telemetry: Sequence[Mapping[str, Any]],
    risk: Sequence[Mapping[str, Any]],
    alerts: Sequence[Mapping[str, Any]],
    tickets: Sequence[Mapping[str, Any]],
) -> pd.DataFrame:
    """Merge the four measurements' rows into one frame on one UTC time axis.

    Each row is a mapping with ``_time``, ``_field``, ``_value`` and, for risk, alerts
    and tickets, the tag ``model_version``, ``level`` or ``status``. Sensor columns come
    first (sorted; a sensor named like an event column gets the suffix `` (sensor)``),
    then :data:`EVENT_COLUMNS`. Several alerts or tickets at one instant are joined
    with ``"; "``; of several model versions at one instant, the last one read wins.
    """
    import pandas as pd

    cells: dict[Any, dict[str, Any]] = {}
    sensors: set[str] = set()
    for row in telemetry:
        name = str(row["_field"])
        name = f"{name} (sensor)" if name in EVENT_COLUMNS else name
        sensors.add(name)
        cells.setdefault(row["_time"], {})[name] = float(row["_value"])
    for row in risk:
        column = _RISK_FIELDS.get(str(row["_field"]))
        if column is not None:
            cells.setdefault(row["_time"], {})[column] = row["_value"]
    texts: dict[str, dict[Any, list[str]]] = {"alert": {}, "ticket": {}}
    for (when, level), fields in _by_time(alerts, "level").items():
        texts["alert"].setdefault(when, []).append(alert_text(fields, level))
    for (when, status), fields in _by_time(tickets, "status").items():
        texts["ticket"].setdefault(when, []).append(ticket_text(fields, status))
    for column, per_time in texts.items():
        for when, values in per_time.items():
            cells.setdefault(when, {})[column] = _text(sorted(values))
    columns = sorted(sensors) + list(EVENT_COLUMNS)
    times = sorted(cells)
    index = pd.DatetimeIndex(pd.to_datetime(times, utc=True), name="time")
    frame = pd.DataFrame([cells[t] for t in times], index=index, columns=columns)
    for column in ("risk", "threshold", *sorted(sensors)):
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype("float64")
    return frame


def _rows(tables: Any) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for table in tables:
        for record in table.records:
            out.setdefault(str(record.values.get("result")), []).append(dict(record.values))
    return out


def fetch_history(client: Any, settings: Settings, query: HistoryQuery) -> pd.DataFrame:
    """Run the query and merge the result.

    Raises:
        OptionError: a ``--sensor`` that the machine never reported.
        UnknownEquipmentError: no measurement has any data for the machine.
        EmptyRangeError: the machine has data, but none in the range.
    """
    api = client.query_api()
    rows = _rows(api.query(history_flux(query, settings.influx_bucket)))
    frame = merge_history(
        rows.get("telemetry", []),
        rows.get("failure_risk", []),
        rows.get("alerts", []),
        rows.get("tickets", []),
    )
    known = sorted(str(r["_value"]) for r in rows.get("sensors", []))
    unknown = [s for s in query.sensors if s not in known]
    if known and unknown:
        raise OptionError(
            "--sensor", unknown[0], f"a sensor of {query.equipment_id!r}: {', '.join(known)}"
        )
    if not frame.empty:
        return frame
    bounds = _rows(api.query(bounds_flux(query.equipment_id, settings.influx_bucket)))
    first = [r["_time"] for r in bounds.get("first", [])]
    last = [r["_time"] for r in bounds.get("last", [])]
    if not first or not last:
        machines = sorted(str(r["_value"]) for r in bounds.get("known", []))
        raise UnknownEquipmentError(query.equipment_id, settings.influx_bucket, machines)
    raise EmptyRangeError(
        f"no data for equipment {query.equipment_id!r} from {flux_time(query.start)[:19]}Z "
        f"to {flux_time(query.stop)[:19]}Z; its data spans {flux_time(first[0])[:19]}Z to "
        f"{flux_time(last[0])[:19]}Z (widen --since/--until)"
    )
