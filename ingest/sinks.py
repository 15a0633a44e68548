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
from pipeline.errors import FatalOutputError, RefusedOutputError, TransientOutputError
from pipeline.influxlines import LineWriter

# The output errors of every stage (pipeline.errors), under the names ingest has used.
TransientSinkError = TransientOutputError
FatalSinkError = FatalOutputError
RefusedSinkError = RefusedOutputError


class Sink(Protocol):
    """What the ingest service hands valid samples to."""

    def write(self, records: Sequence[Telemetry]) -> None:
        """Take a batch of valid samples (may buffer)."""

    def flush(self) -> None:
        """Make everything written durable, or raise.

        Raises:
            TransientSinkError: the backend is away; what was written stays pending.
            FatalSinkError: the backend refuses the configuration.
            RefusedSinkError: the backend refused what was written (not kept pending); the
                service bisects the batch to find the records it refuses.
        """


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
        self._writer = LineWriter(client, bucket, org)
        self._pending: list[str] = []

    def write(self, records: Sequence[Telemetry]) -> None:
        """Buffer the samples' lines."""
        self._pending.extend(line_protocol(r) for r in records)

    def flush(self) -> None:
        """Write the buffered lines; kept for a retry while InfluxDB is away, dropped if refused."""
        try:
            self._writer.write(self._pending)
        except RefusedOutputError:
            self._pending.clear()
            raise
        self._pending.clear()
