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

from collections.abc import Sequence
from typing import Any

from alerting.errors import FatalWriteError, TransientWriteError
from alerting.state import AlertEvent
from models.predictions import Prediction


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


class InfluxWriter:
    """Synchronous writes of whole batches of lines; raises instead of losing them.

    Args:
        client: an ``InfluxDBClient`` (no retries of its own).
        bucket: the bucket (setting ``influx_bucket``).
        org: the organization (setting ``influx_org``).
    """

    def __init__(self, client: Any, bucket: str, org: str) -> None:
        from influxdb_client.client.write_api import SYNCHRONOUS

        self._api = client.write_api(write_options=SYNCHRONOUS)
        self._bucket = bucket
        self._org = org

    def write(self, lines: Sequence[str]) -> None:
        """Write the lines; returns only after InfluxDB acknowledged them.

        Raises:
            TransientWriteError: unreachable, timed out or 5xx/429: retry later.
            FatalWriteError: token refused (401/403), bucket or org missing (404), or
                points refused (400): naming the setting to fix.
        """
        if not lines:
            return
        from influxdb_client import WritePrecision
        from influxdb_client.rest import ApiException
        from urllib3.exceptions import HTTPError

        try:
            for start in range(0, len(lines), 5000):
                self._api.write(
                    bucket=self._bucket,
                    org=self._org,
                    record=list(lines[start : start + 5000]),
                    write_precision=WritePrecision.MS,
                )
        except ApiException as exc:
            if exc.status in (401, 403):
                raise FatalWriteError(
                    f"InfluxDB refused the token (HTTP {exc.status}); check PLANTWATCH_INFLUX_TOKEN"
                ) from exc
            if exc.status == 404:
                raise FatalWriteError(
                    f"InfluxDB bucket {self._bucket!r} or org {self._org!r} not found (HTTP 404); "
                    "check PLANTWATCH_INFLUX_BUCKET and PLANTWATCH_INFLUX_ORG"
                ) from exc
            if exc.status in (400, 413, 422):
                raise FatalWriteError(
                    f"InfluxDB refused the points (HTTP {exc.status}): {exc.body}"
                ) from exc
            raise TransientWriteError(f"InfluxDB answered HTTP {exc.status}") from exc
        except (HTTPError, OSError) as exc:
            raise TransientWriteError(f"InfluxDB unreachable ({type(exc).__name__})") from exc
