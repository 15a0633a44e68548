"""`plantwatch replay cmapss PATH`: NASA C-MAPSS engine histories as live telemetry.

Each engine cycle becomes one telemetry sample (alone or in a batch message) on the
telemetry topic, keyed by equipment id, with the Kafka record timestamp set to the event
time; each training engine's failure goes to the events topic at its last cycle. Messages
leave in event-time order across engines (ties by unit, a failure after its engine's last
sample), as fast as possible or paced by event time.
"""

from __future__ import annotations

import heapq
import re
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import click

from plantwatch.cli.main import cli, settings_from

if TYPE_CHECKING:
    from ingest.contract import Telemetry
    from ingest.events import MaintenanceEvent
    from ingest.publisher import Publisher
    from plantwatch.settings import Settings

_DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_DAY_MS = 86_400_000
_PROGRESS_S = 2.0


def parse_duration_ms(text: str) -> int:
    """Milliseconds from ``10m``, ``1h``, ``30s``, ``1.5d``, ``250ms`` or a bare ``600000``.

    >>> parse_duration_ms("10m"), parse_duration_ms("1.5h"), parse_duration_ms("250")
    (600000, 5400000, 250)
    """
    match = _DURATION_RE.match(text.strip().lower())
    if match is None:
        raise ValueError(f"{text!r} is not a duration: expected e.g. 10m, 1h, 30s or milliseconds")
    ms = round(float(match.group(1)) * _UNIT_MS[match.group(2) or "ms"])
    if ms <= 0:
        raise ValueError(f"{text!r} is not a positive duration: expected at least 1 millisecond")
    return ms


def parse_engines(text: str) -> frozenset[int]:
    """Unit numbers from a list such as ``1,2,5-9``.

    >>> sorted(parse_engines("1,2,5-7"))
    [1, 2, 5, 6, 7]
    """
    units: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        low, dash, high = part.partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            raise ValueError(f"{part!r} is not a unit or a range of units: expected e.g. 1,2,5-9")
        first, last = int(low), int(high) if dash else int(low)
        if not 1 <= first <= last:
            raise ValueError(f"{part!r} is not a rising range of units starting at 1 or more")
        units.update(range(first, last + 1))
    return frozenset(units)


def parse_start_ms(text: str) -> int:
    """Epoch milliseconds from RFC 3339 with a zone or from integer epoch milliseconds.

    >>> parse_start_ms("2023-11-14T22:13:20Z"), parse_start_ms("1700000000000")
    (1700000000000, 1700000000000)
    """
    from ingest.contract import parse_ts

    ts = parse_ts(int(text) if text.strip().isdigit() else text.strip(), "--start")
    if isinstance(ts, int):
        return ts
    raise ValueError(
        f"{text!r} is not a time: expected RFC 3339 with a zone (2024-05-01T12:00:00Z) "
        "or epoch milliseconds"
    )


def _parsed(parse: Callable[[str], Any]) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """An option callback that turns ``parse``'s ValueError into a usage error."""

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        try:
            return None if value is None else parse(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc), ctx, param) from None

    return callback


class _Message(NamedTuple):
    ts: int
    unit: int
    kind: int  # 0 telemetry, 1 event: a failure follows its engine's last sample
    topic: str
    key: str
    value: bytes
    ends_engine: bool


def _telemetry(
    records: Iterable[Telemetry], units: dict[str, int], last: dict[str, int], size: int, topic: str
) -> Iterator[_Message]:
    """Samples as messages of up to ``size`` cycles of one engine, at the last one's time."""
    from ingest.contract import encode, encode_batch

    pending: dict[str, list[Telemetry]] = {}
    for record in records:
        eid = record.equipment_id
        ends = record.seq == last[eid]
        batch = pending.setdefault(eid, [])
        batch.append(record)
        if len(batch) == size or ends:
            del pending[eid]
            value = encode(record) if size == 1 else encode_batch(batch)
            yield _Message(record.ts_ms, units[eid], 0, topic, eid, value, ends)


def _failure(event: MaintenanceEvent, units: dict[str, int], topic: str) -> _Message:
    from ingest.events import encode_event

    eid = event.equipment_id
    return _Message(event.ts_ms, units[eid], 1, topic, eid, encode_event(event), False)


def _iso(ms: float) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_window(first: int, last: int, now_ms: int, speed: float | None, cycles: int) -> None:
    """Refuse event times that the telemetry contract would refuse when they are sent.

    A day is kept in hand on the past side, so that consumers may read them a little later.
    """
    from ingest.contract import DEFAULT_LIMITS as LIMITS

    oldest = LIMITS.max_past_ms - _DAY_MS
    for ts in (first, last):  # the lag (send time - event time) is linear in the event time
        lag = now_ms + ((ts - first) / speed if speed else 0) - ts
        if lag > oldest:
            longest = oldest / max(1, cycles - 1) / 3_600_000
            raise click.BadParameter(
                f"cycle time {_iso(ts)} would be {lag / _DAY_MS:.1f} days old when sent; the "
                f"telemetry contract refuses event times over {LIMITS.max_past_ms // _DAY_MS} "
                f"days old (replay keeps a day in hand): use a later --start, fewer --engines "
                f"or a --cycle-period of at most {longest:.2f}h for {cycles} cycles",
                param_hint="--cycle-period/--start",
            )
        if -lag > LIMITS.max_future_ms:
            raise click.BadParameter(
                f"cycle time {_iso(ts)} would be {-lag / 60_000:.0f} minutes in the future when "
                f"sent; the telemetry contract refuses over {LIMITS.max_future_ms // 60_000} "
                "min: use an earlier --start",
                param_hint="--start",
            )


def _send(
    publisher: Publisher, messages: Iterable[_Message], pace: tuple[float, int] | None, engines: int
) -> tuple[int, int, int]:
    """Send in order; ``pace`` is (speed, first event time) or None for as fast as possible.

    Returns:
        Telemetry messages, events and engines sent.
    """
    telemetry = events = done = 0
    shown = time.monotonic()

    def progress() -> None:
        nonlocal shown
        if time.monotonic() - shown >= _PROGRESS_S:
            shown = time.monotonic()
            rate = publisher.sent / max(publisher.elapsed(), 1e-9)
            click.echo(
                f"replay: {done}/{engines} engines done, {publisher.sent} messages sent, "
                f"{rate:.0f} msg/s",
                err=True,
            )

    for message in messages:
        if pace is not None:
            due = (message.ts - pace[1]) / 1000 / pace[0]
            while (ahead := due - publisher.elapsed()) > 0:
                time.sleep(min(ahead, _PROGRESS_S / 2))
                progress()
        publisher.send(message.topic, message.key.encode(), message.value, timestamp_ms=message.ts)
        telemetry += message.kind == 0
        events += message.kind == 1
        done += message.ends_engine
        progress()
    return telemetry, events, done


def _publish(
    settings: Settings, messages: Iterable[_Message], pace: tuple[float, int] | None, engines: int
) -> tuple[int, int, int, float]:
    """Open the producer, send everything, wait for every acknowledgement."""
    from kafka import KafkaProducer

    from ingest.publisher import Publisher
    from plantwatch.connections import kafka_errors, producer_config

    with kafka_errors(settings):
        producer = KafkaProducer(**producer_config(settings, linger_ms=20, acks="all"))
        try:
            # Pacing is by event time in _send, not Publisher's uniform rate: the number of
            # engines still running (messages per cycle) falls as engines fail.
            publisher = Publisher(producer)
            counts = _send(publisher, messages, pace, engines)
            publisher.flush()
        finally:
            producer.close(timeout=10)
    return (*counts, publisher.elapsed())


@cli.group("replay")
def replay_group() -> None:
    """Replay recorded data sets onto Kafka as live telemetry and maintenance events."""


@replay_group.command("cmapss")
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--cycle-period",
    default="10m",
    show_default=True,
    metavar="DURATION",
    callback=_parsed(parse_duration_ms),
    help="Event time between two cycles of an engine: 10m, 1h, 30s, or milliseconds.",
)
@click.option(
    "--speed",
    type=click.FloatRange(min=0, min_open=True),
    metavar="FACTOR",
    help="Pace by event time, FACTOR times faster than real time (--speed 600 with 10m "
    "cycles sends one cycle per second).",
)
@click.option(
    "--fast", is_flag=True, help="Send as fast as possible (the default without --speed)."
)
@click.option(
    "--start",
    metavar="TIME",
    callback=_parsed(parse_start_ms),
    help="Event time of cycle 1: RFC 3339 with a zone, or epoch milliseconds. "
    "[default: so that the last replayed cycle lands at now, rounded down to a multiple of "
    "the cycle period so that cycles align with feature steps]",
)
@click.option(
    "--engines",
    metavar="LIST",
    callback=_parsed(parse_engines),
    help="Replay only these units, e.g. 1,2,5-9. [default: all]",
)
@click.option(
    "--prefix",
    default="engine",
    show_default=True,
    help="Equipment id prefix: unit 7 becomes <prefix>-007.",
)
@click.option(
    "--failures/--no-failures",
    default=None,
    help="Publish each engine's failure at its last cycle to the events topic. [default: on "
    "for train_*.txt, off otherwise; refused for test_*.txt, whose histories stop before "
    "failure]",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 10_000),
    default=1,
    show_default=True,
    help="Cycles of one engine per telemetry message (above 1: batch messages).",
)
@click.pass_context
def cmapss_cmd(
    ctx: click.Context,
    path: Path,
    cycle_period: int,
    speed: float | None,
    fast: bool,
    start: int | None,
    engines: frozenset[int] | None,
    prefix: str,
    failures: bool | None,
    batch_size: int,
) -> None:
    """Replay a C-MAPSS file (train_FD001.txt, test_FD001.txt) as engine telemetry.

    Unit u becomes equipment id <prefix>-uuu and cycle c the event time
    start + (c - 1) * cycle-period; each sample holds the 3 settings and 21 sensors
    (setting_1..setting_3, s1..s21) with the cycle as seq. Telemetry goes to the telemetry
    topic and failures to the events topic, keyed by equipment id, with the Kafka timestamp
    set to the event time. Progress goes to stderr, one summary line to stdout.
    """
    from ingest.cmapss import equipment_id, failure_events, load_cmapss, split_of, to_telemetry
    from ingest.contract import Telemetry, encode, validate

    if speed is not None and fast:
        raise click.BadParameter("--speed and --fast exclude each other", param_hint="--speed")
    settings = settings_from(ctx)
    df = load_cmapss(path)
    if engines is not None:
        missing = sorted(engines - set(df["unit"].tolist()))
        if missing:
            raise click.BadParameter(
                f"units {missing[:10]} are not in {path.name} (it has units "
                f"{df['unit'].min()}-{df['unit'].max()})",
                param_hint="--engines",
            )
        df = df[df["unit"].isin(engines)]
    if failures and split_of(path) == "test":
        raise click.BadParameter(
            f"{path.name} holds censored histories (its engines had not failed at their "
            "last cycle); failures exist only for train_*.txt",
            param_hint="--failures",
        )
    failures = split_of(path) == "train" if failures is None else failures
    now_ms = int(time.time() * 1000)
    cycles = int(df["cycle"].max())
    # By default the last cycle lands at (about) now, on a multiple of the cycle period, so
    # that each cycle falls at the start of its own feature step of that length.
    start_ms = (now_ms // cycle_period - (cycles - 1)) * cycle_period if start is None else start
    first = start_ms + (int(df["cycle"].min()) - 1) * cycle_period
    _check_window(first, start_ms + (cycles - 1) * cycle_period, now_ms, speed, cycles)
    probe = Telemetry(equipment_id(prefix, int(df["unit"].max())), now_ms, {"s1": 0.0})
    rejection = validate(encode(probe), now_ms)[1]
    if rejection is not None:
        raise click.BadParameter(rejection.detail, param_hint="--prefix")

    last = df.groupby("unit")["cycle"].max()
    units = {equipment_id(prefix, u): u for u in last.index.tolist()}
    last_cycle = dict(zip(units, last.tolist(), strict=True))
    records = to_telemetry(df, start_ms, cycle_period, prefix)
    events = failure_events(df, start_ms, cycle_period, prefix) if failures else []
    messages = heapq.merge(
        _telemetry(records, units, last_cycle, batch_size, settings.topic_telemetry),
        (_failure(e, units, settings.topic_events) for e in events),
        key=lambda m: (m.ts, m.unit, m.kind),
    )
    how = f"speed x{speed:g}" if speed else "as fast as possible"
    click.echo(
        f"replay: {len(units)} engines, {len(df)} cycles of {path.name} every "
        f"{cycle_period / 1000:g} s of event time from {_iso(first)}, failures "
        f"{'on' if failures else 'off'}, {how}",
        err=True,
    )
    pace = None if speed is None else (speed, first)
    sent, published, done, seconds = _publish(settings, messages, pace, len(units))
    click.echo(
        f"replayed {done} engines: {len(df)} cycles in {sent} messages to "
        f"{settings.topic_telemetry}, {published} failures to {settings.topic_events}, "
        f"{seconds:.2f} s ({(sent + published) / max(seconds, 1e-9):.0f} messages/s)"
    )
