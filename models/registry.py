"""Model versions and the models directory, without loading Keras.

A model's version is ``m-`` plus the first 12 hex digits of the sha256 of its artifact
files (``spec.json`` then ``model.keras``): the same artifact has the same version
wherever it is copied, and any change to weights or spec makes a new one. The models
directory (setting ``models_dir``) holds one artifact per sub-directory; the scorer
serves the newest valid one, and the alerting stage knows every version in it.

>>> import tempfile, pathlib
>>> root = pathlib.Path(tempfile.mkdtemp())
>>> (root / "a").mkdir()
>>> _ = (root / "a" / "spec.json").write_text("{}")
>>> _ = (root / "a" / "model.keras").write_bytes(b"w")
>>> version = artifact_version(root / "a")
>>> version.startswith("m-"), len(version)
(True, 14)
>>> versions_in(root) == {version: root / "a"}
True
>>> versions_in(root / "missing")
{}
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from models.errors import ArtifactError

_FILES = ("spec.json", "model.keras")


def artifact_version(path: str | Path) -> str:
    """The content version of the artifact in directory ``path``.

    Raises:
        ArtifactError: a file of the artifact is missing or unreadable.
    """
    path = Path(path)
    digest = hashlib.sha256()
    for name in _FILES:
        try:
            with (path / name).open("rb") as handle:
                for chunk in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(chunk)
        except OSError as exc:
            raise ArtifactError(
                f"{path}: not a model artifact: cannot read {name}: {exc}"
            ) from None
    return "m-" + digest.hexdigest()[:12]


def versions_in(models_dir: str | Path) -> dict[str, Path]:
    """``{version: directory}`` of every complete artifact under ``models_dir`` (none: {})."""
    root = Path(models_dir)
    if not root.is_dir():
        return {}
    found: dict[str, Path] = {}
    for child in sorted(root.iterdir()):
        if child.is_dir() and all((child / name).is_file() for name in _FILES):
            try:
                found[artifact_version(child)] = child
            except ArtifactError:
                continue
    return found
