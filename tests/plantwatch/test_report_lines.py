"""The summary lines of `plantwatch report` (pure: a RunReport built by hand)."""

from __future__ import annotations

from evaluation.groundtruth import Failure, Opened, compare
from plantwatch.report import RunReport

MIN = 60_000


def _report(end_ms: int) -> RunReport:
    report = RunReport(0, end_ms, max_lead_ms=60 * MIN, records=10)
    failures = [Failure("a", 100 * MIN), Failure("d", 50 * MIN)]
    opened = [Opened("a", 70 * MIN), Opened("b", 10 * MIN), Opened("c", 150 * MIN)]
    report.tickets = [{"equipment_id": o.equipment_id, "opened_ms": o.ts_ms} for o in opened]
    report.failures = failures
    report.comparison = compare(failures, opened, report.max_lead_ms, end_ms=end_ms)
    return report


def test_a_ticket_near_the_end_of_the_range_is_not_judged_yet() -> None:
    report = _report(end_ms=180 * MIN)  # c opened 30 min before the end
    assert report.lines()[-2:] == [
        "false alarms           1 of 2 judged tickets (precision 50%)",
        "not judged yet         1 tickets opened within 60 min of their machine's last prediction",
    ]
    doc = report.to_doc()
    assert (doc["tickets"], doc["false_alarms"], doc["unjudged"]) == (3, 1, 1)
    assert doc["false_tickets"] == [
        {"equipment_id": "b", "opened_ms": 10 * MIN, "next_failure_ms": None}
    ]
    assert doc["unjudged_tickets"] == [{"equipment_id": "c", "opened_ms": 150 * MIN}]
    # a's ticket 30 min before its failure caught it; d failed without a ticket
    assert doc["missed_failures"] == [{"equipment_id": "d", "ts_ms": 50 * MIN}]


def test_once_its_whole_span_is_in_the_range_it_is_judged() -> None:
    report = _report(end_ms=210 * MIN)
    assert report.lines()[-1] == "false alarms           2 of 3 judged tickets (precision 33%)"
    doc = report.to_doc()
    assert doc["unjudged"] == 0
    assert [t["equipment_id"] for t in doc["false_tickets"]] == ["b", "c"]


def test_a_false_alarm_whose_machine_failed_later_says_how_much_earlier() -> None:
    report = _report(end_ms=210 * MIN)
    early = [Opened("a", 10 * MIN), Opened("a", 25 * MIN)]  # 90 and 75 min before a's failure
    opened = [*early, *(Opened(t["equipment_id"], t["opened_ms"]) for t in report.tickets)]
    report.comparison = compare(report.failures, opened, report.max_lead_ms, end_ms=210 * MIN)
    assert report.lines()[-2:] == [
        "false alarms           4 of 5 judged tickets (precision 20%)",
        "false, failed later    2 of them: their machine failed 75-90 (median 82) min after "
        "the ticket, past the 60 min a warning may lead",
    ]
    first = report.to_doc()["false_tickets"][0]
    assert first == {"equipment_id": "a", "opened_ms": 10 * MIN, "next_failure_ms": 100 * MIN}
