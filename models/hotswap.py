"""Model hot swap: a background thread loads new artifacts; the scorer swaps between batches.

The watched source is either the models directory (the newest complete artifact by its
``created_at``, then directory name) or one fixed path (e.g. a symlink ``current -> v2``
that is flipped). It is checked every ``poll_s`` seconds and at once on
:meth:`ModelWatcher.wake` (SIGHUP). A version different from the served one is loaded,
checked against the feature rules and warmed up (:func:`models.servable.load_servable`)
off the scoring thread; the scorer picks it up with :meth:`ModelWatcher.take`. A version
that fails is logged once and remembered, so it is not retried in a loop (any change to
its files makes a new version, which is tried).
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path

from models.errors import ArtifactError, ModelError
from models.registry import artifact_version
from models.servable import Servable

log = logging.getLogger("plantwatch.score")


def newest_artifact(models_dir: Path) -> Path | None:
    """The newest complete artifact under ``models_dir`` (by ``created_at``, then name)."""
    if not models_dir.is_dir():
        return None
    found: list[tuple[str, str, Path]] = []
    for child in models_dir.iterdir():
        spec = child / "spec.json"
        if not (spec.is_file() and (child / "model.keras").is_file()):
            continue
        try:
            created = str(json.loads(spec.read_text()).get("created_at", ""))
        except (OSError, ValueError, AttributeError):
            created = ""
        found.append((created, child.name, child))
    return max(found)[2] if found else None


class ModelWatcher:
    """Finds, loads and warms up new model versions in a background thread.

    Args:
        load: loads, checks and warms up an artifact directory (raises ``ModelError``).
        source: the models directory (``directory=True``) or a fixed artifact path.
        directory: whether ``source`` is a models directory.
        current: the served version.
        poll_s: seconds between checks.
    """

    def __init__(
        self,
        load: Callable[[Path], Servable],
        source: Path,
        directory: bool,
        current: str,
        poll_s: float = 5.0,
    ) -> None:
        self._load = load
        self.source = source
        self.directory = directory
        self.current = current
        self.poll_s = poll_s
        self.refused: dict[str, str] = {}
        self._ready: Servable | None = None
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="model-watcher", daemon=True)

    def start(self) -> None:
        """Start watching."""
        self._thread.start()

    def stop(self) -> None:
        """Stop watching (waits for a load in progress)."""
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=60)

    def wake(self) -> None:
        """Check now (safe to call from a signal handler)."""
        self._wake.set()

    def take(self) -> Servable | None:
        """A loaded and warmed-up new model, once; None when there is none."""
        with self._lock:
            ready, self._ready = self._ready, None
        if ready is not None:
            self.current = ready.version
        return ready

    def candidate(self) -> tuple[str, Path] | None:
        """The version and path the source offers now (None: nothing complete there)."""
        path = newest_artifact(self.source) if self.directory else self.source
        if path is None:
            return None
        try:
            return artifact_version(path), path
        except ArtifactError:
            return None

    def check(self) -> None:
        """One check: load the offered version if it is new and not refused before."""
        found = self.candidate()
        if found is None:
            return
        version, path = found
        with self._lock:
            pending = self._ready.version if self._ready is not None else None
        if version in (self.current, pending) or version in self.refused:
            return
        log.info("score: found model %s at %s; loading and warming up", version, path)
        try:
            servable = self._load(path)
        except Exception as exc:  # whatever breaks a load, the old one serves
            self.refused[version] = str(exc) if isinstance(exc, ModelError) else repr(exc)
            log.error("score: refused model %s (%s); still serving %s", version, exc, self.current)
            return
        with self._lock:
            self._ready = servable

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.check()
            except Exception:  # a watcher bug must not kill scoring; it is logged
                log.exception("score: model check failed")
            self._wake.wait(self.poll_s)
            self._wake.clear()
