"""The scorer's per-machine windows: padding, segments, rewind, parity with training."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from features.spec import sequences
from models.buffers import MachineBuffers, age_column
from models.windows import step_age

L, F, STEP = 4, 2, 10


def _z(step: int) -> np.ndarray:
    return np.array([step, -step], dtype=np.float32)


def _feed(buffers: MachineBuffers, eid: str, steps: list[int], first_offset: int = 0) -> None:
    for i, s in enumerate(steps):
        buffers.push(eid, s * STEP, _z(s), first_offset + i)


def test_short_history_is_padded_in_front_and_masked() -> None:
    b = MachineBuffers(L, F, STEP)
    _feed(b, "m", [5, 6])
    w = b.window("m")
    assert w.mask.tolist() == [False, False, True, True]
    assert w.x[:, 0].tolist() == [0, 0, 5, 6]
    assert (w.steps, w.age) == (2, 1)


def test_window_keeps_the_last_l_steps_and_copies() -> None:
    b = MachineBuffers(L, F, STEP)
    _feed(b, "m", list(range(10)))
    w = b.window("m")
    assert w.x[:, 0].tolist() == [6, 7, 8, 9]
    assert w.mask.all()
    assert w.steps == L
    assert w.age == 9
    b.push("m", 10 * STEP, _z(10), 10)
    assert w.x[:, 0].tolist() == [6, 7, 8, 9]  # the earlier snapshot did not move


def test_gap_starts_a_segment_and_redelivery_is_ignored() -> None:
    b = MachineBuffers(L, F, STEP)
    _feed(b, "m", [0, 1, 2])
    assert b.push("m", 2 * STEP, _z(2), 3) == "duplicate"
    assert b.push("m", 1 * STEP, _z(1), 4) == "duplicate"
    assert b.push("m", 4 * STEP, _z(4), 5) == "new_segment"
    w = b.window("m")
    assert w.x[:, 0].tolist() == [0, 0, 0, 4]
    assert w.steps == 1
    assert w.age == 0


def test_rewind_offset_and_replay_rebuild_the_same_windows() -> None:
    steps = {"a": list(range(0, 12)), "b": [*range(3, 8), *range(20, 26)]}
    live = MachineBuffers(L, F, STEP)
    log: list[tuple[str, int]] = []
    for i in range(max(len(v) for v in steps.values())):
        for eid, s in steps.items():
            if i < len(s):
                log.append((eid, s[i]))
    cut = len(log) - 6
    for offset, (eid, s) in enumerate(log[:cut]):
        live.push(eid, s * STEP, _z(s), offset)
    for segment in (False, True):
        rewind = live.rewind_offset(["a", "b"], segment=segment)
        assert rewind is not None
        rebuilt = MachineBuffers(L, F, STEP)
        for offset in range(rewind, cut):
            eid, s = log[offset]
            rebuilt.push(eid, s * STEP, _z(s), offset)
        fresh = MachineBuffers(L, F, STEP)
        for offset, (eid, s) in enumerate(log[:cut]):
            fresh.push(eid, s * STEP, _z(s), offset)
        for offset in range(cut, len(log)):
            eid, s = log[offset]
            rebuilt.push(eid, s * STEP, _z(s), offset)
            fresh.push(eid, s * STEP, _z(s), offset)
            a, b = rebuilt.window(eid), fresh.window(eid)
            np.testing.assert_array_equal(a.x, b.x)
            assert (a.mask.tolist(), a.steps) == (b.mask.tolist(), b.steps)
            if segment:
                assert a.age == b.age
    # Segment rewind reaches back to b's second segment start (offset of its step 20).
    assert live.rewind_offset(["b"], segment=True) == log.index(("b", 20))
    assert live.rewind_offset(["nobody"]) is None


def test_windows_and_ages_equal_the_training_path() -> None:
    """Serving windows (+ age column) are exactly what models.windows builds in training."""
    rng = np.random.default_rng(0)
    rows = [("m1", s) for s in range(9)] + [("m1", s) for s in range(12, 15)]
    rows += [("m2", s) for s in range(5)]
    index = pd.DataFrame(
        {
            "equipment_id": [r[0] for r in rows],
            "step_start": [r[1] * STEP for r in rows],
            "segment": [0] * 9 + [1] * 3 + [2] * 5,
        }
    )
    Z = rng.normal(size=(len(rows), F))
    scale = 7.0
    Zage = np.concatenate([Z, (step_age(index) / scale)[:, None]], axis=1)
    S, mask, _ = sequences(Zage, index, L)
    b = MachineBuffers(L, F, STEP)
    for i, (eid, s) in enumerate(rows):
        b.push(eid, s * STEP, Z[i].astype(np.float32), i)
        w = b.window(eid)
        x = np.concatenate(
            [w.x, age_column(np.array([w.age]), w.mask[None], scale)[0][:, None]], axis=1
        )
        np.testing.assert_array_equal(x, S[i].astype(np.float32))
        assert w.mask.tolist() == mask[i].tolist()


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="Received: length=0"):
        MachineBuffers(0, F, STEP)


@given(
    st.lists(
        st.tuples(st.integers(0, 2), st.sampled_from([1, 1, 1, 3]), st.floats(0.0, 3.0)),
        min_size=1,
        max_size=120,
    ),
    st.lists(st.booleans(), min_size=1, max_size=3),
)
@example([(0, 1, 3.0)] * 6, [False, True])  # a long segment: its start is before its last L-1
def test_a_reused_rewind_offset_is_never_later_than_the_exact_one(
    events: list[tuple[int, int, float]], segments: list[bool]
) -> None:
    """Batcher.rewind_offset reuses its value for a while; a reused value must never skip a
    record that a rebuild needs, whatever machines appear, jump or repeat meanwhile."""
    from models.scoring import Batcher

    batcher = Batcher(MachineBuffers(L, F, STEP), "cfg")
    last: dict[str, int] = {}
    now = 0.0
    for offset, (machine, jump, dt) in enumerate(events):
        eid = f"m{machine}"
        step = last.get(eid, 0) + jump  # jump > 1 starts a new segment
        last[eid] = step
        batcher.buffers.push(eid, step * STEP, _z(step), offset)
        batcher.machines_of.setdefault("p0", set()).add(eid)
        now += dt
        for segment in segments:  # both kinds asked in turn: each must be its own
            exact = batcher.buffers.rewind_offset(batcher.machines_of["p0"], segment=segment)
            reused = batcher.rewind_offset("p0", segment, now)
            assert exact is not None
            assert reused is not None
            assert reused <= exact
    batcher.forget_partition("p0")
    assert batcher.rewind_offset("p0", segments[0], now) is None


def test_batch_rows_are_aligned_grow_with_their_contents_and_are_recycled() -> None:
    from models.backend import ALIGN
    from models.scoring import Batch, Batcher

    batcher = Batcher(MachineBuffers(L, F, STEP), "cfg")
    batch = Batch()
    rows = batcher._rows(batch, 3)
    rows[:] = np.arange(3, dtype=np.float32)[:, None, None]
    batch.windows += [(f"m{i}", 0, 0, 1) for i in range(3)]
    grown = batcher._rows(batch, 1500)  # past the first 1,024 rows: a bigger buffer
    assert batch.x is not None
    assert grown.shape == (1500, L, F)
    assert len(batch.x) >= 1503
    assert batch.x.ctypes.data % ALIGN == 0
    assert batch.x[:3, 0, 0].tolist() == [0.0, 1.0, 2.0]  # kept across the growth
    kept = batch.x
    batcher.recycle(batch)
    assert batch.x is None
    again = Batch()
    batcher._rows(again, 10)
    assert again.x is kept  # reused, not allocated again
    assert batcher.spare == []
    # a spare too small for the rows asked is skipped, a later one that fits is taken
    small = np.zeros((4, L, F), np.float32)
    batcher.spare[:] = [small, kept]
    third = Batch()
    batcher._rows(third, 100)
    assert third.x is kept
    assert len(batcher.spare) == 1
    assert batcher.spare[0] is small
