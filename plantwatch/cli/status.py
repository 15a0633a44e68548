"""`plantwatch status`: each machine's latest risk and level, open tickets, lag per group."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from plantwatch.cli.main import cli, settings_from
from plantwatch.cli.options import since_option
from plantwatch.errors import ConnectionCheckError


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


@cli.command("status")
@since_option("1d", "Latest prediction per machine from this time on")
@click.option(
    "--group",
    "groups",
    multiple=True,
    metavar="GROUP",
    help="Also show the lag of this consumer group (repeatable); the stage groups "
    "(ingest, scorer, alerting, from the settings) are always shown.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead of tables.")
@click.pass_context
def status_cmd(ctx: click.Context, since: str, groups: tuple[str, ...], as_json: bool) -> None:
    """Show the fleet: latest risk and level per machine, open tickets, consumer lag.

    Risk and level come from the InfluxDB measurement failure_risk (each machine's
    newest prediction within --since), open tickets from the alerting store file
    (PLANTWATCH_ALERT_DB) when it exists, else from the tickets measurement. Lag is the
    number of records each stage's consumer group has not committed yet; a group that
    never committed shows "not started". Secrets are never printed.
    """
    from plantwatch.connections import influx_client, influx_errors
    from plantwatch.fleet import fleet_status, group_lags, stage_groups
    from plantwatch.flux import parse_when

    settings = settings_from(ctx)
    now = datetime.now(UTC)
    start = parse_when(since, now, "--since")
    store = getattr(settings, "alert_db", None)
    with influx_errors(settings), influx_client(settings) as client:
        machines, source = fleet_status(
            client, settings, start, Path(store) if store is not None else None
        )
    kafka_error = None
    try:
        lags = group_lags(settings, stage_groups(settings, groups))
    except ConnectionCheckError as exc:
        lags, kafka_error = [], str(exc)
    if as_json:
        import orjson

        doc: dict[str, Any] = {
            "since": start.isoformat().replace("+00:00", "Z"),
            "bucket": settings.influx_bucket,
            "tickets_source": source,
            "machines": [vars(m) for m in machines],
            "groups": [g.to_doc() for g in lags],
            "kafka_error": kafka_error,
        }
        click.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
        return
    from plantwatch.historyview import text_table

    click.echo(f"machines ({len(machines)}; risk since {since}; open tickets from {source})")
    rows = [
        [
            m.equipment_id,
            _number(m.risk),
            m.level or "-",
            _number(m.threshold),
            m.time or "-",
            str(m.open_tickets),
        ]
        for m in machines
    ]
    if rows:
        for line in text_table(["equipment", "risk", "level", "threshold", "time", "open"], rows):
            click.echo(f"  {line}")
    else:
        click.echo("  no predictions or tickets yet (is `plantwatch alert` running?)")
    click.echo("\nconsumer groups")
    if kafka_error:
        click.echo(f"  unknown: {kafka_error}")
    rows = [
        [
            g.stage,
            g.group,
            g.state,
            str(g.members),
            "-" if g.lag is None else str(g.lag),
            ", ".join(f"{t}={n}" for t, n in sorted(g.topics.items())) or "-",
        ]
        for g in lags
    ]
    if rows:
        for line in text_table(["stage", "group", "state", "members", "lag", "per topic"], rows):
            click.echo(f"  {line}")
