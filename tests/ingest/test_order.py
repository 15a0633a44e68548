from __future__ import annotations

import pytest

from ingest.contract import Telemetry
from ingest.order import OrderGuard


def _t(eid: str, ts: int, *sensors: str) -> Telemetry:
    return Telemetry(eid, ts, {s: 1.0 for s in sensors or ("a",)})


def test_in_order_stream_passes() -> None:
    guard = OrderGuard(1000)
    assert [guard.check(_t("m", ts)) for ts in range(0, 10_000, 100)] == ["ok"] * 100


def test_out_of_order_within_grace_passes_beyond_is_too_late() -> None:
    guard = OrderGuard(1000)
    assert guard.check(_t("m", 5000)) == "ok"
    assert guard.check(_t("m", 4000)) == "ok"  # exactly at the edge
    assert guard.check(_t("m", 3999)) == "too_late"


def test_duplicates_need_same_ts_and_same_sensor_set() -> None:
    guard = OrderGuard(1000)
    assert guard.check(_t("m", 10, "a", "b")) == "ok"
    assert guard.check(_t("m", 10, "b", "a")) == "duplicate"
    assert guard.check(_t("m", 10, "c")) == "ok"  # another sensor at the same time is data
    assert guard.check(_t("other", 10, "a", "b")) == "ok"  # another machine


def test_memory_is_bounded_by_lateness() -> None:
    guard = OrderGuard(1000)
    for ts in range(0, 1_000_000, 10):
        guard.check(_t("m", ts))
    machine = guard._machines["m"]
    assert len(machine.seen) <= 102


def test_forget_drops_state() -> None:
    guard = OrderGuard(1000)
    guard.check(_t("m", 10))
    guard.forget(["m"])
    assert len(guard) == 0
    assert guard.check(_t("m", 10)) == "ok"


def test_negative_lateness_is_refused() -> None:
    with pytest.raises(ValueError, match="got -1"):
        OrderGuard(-1)
