"""Waiting out an outage of a stage's output with its input paused (ingest, alerting).

When a write that must be durable before the offsets commit fails for a reason that
passes (InfluxDB down or slow), the stage neither drops the batch nor crashes: it pauses
its partitions, retries with a growing delay, and keeps polling (returning nothing) so
that it stays in its consumer group. Paused partitions are not fetched, so the consumer
learns no new partition ends; the lag gauge is then set from the ends asked of the
broker after each wait (:func:`broker_lag`), so it shows the backlog that builds up.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from plantwatch.idle import kafka_probe

FIRST_DELAY_S = 0.5
POLL_MS = 200


def broker_lag(consumer: Any, timeout_s: float = 5.0) -> int | None:
    """Records still to read from the assigned partitions, by the broker's end offsets.

    What :func:`plantwatch.idle.kafka_probe` finds (a transaction's trailing commit marker
    is not a record to read); None when the broker does not answer within ``timeout_s``.
    """
    state = kafka_probe(consumer, timeout_s)()
    return None if state.left is None else sum(state.left.values())


def retry_paused(
    consumer: Any,
    attempt: Callable[[], object],
    transient: type[Exception],
    backoff_max_s: float,
    log: logging.Logger,
    stage: str,
    back: str,
    set_lag: Callable[[int], object],
    on_retry: Callable[[], object] = lambda: None,
) -> None:
    """Call ``attempt`` until it does not raise ``transient``, the input paused meanwhile.

    Waits 0.5 s, then twice as long each time up to ``backoff_max_s``; after each wait
    ``set_lag`` gets :func:`broker_lag`. Log lines start with ``stage``; ``back`` is
    logged when the input resumes (e.g. "InfluxDB is back").
    """
    delay, paused = FIRST_DELAY_S, False
    while True:
        try:
            attempt()
            break
        except transient as exc:
            on_retry()
            if not paused:
                consumer.pause(*consumer.assignment())
                paused = True
            log.warning("%s: %s; paused, retrying in %.1fs", stage, exc, delay)
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline:
                consumer.poll(timeout_ms=POLL_MS)  # paused: keeps group membership only
            lag = broker_lag(consumer)
            if lag is not None:  # the broker is away too: the gauge keeps its value
                set_lag(lag)
            delay = min(delay * 2, backoff_max_s)
    if paused:
        consumer.resume(*consumer.paused())
        log.info("%s: %s; resumed", stage, back)
