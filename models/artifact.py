"""The model artifact: a directory with ``model.keras`` and ``spec.json``.

``spec.json`` holds the feature spec (:class:`features.spec.FeatureSpec` JSON: window
rules, L, normalization), the horizon H, the alert threshold, the calibration, metrics,
the training data fingerprint, the artifact version and the creation time.
:func:`load_artifact` refuses an artifact whose feature settings differ from the ones in
use, naming what differs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from features.config import FeatureConfigError, WindowConfig
from features.spec import FeatureSpec, FeatureSpecMismatch
from models import backend
from models.backend import Model
from models.errors import ArtifactError, ArtifactMismatch

if TYPE_CHECKING:
    from models.windows import Windows

ARTIFACT_VERSION = 1
MODEL_FILE = "model.keras"
SPEC_FILE = "spec.json"


@dataclass(frozen=True)
class ModelMeta:
    """What travels with the weights besides the feature spec.

    Attributes:
        horizon_steps: H, steps.
        min_steps: windows with fewer real steps are not scored.
        threshold: alert threshold on the calibrated probability.
        calibration: Platt ``(a, b)``: probability = sigmoid(a * logit + b).
        architecture: the network's architecture name.
        fingerprint: sha256 of the training data files.
        created_at: ISO-8601 UTC creation time (given by the caller).
        metrics: validation (and other) metrics.
        age_scale: the step-age feature's scale, None without that feature.
        version: artifact format version.
    """

    horizon_steps: int
    min_steps: int
    threshold: float
    calibration: tuple[float, float]
    architecture: str
    fingerprint: str
    created_at: str
    metrics: dict[str, Any] = field(default_factory=dict)
    age_scale: float | None = None
    version: int = ARTIFACT_VERSION


@dataclass
class Artifact:
    """A loaded model with its spec and meta."""

    model: Model
    spec: FeatureSpec
    meta: ModelMeta

    def predict_proba(self, windows: Windows) -> NDArray[np.float64]:
        """Calibrated failure probabilities of the windows."""
        from models.evaluation import sigmoid
        from models.training import predict_logits

        a, b = self.meta.calibration
        return sigmoid(a * predict_logits(self.model, windows) + b)


def save_artifact(path: str | Path, model: Model, spec: FeatureSpec, meta: ModelMeta) -> Path:
    """Write ``model.keras`` and ``spec.json`` into directory ``path`` (created)."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model.save(path / MODEL_FILE)
    doc = {
        "feature_spec": json.loads(spec.to_json()),
        "sequence_length": spec.sequence_length,
        **asdict(meta),
    }
    (path / SPEC_FILE).write_text(json.dumps(doc, indent=1, default=float))
    return path


def load_artifact(path: str | Path, window: WindowConfig | None = None) -> Artifact:
    """Load an artifact; with ``window``, refuse one trained with other feature settings.

    Raises:
        ArtifactError: the directory or a file is missing or unreadable.
        ArtifactMismatch: the feature settings differ (names the setting and both values).
    """
    path = Path(path)
    spec_path, model_path = path / SPEC_FILE, path / MODEL_FILE
    for needed in (spec_path, model_path):
        if not needed.is_file():
            raise ArtifactError(f"{path}: not a model artifact: {needed.name} is missing")
    try:
        doc = json.loads(spec_path.read_text())
        spec = FeatureSpec.from_json(json.dumps(doc["feature_spec"]))
        if doc.get("version") != ARTIFACT_VERSION:
            raise ArtifactError(
                f"{spec_path}: artifact version {doc.get('version')!r} is not supported: "
                f"expected {ARTIFACT_VERSION}"
            )
        meta = ModelMeta(
            horizon_steps=int(doc["horizon_steps"]),
            min_steps=int(doc["min_steps"]),
            threshold=float(doc["threshold"]),
            calibration=(float(doc["calibration"][0]), float(doc["calibration"][1])),
            architecture=str(doc["architecture"]),
            fingerprint=str(doc["fingerprint"]),
            created_at=str(doc["created_at"]),
            metrics=dict(doc.get("metrics", {})),
            age_scale=None if doc.get("age_scale") is None else float(doc["age_scale"]),
        )
    except (ValueError, KeyError, TypeError, IndexError, FeatureConfigError) as exc:
        raise ArtifactError(f"{spec_path}: malformed artifact spec: {exc}") from None
    if window is not None:
        try:
            spec.check(window)
        except FeatureSpecMismatch as exc:
            raise ArtifactMismatch(f"{path}: {exc}") from exc
    keras = backend.keras()
    import models.layers  # noqa: F401  (registers the custom layers a model may use)

    try:
        model = keras.saving.load_model(model_path)
    except (ValueError, OSError) as exc:
        raise ArtifactError(f"{model_path}: cannot load the Keras model: {exc}") from exc
    return Artifact(model, spec, meta)
