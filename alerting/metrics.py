"""Counters of the alerting stage: Prometheus metrics and a periodic log line.

Metric names (all prefixed ``plantwatch_alerting_``):

- ``predictions_total``: prediction records consumed (replayed ones included).
- ``points_total``: points acknowledged by InfluxDB (failure_risk + alerts).
- ``dead_letters_total{reason}``: records sent to the DLQ, by reason.
- ``events_total{kind}``: alert events (transition, repeat, flapping, nodata, ...).
- ``tickets_total``: tickets opened.
- ``influx_retries_total``: failed InfluxDB writes that were retried.
- ``batch_seconds``: time to process and durably finish one polled batch.
- ``lag``: records not yet read from the assigned partitions, after the last poll.
"""

from __future__ import annotations

from collections import Counter as Tally
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass
class AlertMetrics:
    """Counters kept in plain integers (for logs and tests) and in Prometheus."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)
    consumed: int = 0
    skipped: int = 0
    points: int = 0
    tickets: int = 0
    retries: int = 0
    lag: int = 0
    dead: Tally[str] = field(default_factory=Tally)
    events: Tally[str] = field(default_factory=Tally)

    def __post_init__(self) -> None:
        r = self.registry
        p = "plantwatch_alerting_"
        self._consumed = Counter(p + "predictions", "Prediction records consumed", registry=r)
        self._points = Counter(p + "points", "Points acknowledged by InfluxDB", registry=r)
        self._tickets = Counter(p + "tickets", "Tickets opened", registry=r)
        self._retries = Counter(p + "influx_retries", "Retried InfluxDB writes", registry=r)
        self._dead = Counter(p + "dead_letters", "Records sent to the DLQ", ["reason"], registry=r)
        self._events = Counter(p + "events", "Alert events", ["kind"], registry=r)
        self.batch_seconds = Histogram(p + "batch_seconds", "Seconds per polled batch", registry=r)
        self._lag = Gauge(
            p + "lag", "Records not yet read from the assigned partitions", registry=r
        )

    def add(
        self, consumed: int, points: int, tickets: int, dead: Tally[str], events: Tally[str]
    ) -> None:
        """Count one processed batch."""
        self.consumed += consumed
        self.points += points
        self.tickets += tickets
        self.dead.update(dead)
        self.events.update(events)
        self._consumed.inc(consumed)
        self._points.inc(points)
        self._tickets.inc(tickets)
        for reason, n in dead.items():
            self._dead.labels(reason=reason).inc(n)
        for kind, n in events.items():
            self._events.labels(kind=kind).inc(n)

    def retried(self) -> None:
        """Count one failed, to-be-retried InfluxDB write."""
        self.retries += 1
        self._retries.inc()

    def set_lag(self, lag: int) -> None:
        """Record the current lag."""
        self.lag = lag
        self._lag.set(lag)

    def line(self, rate: float) -> str:
        """One log line with every counter.

        >>> m = AlertMetrics()
        >>> m.add(5, 6, 1, Tally({"bad_record": 1}), Tally({"transition": 1}))
        >>> m.line(2.5)
        'alert: consumed=5 points=6 events=1 (transition=1) tickets=1 dead_letters=1 lag=0 rate=2/s'
        """
        kinds = ",".join(f"{k}={v}" for k, v in sorted(self.events.items()))
        return (
            f"alert: consumed={self.consumed} points={self.points} "
            f"events={sum(self.events.values())} ({kinds or 'none'}) tickets={self.tickets} "
            f"dead_letters={sum(self.dead.values())} lag={self.lag} rate={rate:.0f}/s"
        )
