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

>>> from models.predictions import Prediction
>>> p = Prediction("pump 1", 60000, 0.25, 0.5, "m-1", 30, 1800000, 12, (("temp", 0.75),))
>>> line = risk_line(p, "OK")
>>> line.startswith("failure_risk,equipment_id=pump\\ 1,model_version=m-1 probability=0.25,")
True
>>> line.endswith('threshold=0.5,top_sensors="temp:0.75",level="OK" 60000')
True
"""

from __future__ import annotations

from alerting.state import AlertEvent
from models.predictions import Prediction
from plantwatch.influxlines import LineWriter


def _tag(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def _str(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def risk_line(p: Prediction, level: str | None) -> str:
    """The ``failure_risk`` point of one prediction.

    ``level`` None leaves the stored level field as it is (a replayed prediction whose
    level the state machine already decided).
    """
    top = ",".join(f"{name}:{share:.4g}" for name, share in p.top_sensors)
    fields = f"probability={p.probability!r},threshold={p.threshold!r},top_sensors={_str(top)}"
    if level is not None:
        fields += f",level={_str(level)}"
    tags = f"failure_risk,equipment_id={_tag(p.equipment_id)},model_version={_tag(p.model_version)}"
    return f"{tags} {fields} {p.window_end}"


def alert_line(e: AlertEvent) -> str:
    """The ``alerts`` point of one event."""
    fields = ",".join(
        (
            f"kind={_str(e.kind)}",
            f"from_level={_str(e.from_level)}",
            f"to_level={_str(e.to_level)}",
            f"incident_key={_str(e.incident_key)}",
            f"reason={_str(e.reason)}",
            f"probability={float(e.probability)!r}",
            f"silenced={'true' if e.silenced else 'false'}",
        )
    )
    return (
        f"alerts,equipment_id={_tag(e.equipment_id)},level={_tag(e.to_level)} {fields} {e.time_ms}"
    )


def ticket_line(
    equipment_id: str, status: str, ticket_id: int, incident_key: str, outcome: str, ts: int
) -> str:
    """The ``tickets`` point of a ticket's status change."""
    fields = f"ticket_id={ticket_id}i,incident_key={_str(incident_key)},outcome={_str(outcome)}"
    return f"tickets,equipment_id={_tag(equipment_id)},status={_tag(status)} {fields} {ts}"


class InfluxWriter(LineWriter):
    """Synchronous writes of whole batches of lines; raises instead of losing them.

    The one line-protocol writer of every stage (:class:`plantwatch.influxlines.LineWriter`):
    ``write(lines)`` returns once InfluxDB acknowledged every line, or raises
    :class:`~alerting.errors.TransientWriteError` (unreachable, timed out, 5xx, 429: retry
    later), :class:`~alerting.errors.FatalWriteError` (token refused, bucket or org
    missing: names the setting) or :class:`~alerting.errors.RefusedWriteError` (HTTP 400,
    413, 422: the points themselves are refused; :func:`plantwatch.influxlines.isolate`
    finds which).

    Args:
        client: an ``InfluxDBClient`` (no retries of its own).
        bucket: the bucket (setting ``influx_bucket``).
        org: the organization (setting ``influx_org``).
    """
