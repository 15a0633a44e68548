"""Where valid telemetry goes: the next stage, a JSON-lines tap, InfluxDB.

A sink's ``write`` may buffer; its ``flush`` returns only when everything written is
durable, and raises otherwise. The ingest service commits Kafka offsets only after every
sink flushed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, Protocol

import orjson

from ingest.contract import Telemetry
from plantwatch.errors import PlantwatchError


class TransientSinkError(PlantwatchError):
    """The sink's backend is unavailable for now; retry later (nothing was lost)."""


class FatalSinkError(PlantwatchError):
    """The sink cannot work with this configuration (e.g. refused credentials)."""


class Sink(Protocol):
    """What the ingest service hands valid samples to."""

    def write(self, records: Sequence[Telemetry]) -> None:
        """Take a batch of valid samples (may buffer)."""

    def flush(self) -> None:
        """Make everything written durable, or raise."""


class JsonlTap:
    """Append every sample as one JSON line to a file, fsynced on flush.

    Useful to watch a stream and, in tests, to see exactly what was handed on.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh: IO[bytes] = path.open("ab")

    def write(self, records: Sequence[Telemetry]) -> None:
        """Buffer the samples as JSON lines."""
        self._fh.write(
            b"".join(
                orjson.dumps(
                    {"equipment_id": r.equipment_id, "ts": r.ts_ms, "readings": r.readings}
                )
                + b"\n"
                for r in records
            )
        )

    def flush(self) -> None:
        """Write the buffer out and fsync it."""
        self._fh.flush()
        os.fsync(self._fh.fileno())

    def close(self) -> None:
        """Flush and close the file."""
        self.flush()
        self._fh.close()


def _escape_tag(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=").replace(" ", "\\ ")


def line_protocol(record: Telemetry) -> str:
    r"""The InfluxDB line for one sample (measurement ``telemetry``, ms precision).

    >>> line_protocol(Telemetry("pump-1", 1700000000000, {"temp": 70.5, "rpm": 1500.0}, "Plant A"))
    'telemetry,equipment_id=pump-1,site=Plant\\ A temp=70.5,rpm=1500.0 1700000000000'
    """
    tags = f"telemetry,equipment_id={_escape_tag(record.equipment_id)}"
    if record.site:
        tags += f",site={_escape_tag(record.site)}"
    fields = ",".join(f"{_escape_tag(k)}={float(v)!r}" for k, v in record.readings.items())
    return f"{tags} {fields} {record.ts_ms}"


class InfluxTelemetrySink:
    """Synchronous batched writes of samples to the InfluxDB measurement ``telemetry``.

    Rewrites of the same sample overwrite themselves (same measurement, tags and time),
    so a replay after a crash doubles nothing.
    """

    def __init__(self, client: Any, bucket: str, org: str) -> None:
        from influxdb_client.client.write_api import SYNCHRONOUS

        self._write_api = client.write_api(write_options=SYNCHRONOUS)
        self._bucket = bucket
        self._org = org
        self._pending: list[str] = []

    def write(self, records: Sequence[Telemetry]) -> None:
        """Buffer the samples' lines."""
        self._pending.extend(line_protocol(r) for r in records)

    def flush(self) -> None:
        """Write the buffered lines; keeps them on failure so that a retry resends them."""
        if not self._pending:
            return
        from influxdb_client import WritePrecision
        from influxdb_client.rest import ApiException
        from urllib3.exceptions import HTTPError

        try:
            self._write_api.write(
                bucket=self._bucket,
                org=self._org,
                record=self._pending,
                write_precision=WritePrecision.MS,
            )
        except ApiException as exc:
            if exc.status in (401, 403):
                raise FatalSinkError(
                    f"InfluxDB refused the token (HTTP {exc.status}); check PLANTWATCH_INFLUX_TOKEN"
                ) from exc
            if exc.status == 404:
                raise FatalSinkError(
                    f"InfluxDB bucket {self._bucket!r} or org {self._org!r} not found; "
                    "check PLANTWATCH_INFLUX_BUCKET and PLANTWATCH_INFLUX_ORG"
                ) from exc
            if exc.status == 400:
                raise FatalSinkError(f"InfluxDB refused the points: {exc.body}") from exc
            raise TransientSinkError(f"InfluxDB answered HTTP {exc.status}") from exc
        except (HTTPError, OSError) as exc:
            raise TransientSinkError(f"InfluxDB unreachable: {type(exc).__name__}") from exc
        self._pending.clear()
