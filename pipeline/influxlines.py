"""One InfluxDB line-protocol writer for every stage, and the isolation of refused records.

A write either returns once InfluxDB acknowledged every line, or raises one of
:class:`~pipeline.errors.TransientOutputError` (down, timed out, 5xx, 429: pause and
retry), :class:`~pipeline.errors.FatalOutputError` (token, bucket or org refused: stop
with the setting to fix) or :class:`~pipeline.errors.RefusedOutputError` (HTTP 400, 413,
422: these lines themselves are refused, and trying again cannot help). The last one must
never stop a partition: :func:`isolate` bisects the refused batch so that its valid
neighbours are written and only the refused records are handed back, to become dead
letters. Rewriting a point overwrites it (same measurement, tags and time), so the
repeated writes of a bisection double nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pipeline.errors import FatalOutputError, RefusedOutputError, TransientOutputError

T = TypeVar("T")

#: Lines per HTTP request (InfluxDB 2.x takes up to 25 MB a request; 5,000 short lines
#: are well below it).
CHUNK = 5000


def _one_line(text: object, limit: int = 500) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


class LineWriter:
    """Synchronous writes of line-protocol lines to one bucket, at millisecond precision.

    Args:
        client: an ``InfluxDBClient`` (without retries of its own: callers decide).
        bucket: the bucket (setting ``influx_bucket``).
        org: the organization (setting ``influx_org``).
    """

    def __init__(self, client: Any, bucket: str, org: str) -> None:
        from influxdb_client.client.write_api import SYNCHRONOUS

        self._api = client.write_api(write_options=SYNCHRONOUS)
        self.bucket = bucket
        self.org = org

    def write(self, lines: Sequence[str]) -> None:
        """Write the lines; return only after InfluxDB acknowledged all of them.

        Raises:
            TransientOutputError: unreachable, timed out, 5xx or 429: retry later.
            FatalOutputError: token refused (401/403), bucket or org missing (404).
            RefusedOutputError: the lines were refused (400, 413, 422), or one cannot be
                encoded as UTF-8; :func:`isolate` finds which.
        """
        if not lines:
            return
        from influxdb_client import WritePrecision
        from influxdb_client.rest import ApiException
        from urllib3.exceptions import HTTPError

        try:
            for start in range(0, len(lines), CHUNK):
                body = "\n".join(lines[start : start + CHUNK]).encode("utf-8")
                self._api.write(
                    bucket=self.bucket,
                    org=self.org,
                    record=body,
                    write_precision=WritePrecision.MS,
                )
        except UnicodeEncodeError as exc:
            raise RefusedOutputError(
                f"a point cannot be encoded as UTF-8: {exc.reason}", _one_line(exc)
            ) from None
        except ApiException as exc:
            status = exc.status
            if status in (401, 403):
                raise FatalOutputError(
                    f"InfluxDB refused the token (HTTP {status}); check PLANTWATCH_INFLUX_TOKEN"
                ) from None
            if status == 404:
                raise FatalOutputError(
                    f"InfluxDB bucket {self.bucket!r} or org {self.org!r} not found (HTTP 404); "
                    "check PLANTWATCH_INFLUX_BUCKET and PLANTWATCH_INFLUX_ORG"
                ) from None
            if status in (400, 413, 422):
                detail = _one_line(exc.body or exc.reason)
                raise RefusedOutputError(
                    f"InfluxDB refused the points (HTTP {status}): {detail}",
                    f"HTTP {status}: {detail}",
                ) from None
            raise TransientOutputError(f"InfluxDB answered HTTP {status}") from None
        except (HTTPError, OSError) as exc:
            raise TransientOutputError(f"InfluxDB unreachable ({type(exc).__name__})") from None


def isolate(
    items: Sequence[T], attempt: Callable[[Sequence[T]], None]
) -> list[tuple[T, RefusedOutputError]]:
    """Deliver ``items`` with ``attempt``; return the ones refused on their own, with why.

    A refused batch is split in halves and each half tried again, down to single items,
    so ``k`` refused items among ``n`` cost about ``2 k log2(n)`` extra writes and every
    other item is delivered. Errors other than :class:`RefusedOutputError` (an outage)
    propagate: the caller retries the whole call, which rewrites what was written.

    >>> def attempt(batch):
    ...     if "bad" in batch:
    ...         raise RefusedOutputError("refused", "HTTP 400: bad line")
    ...     written.extend(batch)
    >>> written = []
    >>> [(item, exc.detail) for item, exc in isolate(["a", "bad", "b", "c"], attempt)]
    [('bad', 'HTTP 400: bad line')]
    >>> written
    ['a', 'b', 'c']
    """
    if not items:
        return []
    try:
        attempt(items)
    except RefusedOutputError as exc:
        if len(items) == 1:
            return [(items[0], exc)]
        mid = len(items) // 2
        return isolate(items[:mid], attempt) + isolate(items[mid:], attempt)
    return []
