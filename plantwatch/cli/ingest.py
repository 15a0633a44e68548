"""`plantwatch ingest`: the telemetry consumer service."""

from __future__ import annotations

from pathlib import Path

import click

from plantwatch.cli.main import cli, configure_logging, echo_err, settings_from, stop_event
from plantwatch.stages import build_ingest


@cli.command("ingest")
@click.option(
    "--tap",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also append every valid sample as a JSON line to this file (fsynced before each "
    "commit; once per sample, and only what InfluxDB took with --influx).",
)
@click.option(
    "--influx/--no-influx",
    default=None,
    help="Write raw telemetry to the InfluxDB measurement `telemetry` "
    "[default: PLANTWATCH_INGEST_WRITE_INFLUX, off].",
)
@click.option(
    "--max-messages", type=click.IntRange(min=1), default=None, help="Stop after this many records."
)
@click.option(
    "--idle-exit",
    type=click.FloatRange(min=0.1),
    default=None,
    help="Stop after this many seconds without a record (for batch jobs and benchmarks), "
    "counted only while Kafka answers and the input is read to its end: a broker outage "
    "is waited out.",
)
@click.option(
    "--log-every",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Seconds between progress lines (counters, dead letters by reason, lag, rate).",
)
@click.pass_context
def ingest_cmd(
    ctx: click.Context,
    tap: Path | None,
    influx: bool | None,
    max_messages: int | None,
    idle_exit: float | None,
    log_every: float,
) -> None:
    """Consume telemetry: validate, dedupe, dead-letter bad records, emit features.

    Reads the telemetry topic in the consumer group PLANTWATCH_INGEST_GROUP. Valid samples
    are windowed per machine by the rules of PLANTWATCH_FEATURES_CONFIG, and each closed
    step's feature vector goes to the features topic, encoded as
    PLANTWATCH_FEATURES_ENCODING says (binary by default; json to read the topic with
    console tools; the scorer reads both); valid samples also go to the --tap
    file and to InfluxDB with --influx. Every refused record goes to the DLQ topic with its
    original bytes and a reason in its headers.

    Feature records, dead letters and the offsets commit form one Kafka transaction per
    batch (exactly once for read_committed consumers). After a crash or a rebalance, each
    partition is replayed from the rewind point kept in its commit metadata, rebuilding
    open windows without emitting a step twice. Ctrl-C (SIGINT) or SIGTERM finishes the
    batch, commits and exits.
    """
    settings = settings_from(ctx)
    configure_logging()
    stage = build_ingest(settings, tap=tap, influx=influx, log_every_s=log_every)
    stop = stop_event(stage)
    with stage.started() as service:
        service.run(stop, max_messages=max_messages, idle_exit_s=idle_exit, on_log=echo_err)
    m = service.metrics
    click.echo(
        f"consumed {m.consumed} records: {m.valid} valid samples, {m.duplicates} duplicates, "
        f"{sum(m.dead.values())} dead letters"
    )
