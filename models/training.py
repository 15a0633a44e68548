"""The training core, shared by ``plantwatch train`` and ``plantwatch fine-tune``.

Binary cross-entropy on logits (numerically stable), class weights from the label
frequency, AdamW (decoupled weight decay: ``theta <- theta - lr*step - lr*wd*theta``),
gradient clipping by norm, early stopping on validation PR-AUC (ties broken by the lower
validation loss) restoring the best weights, seeds, Keras's per-epoch progress bar. On a
GPU it is used automatically with mixed precision and compiled (XLA) steps; the device,
the precision and whether steps are compiled are logged (:func:`compiled_steps`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np
from numpy.typing import NDArray

from models import backend
from models.backend import Model
from models.errors import DataError

if TYPE_CHECKING:
    from models.windows import Windows

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run.

    Attributes:
        epochs: most epochs.
        batch_size: windows per step.
        learning_rate: AdamW learning rate.
        weight_decay: decoupled weight decay lambda.
        clipnorm: each variable's gradient is clipped to this norm.
        patience: epochs without a better validation PR-AUC before stopping.
        class_weight: weight the rare positive class by the label frequency.
        schedule: ``cosine`` decays the learning rate to 0 over ``epochs``; ``constant``.
        seed: seed of Python, numpy and the backend.
        verbose: 1 shows a progress bar per epoch, 0 is silent.
    """

    epochs: int = 40
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    clipnorm: float = 1.0
    patience: int = 10
    class_weight: bool = True
    schedule: str = "cosine"
    seed: int = 0
    verbose: int = 1

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "patience"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer. Received: {name}={value!r}")
        for name in ("learning_rate", "clipnorm"):
            value = getattr(self, name)
            if not value > 0:
                raise ValueError(f"{name} must be > 0. Received: {name}={value!r}")
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(
                f"schedule must be 'cosine' or 'constant'. Received: schedule={self.schedule!r}"
            )
        if self.weight_decay < 0:
            raise ValueError(
                f"weight_decay must be >= 0. Received: weight_decay={self.weight_decay!r}"
            )


@dataclass
class TrainResult:
    """What a run did: per-epoch history, the best epoch, device, precision, seconds."""

    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int = -1
    device: str = "cpu"
    precision: str = "float32"
    seconds: float = 0.0


def setup_device(seed: int) -> tuple[str, str]:
    """Seed everything and pick device and precision (mixed_float16 only on a GPU)."""
    keras = backend.keras()

    keras.utils.set_random_seed(seed)
    device = "cpu"
    if keras.backend.backend() == "tensorflow":
        tf = backend.optional("tensorflow")

        if tf.config.list_physical_devices("GPU"):
            device = "gpu"
    elif keras.backend.backend() == "jax":
        jax = backend.optional("jax")

        device = jax.default_backend()
    elif keras.backend.backend() == "torch":
        torch = backend.optional("torch")

        device = "gpu" if torch.cuda.is_available() else "cpu"
    precision = "mixed_float16" if device == "gpu" else "float32"
    keras.mixed_precision.set_global_policy(precision)
    log.info(
        "training on %s (backend %s), precision %s, compiled steps %s",
        device,
        keras.backend.backend(),
        precision,
        "yes" if compiled_steps(device) else "no",
    )
    return device, precision


def make_optimizer(
    config: TrainConfig, learning_rate: float | None = None, steps: int | None = None
) -> Any:
    """AdamW with decoupled weight decay and gradient clipping.

    With the ``cosine`` schedule and ``steps`` (all training steps of the run), the rate
    decays from its start value to 0 along a cosine.
    """
    keras = backend.keras()

    rate: Any = learning_rate or config.learning_rate
    if config.schedule == "cosine" and steps:
        rate = keras.optimizers.schedules.CosineDecay(rate, decay_steps=steps)
    return keras.optimizers.AdamW(
        learning_rate=rate,
        weight_decay=config.weight_decay,
        clipnorm=config.clipnorm,
    )


def compiled_steps(device: str) -> bool:
    """Whether training and prediction steps are compiled (XLA) on ``device``.

    On a GPU, yes. On a CPU only with the jax backend, which without ``jax.jit`` runs a
    step op by op (a short training run timed out at 300 s that way); TensorFlow on a CPU
    runs its graph faster without XLA here, and only then does a window score
    bit-identically alone and in any batch (docs/models.md, Scorer).
    """
    return device == "gpu" or backend.keras().backend.backend() == "jax"


def compile_model(model: Model, optimizer: Any, device: str, aux_weight: float = 0.5) -> None:
    """Compile with BCE on logits (auxiliary outputs weighted); see :func:`compiled_steps`."""
    keras = backend.keras()

    bce = keras.losses.BinaryCrossentropy(from_logits=True)
    jit = compiled_steps(device)
    if isinstance(model.output, dict):
        model.compile(
            optimizer=optimizer,
            loss={"logit": bce, "aux": keras.losses.BinaryCrossentropy(from_logits=True)},
            loss_weights={"logit": 1.0, "aux": aux_weight},
            jit_compile=jit,
        )
    else:
        model.compile(optimizer=optimizer, loss=bce, jit_compile=jit)


def bce_from_logits(y: NDArray[np.float32], logits: NDArray[np.float32]) -> float:
    """Mean binary cross-entropy on logits, numerically stable (numpy).

    >>> round(bce_from_logits(np.array([1.0, 0.0]), np.array([1000.0, -1000.0])), 6)
    0.0
    """
    z = logits.astype(np.float64)
    return float(np.mean(np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))))


def class_weights(y: NDArray[np.float32]) -> dict[int, float]:
    """Balanced class weights ``n / (2 * n_c)``.

    >>> class_weights(np.array([0, 0, 0, 1], dtype=np.float32))
    {0: 0.6666666666666666, 1: 2.0}
    """
    n, pos = len(y), float(np.sum(y))
    if pos == 0 or pos == n:
        return {0: 1.0, 1: 1.0}
    return {0: n / (2 * (n - pos)), 1: n / (2 * pos)}


def predict_logits(model: Model, windows: Windows, batch_size: int = 2048) -> NDArray[np.float32]:
    """Logits of the windows, (N,).

    Batch by batch with ``predict_on_batch`` (the batches ``predict`` would make, the same
    numbers), each batch's (n, L, F) input gathered from the step features into one
    reused array. ``model.predict`` builds a dataset per call: on 2 cores, 119k plant
    windows scored at 9.9k/s that way and at 17.5k/s batch by batch (bit-identical).
    """
    if len(windows) == 0:
        return np.zeros(0, dtype=np.float32)
    buffer = np.empty(
        (min(batch_size, len(windows)), windows.length, windows.n_features),
        dtype=windows.steps.dtype,
    )
    parts = []
    for start in range(0, len(windows), batch_size):
        n = min(batch_size, len(windows) - start)
        out = model.predict_on_batch(windows.inputs(slice(start, start + n), out=buffer[:n]))
        if isinstance(out, dict):
            out = out["logit"]
        parts.append(np.asarray(out, dtype=np.float32).reshape(-1))
    return np.concatenate(parts)


def _batches(
    windows: Windows, weights: dict[int, float], batch_size: int, seed: int, aux: bool
) -> Any:
    """The training windows as shuffled batches ``(inputs, targets, sample weights)``.

    Each batch's (B, L, F) input is gathered from the step features when Keras asks for
    it, so training holds the steps, not every window (a Keras ``PyDataset``, which any
    backend reads). The order is a seeded permutation, drawn anew after every epoch.
    """
    keras = backend.keras()
    base: Any = keras.utils.PyDataset
    y = windows.y
    sample_weight = np.where(y > 0.5, weights[1], weights[0]).astype(np.float32)

    class _Batches(base):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.rng = np.random.default_rng(seed)
            self.order = self.rng.permutation(len(windows))

        def __len__(self) -> int:
            return -(-len(windows) // batch_size)

        def __getitem__(self, i: int) -> tuple[Any, Any, Any]:
            # sorted within the batch: the same batch, gathered from nearby rows
            rows = np.sort(self.order[i * batch_size : (i + 1) * batch_size])
            targets: Any = y[rows]
            if aux:
                targets = {"logit": targets, "aux": cast(Any, windows.aux)[rows]}
            return windows.inputs(rows), targets, sample_weight[rows]

        def on_epoch_end(self) -> None:
            self.order = self.rng.permutation(len(windows))

    return _Batches()


def _make_callback(model: Model, val: Windows, patience: int, result: TrainResult) -> Any:
    keras = backend.keras()
    from sklearn.metrics import average_precision_score

    base: Any = keras.callbacks.Callback

    class _PrAucStopping(base):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.best: tuple[float, float] = (-np.inf, -np.inf)
            self.best_weights: list[Any] | None = None
            self.wait = 0

        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            logits = predict_logits(model, val)
            both = len(np.unique(val.y)) == 2
            pr_auc = float(average_precision_score(val.y, logits)) if both else 0.0
            loss = bce_from_logits(val.y, logits)
            row = {
                "epoch": float(epoch + 1),
                "loss": float((logs or {}).get("loss", np.nan)),
                "val_loss": loss,
                "val_pr_auc": pr_auc,
            }
            result.history.append(row)
            if (round(pr_auc, 4), -loss) > self.best:
                self.best = (round(pr_auc, 4), -loss)
                self.best_weights = model.get_weights()
                result.best_epoch = epoch + 1
                self.wait = 0
            else:
                self.wait += 1
                if self.wait >= patience:
                    model.stop_training = True

        def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
            if self.best_weights is not None:
                model.set_weights(self.best_weights)

    return _PrAucStopping()


def _make_history(result: TrainResult) -> Any:
    """Records each epoch's training loss; the last epoch is the result's best."""
    base: Any = backend.keras().callbacks.Callback

    class _History(base):  # type: ignore[misc]
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            loss = float((logs or {}).get("loss", np.nan))
            result.history.append({"epoch": float(epoch + 1), "loss": loss})
            result.best_epoch = epoch + 1

    return _History()


def train(
    model: Model,
    train_windows: Windows,
    val_windows: Windows | None,
    config: TrainConfig,
    learning_rate: float | None = None,
    device: tuple[str, str] | None = None,
) -> TrainResult:
    """Fit ``model`` (train and fine-tune share this), early-stopped on validation PR-AUC.

    Args:
        model: a model from :func:`models.network.build_model` (or a loaded one).
        train_windows: labelled training windows.
        val_windows: labelled validation windows of other machines. With one class only
            (e.g. fine-tuning on a single confirmed failure) the validation loss decides.
            None: no early stopping; all ``config.epochs`` are trained and the last
            weights kept (a refit for an epoch count chosen on validation earlier).
        config: hyper-parameters.
        learning_rate: overrides ``config.learning_rate`` (fine-tuning uses a lower one).
        device: ``(device, precision)`` from :func:`setup_device` when already called
            (before the model was built); otherwise it is called here.

    Returns:
        The history, best epoch, device, precision and wall seconds; ``model`` holds the
        best weights.
    """
    if len(train_windows) == 0:
        raise DataError("no labelled training windows")
    if val_windows is not None and len(val_windows) == 0:
        raise DataError("no labelled validation windows")
    dev, precision = device or setup_device(config.seed)
    result = TrainResult(device=dev, precision=precision)
    steps = -(-len(train_windows) // config.batch_size) * config.epochs
    compile_model(model, make_optimizer(config, learning_rate, steps), dev)
    weights = class_weights(train_windows.y) if config.class_weight else {0: 1.0, 1: 1.0}
    if isinstance(model.output, dict) and train_windows.aux is None:
        raise DataError("the model has auxiliary outputs but the windows have no aux labels")
    batches = _batches(
        train_windows, weights, config.batch_size, config.seed, isinstance(model.output, dict)
    )
    start = time.perf_counter()
    if val_windows is None:
        callback: Any = _make_history(result)
    else:
        callback = _make_callback(model, val_windows, config.patience, result)
    model.fit(batches, epochs=config.epochs, callbacks=[callback], verbose=config.verbose)
    result.seconds = time.perf_counter() - start
    log.info(
        "trained %d epochs in %.1fs, best epoch %d",
        len(result.history),
        result.seconds,
        result.best_epoch,
    )
    return result
