"""`plantwatch dead-letters`: what the stages refused, where from, and why."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from plantwatch.cli.main import cli, settings_from
from plantwatch.cli.options import since_option

if TYPE_CHECKING:
    from plantwatch.deadletters import Digest


@cli.command("dead-letters")
@since_option("1d", "Letters written from this time on")
@click.option(
    "--topic",
    "topics",
    multiple=True,
    metavar="TOPIC",
    help="Read this DLQ topic (repeatable) [default: the three stages' DLQ topics, "
    "PLANTWATCH_TOPIC_TELEMETRY_DLQ, _FEATURES_DLQ and _PREDICTIONS_DLQ].",
)
@click.option(
    "--reason",
    "reasons",
    multiple=True,
    metavar="CODE",
    help="Only letters with this reason code, e.g. not_json, missing_field, too_late, "
    "config_mismatch (repeatable; docs/telemetry.md lists the ingest codes).",
)
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="Show the newest this many letters in full (0: the counts only).",
)
@click.option(
    "--width",
    type=click.IntRange(min=20),
    default=160,
    show_default=True,
    help="Longest preview of a letter's value, in characters.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead.")
@click.pass_context
def dead_letters_cmd(
    ctx: click.Context,
    since: str,
    topics: tuple[str, ...],
    reasons: tuple[str, ...],
    limit: int,
    width: int,
    as_json: bool,
) -> None:
    """Show the dead letters: counts by topic, stage and reason, then the newest in full.

    Every stage sends a record it refuses (malformed telemetry, a feature record of other
    rules, a prediction of an unknown model...) to its DLQ topic, unchanged, with the
    reason, the precise detail (field, value, what was expected) and the source topic,
    partition and offset in its headers. This reads those topics (committed records, from
    --since on, by the time each letter was written) and prints what a fix needs: which
    producer sent what, and what was wrong with it. Read-only; it joins no consumer group.
    """
    from plantwatch.connections import kafka_errors
    from plantwatch.deadletters import Digest, read_letters
    from plantwatch.flux import parse_when

    settings = settings_from(ctx)
    start = parse_when(since, datetime.now(UTC), "--since")
    names = list(topics) or [
        settings.topic_telemetry_dlq,
        settings.topic_features_dlq,
        settings.topic_predictions_dlq,
    ]
    digest = Digest(newest=limit, reasons=frozenset(reasons))
    missing: list[str] = []
    with kafka_errors(settings):
        for letter in read_letters(settings, names, int(start.timestamp() * 1000), missing.append):
            digest.add(letter)
    if as_json:
        _echo_json(digest, names, start, missing)
    else:
        _echo_text(digest, names, since, width, missing)


def _echo_json(digest: Digest, names: list[str], start: datetime, missing: list[str]) -> None:
    import orjson

    doc = {
        "since": start.isoformat().replace("+00:00", "Z"),
        "reasons": sorted(digest.reasons),
        "reasons_seen": sorted(digest.seen),
        "topics": {name: digest.per_topic.get(name, 0) for name in names if name not in missing},
        "missing_topics": missing,
        "counts": [vars(r) for r in digest.rows()],
        "newest": [letter.to_doc() for letter in reversed(digest.letters)],
    }
    click.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())


def _echo_text(
    digest: Digest, names: list[str], since: str, width: int, missing: list[str]
) -> None:
    from plantwatch.deadletters import iso, preview
    from plantwatch.historyview import text_table

    reasons = sorted(digest.reasons)
    only = f" with reason {', '.join(reasons)}" if reasons else ""
    per_topic = ", ".join(
        f"{n} does not exist" if n in missing else f"{digest.per_topic.get(n, 0):,} in {n}"
        for n in names
    )
    click.echo(f"dead letters since {since}{only}: {per_topic}")
    rows = [
        [r.topic, r.stage, r.reason, f"{r.count:,}", iso(r.first_ms), iso(r.last_ms)]
        for r in digest.rows()
    ]
    header = ["topic", "stage", "reason", "letters", "first", "last"]
    for line in text_table(header, rows) if rows else ["none"]:
        click.echo(f"  {line}")
    unmatched = sorted(set(reasons) - digest.seen)
    if unmatched and digest.seen:
        click.echo(
            f"  no letter has reason {', '.join(unmatched)}; the reasons of the letters "
            f"read: {', '.join(sorted(digest.seen))}"
        )
    letters = list(reversed(digest.letters))
    if not letters:
        return
    click.echo(f"\nnewest {len(letters)}, newest first")
    for letter in letters:
        key = "-" if letter.key is None else preview(letter.key, 60)
        click.echo(
            f"  {iso(letter.timestamp_ms)}  {letter.topic}  {letter.stage}  {letter.reason}  "
            f"from {letter.source}  key {key}"
        )
        click.echo(f"    detail: {letter.detail or '-'}")
        click.echo(f"    value:  {preview(letter.value, width)}")
