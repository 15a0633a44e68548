"""Benchmark: the alerting stage into the real InfluxDB (not a test; run by `make bench`).

Two phases, each on a fresh 3-partition predictions topic, through the real
AlertingService (state machine, store, synchronous InfluxDB writes, offset commits):

1. drain: ``--backlog`` predictions produced first, then consumed: points written per
   second (failure_risk + alerts) from the first to the last batch.
2. fixed load: ``--rate`` predictions/s for ``--seconds`` s, paced; every ``--probe-every``
   seconds one prediction is followed from its record timestamp (set when sent, which
   the local broker appends within a millisecond) until a Flux query returns its point:
   p50/p99 of that delay. Probes run in their own threads so they do not queue.

Both phases run ``--runs`` times (default 3), each run on fresh topics and a fresh store;
each figure is the median of the runs with min and max (``bench/_common.summarize``).

    python bench/bench_alerting.py --runs 3 --out bench/results/alerting.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from _common import fmt, machine, run_header, summarize, write_result

from alerting import store
from alerting.influx import InfluxWriter
from alerting.rules import Rules, Silences
from alerting.service import AlertConfig, AlertingService
from pipeline.predictions import Prediction, encode_prediction
from plantwatch.connections import influx_client, kafka_config
from plantwatch.settings import Settings, load_settings
from plantwatch.topics import ensure_topics

TOP = (("vibration_rms", 0.5), ("temp", 0.3))


def _record(eid: str, t: int, i: int, machines: int) -> bytes:
    step = i // machines
    p = 0.95 if (step // 5 + i % machines) % 7 == 3 else 0.1 + (i % 10) / 100  # incidents
    return encode_prediction(Prediction(eid, t, p, 0.5, "m-bench", 30, 1_800_000, 50, TOP))


def _service(settings: Settings, topic: str, db: Path) -> tuple[AlertingService, Any, Any, Any]:
    from kafka import KafkaConsumer, KafkaProducer

    consumer = KafkaConsumer(
        **kafka_config(
            settings,
            group_id=f"bench-{topic}",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_records=2000,
        )
    )
    producer = KafkaProducer(**kafka_config(settings, acks="all"))
    client = influx_client(settings)
    writer = InfluxWriter(client, settings.influx_bucket, settings.influx_org)
    config = AlertConfig(
        topic=topic,
        dlq_topic=f"{topic}.dlq",
        group=f"bench-{topic}",
        poll_timeout_ms=100,
        deadman_every_s=3600,
        log_every_s=3600,
    )
    rules = Rules(deadman_ms=0)
    service = AlertingService(
        consumer, producer, writer, store.connect(db), rules, config, Silences, lambda v: True
    )
    return service, consumer, producer, client


def drain(settings: Settings, backlog: int, machines: int, db: Path) -> dict[str, float]:
    """Consume a pre-filled backlog; points per second into InfluxDB."""
    from kafka import KafkaProducer

    topic = f"bench-alert-{uuid.uuid4().hex[:8]}"
    ensure_topics(settings, {topic: 3, f"{topic}.dlq": 3})
    producer = KafkaProducer(**kafka_config(settings, acks=1, linger_ms=20, batch_size=512 * 1024))
    base = int(time.time() * 1000) - 7_200_000
    for i in range(backlog):
        eid = f"bd-{i % machines:04d}"
        producer.send(
            topic, key=eid.encode(), value=_record(eid, base + (i // machines) * 1000, i, machines)
        )
    producer.flush()
    producer.close()
    service, consumer, dlq, client = _service(settings, topic, db)
    stop = threading.Event()
    service.runtime.subscribe()
    first = last = 0.0
    while service.metrics.consumed < backlog:
        polled = consumer.poll(timeout_ms=200, max_records=2000)
        if polled:
            first = first or time.perf_counter()
            service.process(polled)
            last = time.perf_counter()
    stop.set()
    consumer.close()
    dlq.close()
    client.close()
    elapsed = max(last - first, 1e-9)
    return {
        "predictions": backlog,
        "points": service.metrics.points,
        "points_per_s": service.metrics.points / elapsed,
        "seconds": elapsed,
    }


def _probe(settings: Settings, eid: str, t: int, sent_ms: int, out: list[float]) -> None:
    query = (
        f'from(bucket: "{settings.influx_bucket}") |> range(start: time(v: {t * 1_000_000}), '
        f"stop: time(v: {(t + 1) * 1_000_000})) |> filter(fn: (r) => "
        f'r._measurement == "failure_risk" and r.equipment_id == "{eid}" and '
        'r._field == "probability")'
    )
    with influx_client(settings) as client:
        api = client.query_api()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if api.query(query, org=settings.influx_org):
                out.append(time.time() * 1000 - sent_ms)
                return
            time.sleep(0.01)


def fixed_load(
    settings: Settings, rate: int, seconds: int, machines: int, probe_every: float, db: Path
) -> dict[str, float]:
    """Paced load with probes; p50/p99 delay from append to queryable."""
    from kafka import KafkaProducer

    topic = f"bench-alert-{uuid.uuid4().hex[:8]}"
    ensure_topics(settings, {topic: 3, f"{topic}.dlq": 3})
    service, consumer, dlq, client = _service(settings, topic, db)
    stop = threading.Event()
    runner = threading.Thread(target=service.run, args=(stop,), daemon=True)
    runner.start()
    time.sleep(5)  # group join
    producer = KafkaProducer(**kafka_config(settings, acks=1, linger_ms=5))
    delays: list[float] = []
    probes: list[threading.Thread] = []
    base = int(time.time() * 1000) - 3_600_000
    start = time.perf_counter()
    next_probe = start + 1.0
    total = rate * seconds
    for i in range(total):
        due = start + i / rate
        while (now := time.perf_counter()) < due:
            time.sleep(min(due - now, 0.002))
        eid = f"bl-{i % machines:04d}"
        t = base + (i // machines) * 1000
        future = producer.send(topic, key=eid.encode(), value=_record(eid, t, i, machines))
        if now >= next_probe:
            next_probe += probe_every
            meta = future.get(timeout=10)
            th = threading.Thread(target=_probe, args=(settings, eid, t, meta.timestamp, delays))
            th.start()
            probes.append(th)
    producer.flush()
    sent_s = time.perf_counter() - start
    for th in probes:
        th.join(70)
    while service.metrics.consumed < total:
        time.sleep(0.2)
    stop.set()
    runner.join(30)
    producer.close()
    consumer.close()
    dlq.close()
    client.close()
    delays.sort()
    return {
        "rate": rate,
        "seconds": seconds,
        "achieved_rate": total / sent_s,
        "probes": len(delays),
        "delay_p50_ms": statistics.median(delays),
        "delay_p99_ms": delays[min(len(delays) - 1, int(len(delays) * 0.99))],
        "delay_max_ms": delays[-1],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run both phases ``--runs`` times; print a summary and write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backlog", type=int, default=60_000)
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--machines", type=int, default=200)
    parser.add_argument("--probe-every", type=float, default=0.25)
    parser.add_argument(
        "--runs", type=int, default=3, help="runs of both phases (median, min, max)"
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    settings = load_settings()
    before = machine()
    drains: list[dict[str, float]] = []
    loads: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            d = drain(settings, args.backlog, args.machines, Path(tmp) / f"drain-{run}.sqlite")
            f = fixed_load(
                settings,
                args.rate,
                args.seconds,
                args.machines,
                args.probe_every,
                Path(tmp) / f"load-{run}.sqlite",
            )
            drains.append(d)
            loads.append(f)
            print(
                f"[alerting] run {run + 1}: drain {d['points_per_s']:,.0f} points/s "
                f"({d['points']:,} points in {d['seconds']:.2f} s); at {f['rate']} "
                f"predictions/s p50 {f['delay_p50_ms']:.0f} ms, p99 {f['delay_p99_ms']:.0f} ms, "
                f"max {f['delay_max_ms']:.0f} ms ({f['probes']} probes, achieved "
                f"{f['achieved_rate']:,.0f}/s)",
                file=sys.stderr,
            )
    result: dict[str, Any] = {
        **run_header(before, args.runs),
        "config": {
            "backlog": args.backlog,
            "rate": args.rate,
            "seconds": args.seconds,
            "machines": args.machines,
            "probe_every": args.probe_every,
        },
        "drain": {
            "predictions": args.backlog,
            "points": [d["points"] for d in drains],
            "points_per_s": summarize([d["points_per_s"] for d in drains]),
            "seconds": summarize([d["seconds"] for d in drains]),
        },
        "fixed_load": {
            "rate": args.rate,
            "seconds": args.seconds,
            "achieved_rate": summarize([f["achieved_rate"] for f in loads]),
            "probes": [f["probes"] for f in loads],
            "delay_p50_ms": summarize([f["delay_p50_ms"] for f in loads]),
            "delay_p99_ms": summarize([f["delay_p99_ms"] for f in loads]),
            "delay_max_ms": summarize([f["delay_max_ms"] for f in loads]),
        },
        "per_run": [{"drain": d, "fixed_load": f} for d, f in zip(drains, loads, strict=True)],
    }
    d, f = result["drain"], result["fixed_load"]
    print(
        f"alerting drain: {args.backlog:,} predictions -> {statistics.median(d['points']):,.0f} "
        f"points: {fmt(d['points_per_s'], 'points/s')} into InfluxDB; median of {args.runs}"
    )
    print(
        f"alerting at {args.rate} predictions/s for {args.seconds}s: append -> queryable "
        f"p50 {fmt(f['delay_p50_ms'], 'ms')}, p99 {fmt(f['delay_p99_ms'], 'ms')}, "
        f"max {fmt(f['delay_max_ms'], 'ms')}; median of {args.runs}, "
        f"{sum(f['probes'])} probes; {result['busy']}"
    )
    write_result(args.out, result)
    return result


if __name__ == "__main__":
    main()
