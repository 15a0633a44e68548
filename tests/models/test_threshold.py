"""The threshold choice on validation windows (``models.evaluation.choose_threshold``)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from models.evaluation import choose_threshold, share_weights


def test_share_weights_make_the_positives_that_share() -> None:
    y = np.array([1, 0, 0, 0, 1, 0, 0, 0, 0, 0.0])
    w = share_weights(y, 0.25)
    assert w[y == 1].sum() == pytest.approx(0.25)
    assert w[y == 0].sum() == pytest.approx(0.75)


@pytest.mark.parametrize(("y", "share"), [([0, 1], 0.0), ([0, 1], 1.0), ([0, 0], 0.3)])
def test_share_weights_refuse_what_cannot_be_weighted(y: list[int], share: float) -> None:
    with pytest.raises(ValueError, match="positive_share"):
        share_weights(np.array(y, dtype=float), share)


def test_a_higher_positive_share_lowers_the_max_f1_threshold() -> None:
    # Positives at 0.3 are worth alerting on only when positives are common: at a 50 %
    # share the one false alarm at 0.3 costs less F1 than the missed positive.
    y = np.array([0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 1, 1.0])
    p = np.array([0.01, 0.02, 0.05, 0.1, 0.1, 0.12, 0.15, 0.2, 0.3, 0.3, 0.8, 0.9])
    rare = choose_threshold(y, p, tolerance=0, positive_share=0.05)
    common = choose_threshold(y, p, tolerance=0, positive_share=0.5)
    assert rare == 0.8
    assert common == 0.3


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.booleans(), st.integers(0, 50)), min_size=4, max_size=60).filter(
        lambda rows: 0 < sum(r[0] for r in rows) < len(rows)
    )
)
def test_the_actual_share_gives_the_unweighted_threshold(rows: list[tuple[bool, int]]) -> None:
    y = np.array([r[0] for r in rows], dtype=float)
    p = np.array([r[1] for r in rows], dtype=float) / 50
    share = float(y.mean())
    assert choose_threshold(y, p, positive_share=share) == choose_threshold(y, p)
