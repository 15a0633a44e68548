"""The store (tickets unique per incident, offsets CAS), the outbox against a real HTTP target."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import pytest
from pydantic import SecretStr

from alerting import store
from alerting.errors import DeliveryError, RulesError, TicketError
from alerting.feedback import decode_label, encode_label, label_event
from alerting.outbox import Backoff, Dispatcher
from alerting.rules import Rules
from alerting.sinks import webhook_sender
from alerting.state import MachineState, step
from alerting.tickets import document, new_ticket
from alerting.webhook import WebhookSink, check_url
from tests.alerting.webtarget import TicketTarget


def _ticket(eid: str = "pump-1", start: int = 1000) -> dict[str, object]:
    st = MachineState(eid)
    for i in range(3):
        step(st, start + i, 0.9, Rules(), top=[("temp", 0.6)])
    return new_ticket(st, "CRITICAL", start + 2, "m-1", "plantwatch", 0)


def test_one_ticket_per_incident(tmp_path: Path) -> None:
    conn = store.connect(tmp_path / "a.sqlite")
    t = _ticket()
    with store.transaction(conn):
        first = store.insert_ticket(conn, t)
        again = store.insert_ticket(conn, t)
    assert first == 1
    assert again is None
    other = store.connect(tmp_path / "a.sqlite")  # a second instance on the same file
    assert store.insert_ticket(other, t) is None
    assert len(store.list_tickets(other)) == 1
    row = store.get_ticket(conn, 1)
    assert row["incident_key"] == "pump-1:1002"
    doc = document(row, "pump")
    assert doc["priority"] == "critical"
    assert doc["top_sensors"] == [{"sensor": "temp", "share": 0.6}]
    assert "failure_risk" in doc["flux_query"]
    with pytest.raises(TicketError, match="no ticket with id 9"):
        store.get_ticket(conn, 9)


def test_ticket_ids_count_without_gaps(tmp_path: Path) -> None:
    """A replayed incident takes no id: ids stay 1..N (INSERT OR IGNORE took one each time)."""
    conn = store.connect(tmp_path / "a.sqlite")
    ids = []
    for i in range(4):
        t = _ticket(f"pump-{i}")
        with store.transaction(conn):
            ids.append(store.insert_ticket(conn, t))
            for _ in range(3):  # the same incident again: a replay, a restart, a second instance
                assert store.insert_ticket(conn, t) is None
        assert store.insert_ticket(store.connect(tmp_path / "a.sqlite"), t) is None
    conn.execute("BEGIN IMMEDIATE")  # a batch rolled back (another instance moved first)
    assert store.insert_ticket(conn, _ticket("pump-9")) == 5
    conn.execute("ROLLBACK")
    ids.append(store.insert_ticket(conn, _ticket("pump-5")))
    assert ids == [1, 2, 3, 4, 5]
    assert [r["id"] for r in store.list_tickets(conn)] == [5, 4, 3, 2, 1]


def test_offsets_compare_and_set(tmp_path: Path) -> None:
    conn = store.connect(tmp_path / "a.sqlite")
    with store.transaction(conn):
        store.advance_offsets(conn, "g", "t", {0: None}, {0: 10})
    assert store.stored_offsets(conn, "g", "t") == {0: 10}
    with pytest.raises(store.PartitionMoved), store.transaction(conn):
        store.advance_offsets(conn, "g", "t", {0: 5}, {0: 20})  # someone else moved it
    assert store.stored_offsets(conn, "g", "t") == {0: 10}


def test_unreadable_store(tmp_path: Path) -> None:
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not a database" * 100)
    with pytest.raises(TicketError, match="PLANTWATCH_ALERT_DB"):
        store.connect(bad)


def test_webhook_outbox_retries_until_each_ticket_arrives_once(tmp_path: Path) -> None:
    target = TicketTarget(["500", "timeout", "500"], sleep_s=1.0)
    conn = store.connect(tmp_path / "a.sqlite")
    keys = []
    with store.transaction(conn):
        for i in range(3):
            t = _ticket(f"pump-{i}")
            tid = store.insert_ticket(conn, t)
            store.add_outbox(
                conn,
                "webhook",
                f"{t['incident_key']}:open",
                str(t["incident_key"]),
                orjson.dumps(document({**t, "id": tid}, "pump")),
            )
            keys.append(t["incident_key"])
    sink = WebhookSink(target.url, SecretStr("Bearer s3cret"), timeout_s=0.3)
    dispatcher = Dispatcher(conn, {"webhook": webhook_sender(sink)}, Backoff(0.05, 0.2))
    try:
        deadline = time.monotonic() + 20
        while store.outbox_pending(conn) and time.monotonic() < deadline:
            dispatcher.run_once()
            time.sleep(0.05)
    finally:
        target.close()
    assert store.outbox_pending(conn) == {}
    assert dict(target.created) == dict.fromkeys(keys, 1)
    assert target.requests >= 6
    assert target.headers[-1]["Authorization"] == "Bearer s3cret"
    assert dispatcher.failures >= 3


def test_webhook_refused_payload_is_not_retried(tmp_path: Path) -> None:
    conn = store.connect(tmp_path / "a.sqlite")
    store.add_outbox(conn, "webhook", "k:open", "k", b"{}")

    def refuse(row: store.OutboxRow) -> None:
        raise DeliveryError("HTTP 422", retryable=False)

    Dispatcher(conn, {"webhook": refuse}).run_once()
    assert store.outbox_pending(conn) == {}
    assert conn.execute("SELECT failed, last_error FROM outbox").fetchone()[:] == (1, "HTTP 422")


def test_webhook_url_rules() -> None:
    assert check_url("https://tickets.example.com/api", False)
    with pytest.raises(RulesError, match="ALLOW_HTTP"):
        check_url("http://tickets.example.com/api", False)
    assert check_url("http://tickets.example.com/api", True)
    with pytest.raises(RulesError, match="https://"):
        check_url("ftp://x/y", False)


def test_label_event_codec() -> None:
    e = label_event("pump-1", "pump-1:5", 5, 9, "confirmed", "bearing")
    assert decode_label(encode_label(e)) == e
    assert e["ts"] == 9
    with pytest.raises(TicketError, match="outcome 'maybe'"):
        label_event("pump-1", "k", 0, 1, "maybe", "")
