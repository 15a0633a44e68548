"""`plantwatch alert`: the alerting service (predictions -> InfluxDB, alerts, tickets)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from plantwatch.cli.main import cli, configure_logging, install_stop
from plantwatch.cli.options import _click_type, _default_text
from plantwatch.settings import SECRET_FIELDS, Settings, env_name, load_settings, option_name

F = TypeVar("F", bound=Callable[..., Any])
ALIASES = {"alert_sinks": "--sink", "alert_webhook_url": "--webhook-url"}


def alert_options(func: F) -> F:
    """The ``alert_*`` settings as options of this command (they override the environment)."""
    from plantwatch.settings import Settings as Model

    for name, field in reversed(list(Model.model_fields.items())):
        if not name.startswith("alert_") or name in SECRET_FIELDS:
            continue
        names = [option_name(name)] + ([ALIASES[name]] if name in ALIASES else [])
        func = click.option(
            *names,
            name,
            type=_click_type(field),
            default=None,
            help=f"{field.description} [env: {env_name(name)}; "
            f"default: {_default_text(name, field)}]",
        )(func)
    return func


def alert_settings(ctx: click.Context, overrides: dict[str, Any]) -> Settings:
    """Environment + root options + this command's ``--alert-*`` options, validated."""
    return load_settings({**(ctx.find_root().obj or {}), **overrides})


class _Silences:
    """The silences file, re-read when it changes (maintenance windows without restart)."""

    def __init__(self, path: Path | None) -> None:
        from alerting.rules import load_silences

        self._path = path
        self._mtime = self._stat()
        self.current = load_silences(path)

    def _stat(self) -> float:
        try:
            return self._path.stat().st_mtime if self._path else 0.0
        except OSError:
            return 0.0

    def __call__(self) -> Any:
        from alerting.errors import RulesError
        from alerting.rules import load_silences

        mtime = self._stat()
        if mtime != self._mtime:
            self._mtime = mtime
            try:
                self.current = load_silences(self._path)
            except RulesError as exc:
                click.echo(f"alert: keeping the previous silences: {exc}", err=True)
        return self.current


class _Versions:
    """Known model versions; an unknown one re-reads the models directory (at most every 10 s)."""

    def __init__(self, models_dir: Path) -> None:
        from models.registry import versions_in

        self._dir, self._read = models_dir, time.monotonic()
        self._known = set(versions_in(models_dir))

    def __call__(self, version: str) -> bool:
        if version in self._known:
            return True
        if time.monotonic() - self._read >= 10:
            from models.registry import versions_in

            self._known, self._read = set(versions_in(self._dir)), time.monotonic()
        return version in self._known


def rules_of(settings: Settings) -> Any:
    """The alert rules the settings describe."""
    from alerting.rules import Rules

    return Rules(
        warning=settings.alert_warning,
        warning_reset=settings.alert_warning_reset,
        critical=settings.alert_critical,
        critical_reset=settings.alert_critical_reset,
        pending_steps=settings.alert_pending_steps,
        pending_ms=settings.alert_pending_ms,
        repeat_ms=settings.alert_repeat_ms,
        flap_window_ms=settings.alert_flap_window_ms,
        flap_count=settings.alert_flap_count,
        deadman_ms=settings.alert_deadman_ms,
        ticket_level=settings.alert_ticket_level,
    )


def senders_of(settings: Settings, producer: Any, writer: Any) -> dict[str, Any]:
    """Outbox senders for every sink (webhook only when configured)."""
    from alerting.sinks import influx_sender, kafka_sender, webhook_sender
    from alerting.webhook import WebhookSink, check_url

    senders = {
        "kafka": kafka_sender(producer, settings.topic_tickets),
        "feedback": kafka_sender(producer, settings.topic_feedback),
        "influx": influx_sender(writer),
    }
    if settings.alert_webhook_url:
        url = check_url(settings.alert_webhook_url, settings.alert_webhook_allow_http)
        hook = WebhookSink(url, settings.alert_webhook_auth, settings.alert_webhook_timeout_s)
        senders["webhook"] = webhook_sender(hook)
    return senders


@cli.command("alert")
@alert_options
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
    help="Seconds between progress lines (counters, events, tickets, rate).",
)
@click.option("--crash-window", type=float, default=0.0, hidden=True)
@click.pass_context
def alert_cmd(
    ctx: click.Context,
    /,
    idle_exit: float | None,
    log_every: float,
    crash_window: float,
    **over: Any,
) -> None:
    """Consume predictions: write failure_risk and alerts to InfluxDB, open tickets.

    Reads the predictions topic in the consumer group PLANTWATCH_ALERT_GROUP. Each
    prediction becomes a failure_risk point; per machine an alert state machine (levels
    OK/WARNING/CRITICAL with reset thresholds, pending, repeat, flapping hold, deadman,
    silences) writes every transition to the measurement alerts. Entering the ticket level
    opens one ticket per incident in the store (PLANTWATCH_ALERT_DB) and queues it for the
    other sinks (--sink webhook,kafka), delivered with retries. Records that are malformed
    or of a model version not in PLANTWATCH_MODELS_DIR go to the DLQ topic with a reason.

    Offsets are committed only after InfluxDB acknowledged the batch and the store
    committed it; while InfluxDB is down consumption pauses and resumes without loss.
    Ctrl-C (SIGINT) or SIGTERM finishes the batch, commits and exits.
    """
    from kafka import KafkaConsumer, KafkaProducer

    from alerting import store
    from alerting.influx import InfluxWriter
    from alerting.outbox import Backoff, Dispatcher
    from alerting.service import AlertConfig, AlertingService
    from plantwatch.connections import (
        influx_client,
        kafka_errors,
        producer_config,
        stage_consumer_config,
    )
    from plantwatch.topics import ensure_topics, partitions_of

    settings = alert_settings(ctx, over)
    configure_logging()
    rules = rules_of(settings)
    silences = _Silences(settings.alert_silences)
    versions = _Versions(settings.models_dir)
    if not versions._known:
        click.echo(
            f"alert: warning: no model in {settings.models_dir} (PLANTWATCH_MODELS_DIR): "
            "every prediction will be dead-lettered until one appears",
            err=True,
        )
    sinks = tuple(s for s in settings.alert_sinks.split(",") if s != "builtin")
    config = AlertConfig(
        topic=settings.topic_predictions,
        dlq_topic=settings.topic_predictions_dlq,
        group=settings.alert_group,
        bucket=settings.influx_bucket,
        sinks=sinks,
        log_every_s=log_every,
        crash_window_s=crash_window,
    )
    parts = partitions_of(settings, settings.topic_predictions) or settings.topic_partitions
    outputs = [settings.topic_predictions, settings.topic_predictions_dlq]
    outputs += [settings.topic_tickets, settings.topic_feedback]
    ensure_topics(settings, dict.fromkeys(outputs, parts))
    client = influx_client(settings)
    writer = InfluxWriter(client, settings.influx_bucket, settings.influx_org)
    conn = store.connect(settings.alert_db)
    metrics = None
    if settings.metrics_port:
        from prometheus_client import start_http_server

        from alerting.metrics import AlertMetrics

        metrics = AlertMetrics()
        start_http_server(settings.metrics_port, addr="127.0.0.1", registry=metrics.registry)
    stop = threading.Event()
    install_stop("alert", stop)
    with kafka_errors(settings):
        consumer = KafkaConsumer(
            **stage_consumer_config(
                settings, settings.alert_group, max_poll_records=config.max_poll_records
            )
        )
        producer = KafkaProducer(**producer_config(settings, acks="all", linger_ms=5))
        dispatcher = Dispatcher(
            store.connect(settings.alert_db),
            senders_of(settings, producer, writer),
            Backoff(base_s=0.5, max_s=settings.alert_retry_max_s),
        )
        dispatcher.start()
        service = AlertingService(
            consumer, producer, writer, conn, rules, config, silences, versions, metrics
        )
        try:
            service.run(stop, idle_exit_s=idle_exit, on_log=lambda s: click.echo(s, err=True))
        finally:
            dispatcher.stop()
            consumer.close()
            producer.close(timeout=10)
            client.close()
            conn.close()
    m = service.metrics
    pending = store.outbox_pending(store.connect(settings.alert_db))
    click.echo(
        f"consumed {m.consumed} predictions: {m.points} points, {sum(m.events.values())} "
        f"events, {m.tickets} tickets, {sum(m.dead.values())} dead letters; outbox pending "
        f"{sum(pending.values())}"
    )
