"""Counters of the scorer: Prometheus metrics and a periodic log line.

Metric names (all prefixed ``plantwatch_scorer_``):

- ``records_total``: feature records consumed (replayed ones not counted).
- ``predictions_total``: predictions produced.
- ``warming_up_total``: steps not scored because the machine's history is too short.
- ``silent_steps_total``: steps not scored because the machine sent no reading in them
  (down between a failure and its repair, or its messages lost; features.core.silent_steps).
- ``dead_letters_total{reason}``: feature records sent to the scorer's DLQ.
- ``batch_size``: windows per flushed batch (histogram).
- ``model_seconds``: model time (all calls, attribution included) per batch (histogram).
- ``lag``: records behind the end of the assigned partitions, at the last commit or empty poll.
"""

from __future__ import annotations

from collections import Counter as Tally
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_SIZES = (1, 4, 16, 64, 256, 1024, 4096)


@dataclass
class ScorerMetrics:
    """Counters kept in plain numbers (for logs and tests) and in Prometheus."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    records: int = 0
    predictions: int = 0
    warming: int = 0
    silent: int = 0
    duplicates: int = 0
    dead: Tally[str] = field(default_factory=Tally)
    batches: int = 0
    lag: int = 0
    sizes: Tally[int] = field(default_factory=Tally)

    def __post_init__(self) -> None:
        r = self.registry
        self._records = Counter("plantwatch_scorer_records", "Feature records read", registry=r)
        self._preds = Counter("plantwatch_scorer_predictions", "Predictions produced", registry=r)
        self._warm = Counter(
            "plantwatch_scorer_warming_up", "Steps not scored: history too short", registry=r
        )
        self._silent = Counter(
            "plantwatch_scorer_silent_steps", "Steps not scored: no reading in them", registry=r
        )
        self._dead = Counter(
            "plantwatch_scorer_dead_letters", "Records sent to the DLQ", ["reason"], registry=r
        )
        self._size = Histogram(
            "plantwatch_scorer_batch_size", "Windows per batch", buckets=_SIZES, registry=r
        )
        self.model_seconds = Histogram(
            "plantwatch_scorer_model_seconds", "Model seconds per batch", registry=r
        )
        self._lag = Gauge(
            "plantwatch_scorer_lag", "Records not yet read from the assigned partitions", registry=r
        )

    def add(
        self,
        records: int,
        predictions: int,
        warming: int,
        duplicates: int,
        dead: Tally[str],
        silent: int = 0,
    ) -> None:
        """Count one flushed batch."""
        self.records += records
        self.predictions += predictions
        self.warming += warming
        self.silent += silent
        self._silent.inc(silent)
        self.duplicates += duplicates
        self.dead.update(dead)
        self._records.inc(records)
        self._preds.inc(predictions)
        self._warm.inc(warming)
        for reason, n in dead.items():
            self._dead.labels(reason=reason).inc(n)
        if predictions:
            self.batches += 1
            self.sizes[next(b for b in (*_SIZES, 1 << 62) if predictions <= b)] += 1
            self._size.observe(predictions)

    def set_lag(self, lag: int) -> None:
        """Record the current lag."""
        self.lag = lag
        self._lag.set(lag)

    def line(self, rate: float, device: str, calls: int, call_s: float) -> str:
        """One progress line.

        >>> m = ScorerMetrics()
        >>> m.add(10, 7, 2, 0, Tally(), silent=1)
        >>> m.line(5.0, "cpu:0", 1, 0.004)
        'score: records=10 predictions=7 warming_up=2 silent=1 duplicates=0 dead_letters=0 () \
batches=1 mean_batch=7.0 sizes={<=16:1} device=cpu:0 model_calls=1 model_ms=4.0 lag=0 rate=5/s'
        """
        reasons = ",".join(f"{k}={v}" for k, v in sorted(self.dead.items()))
        sizes = ",".join(f"<={b}:{n}" for b, n in sorted(self.sizes.items()))
        mean = self.predictions / self.batches if self.batches else 0.0
        model_ms = 1000 * call_s / calls if calls else 0.0
        return (
            f"score: records={self.records} predictions={self.predictions} "
            f"warming_up={self.warming} silent={self.silent} duplicates={self.duplicates} "
            f"dead_letters={sum(self.dead.values())} ({reasons}) batches={self.batches} "
            f"mean_batch={mean:.1f} sizes={{{sizes}}} device={device} model_calls={calls} "
            f"model_ms={model_ms:.1f} lag={self.lag} rate={rate:.0f}/s"
        )
