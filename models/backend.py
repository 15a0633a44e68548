"""Lazy access to Keras and the backend libraries (imported on first use, untyped: Any).

TensorFlow/Keras take seconds to import; the CLI imports them only inside the commands
that train or score, so ``plantwatch --help`` stays instant.
"""

from __future__ import annotations

import importlib
from typing import Any

#: A Keras model (Keras ships no type information).
Model = Any


def keras() -> Any:
    """The ``keras`` module."""
    return importlib.import_module("keras")


def optional(name: str) -> Any:
    """A backend library by name (``tensorflow``, ``jax``, ``torch``)."""
    return importlib.import_module(name)
