"""`plantwatch alert`: the alerting service (predictions -> InfluxDB, alerts, tickets)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from plantwatch.cli.main import cli, configure_logging, echo_err, stop_event
from plantwatch.cli.options import _click_type, _default_text
from plantwatch.settings import SECRET_FIELDS, Settings, env_name, load_settings, option_name
from plantwatch.stages import build_alert

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
    from alerting import store

    settings = alert_settings(ctx, over)
    configure_logging()
    stage = build_alert(settings, echo=echo_err, log_every_s=log_every, crash_window_s=crash_window)
    stop = stop_event(stage)
    with stage.started() as service:
        service.run(stop, idle_exit_s=idle_exit, on_log=echo_err)
    m = service.metrics
    pending = store.outbox_pending(store.connect(settings.alert_db))
    click.echo(
        f"consumed {m.consumed} predictions: {m.points} points, {sum(m.events.values())} "
        f"events, {m.tickets} tickets, {sum(m.dead.values())} dead letters; outbox pending "
        f"{sum(pending.values())}"
    )
