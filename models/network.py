"""The sequence model: (L steps x F features, mask) -> one failure logit.

Architectures (chosen by measurement on validation machines: C-MAPSS FD001 engines and
simulated plant fleets, see ``docs/models.md``):

* ``gru``: masked GRU(units) -> Dense(1).
* ``conv-gru``: causal Conv1D(filters, 5) -> masked GRU(units) -> Dense(1).
* ``lstm``: masked LSTM(units) -> Dense(1).
* ``gru-stats``: the masked GRU(units) beside a statistics branch (masked means of each
  feature over the last 5 and 15 steps, least-squares slopes over the last 30 steps and the
  whole window, :class:`models.layers.WindowStats`) -> Dense(units, relu); both
  concatenated -> Dense(1). The slopes estimate slow trends with less noise than a
  recurrence learns from few machines. The default (:data:`DEFAULT_ARCHITECTURE`, with
  dense auxiliary horizons) and the C-MAPSS choice (with L = 100).

Each architecture is a function registered under its name with :func:`architecture`: it
gets the inputs and returns the layers' output before the dropout and the output layer. A new
architecture is one such function here; its name becomes a choice of ``plantwatch train
--architecture`` and of the benchmarks (:data:`ARCHITECTURES`).

Keras 3 API only (no backend-specific ops); Keras is imported on the first model built, so
the names here cost nothing to import. The output layer is float32 so that mixed precision
keeps the logit numerically stable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from models.backend import Model


@dataclass(frozen=True)
class Initializers:
    """The seeded initializers every layer of one model shares."""

    kernel: Any
    recurrent: Any


class Body(Protocol):
    """An architecture: (features (L, F), mask (L,)) -> the layers' output before the head."""

    def __call__(self, x: Any, mask: Any, units: int, init: Initializers, /) -> Any:
        """The output of the architecture's layers on the inputs ``x`` and ``mask``."""


_BODIES: dict[str, Body] = {}


def architecture(name: str) -> Callable[[Body], Body]:
    """Register the decorated function as the architecture ``name``.

    Raises:
        ValueError: another architecture has this name.
    """

    def register(body: Body) -> Body:
        if name in _BODIES:
            raise ValueError(f"architecture {name!r} is registered twice")
        _BODIES[name] = body
        return body

    return register


def _layers() -> Any:
    from models import backend

    return backend.keras().layers


def _gru_layer(h: Any, mask: Any, units: int, init: Initializers) -> Any:
    gru = _layers().GRU(
        units, kernel_initializer=init.kernel, recurrent_initializer=init.recurrent, name="gru"
    )
    return gru(h, mask=mask)


@architecture("gru")
def _gru(x: Any, mask: Any, units: int, init: Initializers) -> Any:
    """Masked GRU(units)."""
    return _gru_layer(x, mask, units, init)


@architecture("conv-gru")
def _conv_gru(x: Any, mask: Any, units: int, init: Initializers) -> Any:
    """Causal Conv1D(units, 5) -> masked GRU(units)."""
    conv = _layers().Conv1D(
        units, 5, padding="causal", activation="relu", kernel_initializer=init.kernel, name="conv"
    )
    return _gru_layer(conv(x), mask, units, init)


@architecture("lstm")
def _lstm(x: Any, mask: Any, units: int, init: Initializers) -> Any:
    """Masked LSTM(units)."""
    lstm = _layers().LSTM(
        units, kernel_initializer=init.kernel, recurrent_initializer=init.recurrent, name="lstm"
    )
    return lstm(x, mask=mask)


@architecture("gru-stats")
def _gru_stats(x: Any, mask: Any, units: int, init: Initializers) -> Any:
    """Masked GRU(units) beside WindowStats -> Dense(units, relu), concatenated."""
    from models.layers import WindowStats

    layers = _layers()
    h = _gru_layer(x, mask, units, init)
    stats = WindowStats(name="window_stats")(x, mask)
    stats = layers.Dense(
        units, activation="relu", kernel_initializer=init.kernel, name="stats_dense"
    )(stats)
    return layers.Concatenate(name="concat")([h, stats])


ARCHITECTURES = tuple(_BODIES)
"""The registered architectures' names: gru, conv-gru, lstm, gru-stats."""
AUX_MODES = ("none", "sparse", "dense")
DEFAULT_ARCHITECTURE = "gru-stats"
DEFAULT_AUX = "dense"
"""`plantwatch train`'s network and auxiliary horizons when none are given: chosen on the
tickets the alert rules open on a second simulated plant fleet, trained with lost readings
(``bench/bench_plant_model.py``; median ticket F1 0.64 against the GRU's 0.55 with 1% of
the readings lost, see ``docs/models.md``)."""


def build_model(
    sequence_length: int,
    n_features: int,
    architecture: str = "gru",
    units: int = 32,
    dropout: float = 0.1,
    seed: int = 0,
    aux_outputs: int = 0,
    name: str | None = None,
) -> Model:
    """Build an uncompiled model with inputs ``features`` (L, F) and ``mask`` (L,).

    Args:
        sequence_length: L.
        n_features: F.
        architecture: one of :data:`ARCHITECTURES`.
        units: recurrent units (and convolution filters).
        dropout: dropout before the output layer.
        seed: seed of the initializers.
        aux_outputs: with K > 0 the model also has an output ``aux`` of K logits (failure
            within other horizons), trained alongside; :func:`serving_model` drops it.
        name: the model's name (default ``plantwatch_<architecture>``); members of an
            ensemble need distinct names.

    Raises:
        ValueError: a bad argument, echoing its value.
    """
    from models import backend

    keras = backend.keras()
    layers = keras.layers

    body = _BODIES.get(architecture)
    if body is None:
        raise ValueError(
            f"architecture must be one of {', '.join(_BODIES)}. "
            f"Received: architecture={architecture!r}"
        )
    for arg, value in (
        ("sequence_length", sequence_length),
        ("n_features", n_features),
        ("units", units),
    ):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{arg} must be a positive integer. Received: {arg}={value!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1). Received: dropout={dropout!r}")
    init = keras.initializers.GlorotUniform(seed=seed)
    rec_init = keras.initializers.Orthogonal(seed=seed + 1)
    x_in = keras.Input((sequence_length, n_features), name="features")
    m_in = keras.Input((sequence_length,), name="mask", dtype="bool")
    h = body(x_in, m_in, units, Initializers(init, rec_init))
    if dropout:
        h = layers.Dropout(dropout, seed=seed + 2, name="dropout")(h)
    logit = layers.Dense(1, kernel_initializer=init, dtype="float32", name="logit")(h)
    inputs = {"features": x_in, "mask": m_in}
    name = name or f"plantwatch_{architecture}"
    if aux_outputs:
        aux = layers.Dense(aux_outputs, kernel_initializer=init, dtype="float32", name="aux")(h)
        return keras.Model(inputs, {"logit": logit, "aux": aux}, name=name)
    return keras.Model(inputs, logit, name=name)


def aux_horizons(horizon_steps: int, mode: str = "sparse") -> tuple[int, ...]:
    """Auxiliary horizons trained alongside H (each one more "fails within h" logit).

    ``sparse``: 1/3, 2/3, 4/3, 5/3 and 5/2 of H. ``dense``: every H/6 up to 25H/6, an
    ordinal encoding of how far the failure is (for H = 30: 5, 10, ..., 125 cycles). Only
    distinct horizons >= 1 step other than H are kept; ``none``: no horizons.

    >>> aux_horizons(30)
    (10, 20, 40, 50, 75)
    >>> dense = aux_horizons(30, "dense")
    >>> dense[:6], dense[-1], len(dense)
    ((5, 10, 15, 20, 25, 35), 125, 24)

    Raises:
        ValueError: an unknown mode.
    """
    if mode not in AUX_MODES:
        raise ValueError(f"aux mode must be one of {', '.join(AUX_MODES)}. Received: {mode!r}")
    fractions = {
        "none": (),
        "sparse": (1 / 3, 2 / 3, 4 / 3, 5 / 3, 5 / 2),
        "dense": tuple(k / 6 for k in range(1, 26)),
    }[mode]
    hs = (round(horizon_steps * f) for f in fractions)
    return tuple(sorted({h for h in hs if h >= 1 and h != horizon_steps}))


def serving_model(model: Model) -> Model:
    """The single-logit model (sharing weights) of a model trained with auxiliary outputs."""
    from models import backend

    keras = backend.keras()
    if not isinstance(model.output, dict):
        return model
    return keras.Model(model.input, model.output["logit"], name=model.name)
