"""Counters of the ingest stage: Prometheus metrics and a periodic log line.

Metric names (all prefixed ``plantwatch_ingest_``):

- ``messages_total``: Kafka records consumed from the telemetry topic.
- ``samples_total``: valid samples handed on (a batch message carries several).
- ``dead_letters_total{reason}``: records sent to the DLQ, by reason code.
- ``duplicates_total``: samples dropped as re-deliveries.
- ``lag``: records behind the end of the assigned partitions, after the last poll.
- ``batch_seconds``: time to process and durably finish one polled batch.
"""

from __future__ import annotations

from collections import Counter as Tally
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class IngestMetrics:
    """Counters kept in plain integers (for logs and tests) and in Prometheus."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    consumed: int = 0
    valid: int = 0
    duplicates: int = 0
    dead: Tally[str] = field(default_factory=Tally)
    lag: int = 0

    def __post_init__(self) -> None:
        r = self.registry
        self._consumed = Counter("plantwatch_ingest_messages", "Records consumed", registry=r)
        self._valid = Counter("plantwatch_ingest_samples", "Valid samples handed on", registry=r)
        self._dup = Counter("plantwatch_ingest_duplicates", "Duplicate samples dropped", registry=r)
        self._dead = Counter(
            "plantwatch_ingest_dead_letters", "Records sent to the DLQ", ["reason"], registry=r
        )
        self._lag = Gauge(
            "plantwatch_ingest_lag", "Records not yet read from the assigned partitions", registry=r
        )
        self.batch_seconds = Histogram(
            "plantwatch_ingest_batch_seconds", "Seconds per polled batch", registry=r
        )

    def add(self, consumed: int, valid: int, duplicates: int, dead: Tally[str]) -> None:
        """Count one processed batch."""
        self.consumed += consumed
        self.valid += valid
        self.duplicates += duplicates
        self.dead.update(dead)
        self._consumed.inc(consumed)
        self._valid.inc(valid)
        self._dup.inc(duplicates)
        for reason, n in dead.items():
            self._dead.labels(reason=reason).inc(n)

    def set_lag(self, lag: int) -> None:
        """Record the current lag."""
        self.lag = lag
        self._lag.set(lag)

    def line(self, rate: float) -> str:
        """One log line with every counter.

        >>> m = IngestMetrics()
        >>> m.add(5, 3, 1, Tally({"not_json": 1}))
        >>> m.line(2.5)
        'ingest: consumed=5 valid=3 duplicates=1 dead_letters=1 (not_json=1) lag=0 rate=2/s'
        """
        reasons = ",".join(f"{k}={v}" for k, v in sorted(self.dead.items()))
        dead = sum(self.dead.values())
        return (
            f"ingest: consumed={self.consumed} valid={self.valid} duplicates={self.duplicates} "
            f"dead_letters={dead} ({reasons or 'none'}) lag={self.lag} rate={rate:.0f}/s"
        )
