"""`plantwatch status`: each machine's latest risk and level, open tickets, lag per group."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from pipeline.errors import ConnectionCheckError
from plantwatch.cli.main import cli, settings_from
from plantwatch.cli.options import since_option

if TYPE_CHECKING:
    from plantwatch.deadletters import Counted, Digest


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


@cli.command("status")
@since_option("1d", "Latest prediction per machine, and dead letters, from this time on")
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
    """Show the fleet: latest risk and level per machine, open tickets, lag, dead letters.

    Risk and level come from the InfluxDB measurement failure_risk (each machine's
    newest prediction within --since); the level follows the alert levels of the settings
    (PLANTWATCH_ALERT_WARNING, _CRITICAL, their resets and _PENDING_STEPS), printed above
    the table; the model's own threshold, printed below it, raises no level. Open
    tickets come from the alerting store file
    (PLANTWATCH_ALERT_DB) when it exists, else from the tickets measurement. Lag is the
    number of records each stage's consumer group has not committed yet; a group that
    never committed shows "not started". Dead letters are the records the stages refused
    since --since, counted per DLQ topic and reason (committed letters; `plantwatch
    dead-letters` shows each with its detail). Secrets are never printed.
    """
    from plantwatch import deadletters
    from plantwatch.connections import influx_client, influx_errors, kafka_errors
    from plantwatch.deadletters import count_letters, dlq_topics
    from plantwatch.fleet import (
        fleet_status,
        group_lags,
        levels_text,
        model_thresholds_text,
        stage_groups,
    )
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
    dlq_names = dlq_topics(settings)
    dead: Counted | None = None
    try:
        lags = group_lags(settings, stage_groups(settings, groups))
    except ConnectionCheckError as exc:
        lags, kafka_error = [], str(exc)
    if kafka_error is None:
        try:
            with kafka_errors(settings):
                start_ms = int(start.timestamp() * 1000)
                dead = count_letters(settings, dlq_names, start_ms, deadletters.COUNT_MOST)
        except ConnectionCheckError as exc:
            kafka_error = str(exc)
    if as_json:
        import orjson

        doc: dict[str, Any] = {
            "since": start.isoformat().replace("+00:00", "Z"),
            "bucket": settings.influx_bucket,
            "tickets_source": source,
            "alert_levels": {
                name: getattr(settings, f"alert_{name}")
                for name in (
                    "warning",
                    "warning_reset",
                    "critical",
                    "critical_reset",
                    "pending_steps",
                    "pending_ms",
                    "ticket_level",
                )
            },
            "machines": [vars(m) for m in machines],
            "groups": [g.to_doc() for g in lags],
            "dead_letters": None if dead is None else _dead_doc(dead, dlq_names),
            "kafka_error": kafka_error,
        }
        click.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())
        return
    from plantwatch.historyview import text_table

    click.echo(f"machines ({len(machines)}; risk since {since}; open tickets from {source})")
    click.echo(f"  {levels_text(settings)}")
    rows = [
        [m.equipment_id, _number(m.risk), m.level or "-", m.time or "-", str(m.open_tickets)]
        for m in machines
    ]
    if rows:
        for line in text_table(["equipment", "risk", "level", "time", "open"], rows):
            click.echo(f"  {line}")
        models = model_thresholds_text((m.model_version, m.threshold) for m in machines)
        if models:
            click.echo(f"  {models}")
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
    if dead is not None:
        _echo_dead(dead, dlq_names, since)
    else:
        click.echo(f"\ndead letters since {since}\n  unknown: Kafka did not answer (see above)")


def _reasons(digest: Digest, topic: str) -> dict[str, int]:
    """Letters per reason in ``topic``, the most frequent first."""
    counts: dict[str, int] = {}
    for row in digest.rows():
        if row.topic == topic:
            counts[row.reason] = counts.get(row.reason, 0) + row.count
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


def _dead_doc(dead: Counted, names: list[str]) -> dict[str, Any]:
    there = [n for n in names if n not in dead.missing]
    return {
        "topics": {n: dead.count(n) for n in there},
        "reasons": {n: _reasons(dead.digest, n) for n in there},
        "missing_topics": dead.missing,
        "estimated": dead.sampled,
        "reasons_of_newest": dead.digest.total if dead.sampled else None,
    }


def _echo_dead(dead: Counted, names: list[str], since: str) -> None:
    from plantwatch.historyview import text_table

    click.echo(f"\ndead letters since {since} (`plantwatch dead-letters` shows them)")
    rows = []
    for name in names:
        if name in dead.missing:
            rows.append([name, "-", "topic does not exist yet"])
            continue
        reasons = _reasons(dead.digest, name)
        text = ", ".join(f"{reason or '?'} {n:,}" for reason, n in reasons.items())
        n = dead.count(name)
        count = f"{'about ' if dead.sampled and n else ''}{n:,}"
        rows.append([name, count, text or "-"])
    for line in text_table(["topic", "letters", "reasons"], rows):
        click.echo(f"  {line}")
    if dead.sampled:
        click.echo(
            f"  (more than {dead.most:,} offsets: counts from offsets, which also count "
            f"transaction markers and aborted records; reasons of the newest "
            f"{dead.digest.total:,} letters)"
        )
