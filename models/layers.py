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
        """(batch, L, F) features and (batch, L) mask -> (batch, F x spans) statistics.

        Every statistic is a weighted sum over the steps with weights that depend on the
        mask only (a mean: 1/n on the span's real steps; a slope: the centred time over
        the sum of its squares), so the weights (batch, spans, L) are built from the mask
        and applied to all features in one batched matrix product, instead of one pass
        over the (batch, L, F) features per statistic.
        """
        length = x.shape[1]
        x = ops.cast(x, "float32")
        m = ops.cast(mask, "float32")
        t = ops.cast(ops.arange(length), "float32")
        weights = []
        for k in self.mean_spans:
            in_span = m * ops.cast(t >= length - min(k, length), "float32")
            n = ops.maximum(ops.sum(in_span, axis=1, keepdims=True), 1.0)
            weights.append(in_span / n)
        for k in self.slope_spans:
            k = length if k == 0 else min(k, length)
            in_span = m * ops.cast(t >= length - k, "float32")
            n = ops.maximum(ops.sum(in_span, axis=1, keepdims=True), 1.0)
            dt = (t - ops.sum(t * in_span, axis=1, keepdims=True) / n) * in_span
            den = ops.sum(dt * dt, axis=1, keepdims=True)
            # sum(dt * x) / den is the least-squares slope, since sum(dt) = 0 on the span
            weights.append(ops.where(den > 1e-6, dt / ops.maximum(den, 1e-6), 0.0) * float(k))
        stats = ops.matmul(ops.stack(weights, axis=1), x)  # (batch, spans, F)
        return ops.reshape(stats, (-1, stats.shape[1] * stats.shape[2]))

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
