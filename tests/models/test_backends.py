"""The model code on another Keras backend: the model tests run again on jax.

plantwatch's layers, training core and serving use the Keras 3 API only (``keras.ops``,
no ``tf.*``), so that the same model trains and scores on any backend, e.g. jax on a GPU
machine without TensorFlow. These tests hold it to that: they run in a child process with
``KERAS_BACKEND=jax`` (on the CPU here) and must pass there as they do on TensorFlow.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PORTABLE = [
    "tests/models/test_optimizer.py",  # one AdamW step equals the step computed by hand
    "tests/models/test_network_artifact.py",  # every architecture, masking, save and load
    "tests/models/test_servable.py",  # pinned batch sizes, attribution, hot swap
    "tests/models/test_training_sim.py",  # a short training run beats a constant predictor
]


@pytest.mark.timeout(1500)
def test_the_model_tests_pass_on_jax() -> None:
    pytest.importorskip("jax", reason="jax is a dev dependency: pip install -e '.[dev]'")
    env = os.environ | {"KERAS_BACKEND": "jax"}
    which = [sys.executable, "-c", "import keras; print(keras.backend.backend())"]
    backend = subprocess.run(which, env=env, capture_output=True, text=True, check=True)
    assert backend.stdout.strip() == "jax", backend.stderr[-2000:]
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *PORTABLE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1400,
        check=False,
    )
    tail = (run.stdout + run.stderr)[-4000:]
    assert run.returncode == 0, tail
    summary = run.stdout.strip().splitlines()[-1]
    assert " passed" in summary, tail
    assert "skipped" not in summary, tail


def test_steps_are_compiled_on_a_gpu_and_on_jax() -> None:
    from models import backend
    from models.training import compiled_steps

    assert compiled_steps("gpu")
    assert compiled_steps("cpu") == (backend.keras().backend.backend() == "jax")
