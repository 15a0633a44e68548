"""`plantwatch services up | down | status`."""

from __future__ import annotations

import time

import click

import devservices as local
from plantwatch.cli.main import cli, settings_from


@cli.group("services")
def services_group() -> None:
    """Run a real Kafka broker and InfluxDB server on this machine (no Docker needed).

    Kafka comes from its Maven Central jars (run with Java 17+); influxd is built from
    the Go module proxy with Go and cargo. Both are cached per version under
    --cache-dir after the first run (which takes minutes), so later starts take seconds.
    Data, logs and pid files live under --state-dir.
    """


@services_group.command("up")
@click.pass_context
def up_cmd(ctx: click.Context) -> None:
    """Start Kafka and InfluxDB (fetching/building them first if needed); idempotent.

    Prints each service's endpoint. InfluxDB is onboarded with --influx-org,
    --influx-bucket and PLANTWATCH_INFLUX_TOKEN on its first start.
    """
    from plantwatch.topics import ensure_topics, standard_topics

    settings = settings_from(ctx)
    started = time.monotonic()
    for line in local.up(settings, progress=lambda msg: click.echo(msg, err=True)):
        click.echo(line)
    partitions = settings.topic_partitions
    created = ensure_topics(settings, dict.fromkeys(standard_topics(settings), partitions))
    if created:
        click.echo(f"topics    created          {', '.join(created)} ({partitions} partitions)")
    click.echo(f"ready in {time.monotonic() - started:.1f}s (state: {settings.state_dir})")


@services_group.command("down")
@click.option("--purge", is_flag=True, help="Also delete the services' data (topics, buckets).")
@click.pass_context
def down_cmd(ctx: click.Context, purge: bool) -> None:
    """Stop the services that `up` started (by pid file); safe to call twice."""
    for line in local.down(settings_from(ctx), purge=purge):
        click.echo(line)


@services_group.command("status")
@click.pass_context
def status_cmd(ctx: click.Context) -> None:
    """Say which service runs where (pid, endpoint, logs), and the current profile."""
    from devservices.process import status_line
    from plantwatch.profile import path_of, read_profile
    from plantwatch.settings import Settings

    settings = settings_from(ctx)
    for line in local.status(settings):
        click.echo(line)
    path = path_of(settings)
    profile = read_profile(path, Settings)
    if profile is None:
        click.echo(status_line("profile", "none", f"({path})"))
    else:
        click.echo(
            status_line(
                "profile",
                profile.name,
                f"{path} ({len(profile.settings)} settings; `plantwatch profile show`, "
                "`plantwatch profile clear`)",
            )
        )
