"""``plantwatch.deadletters.redrive``: once per letter, only committed work counts."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from pipeline.deadletter import REDRIVEN_FROM
from plantwatch.deadletters import Letter, mark_of, marks_topic, redrive


def _letter(offset: int, source: str = "telemetry", partition: int | None = 2) -> Letter:
    return Letter(
        "telemetry.dlq", 0, offset, 1_000 + offset, "ingest", "ts_out_of_range", "old",
        source, partition, 40 + offset, 900, b"pump-1", f"v{offset}".encode(),
    )  # fmt: skip


class Producer:
    """Keeps what each committed transaction sent; fails the ``fail_at``-th send."""

    def __init__(self, fail_at: int | None = None) -> None:
        self.fail_at, self.sends = fail_at, 0
        self.pending: list[tuple[str, dict[str, Any]]] = []
        self.committed: list[tuple[str, dict[str, Any]]] = []
        self.aborted = 0

    def begin_transaction(self) -> None:
        assert not self.pending

    def send(self, topic: str, **kwargs: Any) -> None:
        self.sends += 1
        if self.sends == self.fail_at:
            raise RuntimeError("broker gone")
        self.pending.append((topic, kwargs))

    def commit_transaction(self) -> None:
        self.committed += self.pending
        self.pending = []

    def abort_transaction(self) -> None:
        self.pending, self.aborted = [], self.aborted + 1


def _parts(topic: str) -> set[int] | None:
    return {0, 1, 2} if topic == "telemetry" else None


def test_copies_go_to_their_source_partition_with_a_mark_each() -> None:
    producer = Producer()
    traced = dataclasses.replace(_letter(0), own_headers=(("trace", b"t-1"),))
    done = redrive(producer, [traced, _letter(1, partition=7)], set(), _parts)
    assert done.redriven == {("telemetry.dlq", "ts_out_of_range", "telemetry"): 2}
    copies = [kw for topic, kw in producer.committed if topic == "telemetry"]
    marks = [kw for topic, kw in producer.committed if topic == marks_topic("telemetry.dlq")]
    assert [c["value"] for c in copies] == [b"v0", b"v1"]
    assert [c["partition"] for c in copies] == [2, None]  # 7 does not exist: by key
    assert copies[0]["headers"] == [("trace", b"t-1"), (REDRIVEN_FROM, b"telemetry.dlq[0]@0")]
    assert copies[1]["headers"] == [(REDRIVEN_FROM, b"telemetry.dlq[0]@1")]
    assert [m["key"] for m in marks] == [b"0:0:1000", b"0:1:1001"]


def test_redriven_and_unplaceable_letters_are_skipped_and_counted() -> None:
    producer = Producer()
    letters = [_letter(0), _letter(1), _letter(2, source="gone"), _letter(3, source="")]
    done = redrive(producer, letters, {mark_of(_letter(0))}, _parts)
    assert done.total == 1
    assert done.already == 1
    assert done.no_source == {"gone": 1, "": 1}


def test_a_copy_refused_again_is_skipped_unless_asked_again() -> None:
    refused = dataclasses.replace(_letter(1), redriven_from="telemetry.dlq[0]@0")
    done = redrive(Producer(), [_letter(0), refused], set(), _parts)
    assert (done.total, done.refused_again) == (1, 1)
    producer = Producer()
    done = redrive(producer, [refused], set(), _parts, again=True)
    assert (done.total, done.refused_again) == (1, 0)
    assert [kw["value"] for t, kw in producer.committed if t == "telemetry"] == [b"v1"]


def test_a_failure_aborts_the_open_transaction_and_keeps_the_committed_count() -> None:
    producer = Producer(fail_at=7)  # 2 sends per letter, chunks of 2: the 4th letter fails
    done = redrive(producer, [], set(), _parts)
    assert done.total == 0
    with pytest.raises(RuntimeError, match="broker gone"):
        redrive(producer, [_letter(i) for i in range(5)], set(), _parts, result=done, chunk=2)
    assert producer.aborted == 1
    assert done.total == 2
    assert [kw["value"] for t, kw in producer.committed if t == "telemetry"] == [b"v0", b"v1"]


def test_each_commit_reports_the_running_total() -> None:
    totals: list[int] = []
    letters = [_letter(i) for i in range(5)]
    redrive(Producer(), letters, set(), _parts, chunk=2, on_commit=lambda r: totals.append(r.total))
    assert totals == [2, 4, 5]


def test_most_redrives_that_many_and_a_later_run_takes_the_next() -> None:
    letters = [_letter(i) for i in range(5)]
    done: set[tuple[str, int, int, int]] = set()
    first = redrive(Producer(), letters, done, _parts, most=2)
    assert (first.total, first.left, first.already) == (2, 3, 0)
    producer = Producer()
    second = redrive(producer, letters, done, _parts, most=2)
    assert (second.total, second.left, second.already) == (2, 1, 2)
    assert [kw["value"] for t, kw in producer.committed if t == "telemetry"] == [b"v2", b"v3"]


def test_redrive_max_needs_redrive() -> None:
    from click.testing import CliRunner

    from plantwatch.cli import cli

    result = CliRunner().invoke(cli, ["dead-letters", "--redrive-max", "5"])
    assert result.exit_code == 2
    assert "--redrive-max='5': expected to be given with --redrive" in result.output


def test_again_needs_redrive() -> None:
    from click.testing import CliRunner

    from plantwatch.cli import cli

    result = CliRunner().invoke(cli, ["dead-letters", "--again"])
    assert result.exit_code == 2
    assert "--again='without --redrive': expected to be given with --redrive" in result.output
