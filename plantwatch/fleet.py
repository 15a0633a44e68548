"""The fleet at a glance: each machine's latest risk, open tickets, lag per consumer group.

No click here: `plantwatch status` (:mod:`plantwatch.cli.status`) prints what these
functions return.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from plantwatch.flux import flux_params
from plantwatch.settings import Settings

T = TypeVar("T")

_LATEST_RISK = """
{params}
from(bucket: params.bucket)
  |> range(start: params.start)
  |> filter(fn: (r) => r._measurement == "failure_risk")
  |> filter(fn: (r) => r._field == "probability" or r._field == "threshold" or r._field == "level")
  |> last()
  |> group(columns: ["equipment_id", "_field"])
  |> sort(columns: ["_time"])
  |> last()
  |> keep(columns: ["_time", "_field", "_value", "equipment_id", "model_version"])
"""

_TICKET_STATUS = """
{params}
from(bucket: params.bucket)
  |> range(start: 0)
  |> filter(fn: (r) => r._measurement == "tickets" and r._field == "ticket_id")
  |> keep(columns: ["_time", "_value", "equipment_id", "status"])
"""


@dataclass
class MachineStatus:
    """One machine's latest prediction and open tickets."""

    equipment_id: str
    risk: float | None = None
    threshold: float | None = None
    level: str | None = None
    time: str | None = None
    model_version: str | None = None
    open_tickets: int = 0


@dataclass(frozen=True)
class GroupLag:
    """One consumer group: how far it is behind the ends of the topics it consumes.

    ``state`` is ``not started`` when the group has committed nothing yet; ``lag`` is
    then None. ``topics`` maps each topic to the records not yet committed.
    """

    stage: str
    group: str
    state: str
    members: int = 0
    lag: int | None = None
    topics: dict[str, int] = field(default_factory=dict)

    def to_doc(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)


def latest_risk_flux(bucket: str, start: datetime) -> str:
    """Flux for each machine's latest probability, threshold and level since ``start``."""
    return _LATEST_RISK.format(params=flux_params({"bucket": bucket, "start": start}))


def ticket_status_flux(bucket: str) -> str:
    """Flux for every ticket change in the ``tickets`` measurement."""
    return _TICKET_STATUS.format(params=flux_params({"bucket": bucket}))


def machines_from_rows(rows: Iterable[Mapping[str, Any]]) -> dict[str, MachineStatus]:
    """Fold ``failure_risk`` last() rows into one status per machine."""
    out: dict[str, MachineStatus] = {}
    for row in rows:
        eid = str(row["equipment_id"])
        status = out.setdefault(eid, MachineStatus(eid))
        name, value = row["_field"], row["_value"]
        if name == "probability":
            status.risk = float(value)
            status.time = row["_time"].strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
            status.model_version = row.get("model_version")
        elif name == "threshold":
            status.threshold = float(value)
        elif name == "level":
            status.level = str(value)
    return out


def open_from_ticket_rows(rows: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Open tickets per machine from ``tickets`` points: each ticket's newest status counts.

    >>> from datetime import UTC, datetime
    >>> t = [datetime(2025, 1, 1, h, tzinfo=UTC) for h in range(3)]
    >>> open_from_ticket_rows([
    ...     {"_time": t[0], "_value": 1, "equipment_id": "a", "status": "open"},
    ...     {"_time": t[1], "_value": 2, "equipment_id": "a", "status": "open"},
    ...     {"_time": t[2], "_value": 1, "equipment_id": "a", "status": "closed"}])
    {'a': 1}
    """
    newest: dict[tuple[str, Any], tuple[Any, str]] = {}
    for row in rows:
        key = (str(row["equipment_id"]), row["_value"])
        if key not in newest or row["_time"] >= newest[key][0]:
            newest[key] = (row["_time"], str(row["status"]))
    counts: dict[str, int] = {}
    for (eid, _), (_, status) in newest.items():
        if status != "closed":
            counts[eid] = counts.get(eid, 0) + 1
    return counts


def open_from_store(path: Path) -> dict[str, int]:
    """Open (not closed) tickets per machine in the alerting store, opened read-only."""
    uri = f"file:{path}?mode=ro"
    conn = sqlite3.connect(uri, uri=True, timeout=10)
    try:
        rows = conn.execute(
            "SELECT equipment_id, COUNT(*) FROM tickets WHERE status != 'closed' "
            "GROUP BY equipment_id"
        ).fetchall()
    finally:
        conn.close()
    return {str(r[0]): int(r[1]) for r in rows}


def _records(tables: Any) -> list[dict[str, Any]]:
    return [dict(r.values) for t in tables for r in t.records]


def fleet_status(
    client: Any, settings: Settings, start: datetime, store: Path | None
) -> tuple[list[MachineStatus], str]:
    """Each machine's latest risk since ``start`` and its open tickets, highest risk first.

    Open tickets come from the alerting store file when ``store`` exists, else from
    the ``tickets`` measurement; the second value names the source.
    """
    api = client.query_api()
    machines = machines_from_rows(
        _records(api.query(latest_risk_flux(settings.influx_bucket, start)))
    )
    try:
        if store is None or not store.is_file():
            raise FileNotFoundError(store)
        counts, source = open_from_store(store), f"store {store}"
    except (OSError, sqlite3.Error):
        rows = _records(api.query(ticket_status_flux(settings.influx_bucket)))
        counts, source = open_from_ticket_rows(rows), "InfluxDB measurement tickets"
    for eid, count in counts.items():
        machines.setdefault(eid, MachineStatus(eid)).open_tickets = count
    ordered = sorted(machines.values(), key=lambda m: (-(m.risk or -1.0), m.equipment_id))
    return ordered, source


def levels_text(settings: Settings) -> str:
    r"""Which rule raises a machine's level: the alert levels of these settings, in words.

    >>> from plantwatch.settings import load_settings
    >>> print(levels_text(load_settings(read_env=False)).replace(", ", ",\n"))
    levels (PLANTWATCH_ALERT_*): WARNING at risk >= 0.5 (OK below 0.4),
    CRITICAL at >= 0.6 (WARNING below 0.5),
    after 3 predictions in a row; CRITICAL opens a ticket
    """
    s = settings
    if s.alert_pending_steps:
        held = f", after {s.alert_pending_steps} predictions in a row"
    elif s.alert_pending_ms:
        held = f", after {s.alert_pending_ms / 1000:g} s above"
    else:
        held = ""
    return (
        f"levels (PLANTWATCH_ALERT_*): WARNING at risk >= {s.alert_warning:g} (OK below "
        f"{s.alert_warning_reset:g}), CRITICAL at >= {s.alert_critical:g} (WARNING below "
        f"{s.alert_critical_reset:g}){held}; {s.alert_ticket_level} opens a ticket"
    )


def model_thresholds_text(pairs: Iterable[tuple[str | None, float | None]]) -> str | None:
    """The models' own thresholds, labelled as what they are (None when there are none).

    >>> print(model_thresholds_text([("m-1", 0.353), ("m-1", 0.353), (None, None)]))
    model threshold 0.353 (model m-1's own, chosen on its validation windows; it sets no level)
    """
    seen = dict.fromkeys((v, t) for v, t in pairs if t is not None)
    if not seen:
        return None
    if len(seen) == 1:
        ((version, threshold),) = seen
        owner = f"model {version}'s own" if version else "the model's own"
        return (
            f"model threshold {threshold:.3f} ({owner}, chosen on its validation windows; "
            "it sets no level)"
        )
    listed = ", ".join(f"{v or '?'} {t:.3f}" for v, t in seen)
    return (
        f"model thresholds {listed} (each model's own, chosen on its validation windows; "
        "they set no level)"
    )


def stage_groups(settings: Settings, extra: Sequence[str] = ()) -> list[tuple[str, str]]:
    """``(stage, group id)`` of each stage (from the settings) and of extra groups."""
    groups = [
        ("ingest", str(getattr(settings, "ingest_group", "plantwatch-ingest"))),
        ("scorer", str(getattr(settings, "scorer_group", "plantwatch-scorer"))),
        ("alerting", str(getattr(settings, "alert_group", "plantwatch-alerting"))),
    ]
    seen = {g for _, g in groups}
    groups += [("other", g) for g in dict.fromkeys(extra) if g not in seen]
    return groups


def _with_coordinator(call: Callable[[], T], tries: int = 4) -> T | None:
    """``call()``, retried while the broker creates its group coordinator (a new cluster)."""
    import time

    from kafka.errors import CoordinatorNotAvailableError

    for attempt in range(tries):
        try:
            return call()
        except CoordinatorNotAvailableError:
            time.sleep(0.5 * (attempt + 1))
    return None


# Partitions at most this far behind are read to tell records from transaction markers.
MARKER_CHECK = 8


def _records_between(
    reader: Any, starts: dict[Any, int], ends: dict[Any, int], budget_s: float = 1.5
) -> dict[Any, int]:
    """Records (not transaction markers) between ``starts`` and ``ends``, per partition.

    A transactional producer (ingest, scorer) ends every transaction with a control
    record that takes an offset but is no record: a stage that has read and committed
    everything is still "behind" by one offset per transaction after its last commit.
    ``reader``, a read_committed consumer, skips markers, so reading the few offsets in
    between tells. Partitions not read to their end within ``budget_s`` (an open
    transaction) are left out: the caller keeps the offset difference for them.
    """
    if not starts:
        return {}
    import time

    reader.assign(list(starts))
    for tp, offset in starts.items():
        reader.seek(tp, offset)
    counts = dict.fromkeys(starts, 0)
    done: dict[Any, int] = {}
    deadline = time.monotonic() + budget_s
    while len(done) < len(starts) and time.monotonic() < deadline:
        for tp, messages in reader.poll(timeout_ms=100).items():
            counts[tp] += sum(1 for m in messages if m.offset < ends[tp])
        for tp in starts:
            if tp not in done and reader.position(tp) >= ends[tp]:
                done[tp] = counts[tp]
    return done


def group_lags(settings: Settings, groups: Sequence[tuple[str, str]]) -> list[GroupLag]:
    """Committed offsets against partition ends, per group (kafka-python admin + consumer).

    The lag counts records: where a partition is at most :data:`MARKER_CHECK` offsets
    behind, those offsets are read, so that transaction markers do not count.

    Raises:
        ConnectionCheckError: Kafka cannot be reached or refused us.
    """
    from kafka import KafkaAdminClient, KafkaConsumer

    from plantwatch.connections import kafka_config, kafka_errors

    with kafka_errors(settings):
        admin = KafkaAdminClient(**kafka_config(settings, request_timeout_ms=10_000))
        consumer = KafkaConsumer(
            **kafka_config(settings, request_timeout_ms=10_000), enable_auto_commit=False
        )
        readers: list[Any] = []  # the read_committed consumer, made once when needed

        def reader() -> Any:
            if not readers:
                readers.append(
                    KafkaConsumer(
                        **kafka_config(settings, request_timeout_ms=10_000),
                        enable_auto_commit=False,
                        isolation_level="read_committed",
                        fetch_max_wait_ms=50,
                    )
                )
            return readers[0]

        try:
            ids = [g for _, g in groups]
            offsets = _with_coordinator(lambda: admin.list_group_offsets(ids))
            if offsets is None:  # no group has ever committed on this cluster
                return [GroupLag(stage, group, "not started") for stage, group in groups]
            described = admin.describe_groups(ids)
            result = []
            for stage, group in groups:
                committed = {
                    tp: om.offset for tp, om in (offsets.get(group) or {}).items() if om.offset >= 0
                }
                info = described.get(group) or {}
                members = len(info.get("members") or [])
                if not committed:
                    result.append(GroupLag(stage, group, "not started", members))
                    continue
                ends = consumer.end_offsets(list(committed))
                behind = {tp: max(0, ends[tp] - done) for tp, done in committed.items()}
                small = {tp: committed[tp] for tp, n in behind.items() if 0 < n <= MARKER_CHECK}
                if small:
                    behind |= _records_between(reader(), small, ends)
                per_topic: dict[str, int] = {}
                for tp, n in behind.items():
                    per_topic[tp.topic] = per_topic.get(tp.topic, 0) + n
                state = str(info.get("group_state") or info.get("state") or "unknown")
                result.append(
                    GroupLag(stage, group, state, members, sum(per_topic.values()), per_topic)
                )
            return result
        finally:
            for c in (consumer, *readers):
                c.close()
            admin.close()
