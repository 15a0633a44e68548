"""`plantwatch run`: the whole pipeline (ingest, scorer, alerting) as one job."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from pipeline.hosts import is_loopback
from plantwatch.cli.main import cli, configure_logging, echo_err, settings_from
from plantwatch.settings import Settings
from plantwatch.stages import build_run

if TYPE_CHECKING:
    from plantwatch.supervisor import Supervisor


def _services_reachable(settings: Settings) -> list[str]:
    """The local services that are not answering (names), when configured on loopback."""
    from devservices.process import port_accepts

    missing = []
    host, port = settings.kafka_hosts[0]
    if not port_accepts(host, port, timeout=1):
        missing.append("kafka")
    influx = settings.influx_url.split("//", 1)[1].split("/", 1)[0]
    ihost, _, iport = influx.rpartition(":")
    if not port_accepts(ihost.strip("[]"), int(iport or 8086), timeout=1):
        missing.append("influxdb")
    return missing


def _start_local(settings: Settings) -> bool:
    """Start the local services if needed and possible; True when this call started them."""
    from devservices import manager
    from pipeline.errors import PlantwatchError

    missing = _services_reachable(settings)
    if missing:
        influx_host = settings.influx_url.split("//", 1)[1].split(":", 1)[0].strip("[]")
        local = all(is_loopback(h) for h, _ in settings.kafka_hosts) and is_loopback(influx_host)
        if not local:
            raise PlantwatchError(
                f"{' and '.join(missing)} not reachable at the configured (remote) address; "
                "check PLANTWATCH_KAFKA_BOOTSTRAP_SERVERS / PLANTWATCH_INFLUX_URL"
            )
        click.echo(f"run: starting local {' and '.join(missing)} ...", err=True)
        for line in manager.up(settings, progress=lambda msg: click.echo(msg, err=True)):
            click.echo(f"run: {line}", err=True)
    return bool(missing)


def _stop_local(settings: Settings) -> None:
    """Stop the local services that :func:`_start_local` started."""
    from devservices import manager

    for line in manager.down(settings):
        click.echo(f"run: {line}", err=True)


def _check_scorers(settings: Settings, scorers: int) -> None:
    """Refuse more scorers than the features topic has partitions (the extra ones idle)."""
    from pipeline.errors import PlantwatchError
    from plantwatch.topics import partitions_of

    partitions = partitions_of(settings, settings.topic_features) or settings.topic_partitions
    if scorers > partitions:
        raise PlantwatchError(
            f"--scorers {scorers}: the features topic {settings.topic_features!r} has "
            f"{partitions} partitions, so at most {partitions} scorers get work: use fewer, or "
            "a topic with more partitions (PLANTWATCH_TOPIC_PARTITIONS, for new topics)"
        )


@cli.command("run")
@click.option(
    "--stages",
    default="ingest,score,alert",
    show_default=True,
    help="Comma-separated stages to run: ingest, score, alert.",
)
@click.option(
    "--scorers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Scorer processes in the scorer's consumer group. On CPU at most one per core: "
    "a process scores on about one core (on 2 cores one keeps up with 10,000 machines at "
    "1 step/s, ~12,000 predictions/s at most; docs/models.md). At most the features "
    "topic's partition count, best a divisor of it; instance k > 1 runs with "
    "PLANTWATCH_INSTANCE_ID-k.",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=1),
    default=None,
    help="Stop every stage after this many seconds [default: run until Ctrl-C].",
)
@click.option(
    "--idle-exit",
    type=click.FloatRange(min=0.1),
    default=None,
    help="Give each stage this option: it stops after so many seconds without input "
    "(counted only while Kafka answers and the stage has read its input to the end, so a "
    "broker outage is waited out); the run ends when every stage has stopped.",
)
@click.option(
    "--model",
    type=click.Path(path_type=Path),
    default=None,
    help="Model artifact for the scorer [default: the newest in PLANTWATCH_MODELS_DIR].",
)
@click.option(
    "--log-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write each stage's output to DIR/<stage>.log instead of prefixed lines on stderr.",
)
@click.option(
    "--log-every",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Seconds between each stage's progress lines.",
)
@click.option(
    "--status-every",
    type=click.FloatRange(min=0),
    default=0,
    show_default=True,
    help="Every so many seconds print one status line: each stage's lag and rate, the "
    "riskiest machines, tickets opened (0: off).",
)
@click.option(
    "--services/--no-services",
    "manage_services",
    default=True,
    show_default=True,
    help="Start the local Kafka and InfluxDB if they are configured on loopback and not "
    "running (and stop them at the end); --no-services never starts anything.",
)
@click.pass_context
def run_cmd(
    ctx: click.Context,
    stages: str,
    scorers: int,
    duration: float | None,
    idle_exit: float | None,
    model: Path | None,
    log_dir: Path | None,
    log_every: float,
    status_every: float,
    manage_services: bool,
) -> None:
    """Run ingest, scorer and alerting together until Ctrl-C (or --duration/--idle-exit).

    Each stage is its own process running exactly the standalone command (`plantwatch
    ingest`, `score`, `alert`) with this command's settings; a stage that crashes is
    restarted with a growing delay. Ctrl-C or SIGTERM stops every stage cleanly: each
    finishes its batch and commits its offsets.
    """
    configure_logging()
    settings = settings_from(ctx)
    chosen = _chosen_stages(stages, scorers)
    started = _prepare(settings, scorers, manage_services)
    supervisor = build_run(
        settings,
        chosen,
        echo=echo_err,
        scorers=scorers,
        model=model,
        idle_exit_s=idle_exit,
        log_every_s=log_every,
        log_dir=log_dir,
    )
    codes = _supervise(supervisor, settings, duration, status_every, started)
    failed = {s: c for s, c in codes.items() if c and c[-1] not in (0, -signal.SIGTERM)}
    summary = ", ".join(f"{s} exit {c[-1] if c else '-'}" for s, c in codes.items())
    click.echo(f"run: done ({summary})", err=True)
    if failed:
        ctx.exit(1)


def _chosen_stages(stages: str, scorers: int) -> list[str]:
    """The stages of ``--stages``, checked (and ``--scorers`` against them)."""
    from pipeline.errors import PlantwatchError
    from plantwatch.supervisor import STAGES

    chosen = [s.strip() for s in stages.split(",") if s.strip()]
    unknown = [s for s in chosen if s not in STAGES]
    if not chosen or unknown:
        raise PlantwatchError(
            f"invalid value for --stages: {stages!r}: expected a comma-separated subset of "
            f"{', '.join(STAGES)}"
        )
    if scorers > 1 and "score" not in chosen:
        raise PlantwatchError(f"--scorers {scorers}: the score stage is not in --stages {stages}")
    return chosen


def _prepare(settings: Settings, scorers: int, manage_services: bool) -> bool:
    """Local services up (if asked and needed), every topic made, the scorers checked.

    Returns:
        Whether this call started the local services (a refusal stops them again).
    """
    from plantwatch.connections import kafka_errors
    from plantwatch.topics import ensure_topics, standard_topics

    started = _start_local(settings) if manage_services else False
    try:
        with kafka_errors(settings):
            topics = dict.fromkeys(standard_topics(settings), settings.topic_partitions)
            ensure_topics(settings, topics)
        if scorers > 1:
            _check_scorers(settings, scorers)
    except BaseException:  # a refusal or Kafka error: leave no services this run started
        if started:
            _stop_local(settings)
        raise
    return started


def _supervise(
    supervisor: Supervisor,
    settings: Settings,
    duration: float | None,
    status_every: float,
    started: bool,
) -> dict[str, list[int]]:
    """Run the stages until they are done, Ctrl-C/SIGTERM or ``duration``; their exit codes.

    Every ``status_every`` seconds (0: never) one status line goes to stderr. At the end
    the local services stop when this run ``started`` them.
    """
    stop = threading.Event()

    def handler(signum: int, _frame: Any) -> None:
        click.echo(f"run: {signal.Signals(signum).name}: stopping every stage", err=True)
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    deadline = None if duration is None else time.monotonic() + duration
    supervisor.start()
    codes: dict[str, list[int]] = {}
    status, client, next_status = None, None, time.monotonic() + status_every
    if status_every:
        from plantwatch.connections import influx_client
        from plantwatch.livestatus import LiveStatus

        status, client = LiveStatus(settings), influx_client(settings, timeout_ms=5_000)
    try:
        while supervisor.poll() and not stop.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                click.echo(f"run: --duration {duration:g}s reached", err=True)
                break
            if status is not None and time.monotonic() >= next_status:
                click.echo(status.line(client), err=True)
                next_status = time.monotonic() + status_every
            stop.wait(0.5)
    finally:
        codes = supervisor.stop()
        if client is not None:
            client.close()
        if started:
            _stop_local(settings)
    return codes
