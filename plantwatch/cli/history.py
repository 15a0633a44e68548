"""`plantwatch history`: one machine's sensors, risk, alerts and tickets on one time axis."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import click

from pipeline.errors import OptionError
from plantwatch.cli.main import cli, settings_from
from plantwatch.cli.options import since_option


@cli.command("history")
@click.argument("equipment_id", metavar="EQUIPMENT")
@since_option("7d", "Start of the range")
@click.option(
    "--until",
    default=None,
    help="End of the range (exclusive), same forms as --since. [default: now]",
)
@click.option(
    "--sensor",
    "sensors",
    multiple=True,
    metavar="NAME",
    help="Only this sensor (repeatable). [default: every sensor of the machine]",
)
@click.option(
    "--every",
    default="auto",
    show_default=True,
    help="Sensor readings: raw, or the mean per window such as 1m or 1h (time = window end); "
    "auto is raw up to 6 hours, else means over about 2000 windows.",
)
@click.option(
    "--csv",
    "csv_path",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Also write the merged frame to this CSV file (time, sensors, risk, threshold: the "
    "model's own, level, top_sensors, alert, ticket).",
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Also write a PNG: a panel per sensor and one for risk with the alert levels (and "
    "the model's own threshold); alert transitions and ticket changes as vertical lines.",
)
@click.pass_context
def history_cmd(
    ctx: click.Context,
    equipment_id: str,
    since: str,
    until: str | None,
    sensors: tuple[str, ...],
    every: str,
    csv_path: Path | None,
    plot_path: Path | None,
) -> None:
    """Show the history of one machine from InfluxDB.

    Reads the measurements telemetry (sensors), failure_risk (risk, level, the model's
    threshold), alerts and tickets for EQUIPMENT over the range and prints a summary:
    statistics per sensor, the latest and highest risk with the alert levels that set
    the level (PLANTWATCH_ALERT_*), and every alert transition and ticket change.
    Unknown machines and empty ranges are one-line errors (exit status 2) that list the
    known machines or the time span the machine does have data for.
    """
    from plantwatch.connections import influx_client, influx_errors
    from plantwatch.flux import auto_every, flux_duration, parse_every, parse_range
    from plantwatch.history import HistoryQuery, fetch_history
    from plantwatch.historyview import plot_history, summary_lines, write_csv

    settings = settings_from(ctx)
    if not equipment_id.strip():
        raise OptionError("EQUIPMENT", equipment_id, "an equipment id such as pump-7")
    start, stop = parse_range(since, until, datetime.now(UTC))
    window = auto_every(start, stop) if every.strip().lower() == "auto" else parse_every(every)
    query = HistoryQuery(equipment_id, start, stop, tuple(dict.fromkeys(sensors)), window)
    with influx_errors(settings), influx_client(settings) as client:
        frame = fetch_history(client, settings, query)
    described = "raw readings" if window is None else f"sensor means per {flux_duration(window)}"
    from plantwatch.fleet import levels_text

    for line in summary_lines(frame, equipment_id, described, levels=levels_text(settings)):
        click.echo(line)
    if csv_path is not None:
        try:
            write_csv(frame, csv_path)
        except OSError as exc:
            raise OptionError("--csv", str(csv_path), f"a writable file ({exc.strerror})") from None
        click.echo(f"\nwrote {len(frame)} rows to {csv_path}")
    if plot_path is not None:
        try:
            plot_history(
                frame,
                plot_path,
                f"{equipment_id}: {since} to {until or 'now'}",
                levels={"WARNING": settings.alert_warning, "CRITICAL": settings.alert_critical},
            )
        except OSError as exc:
            raise OptionError(
                "--plot", str(plot_path), f"a writable file ({exc.strerror})"
            ) from None
        click.echo(f"wrote the plot to {plot_path}")
