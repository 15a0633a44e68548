"""The alert state machine, table-driven, with prediction time and a fake wall clock."""

from __future__ import annotations

import pytest

from alerting.errors import RulesError
from alerting.rules import Rules, Silences
from alerting.state import MachineState, check_deadman, step

MIN = 60_000
# the levels the table was written with (not the defaults, which are measured choices that
# may move: docs/alerting.md)
LEVELS = {"warning": 0.5, "warning_reset": 0.4, "critical": 0.8, "critical_reset": 0.7}


def run(
    probs: list[float], rules: Rules, silenced_at: set[int] | None = None
) -> list[tuple[int, str, str]]:
    """Feed one prediction per minute; returns (minute, kind, to_level) of every event."""
    st = MachineState("pump-1")
    out = []
    for i, p in enumerate(probs):
        silenced = i in (silenced_at or set())
        for e in step(st, i * MIN, p, rules, silenced=silenced, wall_ms=i * MIN):
            out.append((i, e.kind, e.to_level))
    return out


NO_PENDING = Rules(**LEVELS, pending_steps=1, repeat_ms=0)

CASES = [
    # hysteresis: 0.45 keeps WARNING (reset 0.4), 0.35 returns to OK; 0.75 keeps CRITICAL
    (
        "hysteresis",
        NO_PENDING,
        [0.6, 0.45, 0.35],
        None,
        [(0, "transition", "WARNING"), (2, "transition", "OK")],
    ),
    (
        "critical holds above reset",
        NO_PENDING,
        [0.9, 0.75, 0.65, 0.3],
        None,
        [(0, "transition", "CRITICAL"), (2, "transition", "WARNING"), (3, "transition", "OK")],
    ),
    ("below raise threshold never fires", NO_PENDING, [0.45, 0.49, 0.3], None, []),
    # pending: 3 consecutive steps needed; an interruption restarts the count
    (
        "pending steps",
        Rules(**LEVELS, pending_steps=3, repeat_ms=0),
        [0.9, 0.9, 0.1, 0.9, 0.9, 0.9],
        None,
        [(5, "transition", "CRITICAL")],
    ),
    (
        "pending duration",
        Rules(**LEVELS, pending_steps=0, pending_ms=2 * MIN, repeat_ms=0),
        [0.6, 0.6, 0.6],
        None,
        [(2, "transition", "WARNING")],
    ),
    # repeat: a reminder every 2 minutes while raised, none once OK
    (
        "repeat",
        Rules(**LEVELS, pending_steps=1, repeat_ms=2 * MIN),
        [0.6, 0.6, 0.6, 0.6, 0.6, 0.1, 0.1, 0.1],
        None,
        [
            (0, "transition", "WARNING"),
            (2, "repeat", "WARNING"),
            (4, "repeat", "WARNING"),
            (5, "transition", "OK"),
        ],
    ),
    # flapping: after 4 changes within the window a step down is held until quiet for the window
    (
        "flapping holds",
        Rules(**LEVELS, pending_steps=1, repeat_ms=0, flap_count=4, flap_window_ms=5 * MIN),
        [0.6, 0.1, 0.6, 0.1, 0.6, 0.1, 0.1, 0.6, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1],
        None,
        [
            (0, "transition", "WARNING"),
            (1, "transition", "OK"),
            (2, "transition", "WARNING"),
            (3, "transition", "OK"),
            (4, "transition", "WARNING"),
            (5, "flapping", "WARNING"),
            (13, "transition", "OK"),  # quiet for a window since 8
        ],
    ),
    # silences: the transition is recorded as silenced; when the silence ends while still raised
    (
        "silence then unsilenced",
        NO_PENDING,
        [0.9, 0.9, 0.9, 0.1],
        {0, 1},
        [(0, "transition", "CRITICAL"), (2, "unsilenced", "CRITICAL"), (3, "transition", "OK")],
    ),
]


@pytest.mark.parametrize(
    ("name", "rules", "probs", "silenced", "expected"), CASES, ids=[c[0] for c in CASES]
)
def test_table(
    name: str,
    rules: Rules,
    probs: list[float],
    silenced: set[int] | None,
    expected: list[tuple[int, str, str]],
) -> None:
    assert run(probs, rules, silenced) == expected


def test_incident_key_is_from_prediction_time_and_replay_is_identical() -> None:
    rules = Rules(**LEVELS, pending_steps=2, repeat_ms=0)
    probs = [0.1, 0.9, 0.9, 0.9, 0.2, 0.9, 0.9]

    def keys() -> list[str]:
        st = MachineState("fan-2")
        return [e.incident_key for i, p in enumerate(probs) for e in step(st, 1000 + i, p, rules)]

    assert keys() == ["fan-2:1002", "fan-2:1002", "fan-2:1006"]
    assert keys() == keys()


def test_silenced_event_flag_and_stale_predictions_ignored() -> None:
    st = MachineState("m-1")
    rules = NO_PENDING
    (e,) = step(st, 10, 0.9, rules, silenced=True)
    assert e.silenced
    assert step(st, 10, 0.1, rules) == []  # same time again: a re-delivery
    assert step(st, 5, 0.1, rules) == []  # older
    assert st.level == "CRITICAL"


def test_deadman_with_fake_wall_clock() -> None:
    rules = Rules(**LEVELS, pending_steps=1, deadman_ms=5 * MIN)
    st = MachineState("m-1")
    step(st, 0, 0.1, rules, wall_ms=1_000_000)
    assert check_deadman(st, 1_000_000 + 5 * MIN - 1, rules) is None
    event = check_deadman(st, 1_000_000 + 5 * MIN, rules)
    assert event is not None
    assert (event.kind, event.to_level) == ("nodata", "NODATA")
    assert check_deadman(st, 1_000_000 + 10 * MIN, rules) is None  # once per outage
    (back,) = step(st, MIN, 0.1, rules, wall_ms=2_000_000)
    assert (back.kind, back.from_level, back.incident_key) == ("data", "NODATA", event.incident_key)


def test_deadman_off() -> None:
    st = MachineState("m-1", seen_wall_ms=0)
    assert check_deadman(st, 10**12, Rules(deadman_ms=0)) is None


def test_state_round_trips_through_json() -> None:
    import orjson

    st = MachineState("m-1")
    for i, p in enumerate([0.9, 0.9, 0.9, 0.5]):
        step(st, i, p, Rules(), top=[("temp", 0.5)])
    again = MachineState.from_doc(orjson.loads(orjson.dumps(st.to_doc())))
    assert again == st


def test_trend() -> None:
    st = MachineState("m", history=[(0, 0.1), (3_600_000, 0.3)])
    assert st.trend_per_hour() == pytest.approx(0.2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"warning": 1.5}, "rule warning: value 1.5"),
        ({"warning_reset": 0.6}, "warning_reset <= warning"),
        ({"critical_reset": 0.9}, "critical_reset <= critical"),
        ({"flap_count": 1}, "flap_count"),
        ({"ticket_level": "OK"}, "ticket_level"),
    ],
)
def test_bad_rules(kwargs: dict[str, object], message: str) -> None:
    from alerting.errors import RulesError

    with pytest.raises(RulesError, match=message):
        Rules(**kwargs)  # type: ignore[arg-type]


def test_rules_at_a_ticket_level_keep_the_hysteresis_and_the_order() -> None:
    """What `plantwatch evaluate --levels` replays."""
    rules = Rules(warning=0.5, warning_reset=0.4, critical=0.6, critical_reset=0.45)
    assert rules.at_level(0.6) == rules
    high = rules.at_level(0.9)
    assert (high.critical, high.critical_reset) == (0.9, 0.75)  # 0.15 below, kept
    assert Rules().at_level(0.6) == Rules()
    assert (high.warning, high.warning_reset, high.pending_steps) == (0.5, 0.4, 3)
    low = rules.at_level(0.3)
    assert (low.critical, low.warning, low.warning_reset) == (0.3, 0.3, 0.3)
    assert rules.at_level(0.1).critical_reset == 0.0  # clipped
    warn = Rules(ticket_level="WARNING").at_level(0.7)
    assert (warn.warning, warn.warning_reset, warn.critical) == (0.7, 0.6, 0.7)
    with pytest.raises(RulesError, match=r"ticket level: value 1\.2 is not a probability"):
        rules.at_level(1.2)


def test_silences_by_machine_and_asset_type(tmp_path) -> None:
    from alerting.rules import load_silences

    f = tmp_path / "s.yaml"
    f.write_text(
        "silences:\n"
        "  - {equipment_id: pump-1, start: '1970-01-01T00:00:00Z', end: 100}\n"
        "  - {asset_type: compressor, start: 0, end: 50}\n"
        "asset_types: {cmp-a7: compressor}\n"
    )
    book = load_silences(f)
    assert book.active("pump-1", 99)
    assert not book.active("pump-2", 99)
    assert book.active("cmp-a7", 10)
    assert not book.active("cmp-a7", 50)
    assert Silences().active("x", 0) is False


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ('{"silences": [{"start": 0, "end": 1}]}', "exactly one of equipment_id, asset_type"),
        (
            '{"silences": [{"equipment_id": "a", "start": "yesterday", "end": 1}]}',
            "start: value 'yesterday'",
        ),
        (
            '{"silences": [{"equipment_id": "a", "start": 5, "end": 1}]}',
            "end 1 is not after start 5",
        ),
        ("{", "not valid JSON"),
    ],
)
def test_bad_silences(tmp_path, doc: str, message: str) -> None:
    from alerting.errors import RulesError
    from alerting.rules import load_silences

    f = tmp_path / "s.json"
    f.write_text(doc)
    with pytest.raises(RulesError, match=message):
        load_silences(f)
