"""`plantwatch simulate`: a simulated fleet publishing telemetry and ground truth to Kafka."""

from __future__ import annotations

import importlib.util
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from plantwatch.cli.main import cli, settings_from
from plantwatch.settings import Settings

if TYPE_CHECKING:
    from ingest.simulator import SimulatorConfig

_DAY_MS = 86_400_000
#: Event time may end this far after "now" (the contract accepts 10 minutes of skew).
_FUTURE_MS = 60_000
#: A run must start this far inside the contract's 90 days, so it validates for a day.
_PAST_MS = 89 * _DAY_MS
#: For --duration without --rate: a generous ceiling of messages/s, to place the run in time.
_RATE_CEILING = 250_000
_FAULTS = ("stuck", "dropout", "spike", "out_of_order", "duplicate", "malformed")
_F = TypeVar("_F", bound=Callable[..., Any])


def _compression(choice: str | None) -> dict[str, str | None]:
    """The producer's compression_type for ``--compression`` (none given: the setting's)."""
    if choice is None:
        return {}
    return {"compression_type": None if choice == "none" else choice}


def _parse_start(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    from ingest.contract import Rejection, parse_ts

    if value is None:
        return None
    ms = parse_ts(int(value) if value.isdigit() else value, "start")
    if isinstance(ms, Rejection) or ms < 0:
        raise click.BadParameter(
            f"{value!r} is not a time: expected RFC 3339 with zone "
            "(2024-05-01T12:00:00Z) or epoch milliseconds"
        )
    return ms


def _config(options: dict[str, Any], start_ms: int) -> SimulatorConfig:
    from ingest.simulator import FaultRates, SimulatorConfig

    try:
        return SimulatorConfig(
            machines=options["machines"],
            seed=options["seed"],
            start_ms=start_ms,
            interval_ms=options["interval_ms"],
            faults=FaultRates(*(options[k] for k in _FAULTS)),
            mean_life_steps=options["mean_life_steps"],
            repair_steps=options["repair_steps"],
            out_of_order_max_delay=options["max_delay"],
            batch_size=options["batch_size"],
        )
    except (TypeError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None


def _write_history(path: Path, config: SimulatorConfig, steps: int) -> str:
    from ingest.simulator import history

    if path.suffix not in (".parquet", ".csv"):
        raise click.BadParameter(
            f"{str(path)!r} must end in .parquet or .csv", param_hint="'--history-out'"
        )
    if path.suffix == ".parquet" and importlib.util.find_spec("pyarrow") is None:
        raise click.UsageError(
            "writing Parquet needs pyarrow (pip install pyarrow), or use a .csv path"
        )
    telemetry, events = history(config, steps)
    events_path = path.with_name(f"{path.stem}.events{path.suffix}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        for frame, target in ((telemetry, path), (events, events_path)):
            if path.suffix == ".parquet":
                frame.to_parquet(target, index=False)
            else:
                frame.to_csv(target, index=False)
    except OSError as exc:
        raise click.FileError(str(exc.filename or path), hint=exc.strerror or str(exc)) from None
    return (
        f"simulate: wrote {len(telemetry)} samples of {config.machines} machines to {path} "
        f"and {len(events)} events to {events_path}"
    )


def _publish(settings: Settings, config: SimulatorConfig, opts: dict[str, Any]) -> dict[str, Any]:
    """Publish the run with a keyed, acks=all producer; returns the summary."""
    from kafka import KafkaProducer

    from ingest.publisher import Publisher
    from ingest.simpublish import KeyPartitioned, publish_run
    from plantwatch.connections import kafka_errors, producer_config

    topic, events_topic = settings.topic_telemetry, settings.topic_events
    with kafka_errors(settings):
        producer = KeyPartitioned(
            KafkaProducer(
                **producer_config(
                    settings,
                    acks="all",
                    linger_ms=opts["linger_ms"],
                    batch_size=opts["kafka_batch_bytes"],
                    **_compression(opts["compression"]),
                    client_id="plantwatch-simulate",
                )
            )
        )
        try:
            for name in (topic,) if opts["no_events"] else (topic, events_topic):
                producer.partition(name, b"")  # metadata now, not in the timed run
            summary = publish_run(
                Publisher(producer, rate=opts["rate"]),
                config,
                topic=topic,
                events_topic=None if opts["no_events"] else events_topic,
                count=opts["count"],
                duration=opts["duration"],
                progress=_progress,
            )
        finally:
            producer.close(timeout=30)
    return {
        **summary.as_dict(),
        "topic": topic,
        "events_topic": events_topic,
        "seed": config.seed,
        "start_ms": config.start_ms,
        "batch_size": config.batch_size,
    }


def _progress(sent: int, seconds: float) -> None:
    click.echo(f"simulate: {sent:,} messages sent ({sent / max(seconds, 1e-9):,.0f}/s)", err=True)


def _fraction(name: str, what: str) -> Callable[[_F], _F]:
    return click.option(
        f"--{name}",
        type=click.FloatRange(0.0, 1.0),
        default=0.0,
        show_default=True,
        help=f"Fraction (0-1) of {what}.",
    )


@cli.command("simulate")
@click.option(
    "--machines",
    type=click.IntRange(1, 1_000_000),
    default=100,
    show_default=True,
    help="Machines in the fleet (half pumps, 30% compressors, 20% fans).",
)
@click.option(
    "--seed",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Seed of every random choice: same options and seed, same messages.",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0.0, min_open=True),
    default=None,
    help="Telemetry messages (Kafka records) per second to stay under "
    "[default: as fast as possible].",
)
@click.option(
    "--count",
    type=click.IntRange(1),
    default=None,
    help="Telemetry messages to publish, then stop [default: 10000].",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0.0, min_open=True),
    default=None,
    help="Publish for this many seconds of wall time instead of --count.",
)
@click.option(
    "--interval-ms",
    type=click.IntRange(1),
    default=1000,
    show_default=True,
    help="Sampling period of each machine, in ms of event time.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 1000),
    default=1,
    show_default=True,
    help="Samples per message; above 1 each message carries a batch of one machine.",
)
@_fraction("stuck", "samples in which a sensor repeats a frozen value (runs of 5-60 steps)")
@_fraction("dropout", "samples lost whole (half) or missing a sensor (runs of 3-20 steps)")
@_fraction("spike", "samples with one extreme but finite reading")
@_fraction("out-of-order", "valid messages delivered after up to --max-delay later ones")
@_fraction("duplicate", "valid messages delivered twice, byte for byte")
@_fraction("malformed", "samples sent as messages that break the telemetry contract")
@click.option(
    "--max-delay",
    type=click.IntRange(1, 1000),
    default=3,
    show_default=True,
    help="Most later messages of its machine that an out-of-order message waits for.",
)
@click.option(
    "--mean-life-steps",
    type=click.IntRange(10),
    default=5000,
    show_default=True,
    help="Mean steps from a repair to the next failure.",
)
@click.option(
    "--repair-steps",
    type=click.IntRange(1),
    default=60,
    show_default=True,
    help="Steps without telemetry between a failure and its repair.",
)
@click.option(
    "--start",
    callback=_parse_start,
    default=None,
    help="Event time of the first step, RFC 3339 or epoch ms [default: so that the run ends by "
    "now].",
)
@click.option(
    "--history-out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write --steps of clean history to this .parquet or .csv file (and events "
    "to <stem>.events.<ext>) instead of publishing.",
)
@click.option(
    "--steps",
    type=click.IntRange(1),
    default=None,
    help="Steps of history to write with --history-out [default: 10000].",
)
@click.option(
    "--no-events",
    is_flag=True,
    default=False,
    help="Do not publish failures and repairs to the events topic.",
)
@click.option(
    "--summary-json",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the final counts (by expectation, events, rate) as JSON here.",
)
@click.option(
    "--compression",
    type=click.Choice(["none", "gzip", "snappy", "lz4", "zstd"]),
    default=None,
    help="Compression of produced record batches [default: PLANTWATCH_KAFKA_COMPRESSION].",
)
@click.option(
    "--linger-ms",
    type=click.IntRange(0, 60_000),
    default=20,
    show_default=True,
    help="How long the producer waits to fill a record batch.",
)
@click.option(
    "--kafka-batch-bytes",
    type=click.IntRange(1024, 1_000_000),
    default=512 * 1024,
    show_default=True,
    help="Producer record-batch size per partition, in bytes (the broker takes 1 MB at most).",
)
@click.pass_context
def simulate_cmd(ctx: click.Context, /, **opts: Any) -> None:
    """Simulate a fleet of pumps, compressors and fans and publish its telemetry.

    Each machine samples its sensors every --interval-ms of event time; the readings follow
    its operating regime (low, normal, high load), noise, and a hidden degradation that
    ends in a failure (bearing wear, overheating, leaks, ...). Failures and repairs go to
    the events topic as ground truth; no telemetry is sent while a machine is under repair.
    The same options and --seed always give the same messages, byte for byte.

    Event time ends by now, so that every message passes the contract's time bounds
    (unless --start is given): the run is placed for fewer messages per step than the
    fleet's average, so it usually ends about a fifth of its span before now. Fault
    fractions inject data-quality issues (still valid), delivery issues and malformed
    messages; the summary counts every message by what validation will make of it:
    valid, duplicate, or the rejection reason.

    With --history-out, writes --steps steps of clean history to Parquet or CSV instead.
    """
    count, duration, steps = opts["count"], opts["duration"], opts["steps"]
    history_out, start = opts["history_out"], opts["start"]
    if count is not None and duration is not None:
        raise click.UsageError("--count and --duration exclude each other: give one")
    if history_out is None and steps is not None:
        raise click.UsageError("--steps goes with --history-out (publishing stops at --count)")
    if history_out is not None and (count, duration, opts["rate"]) != (None, None, None):
        raise click.UsageError(
            "--history-out writes --steps steps: --count, --duration and --rate are for publishing"
        )
    now_ms = int(time.time() * 1000)
    probe = _config(opts, now_ms if start is None else start)
    if history_out is not None:
        steps = steps or 10_000
        first = now_ms - steps * probe.interval_ms if start is None else start
        click.echo(_write_history(history_out, _config(opts, first), steps))
        return
    if count is None and duration is None:
        opts["count"] = count = 10_000
    config = _config(opts, _place(probe, start, now_ms, count, duration, opts["rate"]))
    summary = _publish(settings_from(ctx), config, opts)
    click.echo(_describe(summary))
    if opts["summary_json"] is not None:
        try:
            opts["summary_json"].write_text(json.dumps(summary, indent=2) + "\n")
        except OSError as exc:
            raise click.FileError(str(opts["summary_json"]), hint=exc.strerror) from None


def _place(
    config: SimulatorConfig,
    start: int | None,
    now_ms: int,
    count: int | None,
    duration: float | None,
    rate: float | None,
) -> int:
    """The run's start: given, or such that it ends by ``now_ms``; checked against the contract."""
    from ingest.simulator import plan_steps

    expected = count or (duration * (rate or _RATE_CEILING) if duration else 10_000)
    span = plan_steps(config, int(expected)) * config.interval_ms
    first = now_ms - span if start is None else start
    if first < now_ms - _PAST_MS or first + span > now_ms + _FUTURE_MS:
        raise click.UsageError(
            f"the run would span event times {_iso(first)} to {_iso(first + span)}, but "
            "telemetry must lie within 89 days before now and not after now to validate: "
            "lower --count/--duration or --interval-ms, give a --rate, or change --start"
        )
    return first


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


def _describe(summary: dict[str, Any]) -> str:
    kinds = ", ".join(f"{k} {v}" for k, v in summary["by_expect"].items()) or "none"
    events = ", ".join(f"{k} {v}" for k, v in summary["events"].items()) or "none"
    return (
        f"simulate: {summary['messages']} messages ({kinds}; {summary['samples']} valid "
        f"samples) to {summary['topic']!r}, events ({events}) to {summary['events_topic']!r}, "
        f"in {summary['seconds']:.2f} s: {summary['messages_per_s']:,} messages/s, "
        f"{summary['samples_per_s']:,} samples/s"
    )
