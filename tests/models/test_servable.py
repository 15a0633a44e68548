"""Serving a model: pinned shapes, bit-identical results, attribution, refusals, hot swap."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from features.config import WindowConfig
from models.errors import ArtifactError, ArtifactMismatch, ModelError
from models.hotswap import ModelWatcher, newest_artifact
from models.registry import artifact_version
from models.servable import Servable, load_servable
from tests.models.tiny import WINDOW, F, L, make_artifact

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Servable:
    path = make_artifact(tmp_path_factory.mktemp("m") / "v1", seed=1)
    return load_servable(path, WINDOW, "cpu:0", 64)


@pytest.fixture(scope="module")
def served_stats(tmp_path_factory: pytest.TempPathFactory) -> Servable:
    path = make_artifact(tmp_path_factory.mktemp("m") / "s1", seed=1, architecture="gru-stats")
    return load_servable(path, WINDOW, "cpu:0", 64)


def _inputs(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, L, F + 1)).astype(np.float32)
    mask = np.ones((n, L), dtype=bool)
    mask[::3, :4] = False
    x[~mask] = 0.0
    return x, mask


def _same(got: np.ndarray, want: np.ndarray) -> None:
    """Bit for bit with TensorFlow on a CPU; to float rounding where XLA compiles each size.

    jax (tests/models/test_backends.py) compiles every pinned batch size into its own
    kernel, whose sums may round differently in the last bit.
    """
    from models import backend

    if backend.keras().backend.backend() == "tensorflow":
        np.testing.assert_array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("model", ["served", "served_stats"])
def test_a_window_scores_bit_identically_whatever_its_batch(
    model: str, request: pytest.FixtureRequest
) -> None:
    served: Servable = request.getfixturevalue(model)
    x, mask = _inputs(150)
    full = served.logits(x, mask)  # calls of 64, 64 and a padded 64
    for i in (0, 5, 63, 64, 149):
        alone = served.logits(x[i : i + 1], mask[i : i + 1])  # padded to 16
        _same(alone[:1], full[i : i + 1])
    rng = np.random.default_rng(1)
    order = rng.permutation(150)
    _same(served.logits(x[order], mask[order]), full[order])
    assert served.calls > 0


def test_attribution_shares(served: Servable) -> None:
    x, mask = _inputs(20)
    logits = served.logits(x, mask)
    tops = served.attribute(x, mask, logits)
    assert len(tops) == 20
    for top in tops:
        assert len(top) <= 3
        assert all(name in WINDOW.sensors and share > 0 for name, share in top)
        assert sum(share for _, share in top) <= 1.0
        assert [s for _, s in top] == sorted((s for _, s in top), reverse=True)
    assert any(tops)
    assert served.attribute(x, mask, logits) == tops
    # Only 'temp' (and the age column) is non-zero: no other sensor can be credited.
    only = np.zeros_like(x)
    temp = [i for i, n in enumerate(WINDOW.feature_names()) if n.startswith("temp__")]
    only[:, :, temp] = x[:, :, temp] * 3
    only[:, :, -1] = x[:, :, -1]
    got = served.attribute(only, mask, served.logits(only, mask))
    assert all(top in ((), (("temp", 1.0),)) for top in got)
    assert (("temp", 1.0),) in got


@pytest.mark.parametrize(
    ("logit", "occluded"),
    [
        (3e38, -3e38),  # finite, their difference is not (float32)
        (3e38, -np.inf),
        (-3e38, np.nan),
        (np.inf, 3e38),
        (np.inf, np.inf),
    ],
)
def test_attribution_of_a_window_beyond_float32_is_empty_not_an_error(
    served: Servable, monkeypatch: pytest.MonkeyPatch, occluded: float, logit: float
) -> None:
    # Found by tests/test_fuzz_stages.py: steps of features near float32's limit overflow
    # the logits; the shares were NaN and math.floor(NaN) stopped the scorer.
    x, mask = _inputs(3)
    logits = served.logits(x, mask)
    others = served.attribute(x, mask, logits)
    logits[1] = logit
    real = served._occluded

    def overflowing(x: np.ndarray, mask: np.ndarray) -> np.ndarray:
        out = real(x, mask)
        out[1, :2] = occluded
        return out

    monkeypatch.setattr(served, "_occluded", overflowing)
    tops = served.attribute(x, mask, logits)
    assert tops[1] == ()
    assert (tops[0], tops[2]) == (others[0], others[2])  # the other windows as before


def test_a_wrong_feature_config_is_refused(tmp_path: Path) -> None:
    path = make_artifact(tmp_path / "v", seed=2)
    other = WindowConfig(sensors=("temp", "vib", "flow"), step_ms=2000, aggregates=("mean",))
    with pytest.raises(ArtifactMismatch, match="'step_ms' differs"):
        load_servable(path, other, "cpu:0", 16)


def test_a_model_that_cannot_take_the_windows_is_refused(tmp_path: Path) -> None:
    from features.spec import fit_spec
    from models.artifact import ModelMeta, save_artifact
    from models.network import build_model

    spec = fit_spec(np.random.default_rng(0).normal(size=(50, F)), WINDOW, sequence_length=L)
    meta = ModelMeta(5, 3, 0.3, (1.0, 0.0), "gru", "x", "2026-01-01T00:00:00+00:00")
    save_artifact(tmp_path / "bad", build_model(L, F + 4, units=4), spec, meta)
    with pytest.raises(ArtifactError, match="cannot score this spec's windows"):
        load_servable(tmp_path / "bad", WINDOW, "cpu:0", 16)


def test_watcher_takes_the_newest_and_remembers_a_broken_one(tmp_path: Path) -> None:
    models = tmp_path / "models"
    v1 = make_artifact(models / "a", seed=1, created_at="2026-01-01T00:00:00+00:00")
    loads: list[Path] = []

    def load(path: Path) -> Servable:
        loads.append(path)
        return load_servable(path, WINDOW, "cpu:0", 16)

    watcher = ModelWatcher(load, models, True, artifact_version(v1), poll_s=60)
    watcher.check()
    assert watcher.take() is None
    assert loads == []
    v2 = make_artifact(models / "b", seed=2, created_at="2026-02-01T00:00:00+00:00")
    assert newest_artifact(models) == v2
    watcher.check()
    got = watcher.take()
    assert got is not None
    assert got.version == artifact_version(v2) == watcher.current
    broken = models / "c"
    shutil.copytree(v2, broken)
    spec = (broken / "spec.json").read_text().replace("2026-02-01", "2026-03-01")
    (broken / "spec.json").write_text(spec)
    (broken / "model.keras").write_bytes(b"not a keras file")
    watcher.check()
    watcher.check()
    assert watcher.take() is None
    assert loads.count(broken) == 1  # refused once, not retried
    assert artifact_version(broken) in watcher.refused
    assert watcher.current == artifact_version(v2)


def test_gpu_on_a_machine_without_one_is_a_clear_error() -> None:
    from models import backend

    if backend.gpu_count():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ModelError, match="sees no GPU"):
        backend.select_device("gpu")
    assert backend.select_device("auto") == "cpu:0"


def _plain_occlusion(s: Servable, x: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The reference: every window repeated once per sensor, that sensor's columns zeroed."""
    g = len(s.groups)
    occluded = np.repeat(x, g, axis=0)
    for i, (_, cols) in enumerate(s.groups):
        occluded[i::g, :, cols] = 0.0
    return s.logits(occluded, np.repeat(mask, g, axis=0)).reshape(len(x), g)


@pytest.mark.parametrize("n", [1, 5, 20])
def test_occlusion_in_the_call_buffers_equals_the_plain_one(served: Servable, n: int) -> None:
    x, mask = _inputs(n, seed=n)
    # 64 per call: 5 windows' copies fit in one call, 20 need several
    np.testing.assert_array_equal(served._occluded(x, mask), _plain_occlusion(served, x, mask))


def test_occlusion_when_one_windows_copies_exceed_a_call(tmp_path: Path) -> None:
    small = load_servable(make_artifact(tmp_path / "v1", seed=1), WINDOW, "cpu:0", 1)
    assert len(small.groups) > small.max_batch
    x, mask = _inputs(3)
    np.testing.assert_array_equal(small._occluded(x, mask), _plain_occlusion(small, x, mask))


def test_an_aligned_batch_is_taken_without_a_copy(served: Servable) -> None:
    from models import backend

    x, mask = _inputs(64)
    aligned = backend.aligned_empty(x.shape)
    assert aligned.ctypes.data % backend.ALIGN == 0
    aligned[:] = x
    # same logits whichever way the batch reaches the model
    np.testing.assert_array_equal(served.logits(aligned, mask), served.logits(x.copy(), mask))
    raw = np.empty(aligned.nbytes + 4, np.uint8)
    misaligned = raw[4 + (-raw.ctypes.data % 64) :][: aligned.nbytes].view(np.float32)
    assert backend.host_input(misaligned, "cpu:0") is misaligned  # the backend copies it
    if backend.keras().backend.backend() != "tensorflow":  # the zero-copy input is TF's
        assert backend.host_input(aligned, "cpu:0") is aligned
        return
    tensor = backend.host_input(aligned, "cpu:0")
    aligned[0, 0, 0] = 123.0
    assert float(tensor[0, 0, 0]) == 123.0  # the tensor is the array's memory
    assert backend.host_input(aligned, "gpu:0") is aligned
