"""What a run did, next to what really happened: the summary of `plantwatch report`.

Reads, for one event-time range:

- the ground truth: failures on the events topic (``maintenance.events``);
- the pipeline's outputs: records and dead letters on the Kafka topics, the predictions on
  the predictions topic and which of them have their point in InfluxDB (``failure_risk``,
  by machine, time and model version: all of them when nothing was lost; a replay
  rewrites the same point, so nothing can be doubled there), tickets in the alerting
  store (``alert_db``);

and compares tickets with failures by the rules of :mod:`evaluation.groundtruth` (a ticket
opened less than ``max_lead`` before its machine's last prediction in the range, with no
failure after it yet, is not judged: it is counted apart, not as a false alarm, as
``plantwatch evaluate`` does at the end of a history). The
PNG shows risk over time of a few machines that failed, with failures and ticket
openings marked.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from evaluation.groundtruth import Comparison, Failure, Opened, compare, spread
from plantwatch.flux import FluxValue, flux_params
from plantwatch.settings import Settings

_RISK_POINTS = """
{params}
from(bucket: params.bucket)
  |> range(start: params.start, stop: params.stop)
  |> filter(fn: (r) => r._measurement == "failure_risk" and r._field == "probability")
  |> filter(fn: (r) => contains(value: r.equipment_id, set: params.machines))
  |> filter(fn: (r) => contains(value: r.model_version, set: params.versions))
"""
_COUNTS = (
    _RISK_POINTS
    + """  |> group(columns: ["equipment_id"])
  |> count()
"""
)

_SERIES = """
{params}
from(bucket: params.bucket)
  |> range(start: params.start, stop: params.stop)
  |> filter(fn: (r) => r._measurement == "failure_risk")
  |> filter(fn: (r) => r._field == "probability" or r._field == "threshold")
  |> filter(fn: (r) => contains(value: r.equipment_id, set: params.machines))
  |> keep(columns: ["_time", "_field", "_value", "equipment_id"])
"""


@dataclass
class RunReport:
    """The figures of one run."""

    start_ms: int
    end_ms: int
    max_lead_ms: int = 0
    records: int = 0
    dead_letters: int = 0
    produced: dict[str, int] = field(default_factory=dict)  # per machine, on the topic
    predictions: dict[str, int] = field(default_factory=dict)  # of those, found in InfluxDB
    tickets: list[dict[str, Any]] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    comparison: Comparison = field(default_factory=Comparison)

    def lines(self) -> list[str]:
        """The human summary."""
        c = self.comparison
        lead = c.median_lead_ms
        step = "n/a" if lead is None else f"{lead / 60_000:.0f} min"
        lines = [
            f"records ingested       {self.records:,} ({self.dead_letters:,} dead-lettered)",
            f"predictions            {sum(self.produced.values()):,} produced for "
            f"{len(self.produced)} machines, "
            f"{sum(self.predictions.values()):,} of them in InfluxDB",
            f"tickets opened         {len(self.tickets)}",
            f"failures (truth)       {c.failures}: caught {c.caught}, missed {c.missed} "
            f"(recall {c.recall:.0%}); median lead time {step}",
            f"false alarms           {c.false_alarms} of {c.tickets} judged tickets "
            f"(precision {c.precision:.0%})",
        ]
        early = c.false_then_failed_ms
        if early:
            lines.append(
                f"false, failed later    {len(early)} of them: their machine failed "
                f"{spread(t / 60_000 for t in early)} min after the ticket, past the "
                f"{self.max_lead_ms / 60_000:.0f} min a warning may lead"
            )
        if c.unjudged:
            lines.append(
                f"not judged yet         {c.unjudged} tickets opened within "
                f"{self.max_lead_ms / 60_000:.0f} min of their machine's last prediction"
            )
        return lines

    def to_doc(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        c = self.comparison
        return {
            "start_ms": self.start_ms,
            "end_ms": self.end_ms,
            "records": self.records,
            "dead_letters": self.dead_letters,
            "predictions_produced": sum(self.produced.values()),
            "predictions_in_influxdb": sum(self.predictions.values()),
            "machines_predicted": len(self.produced),
            "tickets": len(self.tickets),
            "failures": c.failures,
            "caught": c.caught,
            "missed": c.missed,
            "lead_ms": c.lead_ms,
            "false_alarms": c.false_alarms,
            "unjudged": c.unjudged,
            "recall": c.recall,
            "precision": c.precision,
            **c.ticket_lists(),
        }


def read_records(settings: Settings, topic: str) -> Iterator[Any]:
    """Every committed record of a topic (kafka-python records), from its start to its end now.

    Transactional topics hold commit markers, so counting end offsets would overcount;
    this reads the records (``read_committed``). A missing topic yields nothing.
    """
    from kafka import KafkaConsumer, TopicPartition

    from plantwatch.connections import kafka_config

    consumer = KafkaConsumer(
        **kafka_config(settings), enable_auto_commit=False, isolation_level="read_committed"
    )
    try:
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not parts:
            return
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        ends = consumer.end_offsets(parts)
        while any(consumer.position(tp) < ends[tp] for tp in parts):
            for records in consumer.poll(timeout_ms=1000).values():
                yield from records
    finally:
        consumer.close()


def read_topic(settings: Settings, topic: str) -> Iterator[bytes | None]:
    """Every committed record value of a topic (:func:`read_records`)."""
    for record in read_records(settings, topic):
        yield record.value


def read_failures(settings: Settings, topic: str, start_ms: int, end_ms: int) -> list[Failure]:
    """Failure events with event time in ``[start_ms, end_ms]``."""
    from ingest.events import decode_event

    out: list[Failure] = []
    for value in read_topic(settings, topic):
        try:
            event = decode_event(value) if value is not None else None
        except ValueError:
            continue
        if event is not None and event.kind == "failure" and start_ms <= event.ts_ms <= end_ms:
            out.append(Failure(event.equipment_id, event.ts_ms))
    return out


Key = tuple[str, int, str]  # (equipment_id, window_end ms, model_version)


def produced_predictions(settings: Settings, start_ms: int, end_ms: int) -> set[Key]:
    """The keys of the predictions on the predictions topic in the range (replays once)."""
    from pipeline.predictions import decode_prediction

    seen: set[Key] = set()
    for value in read_topic(settings, settings.topic_predictions):
        p, _ = decode_prediction(value)
        if p is not None and start_ms <= p.window_end <= end_ms:
            seen.add((p.equipment_id, p.window_end, p.model_version))
    return seen


_KEYS = (
    _RISK_POINTS
    + """  |> keep(columns: ["_time", "equipment_id", "model_version"])
"""
)


def stored_keys(client: Any, settings: Settings, wanted: set[Key]) -> set[Key]:
    """Which of the ``wanted`` prediction keys have their point in ``failure_risk``."""
    if not wanted:
        return set()
    params: dict[str, FluxValue] = {
        "bucket": settings.influx_bucket,
        "start": _dt(min(k[1] for k in wanted)),
        "stop": _dt(max(k[1] for k in wanted) + 1),
        "machines": sorted({k[0] for k in wanted}),
        "versions": sorted({k[2] for k in wanted}),
    }
    found: set[Key] = set()
    for table in client.query_api().query(_KEYS.format(params=flux_params(params))):
        for r in table.records:
            key = (str(r.values["equipment_id"]), int(r.get_time().timestamp() * 1000),
                   str(r.values["model_version"]))  # fmt: skip
            if key in wanted:
                found.add(key)
    return found


def read_tickets(db: Path, start_ms: int, end_ms: int) -> list[dict[str, Any]]:
    """Tickets opened (event time) in ``[start_ms, end_ms]`` from the alerting store."""
    if not db.is_file():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    conn.row_factory = sqlite3.Row
    try:
        rows = conn.execute(
            "SELECT * FROM tickets WHERE opened_ms BETWEEN ? AND ? ORDER BY opened_ms",
            (start_ms, end_ms),
        ).fetchall()
    except sqlite3.Error:
        return []
    finally:
        conn.close()
    return [dict(r) for r in rows]


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def prediction_counts(
    client: Any,
    settings: Settings,
    machines: list[str],
    versions: list[str],
    start_ms: int,
    end_ms: int,
) -> dict[str, int]:
    """Points per machine of these model versions in ``failure_risk`` in the range."""
    if not machines or not versions:
        return {}
    params: dict[str, FluxValue] = {
        "bucket": settings.influx_bucket,
        "start": _dt(start_ms),
        "stop": _dt(end_ms + 1),
        "machines": machines,
        "versions": versions,
    }
    tables = client.query_api().query(_COUNTS.format(params=flux_params(params)))
    return {str(r.values["equipment_id"]): int(r.get_value()) for t in tables for r in t.records}


def build_report(
    settings: Settings, start_ms: int, end_ms: int, max_lead_ms: int, client: Any
) -> RunReport:
    """Gather every figure of the range (Kafka, InfluxDB, the ticket store)."""
    report = RunReport(start_ms, end_ms, max_lead_ms)
    report.records = sum(1 for _ in read_topic(settings, settings.topic_telemetry))
    report.dead_letters = sum(1 for _ in read_topic(settings, settings.topic_telemetry_dlq))
    keys = produced_predictions(settings, start_ms, end_ms)
    found = stored_keys(client, settings, keys)
    for eid, _, _ in keys:
        report.produced[eid] = report.produced.get(eid, 0) + 1
    for eid, _, _ in found:
        report.predictions[eid] = report.predictions.get(eid, 0) + 1
    report.tickets = read_tickets(settings.alert_db, start_ms, end_ms)
    report.failures = read_failures(settings, settings.topic_events, start_ms, end_ms)
    opened = [Opened(t["equipment_id"], int(t["opened_ms"])) for t in report.tickets]
    last: dict[str, int] = {}  # each machine's data ends with its last prediction
    for eid, window_end, _ in keys:
        last[eid] = max(window_end, last.get(eid, window_end))
    report.comparison = compare(report.failures, opened, max_lead_ms, end_ms=last)
    return report


def plot_report(
    report: RunReport, client: Any, settings: Settings, path: Path, machines: int = 4
) -> list[str]:
    """PNG of risk over time for up to ``machines`` failed machines; returns their ids."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    failed = sorted({f.equipment_id for f in report.failures} & set(report.produced))
    chosen = failed[:machines] or sorted(report.produced)[:machines]
    if not chosen:
        return []
    params: dict[str, FluxValue] = {
        "bucket": settings.influx_bucket,
        "start": _dt(report.start_ms),
        "stop": _dt(report.end_ms + 1),
        "machines": chosen,
    }
    tables = client.query_api().query(_SERIES.format(params=flux_params(params)))
    series: dict[tuple[str, str], list[tuple[datetime, float]]] = {}
    for table in tables:
        for r in table.records:
            key = (str(r.values["equipment_id"]), str(r.get_field()))
            series.setdefault(key, []).append((r.get_time(), float(r.get_value())))
    fig, axes = plt.subplots(len(chosen), 1, figsize=(10, 2.4 * len(chosen)), sharex=True)
    for ax, eid in zip([axes] if len(chosen) == 1 else axes, chosen, strict=True):
        points = sorted(series.get((eid, "probability"), []))
        if points:
            ax.plot([t for t, _ in points], [v for _, v in points], lw=1, label="risk")
        thresholds = series.get((eid, "threshold"), [])
        if thresholds:
            ax.axhline(thresholds[-1][1], color="grey", ls="--", lw=0.8, label="threshold")
        for f in report.failures:
            if f.equipment_id == eid:
                ax.axvline(_dt(f.ts_ms), color="red", lw=1.2)
        for t in report.tickets:
            if t["equipment_id"] == eid:
                ax.axvline(_dt(int(t["opened_ms"])), color="orange", ls=":", lw=1.2)
        ax.set_ylim(0, 1)
        ax.set_ylabel(eid, rotation=0, ha="right", fontsize=8)
    fig.suptitle("failure risk (line), failures (red), tickets opened (orange, dotted)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return chosen
