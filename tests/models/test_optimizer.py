"""The decoupled weight-decay step, checked against numpy by hand."""

from __future__ import annotations

import numpy as np
import pytest


def _tiny_model():  # type: ignore[no-untyped-def]
    import keras

    keras.mixed_precision.set_global_policy("float32")
    model = keras.Sequential(
        [
            keras.Input((3,)),
            keras.layers.Dense(
                1,
                kernel_initializer=keras.initializers.Constant([[0.5], [-0.25], [1.0]]),
                bias_initializer=keras.initializers.Constant(0.1),
            ),
        ]
    )
    return model


X = np.array([[1.0, 2.0, -1.0], [0.5, -1.0, 2.0], [-1.5, 0.0, 1.0], [2.0, 1.0, 0.0]], np.float32)
Y = np.array([[1.0], [0.0], [1.0], [0.0]], np.float32)


def _numpy_grads(w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    z = X.astype(np.float64) @ w + b
    p = 1 / (1 + np.exp(-z))
    dz = (p - Y) / len(X)  # mean BCE on logits
    return X.T @ dz, dz.sum(axis=0)


def _one_step(optimizer):  # type: ignore[no-untyped-def]
    import keras

    model = _tiny_model()
    model.compile(optimizer=optimizer, loss=keras.losses.BinaryCrossentropy(from_logits=True))
    model.train_on_batch(X, Y)
    w, b = model.get_weights()
    return w.astype(np.float64), b.astype(np.float64)


def test_sgd_weight_decay_step_matches_numpy() -> None:
    import keras

    lr, wd = 0.1, 0.05
    w, b = _one_step(keras.optimizers.SGD(learning_rate=lr, weight_decay=wd))
    w0, b0 = np.array([[0.5], [-0.25], [1.0]]), np.array([0.1])
    gw, gb = _numpy_grads(w0, b0)
    np.testing.assert_allclose(w, w0 - lr * gw - lr * wd * w0, atol=1e-6)
    np.testing.assert_allclose(b, b0 - lr * gb - lr * wd * b0, atol=1e-6)


def test_adamw_first_step_matches_numpy() -> None:
    import keras

    lr, wd, eps = 0.01, 0.1, 1e-7
    w, b = _one_step(keras.optimizers.AdamW(learning_rate=lr, weight_decay=wd, epsilon=eps))
    w0, b0 = np.array([[0.5], [-0.25], [1.0]]), np.array([0.1])
    gw, gb = _numpy_grads(w0, b0)
    for got, theta, g in ((w, w0, gw), (b, b0, gb)):
        # first Adam step, bias-corrected: m_hat = g, v_hat = g^2
        m = 0.1 * g
        v = 0.001 * g * g
        alpha = lr * np.sqrt(1 - 0.999) / (1 - 0.9)
        expected = theta - lr * wd * theta - alpha * m / (np.sqrt(v) + eps)
        np.testing.assert_allclose(got, expected, atol=1e-6)


def test_training_core_uses_decoupled_weight_decay_and_clipping() -> None:
    from models.training import TrainConfig, make_optimizer

    opt = make_optimizer(TrainConfig(weight_decay=0.01, clipnorm=0.5))
    assert type(opt).__name__ == "AdamW"
    assert opt.weight_decay == pytest.approx(0.01)
    assert opt.clipnorm == pytest.approx(0.5)
