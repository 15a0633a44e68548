r"""Safe Flux text and the time options of the query commands.

InfluxDB OSS 2.x ignores the ``params`` of a query request, so user input (equipment
ids, sensor names, the bucket) reaches Flux through one ``params = {...}`` record at the
top of the program, every value written as an escaped Flux literal by
:func:`flux_literal`. Query bodies only ever say ``params.eid``; they never contain
user text.

>>> flux_literal('pump "7" ${x}')
'"pump \\"7\\" \\${x}"'
>>> flux_params({"eid": "p-1", "sensors": ["temp", "rpm"]})
'params = {eid: "p-1", sensors: ["temp", "rpm"]}'
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta

from pipeline.errors import OptionError

FluxValue = str | int | float | bool | datetime | timedelta | Sequence[str]

_DURATION_RE = re.compile(r"^\s*(\d{1,6})\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PARAM_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SINCE_EXPECTED = "a duration such as 30m, 12h, 7d, 2w or an ISO date such as 2025-01-31T12:00"


def flux_string(value: str) -> str:
    r"""A Flux string literal for any text: quotes, backslashes and ``${`` escaped.

    >>> flux_string('a"b\\c')
    '"a\\"b\\\\c"'
    """
    escaped = (
        value.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("${", "\\${")
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
    )
    return f'"{escaped}"'


def flux_time(value: datetime) -> str:
    """An RFC 3339 Flux time literal (UTC, microseconds).

    >>> flux_time(datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC))
    '2025-01-02T03:04:05.000000Z'
    """
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def flux_duration(value: timedelta) -> str:
    """A Flux duration literal in whole seconds (at least 1s).

    >>> flux_duration(timedelta(minutes=6))
    '360s'
    """
    return f"{max(1, math.ceil(value.total_seconds()))}s"


def flux_literal(value: FluxValue) -> str:
    """The Flux literal of a Python value (str, number, bool, datetime, timedelta, list).

    Raises:
        TypeError: for any other type (a programming error, not user input).
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return flux_string(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TypeError(f"no Flux literal for {value!r}")
        return repr(value)
    if isinstance(value, datetime):
        return flux_time(value)
    if isinstance(value, timedelta):
        return flux_duration(value)
    if isinstance(value, Sequence):
        return "[" + ", ".join(flux_string(str(v)) for v in value) + "]"
    raise TypeError(f"no Flux literal for {type(value).__name__}")


def flux_params(params: Mapping[str, FluxValue]) -> str:
    """The ``params = {...}`` line that carries every user value into a Flux program."""
    for name in params:
        if not _PARAM_RE.match(name):
            raise ValueError(f"not a Flux identifier: {name!r}")
    body = ", ".join(f"{k}: {flux_literal(v)}" for k, v in params.items())
    return f"params = {{{body}}}"


def parse_duration(text: str) -> timedelta | None:
    """``30m``, ``12h``, ``7d``, ``2w`` (also ``s``) as a timedelta; None if not one.

    >>> parse_duration("7d")
    datetime.timedelta(days=7)
    >>> parse_duration("soon") is None
    True
    """
    match = _DURATION_RE.match(text)
    if match is None:
        return None
    seconds = int(match.group(1)) * _UNITS[match.group(2)]
    return timedelta(seconds=seconds) if seconds > 0 else None


def parse_when(text: str, now: datetime, option: str = "--since") -> datetime:
    """A point in time from a duration back from ``now`` or an ISO date (naive = UTC).

    >>> now = datetime(2025, 1, 8, tzinfo=UTC)
    >>> parse_when("7d", now)
    datetime.datetime(2025, 1, 1, 0, 0, tzinfo=datetime.timezone.utc)
    >>> parse_when("2025-01-03T06:00", now)
    datetime.datetime(2025, 1, 3, 6, 0, tzinfo=datetime.timezone.utc)

    Raises:
        OptionError: naming ``option``, the value and what is expected.
    """
    delta = parse_duration(text)
    if delta is not None:
        return now - delta
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise OptionError(option, text, SINCE_EXPECTED) from None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


def parse_range(since: str, until: str | None, now: datetime) -> tuple[datetime, datetime]:
    """The ``[start, stop)`` of ``--since`` and ``--until`` (default: now).

    Raises:
        OptionError: a bad value, or a range that ends before it starts.
    """
    start = parse_when(since, now, "--since")
    stop = parse_when(until, now, "--until") if until else now
    if start >= stop:
        raise OptionError("--since", since, f"a time before --until ({flux_time(stop)[:19]}Z)")
    return start, stop


def parse_every(text: str) -> timedelta | None:
    """``--every``: ``raw`` (None) or a duration such as 1m.

    Raises:
        OptionError: neither.
    """
    if text.strip().lower() == "raw":
        return None
    delta = parse_duration(text)
    if delta is None:
        raise OptionError("--every", text, "raw, auto or a duration such as 30s, 5m, 1h")
    return delta


def auto_every(start: datetime, stop: datetime, points: int = 2000) -> timedelta | None:
    """Raw readings up to 6 hours; beyond, means over whole minutes for about ``points`` rows.

    >>> auto_every(datetime(2025, 1, 1, tzinfo=UTC), datetime(2025, 1, 8, tzinfo=UTC))
    datetime.timedelta(seconds=360)
    """
    span = (stop - start).total_seconds()
    if span <= 6 * 3600:
        return None
    return timedelta(minutes=max(1, math.ceil(span / points / 60)))
