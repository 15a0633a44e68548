"""The plant simulator, without Kafka: determinism, faults, events, history, the CLI's checks."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from ingest.assets import ASSET_TYPES, REGIMES
from ingest.contract import REASONS, encode, encode_batch, validate
from ingest.events import MaintenanceEvent
from ingest.faults import TOO_LARGE_EVERY, VARIANTS
from ingest.simpublish import KeyPartitioned
from ingest.simulator import (
    FaultRates,
    SimMessage,
    SimulatorConfig,
    events,
    history,
    messages,
    plan_steps,
    stream,
    ticks,
)
from plantwatch.cli import cli

START = 1_700_000_000_000
ALL = FaultRates(
    stuck=0.05, dropout=0.05, spike=0.05, out_of_order=0.05, duplicate=0.05, malformed=0.05
)


def _run(steps: int = 400, **kw: Any) -> list[SimMessage]:
    return list(messages(SimulatorConfig(**{"machines": 30, "start_ms": START, **kw}), steps))


def _now(steps: int, interval_ms: int = 1000) -> int:
    return START + steps * interval_ms


# --- configuration -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"machines": 0}, "machines must be >= 1, got 0"),
        ({"interval_ms": 0}, "interval_ms must be >= 1, got 0"),
        ({"batch_size": 1001}, "batch_size must be <= 1000, got 1001"),
        ({"repair_steps": 0}, "repair_steps must be >= 1, got 0"),
        ({"mean_life_steps": 3}, "mean_life_steps must be >= 10, got 3"),
        ({"out_of_order_max_delay": 0}, "out_of_order_max_delay must be >= 1, got 0"),
        ({"asset_mix": (("boiler", 1.0),)}, "unknown asset type 'boiler'"),
        ({"asset_mix": (("pump", 0.0),)}, "weight of 'pump' must be > 0, got 0.0"),
        ({"asset_mix": (("pump", 1), ("pump", 2))}, "names a type twice"),
        ({"asset_mix": ()}, "asset_mix must name at least one asset type"),
    ],
)
def test_config_errors_echo_the_value(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        SimulatorConfig(**kw)


def test_config_type_and_fault_errors() -> None:
    with pytest.raises(TypeError, match="machines must be an integer, got '3'"):
        SimulatorConfig(machines="3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"stuck must be between 0 and 1, got 1\.5"):
        FaultRates(stuck=1.5)
    with pytest.raises(ValueError, match="malformed must be between 0 and 1, got nan"):
        FaultRates(malformed=float("nan"))


def test_asset_types_have_4_to_8_valid_sensors_and_several_modes() -> None:
    assert {"pump", "compressor", "fan"} <= set(ASSET_TYPES)
    for kind in ASSET_TYPES.values():
        assert 4 <= len(kind.sensors) <= 8
        assert len(kind.modes) >= 2
        names = {s.name for s in kind.sensors}
        for mode in kind.modes:
            assert {name for name, _ in mode.effects} <= names
        assert (
            validate(
                encode_batch_like(kind.name, {s.name: s.base[1] for s in kind.sensors}),
                now_ms=START,
            )[1]
            is None
        )


def encode_batch_like(eid: str, readings: dict[str, float]) -> bytes:
    from ingest.contract import Telemetry

    return encode(Telemetry(f"{eid}-1", START, readings))


# --- determinism and the contract ------------------------------------------------------


def test_same_config_same_bytes_and_other_seed_differs() -> None:
    a = _run(200, faults=ALL, seed=5)
    b = _run(200, faults=ALL, seed=5)
    c = _run(200, faults=ALL, seed=6)
    assert a == b
    assert [m.value for m in a] != [m.value for m in c]


@pytest.mark.parametrize("batch_size", [1, 7])
def test_every_expectation_matches_validate(batch_size: int) -> None:
    steps = 1500
    run = _run(steps, faults=ALL, seed=3, batch_size=batch_size, mean_life_steps=200)
    now = _now(steps)
    earlier_valid: set[bytes] = set()
    reasons: Counter[str] = Counter()
    for message in run:
        records, rejection = validate(message.value, now_ms=now)
        if message.expect == "duplicate":
            assert rejection is None
            assert message.value in earlier_valid
        elif message.expect == "valid":
            assert rejection is None, rejection
            assert message.value not in earlier_valid
            assert len(records) == message.samples
            assert message.key == records[0].equipment_id.encode()
            assert message.ts_ms == records[-1].ts_ms
            earlier_valid.add(message.value)
        else:
            assert rejection is not None, message
            assert rejection.reason == message.expect, (rejection, message.value[:200])
            reasons[rejection.reason] += 1
    assert set(reasons) == set(REASONS)  # every reason code of the contract occurs


def test_valid_messages_are_what_the_contract_encodes() -> None:
    for message in _run(50, faults=ALL, seed=2):
        if message.expect == "valid":
            records, _ = validate(message.value, now_ms=_now(50))
            assert encode(records[0]) == message.value
    for message in _run(60, seed=2, batch_size=5):
        records, _ = validate(message.value, now_ms=_now(60))
        assert encode_batch(records) == message.value


def test_no_two_different_valid_samples_share_machine_ts_and_sensors() -> None:
    seen: dict[tuple[str, int, frozenset[str]], bytes] = {}
    for message in _run(600, faults=ALL, seed=9):
        if message.expect != "valid":
            continue
        for record in validate(message.value, now_ms=_now(600))[0]:
            key = (record.equipment_id, record.ts_ms, frozenset(record.readings))
            assert key not in seen
            seen[key] = message.value


def test_malformed_variants_cover_every_reason() -> None:
    reasons = {reason for reason, _ in VARIANTS} | {"too_large"}
    assert reasons == set(REASONS)
    assert len(VARIANTS) < TOO_LARGE_EVERY


# --- faults ----------------------------------------------------------------------------


def test_fault_fractions_are_roughly_honoured() -> None:
    faults = FaultRates(malformed=0.1, duplicate=0.1, dropout=0.2)
    run = _run(1000, faults=faults, seed=4, mean_life_steps=100_000)
    kinds = Counter(
        "valid" if m.expect == "valid" else "dup" if m.expect == "duplicate" else "bad" for m in run
    )
    valid_or_bad = kinds["valid"] + kinds["bad"]
    assert kinds["bad"] / valid_or_bad == pytest.approx(0.1 * 0.9, abs=0.015)
    assert kinds["dup"] / kinds["valid"] == pytest.approx(0.1, abs=0.015)
    # half the dropout loses whole samples: gaps in each machine's sequence numbers
    delivered = {
        (r.equipment_id, r.seq)
        for m in run
        if m.expect != "duplicate"
        for r in validate(m.value, now_ms=_now(1000))[0]
    }
    lost = 1 - (len(delivered) + kinds["bad"]) / (30 * 1000)
    assert lost == pytest.approx(0.1, abs=0.015)


def _series(run: list[SimMessage], steps: int) -> dict[str, list[dict[str, float]]]:
    out: dict[str, list[dict[str, float]]] = defaultdict(list)
    for m in run:
        if m.expect == "valid":
            for record in validate(m.value, now_ms=_now(steps))[0]:
                out[record.equipment_id].append(record.readings)
    return out


def test_stuck_dropout_and_spike_are_valid_data_quality_issues() -> None:
    clean = _series(_run(300, seed=8), 300)
    dirty = _series(_run(300, seed=8, faults=FaultRates(stuck=0.3, dropout=0.3, spike=0.05)), 300)
    stuck_runs = missing = spikes = 0
    for eid, rows in dirty.items():
        names = set(clean[eid][0])
        missing += sum(set(row) != names for row in rows)
        for name in names:
            values = [row[name] for row in rows if name in row]
            stuck_runs += sum(
                a == b == c for a, b, c in zip(values, values[1:], values[2:], strict=False)
            )
            base = float(np.median(values))
            spikes += sum(abs(v - base) > 4 * (abs(base) + 1) for v in values)
    assert stuck_runs > 100
    assert missing > 100
    assert spikes > 50
    assert all(all(np.isfinite(v) for v in row.values()) for rows in dirty.values() for row in rows)


def test_out_of_order_messages_are_late_by_at_most_max_delay() -> None:
    run = _run(400, seed=1, faults=FaultRates(out_of_order=0.1), out_of_order_max_delay=3)
    newest: dict[bytes, int] = {}
    late = 0
    for m in run:
        if m.ts_ms < newest.get(m.key, 0):
            late += 1
            assert newest[m.key] - m.ts_ms <= 3 * 1000
        newest[m.key] = max(newest.get(m.key, 0), m.ts_ms)
    assert late > 300


# --- physics, events, history ----------------------------------------------------------


def test_failures_stop_telemetry_until_the_repair() -> None:
    config = SimulatorConfig(
        machines=20, start_ms=START, seed=2, mean_life_steps=60, repair_steps=7
    )
    evs = list(events(config, 400))
    assert {e.kind for e in evs} == {"failure", "repair"}
    assert len({e.mode for e in evs}) >= 4
    assert all(e.source == "simulator" for e in evs)
    times: dict[str, list[int]] = defaultdict(list)
    for m in messages(config, 400):
        times[m.key.decode()].append(m.ts_ms)
    by_machine: dict[str, list[MaintenanceEvent]] = defaultdict(list)
    for e in evs:
        by_machine[e.equipment_id].append(e)
    for eid, seq in by_machine.items():
        for failure, repair in zip(seq[::2], seq[1::2], strict=False):
            assert (failure.kind, repair.kind) == ("failure", "repair")
            assert failure.mode == repair.mode
            assert repair.ts_ms - failure.ts_ms == 7 * 1000
            assert not [t for t in times[eid] if failure.ts_ms <= t < repair.ts_ms]
            assert repair.ts_ms in times[eid]


def test_degradation_pushes_the_failure_modes_sensors() -> None:
    config = SimulatorConfig(machines=60, start_ms=START, seed=4, mean_life_steps=300)
    telemetry, evs = history(config, 1500)
    moved = Counter()
    for failure in evs[evs.kind == "failure"].itertuples():
        kind = ASSET_TYPES[failure.equipment_id.rsplit("-", 1)[0]]
        mode = next(m for m in kind.modes if m.name == failure.mode)
        rows = telemetry[telemetry.equipment_id == failure.equipment_id]
        before = rows[(rows.ts < failure.ts) & (rows.ts >= failure.ts - 20_000)]
        after = rows[(rows.ts > failure.ts)].head(20)
        if len(before) < 20 or len(after) < 20:
            continue
        name, shift = max(mode.effects, key=lambda e: abs(e[1]) / max(abs(e[1]), 1e-9))
        delta = before[name].mean() - after[name].mean()
        moved[bool(np.sign(delta) == np.sign(shift))] += 1
    assert moved[True] >= 10
    assert moved[False] <= moved[True] // 10


def test_history_matches_the_clean_stream() -> None:
    config = SimulatorConfig(machines=12, start_ms=START, seed=3, mean_life_steps=50)
    telemetry, evs = history(config, 200)
    assert list(telemetry.columns[:4]) == ["equipment_id", "ts", "asset_type", "site"]
    assert telemetry.columns[-1] == "regime"
    assert telemetry["ts"].dtype == np.int64
    assert set(telemetry["regime"]) <= set(REGIMES)
    assert telemetry.loc[telemetry.asset_type == "fan", "discharge_pressure"].isna().all()
    streamed = [validate(m.value, now_ms=_now(200))[0][0] for m in messages(config, 200)]
    assert len(streamed) == len(telemetry)
    for record, row in zip(streamed, telemetry.itertuples(index=False), strict=True):
        assert (record.equipment_id, record.ts_ms) == (row.equipment_id, row.ts)
        assert record.readings == {k: getattr(row, k) for k in record.readings}
    assert list(evs.columns) == ["equipment_id", "ts", "kind", "mode"]
    assert [tuple(r) for r in evs.itertuples(index=False)] == [
        (e.equipment_id, e.ts_ms, e.kind, e.mode) for e in events(config, 200)
    ]


def test_stream_puts_each_steps_events_before_its_messages() -> None:
    config = SimulatorConfig(machines=10, start_ms=START, seed=1, mean_life_steps=30)
    items = list(stream(config, 100))
    evs = [x for x in items if isinstance(x, MaintenanceEvent)]
    assert evs == list(events(config, 100))
    newest = 0
    for item in items:
        if isinstance(item, MaintenanceEvent):
            assert item.ts_ms >= newest - 1000  # not behind the step already streamed
        else:
            newest = max(newest, item.ts_ms)


@pytest.mark.parametrize(
    "kw",
    [{}, {"batch_size": 10}, {"faults": ALL, "mean_life_steps": 20, "repair_steps": 15}],
)
def test_plan_steps_covers_the_count(kw: dict[str, Any]) -> None:
    config = SimulatorConfig(machines=25, start_ms=START, seed=1, **kw)
    count = 5000
    planned = plan_steps(config, count)
    sent = 0
    for tick in ticks(config):
        sent += len(tick.messages)
        if sent >= count:
            assert tick.step < planned
            break


# --- the command line, no Kafka needed ------------------------------------------------


def _cli(*args: str) -> Any:
    return CliRunner().invoke(cli, ["simulate", *args])


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["--machines", "0"], "0 is not in the range 1<=x<=1000000"),
        (["--stuck", "1.5"], "1.5 is not in the range 0.0<=x<=1.0"),
        (["--count", "5", "--duration", "2"], "--count and --duration exclude each other"),
        (["--start", "yesterday"], "'yesterday' is not a time"),
        (["--start", "0"], "the run would span event times 1970-01-01"),
        (["--steps", "5"], "--steps goes with --history-out"),
        (["--history-out", "x.txt"], "must end in .parquet or .csv"),
        (["--history-out", "x.csv", "--count", "3"], "--count, --duration and --rate are for"),
    ],
)
def test_user_mistakes_are_one_line(args: list[str], error: str) -> None:
    result = _cli(*args)
    assert result.exit_code == 2
    assert error in result.output
    assert "Traceback" not in result.output


def test_help_explains_every_option() -> None:
    out = _cli("--help").output
    for option in (
        "--machines", "--seed", "--rate", "--count", "--duration", "--interval-ms",
        "--batch-size", "--stuck", "--dropout", "--spike", "--out-of-order", "--duplicate",
        "--malformed", "--max-delay", "--start", "--history-out", "--steps", "--no-events",
        "--summary-json", "--compression",
    ):  # fmt: skip
        assert option in out


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_history_out_writes_telemetry_and_events(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"fleet{suffix}"
    result = _cli(
        "--history-out",
        str(path),
        "--steps",
        "300",
        "--machines",
        "6",
        "--mean-life-steps",
        "40",
        "--repair-steps",
        "5",
    )
    assert result.exit_code == 0, result.output
    read = pd.read_csv if suffix == ".csv" else pd.read_parquet
    telemetry, evs = read(path), read(tmp_path / f"fleet.events{suffix}")
    assert len(telemetry) > 1000
    assert {"vibration_rms", "regime", "site"} <= set(telemetry.columns)
    assert set(evs["kind"]) == {"failure", "repair"}
    assert f"{len(telemetry)} samples" in result.output


def test_key_partitions_match_kafka_default_partitioner() -> None:
    from kafka.partitioner.default import DefaultPartitioner

    class Cluster:
        def topics(self) -> set[str]:
            return {"t"}

        def partitions_for_topic(self, topic: str) -> set[int]:
            return {0, 1, 2, 3, 4}

        available_partitions_for_topic = partitions_for_topic

    class Producer:
        def __init__(self) -> None:
            self.sent: list[int] = []

        def partitions_for(self, topic: str) -> set[int]:
            return {0, 1, 2, 3, 4}

        def send(self, topic: str, **kw: Any) -> None:
            self.sent.append(kw["partition"])

    producer = Producer()
    keyed = KeyPartitioned(producer)
    keys = [f"pump-{i:04d}".encode() for i in range(50)]
    for key in keys:
        keyed.send("t", key=key, value=b"v", timestamp_ms=None)
    default = DefaultPartitioner()
    assert producer.sent == [default.partition("t", k, k, None, None, Cluster()) for k in keys]


def test_parquet_without_pyarrow_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pyarrow" else real(name, *a)
    )
    result = _cli("--history-out", str(tmp_path / "h.parquet"), "--steps", "5")
    assert result.exit_code == 2
    assert (
        "writing Parquet needs pyarrow (pip install pyarrow), or use a .csv path" in result.output
    )
    assert not (tmp_path / "h.parquet").exists()
