"""Third-party log noise off by default; all of it back with ``--verbose`` (log level debug).

TensorFlow's C++ libraries log while they load, before absl's logging is initialized:
such lines go straight to the process's stderr (file descriptor 2) whatever
``TF_CPP_MIN_LOG_LEVEL`` says (``All log messages before absl::InitializeLog() ...``,
``Could not find cuda drivers ...``). So, unless verbose, the first ``import tensorflow``
runs with descriptor 2 captured, and the captured lines go back to stderr without the
known noise. ``TF_CPP_MIN_LOG_LEVEL`` (3 unless set) quiets TensorFlow's later C++ logs;
the Python loggers of TensorFlow, absl and the Kafka client show errors only. All of it
happens once per process, before TensorFlow is imported.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from types import ModuleType
from typing import Any

#: Lines of TensorFlow's start that say nothing a user acts on (matched at the start).
NOISE = re.compile(
    r"WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|[IW]\d{4} [\d:.]+ +\d+ \S+\.(?:cc|h):\d+\] "  # absl INFO/WARNING lines
    r"|.*oneDNN custom operations are on"
    r"|.*Could not find cuda drivers on your machine"
    r"|.*This TensorFlow binary is optimized to use available CPU instructions"
    r"|To enable the following instructions: .* rebuild TensorFlow"
)
#: Modules whose first import is watched (Keras imports TensorFlow as its backend).
WATCHED = ("tensorflow",)

_installed: list[object] = []


def keep(lines: Sequence[str]) -> list[str]:
    """The lines that are not known start-up noise.

    >>> keep(["WARNING: All log messages before absl::InitializeLog() is called are "
    ...       "written to STDERR", "I0000 00:00:17.1 42 cudart_stub.cc:31] Could not find",
    ...       "Traceback (most recent call last):"])
    ['Traceback (most recent call last):']
    """
    return [line for line in lines if not NOISE.match(line)]


@contextmanager
def filtered_stderr() -> Iterator[None]:
    """Capture file descriptor 2 in the block; write back what :func:`keep` keeps."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable descriptor 2: nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            with suppress(ValueError):  # a closed sys.stderr
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            text = capture.read().decode("utf-8", "replace")
            kept = keep(text.splitlines())
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")
                sys.stderr.flush()


class _QuietLoader(importlib.abc.Loader):
    """Runs the real loader of a watched module with its stderr filtered."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        module: ModuleType | None = self._loader.create_module(spec)
        return module

    def exec_module(self, module: ModuleType) -> None:
        with filtered_stderr():
            self._loader.exec_module(module)

    def __getattr__(self, name: str) -> Any:  # get_resource_reader, is_package, ...
        return getattr(self._loader, name)


class _QuietFinder(importlib.abc.MetaPathFinder):
    """Finds a watched module as usual, then gives it the filtering loader (once)."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in WATCHED:
            return None
        sys.meta_path.remove(self)
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _QuietLoader(spec.loader)
        return spec


def quiet_third_party(verbose: bool) -> None:
    """Turn third-party start-up and client noise off (or, verbose, leave all of it on)."""
    if verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")
        logging.getLogger("kafka").setLevel(logging.INFO)
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    # kafka-python warns of what plantwatch handles and reports itself (a consumer without
    # a group, a broker connect that is retried): its errors only.
    for name in ("kafka", "tensorflow", "absl", "h5py"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if not _installed and not any(name in sys.modules for name in WATCHED):
        finder = _QuietFinder()
        sys.meta_path.insert(0, finder)
        _installed.append(finder)
