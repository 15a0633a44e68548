"""`plantwatch dead-letters`: what the stages refused, where from, and why."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from pipeline.errors import OptionError, PlantwatchError
from plantwatch.cli.main import cli, settings_from
from plantwatch.cli.options import since_option

if TYPE_CHECKING:
    from collections.abc import Iterator

    from plantwatch.deadletters import Digest, Letter, Redrive
    from plantwatch.settings import Settings


def _topic_name(value: str) -> str:
    from plantwatch.settings import kafka_name

    try:
        return kafka_name(value)
    except ValueError as exc:
        raise OptionError("--topic", value, str(exc)) from None


@cli.command("dead-letters")
@since_option("1d", "Letters written from this time on")
@click.option(
    "--topic",
    "topics",
    multiple=True,
    metavar="TOPIC",
    callback=lambda ctx, param, values: tuple(_topic_name(v) for v in values),
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
@click.option(
    "--redrive",
    is_flag=True,
    help="Re-publish the letters with the --reason codes (required) to the topic and "
    "partition they came from, once: for when their cause is fixed (a model deployed, a "
    "limit raised). A letter redriven before is skipped.",
)
@click.option(
    "--redrive-max",
    "redrive_max",
    type=click.IntRange(min=1),
    default=None,
    metavar="N",
    help="With --redrive: redrive at most N letters (e.g. a few first, to see that the "
    "stage now takes them); a later run takes the rest.",
)
@click.option(
    "--again",
    is_flag=True,
    help="With --redrive: also redrive letters that are a redriven copy the stage refused "
    "again. They are skipped by default: the cause was not fixed by the last redrive, and a "
    "redrive repeated on a schedule would otherwise loop them.",
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
    redrive: bool,
    redrive_max: int | None,
    again: bool,
    as_json: bool,
) -> None:
    """Show the dead letters: counts by topic, stage and reason, then the newest in full.

    Every stage sends a record it refuses (malformed telemetry, a feature record of other
    rules, a prediction of an unknown model...) to its DLQ topic, unchanged, with the
    reason, the precise detail (field, value, what was expected) and the source topic,
    partition and offset in its headers. This reads those topics (committed records, from
    --since on, by the time each letter was written) and prints what a fix needs: which
    producer sent what, and what was wrong with it. It joins no consumer group.

    With --redrive (and --reason) it re-publishes those letters' original key and value
    to their source topic and partition, so the stage reads them again, e.g. predictions
    of a model the alerting stage did not have (unknown_model_version) once it has, or
    telemetry older than PLANTWATCH_INGEST_MAX_PAST_S (ts_out_of_range) once that is
    raised. Each copy and a mark in <dlq topic>.redriven commit in one transaction, so a
    letter is redriven once, however often the command runs; a copy that the stage
    refuses again comes back as a new letter, which a later --redrive skips unless
    --again is given. Without --redrive nothing is written.
    """
    from plantwatch.connections import kafka_errors
    from plantwatch.deadletters import Digest, dlq_topics, mark_of, read_letters, read_marks
    from plantwatch.flux import parse_when

    settings = settings_from(ctx)
    start = parse_when(since, datetime.now(UTC), "--since")
    names = list(topics) or dlq_topics(settings)
    if redrive and not reasons:
        raise OptionError(
            "--redrive",
            "without --reason",
            "one or more --reason codes whose cause is fixed (a letter of another reason "
            "would only be refused again)",
        )
    if redrive_max is not None and not redrive:
        raise OptionError("--redrive-max", str(redrive_max), "to be given with --redrive")
    if again and not redrive:
        raise OptionError("--again", "without --redrive", "to be given with --redrive")
    digest = Digest(newest=limit, reasons=frozenset(reasons))
    missing: list[str] = []
    start_ms = int(start.timestamp() * 1000)

    def letters() -> Iterator[Letter]:
        for letter in read_letters(settings, names, start_ms, missing.append):
            digest.add(letter)
            if not digest.reasons or letter.reason in digest.reasons:
                yield letter

    done = None
    with kafka_errors(settings):
        if redrive:
            done = _redrive(settings, names, letters(), redrive_max, again)
            before = done.already
        else:
            marks = read_marks(settings, names)
            before = sum(mark_of(letter) in marks for letter in letters())
    if as_json:
        _echo_json(digest, names, start, missing, before, done)
    else:
        _echo_text(digest, names, since, width, missing, before if done is None else 0)
        if done is not None:
            _echo_redrive(done)


def _redrive(
    settings: Settings,
    names: list[str],
    letters: Iterator[Letter],
    most: int | None,
    again: bool = False,
) -> Redrive:
    """Redrive ``letters`` with a transactional producer; errors say what was committed."""
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.errors import KafkaError

    from plantwatch.connections import kafka_config, producer_config
    from plantwatch.deadletters import Redrive, marks_topic, read_marks, redrive
    from plantwatch.topics import ensure_topics

    meta = KafkaConsumer(**kafka_config(settings, allow_auto_create_topics=False))
    producer = None
    result = Redrive()
    try:
        existing = [n for n in names if meta.partitions_for_topic(n)]
        ensure_topics(
            settings, {marks_topic(n): 1 for n in existing}, {"cleanup.policy": "compact"}
        )
        producer = KafkaProducer(
            **producer_config(
                settings, acks="all", transactional_id=f"{settings.ingest_group}-redrive"
            )
        )
        producer.init_transactions()  # fences a redrive still running, before reading marks
        done = read_marks(settings, existing)
        return redrive(
            producer,
            letters,
            done,
            meta.partitions_for_topic,
            result,
            on_commit=_Progress(),
            most=most,
            again=again,
        )
    except KafkaError as exc:
        fenced = "Fenced" in type(exc).__name__
        raise PlantwatchError(
            f"redrive stopped after {result.total:,} letters were redriven (committed; a "
            f"new run skips them): {type(exc).__name__}: {exc}"
            + (" (another redrive started and took over)" if fenced else "")
        ) from exc
    finally:
        if producer is not None:
            producer.close()
        meta.close()


class _Progress:
    """A line on stderr at most every ``every_s`` while a long redrive commits."""

    def __init__(self, every_s: float = 5.0) -> None:
        import time

        self.clock = time.monotonic
        self.every_s, self.last = every_s, self.clock()

    def __call__(self, result: Redrive) -> None:
        if self.clock() - self.last >= self.every_s:
            self.last = self.clock()
            click.echo(f"redrive: {result.total:,} letters committed so far", err=True)


def _redrive_doc(done: Redrive) -> dict[str, object]:
    return {
        "redriven": [
            {"topic": topic, "reason": reason, "to": to, "letters": n}
            for (topic, reason, to), n in sorted(done.redriven.items())
        ],
        "already_redriven": done.already,
        "source_topic_missing": done.no_source,
        "left": done.left,
        "refused_again_skipped": done.refused_again,
    }


def _echo_redrive(done: Redrive) -> None:
    parts = [
        f"{n:,} {reason} from {topic} to {to}"
        for (topic, reason, to), n in sorted(done.redriven.items())
    ]
    click.echo(f"\nredriven: {done.total:,} letters" + (f" ({'; '.join(parts)})" if parts else ""))
    if done.already:
        click.echo(f"  skipped {done.already:,} redriven before")
    if done.left:
        click.echo(f"  left {done.left:,} for a later run (--redrive-max)")
    if done.refused_again:
        click.echo(
            f"  skipped {done.refused_again:,} refused again after an earlier redrive "
            "(fix their cause, then --again)"
        )
    for topic, n in sorted(done.no_source.items()):
        where = f"source topic {topic} does not exist" if topic else "no source topic header"
        click.echo(f"  skipped {n:,}: {where}")


def _echo_json(
    digest: Digest,
    names: list[str],
    start: datetime,
    missing: list[str],
    before: int,
    done: Redrive | None = None,
) -> None:
    import orjson

    doc = {
        "since": start.isoformat().replace("+00:00", "Z"),
        "reasons": sorted(digest.reasons),
        "reasons_seen": sorted(digest.seen),
        "topics": {name: digest.per_topic.get(name, 0) for name in names if name not in missing},
        "missing_topics": missing,
        "counts": [vars(r) for r in digest.rows()],
        "newest": [letter.to_doc() for letter in reversed(digest.letters)],
        "redriven_before": before,
    }
    if done is not None:
        doc["redrive"] = _redrive_doc(done)
    click.echo(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode())


def _echo_text(
    digest: Digest, names: list[str], since: str, width: int, missing: list[str], before: int
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
    if before:
        click.echo(f"  {before:,} of them redriven before (`--redrive` skips those)")
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
        if letter.redriven_from:
            click.echo(f"    refused again after a redrive of {letter.redriven_from}")
        click.echo(f"    value:  {preview(letter.value, width)}")
