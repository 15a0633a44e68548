"""Tiny artifacts and feature streams for the scorer tests (random weights, fitted spec)."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np

from features.config import WindowConfig
from features.spec import fit_spec
from models.artifact import ModelMeta, save_artifact
from models.network import build_model
from pipeline.featurerecords import encode_feature

WINDOW = WindowConfig(
    sensors=("temp", "vib", "flow"),
    step_ms=1000,
    aggregates=("mean",),
    derived=(),
    grace_ms=0,
    max_fill_steps=0,
)
F = len(WINDOW.feature_names())
L = 8
MIN_STEPS = 3


def write_window(path: Path) -> Path:
    """The feature rules as a JSON file (for PLANTWATCH_FEATURES_CONFIG)."""
    path.write_text(json.dumps(WINDOW.to_dict()))
    return path


def make_artifact(
    path: Path,
    seed: int = 0,
    age: bool = True,
    shift: float = 0.0,
    created_at: str = "2026-01-01T00:00:00+00:00",
    length: int = L,
    architecture: str = "gru",
) -> Path:
    """A random-weight artifact (GRU by default); ``shift`` moves the fitted normalization."""
    rng = np.random.default_rng(seed)
    X = rng.normal(loc=shift, size=(200, F))
    spec = fit_spec(X, WINDOW, sequence_length=length)
    model = build_model(length, F + (1 if age else 0), architecture, units=8, seed=seed)
    meta = ModelMeta(
        horizon_steps=5,
        min_steps=MIN_STEPS,
        threshold=0.3,
        calibration=(1.0, 0.0),
        architecture=architecture,
        fingerprint="test",
        created_at=created_at,
        age_scale=20.0 if age else None,
    )
    return save_artifact(path, model, spec, meta)


def machine_values(eid: str, step: int) -> np.ndarray:
    """Deterministic feature values of one machine's step (some missing)."""
    rng = np.random.default_rng(zlib.crc32(f"{eid}:{step}".encode()))
    values = rng.normal(size=F)
    values[rng.random(F) < 0.1] = np.nan
    return values


def feature_record(eid: str, step: int, config: str | None = None) -> bytes:
    """The features-topic value of machine ``eid``'s step ``step``."""
    start = step * WINDOW.step_ms
    return encode_feature(
        eid,
        start,
        start + WINDOW.step_ms,
        config or WINDOW.fingerprint(),
        machine_values(eid, step),
    )
