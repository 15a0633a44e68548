"""The alerting store: one SQLite file (WAL) with alert state, offsets, tickets and the outbox.

Tables:

- ``machines``: each machine's :class:`~alerting.state.MachineState` (JSON) and partition.
- ``offsets``: per consumer group and partition, the next offset whose effects are not
  in this file yet. A batch's states, tickets, outbox rows and offsets commit in one
  transaction *before* the Kafka offsets, and records below the stored offset are
  skipped on replay: a crash between the two commits changes nothing.
- ``tickets``: one row per incident, ``UNIQUE(incident_key)``: a replay, a restart or a
  second instance cannot open a second ticket.
- ``outbox``: one row per message a sink must get (webhook, Kafka tickets, feedback,
  InfluxDB ticket points), ``UNIQUE(sink, dedup_key)``; delivered with retries by
  :mod:`alerting.outbox`.

Instances on one host share the file (``busy_timeout`` waits for the writer lock).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from alerting.errors import TicketError
from alerting.state import MachineState

SCHEMA = """
CREATE TABLE IF NOT EXISTS machines (
    equipment_id TEXT PRIMARY KEY, partition INTEGER NOT NULL, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS offsets (
    grp TEXT NOT NULL, topic TEXT NOT NULL, partition INTEGER NOT NULL, next INTEGER NOT NULL,
    PRIMARY KEY (grp, topic, partition));
CREATE TABLE IF NOT EXISTS tickets (
    id INTEGER PRIMARY KEY AUTOINCREMENT, incident_key TEXT NOT NULL UNIQUE,
    equipment_id TEXT NOT NULL, status TEXT NOT NULL, level TEXT NOT NULL,
    incident_start_ms INTEGER NOT NULL, opened_ms INTEGER NOT NULL, incident_end_ms INTEGER,
    probability REAL NOT NULL, trend_per_hour REAL NOT NULL, top_sensors TEXT NOT NULL,
    model_version TEXT NOT NULL, flux TEXT NOT NULL, created_wall_ms INTEGER NOT NULL,
    acked_ms INTEGER, closed_ms INTEGER, outcome TEXT, note TEXT);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT, sink TEXT NOT NULL, dedup_key TEXT NOT NULL,
    msg_key TEXT NOT NULL, payload BLOB NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    next_ms INTEGER NOT NULL DEFAULT 0, claim_until INTEGER NOT NULL DEFAULT 0,
    delivered_ms INTEGER, failed INTEGER NOT NULL DEFAULT 0, last_error TEXT,
    UNIQUE (sink, dedup_key));
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (delivered_ms, failed, next_ms);
"""

TICKET_COLUMNS = (
    "id",
    "incident_key",
    "equipment_id",
    "status",
    "level",
    "incident_start_ms",
    "opened_ms",
    "incident_end_ms",
    "probability",
    "trend_per_hour",
    "top_sensors",
    "model_version",
    "flux",
    "created_wall_ms",
    "acked_ms",
    "closed_ms",
    "outcome",
    "note",
)


@dataclass(frozen=True)
class OutboxRow:
    """A message waiting for (or done with) its sink."""

    id: int
    sink: str
    dedup_key: str
    msg_key: str
    payload: bytes
    attempts: int


class PartitionMoved(Exception):
    """Another instance processed these offsets first; drop the batch."""


def connect(path: Path) -> sqlite3.Connection:
    """Open (creating) the store; one clear error if the file cannot be used.

    Raises:
        TicketError: the file is not a usable SQLite database.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.executescript(SCHEMA)
    except (sqlite3.Error, OSError) as exc:
        raise TicketError(
            f"cannot use the alerting store {path} ({exc}); check PLANTWATCH_ALERT_DB"
        ) from None
    conn.row_factory = sqlite3.Row
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (rolled back on any exception)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def stored_offsets(conn: sqlite3.Connection, group: str, topic: str) -> dict[int, int]:
    """``{partition: next offset}`` already applied to this store by ``group``."""
    rows = conn.execute(
        "SELECT partition, next FROM offsets WHERE grp = ? AND topic = ?", (group, topic)
    )
    return {int(r[0]): int(r[1]) for r in rows}


def load_state(conn: sqlite3.Connection, equipment_id: str) -> MachineState | None:
    """The stored state of one machine, if any."""
    row = conn.execute(
        "SELECT state FROM machines WHERE equipment_id = ?", (equipment_id,)
    ).fetchone()
    return MachineState.from_doc(orjson.loads(row[0])) if row else None


def states_in(
    conn: sqlite3.Connection, partitions: Iterable[int]
) -> list[tuple[int, MachineState]]:
    """Stored ``(partition, state)`` of every machine on these partitions."""
    parts = sorted(set(partitions))
    if not parts:
        return []
    marks = ",".join("?" * len(parts))
    rows = conn.execute(
        f"SELECT partition, state FROM machines WHERE partition IN ({marks})",  # noqa: S608
        parts,
    )
    return [(int(r[0]), MachineState.from_doc(orjson.loads(r[1]))) for r in rows]


def save_states(conn: sqlite3.Connection, states: Mapping[str, tuple[int, MachineState]]) -> None:
    """Upsert machine states (inside the caller's transaction)."""
    conn.executemany(
        "INSERT INTO machines (equipment_id, partition, state) VALUES (?, ?, ?) "
        "ON CONFLICT (equipment_id) DO UPDATE SET partition = excluded.partition, "
        "state = excluded.state",
        [(eid, part, orjson.dumps(st.to_doc())) for eid, (part, st) in states.items()],
    )


def advance_offsets(
    conn: sqlite3.Connection,
    group: str,
    topic: str,
    expected: Mapping[int, int | None],
    offsets: Mapping[int, int],
) -> None:
    """Move the stored offsets, checking nobody else moved them since ``expected``.

    Raises:
        PartitionMoved: another instance applied records of a partition meanwhile.
    """
    now = stored_offsets(conn, group, topic)
    for part, nxt in offsets.items():
        if now.get(part) != expected.get(part):
            raise PartitionMoved(part)
        conn.execute(
            "INSERT INTO offsets (grp, topic, partition, next) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (grp, topic, partition) DO UPDATE SET next = excluded.next",
            (group, topic, part, nxt),
        )


def insert_ticket(conn: sqlite3.Connection, ticket: Mapping[str, Any]) -> int | None:
    """Open a ticket unless its incident has one; returns the new id or None.

    One statement that inserts no row when the incident has a ticket: unlike ``INSERT OR
    IGNORE`` (or ``ON CONFLICT DO NOTHING``), whose ignored rows still take an id from
    the AUTOINCREMENT sequence, it leaves the ids a count, 1..N without gaps.
    """
    cols = [c for c in TICKET_COLUMNS if c in ticket]
    cur = conn.execute(
        f"INSERT INTO tickets ({','.join(cols)}) "  # noqa: S608 - fixed names
        f"SELECT {','.join('?' * len(cols))} "
        "WHERE NOT EXISTS (SELECT 1 FROM tickets WHERE incident_key = ?)",
        [*(ticket[c] for c in cols), ticket["incident_key"]],
    )
    return int(cur.lastrowid) if cur.rowcount == 1 and cur.lastrowid is not None else None


def add_outbox(
    conn: sqlite3.Connection, sink: str, dedup_key: str, msg_key: str, payload: bytes
) -> None:
    """Queue one message for a sink (once per ``(sink, dedup_key)``)."""
    conn.execute(
        "INSERT OR IGNORE INTO outbox (sink, dedup_key, msg_key, payload) VALUES (?, ?, ?, ?)",
        (sink, dedup_key, msg_key, payload),
    )


def end_incident(conn: sqlite3.Connection, incident_key: str, end_ms: int) -> None:
    """Note when an incident returned to OK on its ticket (if it has one)."""
    conn.execute(
        "UPDATE tickets SET incident_end_ms = ? WHERE incident_key = ? AND incident_end_ms IS NULL",
        (end_ms, incident_key),
    )


def get_ticket(conn: sqlite3.Connection, ticket_id: int) -> dict[str, Any]:
    """One ticket as a dict.

    Raises:
        TicketError: no ticket has that id.
    """
    row = conn.execute("SELECT * FROM tickets WHERE id = ?", (ticket_id,)).fetchone()
    if row is None:
        raise TicketError(f"no ticket with id {ticket_id} (see `plantwatch tickets list`)")
    return dict(row)


def list_tickets(
    conn: sqlite3.Connection, status: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    """Newest tickets first, optionally of one status."""
    if status is None:
        rows = conn.execute("SELECT * FROM tickets ORDER BY id DESC LIMIT ?", (limit,))
    else:
        rows = conn.execute(
            "SELECT * FROM tickets WHERE status = ? ORDER BY id DESC LIMIT ?", (status, limit)
        )
    return [dict(r) for r in rows]


def claim_due(
    conn: sqlite3.Connection, sinks: Iterable[str], now_ms: int, lease_ms: int, limit: int = 50
) -> list[OutboxRow]:
    """Claim due, undelivered outbox rows of these sinks for ``lease_ms``."""
    names = sorted(set(sinks))
    if not names:
        return []
    marks = ",".join("?" * len(names))
    with transaction(conn):
        rows = conn.execute(
            "SELECT id, sink, dedup_key, msg_key, payload, attempts FROM outbox "  # noqa: S608
            f"WHERE delivered_ms IS NULL AND failed = 0 AND next_ms <= ? AND claim_until <= ? "
            f"AND sink IN ({marks}) ORDER BY id LIMIT ?",
            [now_ms, now_ms, *names, limit],
        ).fetchall()
        conn.executemany(
            "UPDATE outbox SET claim_until = ? WHERE id = ?",
            [(now_ms + lease_ms, r[0]) for r in rows],
        )
    return [OutboxRow(r[0], r[1], r[2], r[3], bytes(r[4]), r[5]) for r in rows]


def mark_delivered(conn: sqlite3.Connection, row_id: int, now_ms: int) -> None:
    """The sink took the message."""
    conn.execute(
        "UPDATE outbox SET delivered_ms = ?, attempts = attempts + 1, last_error = NULL, "
        "claim_until = 0 WHERE id = ?",
        (now_ms, row_id),
    )


def mark_failed(conn: sqlite3.Connection, row_id: int, error: str, next_ms: int | None) -> None:
    """A delivery failed: retry at ``next_ms``, or give up on it (``None``)."""
    conn.execute(
        "UPDATE outbox SET attempts = attempts + 1, last_error = ?, claim_until = 0, "
        "next_ms = COALESCE(?, next_ms), failed = ? WHERE id = ?",
        (error[:500], next_ms, 1 if next_ms is None else 0, row_id),
    )


def release(conn: sqlite3.Connection, row_id: int) -> None:
    """Give a claimed row back untried."""
    conn.execute("UPDATE outbox SET claim_until = 0 WHERE id = ?", (row_id,))


def outbox_pending(conn: sqlite3.Connection) -> dict[str, int]:
    """Undelivered (and not given up) messages per sink."""
    rows = conn.execute(
        "SELECT sink, COUNT(*) FROM outbox WHERE delivered_ms IS NULL AND failed = 0 GROUP BY sink"
    )
    return {str(r[0]): int(r[1]) for r in rows}
