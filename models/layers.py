"""Custom Keras layers of the sequence model (imported lazily: it imports Keras).

Registered as serializable under the ``plantwatch`` package, so a saved ``model.keras``
loads once this module is imported (``models.artifact`` does that before loading).
"""

from __future__ import annotations

from typing import Any

import keras  # type: ignore[import-untyped]
from keras import ops

MEAN_SPANS = (5, 15)
SLOPE_SPANS = (30, 0)


@keras.saving.register_keras_serializable(package="plantwatch")
class WindowStats(keras.layers.Layer):  # type: ignore[misc]
    """Masked statistics of each feature over the window's last steps.

    For every feature: the mean over the last ``k`` real steps for each ``k`` in
    ``mean_spans``, and the least-squares slope over the last ``k`` steps for each ``k`` in
    ``slope_spans`` (0 = the whole window), given as the fitted change over ``k`` steps so
    that it has the scale of the features. Padded steps (mask False) are left out; a span
    with fewer than two real steps has slope 0. Output: (batch, F x (means + slopes)).
    Keras ops only, so it runs on any backend; no trainable weights. It computes in float32
    whatever the dtype policy: under mixed precision the sum of squared times over a
    100-step window (83,325) would overflow float16.
    """

    def __init__(
        self,
        mean_spans: tuple[int, ...] = MEAN_SPANS,
        slope_spans: tuple[int, ...] = SLOPE_SPANS,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.mean_spans = tuple(int(k) for k in mean_spans)
        self.slope_spans = tuple(int(k) for k in slope_spans)
        if any(k < 1 for k in self.mean_spans) or any(k < 0 for k in self.slope_spans):
            raise ValueError(
                f"spans must be positive (0 = whole window for slopes). Received: "
                f"mean_spans={self.mean_spans}, slope_spans={self.slope_spans}"
            )

    def call(self, x: Any, mask: Any) -> Any:
        """(batch, L, F) features and (batch, L) mask -> (batch, F x spans) statistics."""
        length = x.shape[1]
        x = ops.cast(x, "float32")
        m = ops.expand_dims(ops.cast(mask, x.dtype), -1)
        parts = []
        for k in self.mean_spans:
            k = min(k, length)
            xs, ms = x[:, -k:, :], m[:, -k:, :]
            n = ops.maximum(ops.sum(ms, axis=1), 1.0)
            parts.append(ops.sum(xs * ms, axis=1) / n)
        for k in self.slope_spans:
            k = length if k == 0 else min(k, length)
            xs, ms = x[:, -k:, :], m[:, -k:, :]
            t = ops.reshape(ops.cast(ops.arange(k), x.dtype), (1, k, 1))
            n = ops.maximum(ops.sum(ms, axis=1, keepdims=True), 1.0)
            dt = (t - ops.sum(t * ms, axis=1, keepdims=True) / n) * ms
            dx = (xs - ops.sum(xs * ms, axis=1, keepdims=True) / n) * ms
            den = ops.sum(dt * dt, axis=1)
            slope = ops.sum(dt * dx, axis=1) / ops.maximum(den, 1e-6)
            parts.append(ops.where(den > 1e-6, slope, 0.0) * float(k))
        return ops.concatenate(parts, axis=-1)

    def compute_output_shape(self, input_shape: tuple[int | None, ...]) -> tuple[int | None, ...]:
        """(batch, F x (mean spans + slope spans))."""
        spans = len(self.mean_spans) + len(self.slope_spans)
        features = input_shape[-1]
        return (input_shape[0], None if features is None else features * spans)

    def get_config(self) -> dict[str, Any]:
        """The spans, for saving and loading."""
        config: dict[str, Any] = super().get_config()
        config.update(mean_spans=list(self.mean_spans), slope_spans=list(self.slope_spans))
        return config
