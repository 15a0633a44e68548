"""The Quix Streams side of bench/bench_peer.py, run in its own process and virtualenv.

It imports only Quix Streams and the standard library, so `make bench` can run it from
``.venv-bench`` (Quix Streams pins older pydantic releases than plantwatch uses; keeping it
out of ``.venv`` leaves the product's environment as tested). Per machine (message key):
tumbling windows of ``--step-ms`` with ``--grace-ms``, and per sensor the aggregates
mean, min, max, count and last of its readings; one JSON record per closed window.
"""

from __future__ import annotations

import argparse

AGGREGATES = ("mean", "min", "max", "count", "last")


def replay(bootstrap: str, topic: str, path: str) -> None:
    """Produce pickled ``[[(key, value), ...] per partition]`` into ``topic``; print seconds.

    Uses confluent-kafka (librdkafka, installed with Quix Streams): several times faster
    than the consumers, so the benchmark's input is complete early in each run.
    """
    import pickle
    import time

    from confluent_kafka import Producer

    with open(path, "rb") as handle:
        parts = pickle.load(handle)  # noqa: S301 - see above
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "acks": "1",
            "linger.ms": 5,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 1_000_000,
        }
    )
    start = time.perf_counter()
    for i in range(max(len(p) for p in parts)):
        for p, records in enumerate(parts):
            if i < len(records):
                producer.produce(topic, value=records[i][1], key=records[i][0], partition=p)
        if i % 10_000 == 0:
            producer.poll(0)
    if producer.flush(60) != 0:
        raise SystemExit("the input records were not all delivered")
    print(time.perf_counter() - start)


def main() -> None:
    """Run the Quix application until it has been idle for ``--idle`` seconds."""
    import sys

    if sys.argv[1:2] == ["--replay"]:
        replay(*sys.argv[2:5])
        return
    from quixstreams import Application
    from quixstreams.dataframe.windows.aggregations import Count, Latest, Max, Mean, Min

    parser = argparse.ArgumentParser(description=__doc__)
    for name in ("--bootstrap", "--in-topic", "--out-topic", "--group", "--state-dir"):
        parser.add_argument(name, required=True)
    parser.add_argument("--sensors", required=True, help="comma-separated sensor names")
    parser.add_argument("--step-ms", type=int, required=True)
    parser.add_argument("--grace-ms", type=int, required=True)
    parser.add_argument("--idle", type=float, default=3.0)
    args = parser.parse_args()
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        processing_guarantee="exactly-once",
        commit_every=2000,
        commit_interval=1.0,
        state_dir=args.state_dir,
        loglevel="WARNING",
    )
    source = app.topic(
        args.in_topic,
        value_deserializer="json",
        timestamp_extractor=lambda value, _headers, _ts, _type: int(value["ts"]),
    )
    sink = app.topic(args.out_topic, value_serializer="json")
    kinds = {"mean": Mean, "min": Min, "max": Max, "count": Count, "last": Latest}
    sensors = args.sensors.split(",")
    aggs = {f"{s}__{k}": kinds[k](s) for s in sensors for k in AGGREGATES}
    sdf = app.dataframe(source)
    sdf = sdf.apply(lambda value: value["readings"])
    sdf = sdf.tumbling_window(args.step_ms, grace_ms=args.grace_ms).agg(**aggs).final()
    sdf.to_topic(sink)
    app.run(timeout=args.idle)


if __name__ == "__main__":
    main()
