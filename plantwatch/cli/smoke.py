"""`plantwatch smoke`: one telemetry record through Kafka and one point through InfluxDB."""

from __future__ import annotations

import time

import click

from plantwatch.cli.main import cli, settings_from
from plantwatch.smoke import run_smoke


@cli.command("smoke")
@click.option(
    "--equipment-id",
    default=None,
    help="Equipment id for the test record (default: smoke-<timestamp>).",
)
@click.pass_context
def smoke_cmd(ctx: click.Context, equipment_id: str | None) -> None:
    """Check the configured Kafka and InfluxDB for real, end to end.

    Produces one telemetry record to the telemetry topic and reads it back, then
    writes one point to the `telemetry` measurement and reads it back with Flux.
    Exits non-zero with a one-line reason if either fails.
    """
    settings = settings_from(ctx)
    eid = equipment_id or f"smoke-{int(time.time() * 1000)}"
    for line in run_smoke(settings, eid):
        click.echo(line)
