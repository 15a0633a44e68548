"""`plantwatch tickets list | show | ack | close | export-feedback`: the built-in ticket store."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import click

from plantwatch.cli.main import cli, settings_from


def _open_store(ctx: click.Context) -> Any:
    from alerting import store
    from alerting.errors import TicketError

    path = settings_from(ctx).alert_db
    if not path.is_file():
        raise TicketError(
            f"no alerting store at {path} (set PLANTWATCH_ALERT_DB; `plantwatch alert` creates it)"
        )
    conn = store.connect(path)
    try:
        conn.execute("SELECT COUNT(*) FROM tickets").fetchone()
    except Exception as exc:  # sqlite3.DatabaseError: not a database, corrupt
        raise TicketError(f"cannot read the alerting store {path}: {exc}") from None
    return conn


def _when(ms: int | None) -> str:
    from alerting.tickets import iso

    return iso(ms) if ms is not None else "-"


@cli.group("tickets")
def tickets_cmd() -> None:
    """Maintenance tickets in the built-in store (PLANTWATCH_ALERT_DB).

    Closing a ticket with an outcome publishes a label event to the feedback topic
    (PLANTWATCH_TOPIC_FEEDBACK), the input of fine-tuning.
    """


@tickets_cmd.command("list")
@click.option(
    "--status", type=click.Choice(["open", "acked", "closed"]), default=None, help="Only these."
)
@click.option(
    "--limit", type=click.IntRange(min=1), default=50, show_default=True, help="Most rows."
)
@click.pass_context
def list_cmd(ctx: click.Context, status: str | None, limit: int) -> None:
    """Newest tickets first: id, status, machine, level, risk, opened, incident key."""
    from alerting import store

    rows = store.list_tickets(_open_store(ctx), status, limit)
    if not rows:
        click.echo("no tickets")
        return
    click.echo(f"{'id':>5}  {'status':<7} {'equipment':<16} {'level':<9} {'risk':>5}  opened (UTC)")
    for r in rows:
        click.echo(
            f"{r['id']:>5}  {r['status']:<7} {r['equipment_id']:<16} {r['level']:<9} "
            f"{r['probability']:>5.2f}  {_when(r['opened_ms'])}  {r['incident_key']}"
        )


@tickets_cmd.command("show")
@click.argument("ticket_id", type=int)
@click.pass_context
def show_cmd(ctx: click.Context, ticket_id: int) -> None:
    """Every field of one ticket, with the Flux query of the machine's history."""
    import orjson

    from alerting import store

    row = store.get_ticket(_open_store(ctx), ticket_id)
    top = ", ".join(f"{s}={v:.2f}" for s, v in orjson.loads(row["top_sensors"])) or "-"
    lines = {
        "ticket": row["id"],
        "status": row["status"],
        "equipment": row["equipment_id"],
        "incident key": row["incident_key"],
        "level": row["level"],
        "risk now": f"{row['probability']:.3f} (trend {row['trend_per_hour']:+.3f}/h)",
        "top sensors": top,
        "model": row["model_version"],
        "incident start": _when(row["incident_start_ms"]),
        "opened": _when(row["opened_ms"]),
        "incident end": _when(row["incident_end_ms"]),
        "acknowledged": _when(row["acked_ms"]),
        "closed": _when(row["closed_ms"]),
        "outcome": row["outcome"] or "-",
        "note": row["note"] or "-",
        "history (Flux)": row["flux"],
    }
    for name, value in lines.items():
        click.echo(f"{name + ':':<16} {value}")


def _deliver(ctx: click.Context, conn: Any) -> None:
    """Try the feedback and InfluxDB rows now; the running service retries what fails."""
    from kafka import KafkaProducer

    from alerting import store
    from alerting.influx import InfluxWriter
    from alerting.outbox import Dispatcher
    from plantwatch.connections import influx_client, producer_config
    from plantwatch.stages import senders_of

    settings = settings_from(ctx)
    client = influx_client(settings, timeout_ms=5000)
    try:
        producer = KafkaProducer(**producer_config(settings, acks="all", max_block_ms=5000))
    except Exception:  # kafka unreachable: leave the rows to the service
        producer = None
    try:
        senders = senders_of(
            settings, producer, InfluxWriter(client, settings.influx_bucket, settings.influx_org)
        )
        wanted = {k: v for k, v in senders.items() if k in ("feedback", "influx")}
        if producer is None:
            wanted.pop("feedback")
        Dispatcher(conn, wanted).run_once()
    finally:
        if producer is not None:
            producer.close(timeout=5)
        client.close()
    pending = store.outbox_pending(conn)
    waiting = {k: v for k, v in pending.items() if k in ("feedback", "influx")}
    if waiting:
        click.echo(
            f"not delivered yet (Kafka or InfluxDB unreachable): {waiting}; "
            "`plantwatch alert` delivers them when they are back",
            err=True,
        )


def _change(
    ctx: click.Context, ticket_id: int, status: str, outcome: str, note: str
) -> dict[str, Any]:
    from alerting import store
    from alerting.errors import TicketError
    from alerting.feedback import encode_label, label_event
    from alerting.influx import ticket_line

    conn = _open_store(ctx)
    now = int(time.time() * 1000)
    with store.transaction(conn):
        row = store.get_ticket(conn, ticket_id)
        if row["status"] == "closed":
            raise TicketError(f"ticket {ticket_id} is already closed (outcome {row['outcome']})")
        if status == "acked" and row["status"] == "acked":
            raise TicketError(f"ticket {ticket_id} is already acknowledged")
        key = row["incident_key"]
        if status == "acked":
            conn.execute(
                "UPDATE tickets SET status='acked', acked_ms=? WHERE id=?", (now, ticket_id)
            )
        else:
            conn.execute(
                "UPDATE tickets SET status='closed', closed_ms=?, outcome=?, note=? WHERE id=?",
                (now, outcome, note, ticket_id),
            )
            end = row["incident_end_ms"] or _last_seen(conn, row["equipment_id"]) or now
            label = label_event(
                row["equipment_id"], key, row["incident_start_ms"], end, outcome, note
            )
            store.add_outbox(conn, "feedback", f"{key}:closed", key, encode_label(label))
        line = ticket_line(row["equipment_id"], status, ticket_id, key, outcome, now)
        store.add_outbox(conn, "influx", f"{key}:{status}", key, line.encode())
    _deliver(ctx, conn)
    return row


def _last_seen(conn: Any, equipment_id: str) -> int | None:
    from alerting import store

    st = store.load_state(conn, equipment_id)
    return st.last_time if st is not None else None


@tickets_cmd.command("ack")
@click.argument("ticket_id", type=int)
@click.pass_context
def ack_cmd(ctx: click.Context, ticket_id: int) -> None:
    """Acknowledge a ticket (someone is on it)."""
    _change(ctx, ticket_id, "acked", "", "")
    click.echo(f"ticket {ticket_id} acknowledged")


@tickets_cmd.command("close")
@click.argument("ticket_id", type=int)
@click.option(
    "--outcome",
    type=click.Choice(["confirmed", "false-alarm", "no-fault-found"]),
    required=True,
    help="What maintenance found: a real fault, a false alarm, or no fault found.",
)
@click.option("--note", default="", help="Free text kept with the ticket and the label event.")
@click.pass_context
def close_cmd(ctx: click.Context, ticket_id: int, outcome: str, note: str) -> None:
    """Close a ticket with its outcome; publishes the label event to the feedback topic."""
    _change(ctx, ticket_id, "closed", outcome, note)
    click.echo(f"ticket {ticket_id} closed: {outcome}")


@tickets_cmd.command("export-feedback")
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="CSV file (equipment_id,ts,outcome) for `plantwatch fine-tune --feedback`.",
)
@click.pass_context
def export_cmd(ctx: click.Context, out: Path) -> None:
    """Write closed tickets' outcomes in the feedback format that fine-tuning reads."""
    import csv

    conn = _open_store(ctx)
    rows = conn.execute(
        "SELECT equipment_id, incident_end_ms, closed_ms, outcome FROM tickets "
        "WHERE status = 'closed' ORDER BY id"
    ).fetchall()
    with out.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["equipment_id", "ts", "outcome"])
        for eid, end, closed, outcome in rows:
            ts = end or _last_seen(conn, eid) or closed
            writer.writerow([eid, int(ts), outcome])
    click.echo(f"wrote {len(rows)} labels to {out}")
