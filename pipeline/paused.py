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

from pipeline.idle import kafka_probe

FIRST_DELAY_S = 0.5
POLL_MS = 200


def broker_lag(consumer: Any, timeout_s: float = 5.0) -> int | None:
    """Records still to read from the assigned partitions, by the broker's end offsets.

    What :func:`pipeline.idle.kafka_probe` finds (a transaction's trailing commit marker
    is not a record to read); None when the broker does not answer within ``timeout_s``.
    """
    state = kafka_probe(consumer, timeout_s)()
    return None if state.left is None else sum(state.left.values())


def _poll_paused(consumer: Any) -> None:
    """One poll of a paused consumer: it keeps the group membership and hands back nothing.

    A rebalance inside the poll may assign a partition that is not paused yet and fetch
    its records in the same call: they are sought back (read after the wait, not skipped),
    and every assigned partition is paused again.
    """
    got = consumer.poll(timeout_ms=POLL_MS)
    for tp, records in (got or {}).items():
        if records:
            consumer.seek(tp, records[0].offset)
    consumer.pause(*consumer.assignment())


def pause_for(consumer: Any, seconds: float) -> None:
    """Wait ``seconds`` with the input paused, polling (for nothing) to stay in the group."""
    consumer.pause(*consumer.assignment())
    try:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            _poll_paused(consumer)
    finally:
        # What is paused now: a rebalance during the wait may have taken a partition away
        # (resuming one that is no longer assigned raises).
        consumer.resume(*consumer.paused())


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
    logged when the input resumes (e.g. "InfluxDB is back"). Any other error of
    ``attempt`` (the output refused the records themselves) propagates, the input resumed.
    """
    delay, paused = FIRST_DELAY_S, False
    try:
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
                    _poll_paused(consumer)  # keeps group membership only
                lag = broker_lag(consumer)
                if lag is not None:  # the broker is away too: the gauge keeps its value
                    set_lag(lag)
                delay = min(delay * 2, backoff_max_s)
    finally:
        if paused:
            consumer.resume(*consumer.paused())
            log.info("%s: %s; resumed", stage, back)
