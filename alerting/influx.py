r"""InfluxDB points of the alerting stage and their synchronous, batched writer.

Measurements (ms precision; tags bounded by the fleet size):

- ``failure_risk``: tags ``equipment_id``, ``model_version``; fields ``probability``,
  ``threshold``, ``level`` (OK/WARNING/CRITICAL after this prediction), ``top_sensors``
  (``"a:0.5,b:0.3"``); time = the prediction's ``window_end``.
- ``alerts``: tags ``equipment_id``, ``level`` (the level entered, or NODATA); fields
  ``kind``, ``from_level``, ``to_level``, ``incident_key``, ``reason``, ``probability``,
  ``silenced``; time = the event's time.
- ``tickets``: tags ``equipment_id``, ``status``; fields ``ticket_id``, ``incident_key``,
  ``outcome``; time = when the ticket was opened, acknowledged or closed.

A rewrite of the same point (measurement + tags + time) overwrites itself, so a replay
doubles nothing.

A string field whose value is empty is left out of its point (a prediction without top
sensors has no ``top_sensors``, an open ticket no ``outcome``): InfluxDB 2.8 gives a
series' string values back in the wrong places once an empty one follows a non-empty one
(``"x"``, ``""``, ``"y"`` at t1, t2, t3 read back as ``"x"``, ``"y"``, ``""``), so
`plantwatch history` and the dashboards showed one prediction's top sensors at another's
time (found by ``tests/test_fuzz_stages.py``).

>>> from pipeline.predictions import Prediction
>>> p = Prediction("pump 1", 60000, 0.25, 0.5, "m-1", 30, 1800000, 12, (("temp", 0.75),))
>>> line = risk_line(p, "OK")
>>> line.startswith("failure_risk,equipment_id=pump\\ 1,model_version=m-1 probability=0.25,")
True
>>> line.endswith('threshold=0.5,top_sensors="temp:0.75",level="OK" 60000')
True
>>> risk_line(Prediction("m", 60000, 0.25, 0.5, "m-1", 30, 1800000, 12), None)
'failure_risk,equipment_id=m,model_version=m-1 probability=0.25,threshold=0.5 60000'
>>> ticket_line("m", "open", 7, "m:60000", "", 60000)
'tickets,equipment_id=m,status=open ticket_id=7i,incident_key="m:60000" 60000'
"""

from __future__ import annotations

from alerting.state import AlertEvent
from pipeline.influxlines import LineWriter
from pipeline.predictions import Prediction


def _tag(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _strings(**fields: str) -> str:
    """String fields in line protocol, the empty ones left out (see the module doc)."""
    return ",".join(f"{name}={_str(value)}" for name, value in fields.items() if value)


def risk_line(p: Prediction, level: str | None) -> str:
    """The ``failure_risk`` point of one prediction.

    ``level`` None leaves the stored level field as it is (a replayed prediction whose
    level the state machine already decided).
    """
    top = ",".join(f"{name}:{share:.4g}" for name, share in p.top_sensors)
    strings = _strings(top_sensors=top, level=level or "")
    fields = f"probability={p.probability!r},threshold={p.threshold!r}"
    fields += f",{strings}" if strings else ""
    tags = f"failure_risk,equipment_id={_tag(p.equipment_id)},model_version={_tag(p.model_version)}"
    return f"{tags} {fields} {p.window_end}"


def alert_line(e: AlertEvent) -> str:
    """The ``alerts`` point of one event."""
    strings = _strings(
        kind=e.kind,
        from_level=e.from_level,
        to_level=e.to_level,
        incident_key=e.incident_key,
        reason=e.reason,
    )
    fields = f"{strings}{',' if strings else ''}probability={float(e.probability)!r},"
    fields += f"silenced={'true' if e.silenced else 'false'}"
    return (
        f"alerts,equipment_id={_tag(e.equipment_id)},level={_tag(e.to_level)} {fields} {e.time_ms}"
    )


def ticket_line(
    equipment_id: str, status: str, ticket_id: int, incident_key: str, outcome: str, ts: int
) -> str:
    """The ``tickets`` point of a ticket's status change."""
    strings = _strings(incident_key=incident_key, outcome=outcome)
    fields = f"ticket_id={ticket_id}i{',' if strings else ''}{strings}"
    return f"tickets,equipment_id={_tag(equipment_id)},status={_tag(status)} {fields} {ts}"


class InfluxWriter(LineWriter):
    """Synchronous writes of whole batches of lines; raises instead of losing them.

    The one line-protocol writer of every stage (:class:`pipeline.influxlines.LineWriter`):
    ``write(lines)`` returns once InfluxDB acknowledged every line, or raises
    :class:`~alerting.errors.TransientWriteError` (unreachable, timed out, 5xx, 429: retry
    later), :class:`~alerting.errors.FatalWriteError` (token refused, bucket or org
    missing: names the setting) or :class:`~alerting.errors.RefusedWriteError` (HTTP 400,
    413, 422: the points themselves are refused; :func:`pipeline.influxlines.isolate`
    finds which).

    Args:
        client: an ``InfluxDBClient`` (no retries of its own).
        bucket: the bucket (setting ``influx_bucket``).
        org: the organization (setting ``influx_org``).
    """
