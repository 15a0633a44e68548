"""Lazy access to Keras and the backend libraries (imported on first use, untyped: Any).

TensorFlow/Keras take seconds to import; the CLI imports them only inside the commands
that train or score, so ``plantwatch --help`` stays instant.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np

#: A Keras model (Keras ships no type information).
Model = Any


def keras() -> Any:
    """The ``keras`` module."""
    return importlib.import_module("keras")


def optional(name: str) -> Any:
    """A backend library by name (``tensorflow``, ``jax``, ``torch``)."""
    return importlib.import_module(name)


DEVICES = ("auto", "cpu", "gpu")

ALIGN = 64
"""Bytes of alignment TensorFlow needs to use a host array's memory as a tensor's."""


def aligned_empty(shape: tuple[int, ...], dtype: Any = np.float32) -> Any:
    """An uninitialized C-contiguous array whose data starts on an :data:`ALIGN` boundary."""
    dt = np.dtype(dtype)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
    raw = np.empty(nbytes + ALIGN, np.uint8)
    start = -raw.ctypes.data % ALIGN
    return raw[start : start + nbytes].view(dt).reshape(shape)


def host_input(array: Any, device: str) -> Any:
    """``array`` as a model input, without a copy where the backend can take it so.

    TensorFlow on the CPU wraps a C-contiguous float array that starts on an :data:`ALIGN`
    boundary as a tensor over the same memory (DLPack): no ~30 MB copy per call of 1,024
    plant windows. TensorFlow aborts the process on a misaligned one, hence the checks;
    anything else (another backend, a GPU, a misaligned array) is returned as it is and the
    backend copies it. The caller must not change ``array`` until the call returned.
    """
    if (
        device.startswith("cpu")
        and array.dtype == np.float32
        and array.flags.c_contiguous
        and array.ctypes.data % ALIGN == 0
        and keras().backend.backend() == "tensorflow"
    ):
        return optional("tensorflow").experimental.dlpack.from_dlpack(array.__dlpack__())
    return array


def gpu_count() -> int:
    """GPUs the Keras backend can see."""
    name = keras().backend.backend()
    if name == "tensorflow":
        return len(optional("tensorflow").config.list_physical_devices("GPU"))
    if name == "jax":
        jax = optional("jax")
        return sum(1 for d in jax.devices() if d.platform == "gpu")
    if name == "torch":
        return int(optional("torch").cuda.device_count())
    return 0


def select_device(kind: str) -> str:
    """The Keras device name to run on for ``--device auto|cpu|gpu`` (``cpu:0`` or ``gpu:0``).

    With ``cpu`` on the TensorFlow backend, GPUs are also hidden from TensorFlow (call this
    before any model is built or loaded).

    Raises:
        ModelError: ``gpu`` was asked for and the backend sees none, or an unknown kind.
    """
    from models.errors import ModelError

    if kind not in DEVICES:
        raise ModelError(f"--device: value {kind!r} is not valid: expected auto, cpu or gpu")
    gpus = gpu_count()
    if kind == "gpu" and gpus == 0:
        raise ModelError(
            f"--device gpu: the Keras backend ({keras().backend.backend()}) sees no GPU on this "
            "machine: use --device cpu or auto"
        )
    if kind == "cpu" or gpus == 0:
        if gpus and keras().backend.backend() == "tensorflow":
            optional("tensorflow").config.set_visible_devices([], "GPU")
        return "cpu:0"
    return "gpu:0"
