"""Benchmark: the scorer (not a test; run by `make bench`).

1. Model throughput: windows scored per second by one model call of each batch size
   (``--batches``), for the plant feature rules (144 features per step) and the default
   network (``gru-stats``, L = 50; ``--architectures gru,gru-stats`` compares networks
   side by side), median/min/max of ``--runs`` runs of ~1 s each.
2. Delay at a fixed offered load, against the real broker: ``--machines`` machines at one
   feature step per second each for ``--seconds`` seconds into a fresh features topic;
   `plantwatch score` (a subprocess, default settings: max batch 1024, max wait 200 ms)
   scores them. The delay of each prediction is its append time on the predictions topic
   minus its feature record's append time on the features topic (both topics use
   LogAppendTime); p50/p99/max over the steps after warm-up. The scorer keeps up when
   every step's predictions are out and the delay does not grow: in every run, the median
   delay of the last third of the steps exceeds that of the first third by at most the
   scorer's max wait (200 ms, the granularity of its batches). Why that margin: a scorer
   short of the offered rate by a fraction d falls behind by d x the time between the two
   thirds (~17 s in a 40 s run, ~70 s in a 120 s run), so 200 ms flags any shortfall above
   ~1.2% (40 s) or ~0.3% (120 s); with no margin at all ("strict", also reported), a
   scorer with a steady delay would fail about every other run on noise alone. And the
   delay must be short: the last third's median at most ``DELAY_BOUND_MS`` (2 s, two
   steps), since a scorer that fell seconds behind early and only drains slowly does not
   grow either (seen on 2026-11-29: a 7.5 s delay shrinking by 0.2-1.6 s per run).
3. Capacity: the same scorer on a topic already holding 25 steps of every machine.

Parts 2 and 3 run ``--load-runs`` times (default 3) on fresh topics; the JSON has the
median/min/max and every run. ``--instances N`` runs N scorer processes in one consumer
group (``--partitions`` per topic, default 3; give a multiple of N so they share evenly);
``--encodings binary,json`` compares the two feature record encodings (``pipeline.featurerecords``).

    python bench/bench_scorer.py --machines 10000 --seconds 40 --out bench/results/scorer.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import orjson
from _common import fmt, machine, run_header, summarize

from models.network import ARCHITECTURES, DEFAULT_ARCHITECTURE
from pipeline.featurerecords import decode_feature
from plantwatch.connections import kafka_config
from plantwatch.presets import PRESETS
from plantwatch.settings import Settings, load_settings

WINDOW = PRESETS["plant"]
L, MIN_STEPS = 50, 10


DELAY_BOUND_MS = 2000
"""Most median delay of a load run's last third for "keeps up" (two 1-second steps)."""
ATTRIBUTED = 5 / 64
"""Share of the offered windows (see :func:`make_model`) calibrated to score at or above
half the threshold (those get top sensors, the scorer's costliest work), the same for
every network."""


def offered_vectors() -> list[np.ndarray]:
    """The 64 feature vectors the load generator cycles through (machine i, step s: i + s)."""
    rng = np.random.default_rng(1)
    return [rng.normal(size=len(WINDOW.feature_names())) for _ in range(64)]


def offered_windows(vectors: np.ndarray, most: int) -> tuple[np.ndarray, np.ndarray]:
    """(windows, masks) of every rotation of the vectors with MIN_STEPS..``most`` real steps."""
    full = np.stack([np.roll(vectors, -k, axis=0)[np.arange(L) % len(vectors)] for k in range(64)])
    x = np.zeros((64 * (most - MIN_STEPS + 1), L, full.shape[2]), np.float32)
    mask = np.zeros(x.shape[:2], bool)
    for j, steps in enumerate(range(MIN_STEPS, most + 1)):
        x[64 * j : 64 * (j + 1), L - steps :] = full[:, L - steps :]
        mask[64 * j : 64 * (j + 1), L - steps :] = True
    return x, mask


def make_model(path: Path, architecture: str, steps: int = L) -> Path:
    """A random-weight network (32 units) on the plant rules, calibrated for the load.

    Random weights give each network its own spread of logits: a fixed calibration sent
    7.8% of the gru's predictions but 46% of the gru-stats' through attribution. The
    calibration's offset is set so that :data:`ATTRIBUTED` of the windows the generator
    offers (its 64 rotations, with MIN_STEPS to ``steps`` real steps, masked in front as a
    young machine's: a run of S seconds never fills more) score at or above half the
    threshold, whatever the network.
    """
    from features.spec import fit_spec, normalize
    from models.artifact import ModelMeta, save_artifact
    from models.network import build_model

    F = len(WINDOW.feature_names())
    spec = fit_spec(np.random.default_rng(0).normal(size=(500, F)), WINDOW, sequence_length=L)
    model = build_model(L, F, architecture, units=32, seed=0)
    vectors = normalize(spec, np.stack(offered_vectors())).astype(np.float32)
    x, mask = offered_windows(vectors, max(MIN_STEPS, min(steps, L)))
    logits = np.asarray(model.predict({"features": x, "mask": mask}, verbose=0)).ravel()
    a, threshold = 4.0, 0.5
    # sigmoid(a * l + b) >= threshold / 2 for the top ATTRIBUTED share of the windows
    ranked, n = np.sort(logits), round(ATTRIBUTED * len(logits))
    cut = float(ranked[-n - 1] + ranked[-n]) / 2  # between the n-th highest and the next
    b = float(np.log((threshold / 2) / (1 - threshold / 2)) - a * cut)
    meta = ModelMeta(30, MIN_STEPS, threshold, (a, b), architecture, "bench", "2026-01-01T00:00:00")
    return save_artifact(path, model, spec, meta)


def throughput(model: Path, batches: list[int], runs: int) -> dict[str, Any]:
    """Windows per second of one model call per batch size."""
    from models.servable import load_servable

    out: dict[str, Any] = {}
    F = len(WINDOW.feature_names())
    rng = np.random.default_rng(0)
    for size in batches:
        served = load_servable(model, WINDOW, "cpu:0", size)
        x = rng.normal(size=(size, L, F)).astype(np.float32)
        mask = np.ones((size, L), dtype=bool)
        rates = []
        for _ in range(runs):
            n, start = 0, time.perf_counter()
            while time.perf_counter() - start < 1.0:
                served.logits(x, mask)
                n += size
            rates.append(n / (time.perf_counter() - start))
        out[str(size)] = {
            "median": statistics.median(rates),
            "min": min(rates),
            "max": max(rates),
        }
        print(
            f"model throughput batch {size:5d}: {statistics.median(rates):9.0f} windows/s "
            f"(min {min(rates):.0f}, max {max(rates):.0f})",
            flush=True,
        )
    return out


def _topics(settings: Settings, names: list[str], partitions: int) -> None:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(**kafka_config(settings))
    spec = {"num_partitions": partitions, "replication_factor": -1}
    admin.create_topics(
        {n: {**spec, "configs": {"message.timestamp.type": "LogAppendTime"}} for n in names}
    )
    admin.close()


def _offer(
    settings: Settings,
    topic: str,
    machines: int,
    seconds: int,
    late: list[float],
    paced: bool,
    encoding: str = "binary",
) -> None:
    """``machines`` records per second (one step of each machine), paced by wall time.

    Records are built from templates (64 value vectors) in the ``pipeline.featurerecords`` layout
    of ``encoding``, so the generator spends little of the shared CPU.
    """
    from kafka import KafkaProducer

    from pipeline.featurerecords import MAGIC

    producer = KafkaProducer(
        **kafka_config(settings, acks=1, linger_ms=20, batch_size=1 << 20, enable_idempotence=False)
    )
    cfg = WINDOW.fingerprint().encode()
    ids = [f"machine-{i:05d}".encode() for i in range(machines)]
    vectors = offered_vectors()
    if encoding == "binary":
        values = [x.astype("<f8").tobytes() for x in vectors]
    else:
        values = [orjson.dumps([float(v) for v in x]) for x in vectors]
    header = struct.Struct("<4sqqHBH")
    n = len(WINDOW.feature_names())
    start = time.monotonic()
    for step in range(seconds):
        begin, end = str(step * WINDOW.step_ms).encode(), str((step + 1) * WINDOW.step_ms).encode()
        for i, eid in enumerate(ids):
            if encoding == "binary":
                head = header.pack(
                    MAGIC, step * WINDOW.step_ms, (step + 1) * WINDOW.step_ms, n, len(cfg), len(eid)
                )
                value = b"".join((head, cfg, eid, values[(i + step) % 64]))
            else:
                value = b"".join(
                    (
                        b'{"v":1,"equipment_id":"', eid, b'","step_start":', begin,
                        b',"step_end":', end, b',"config":"', cfg, b'","values":',
                        values[(i + step) % 64], b"}",
                    )
                )  # fmt: skip
            producer.send(topic, key=eid, value=value)
        producer.flush()
        late.append(time.monotonic() - start - step)
        if paced:
            time.sleep(max(0.0, start + step + 1 - time.monotonic()))
    producer.close()


def _read(
    settings: Settings,
    topic: str,
    field: str,
    flagged: list[int] | None = None,
    doubled: list[int] | None = None,
) -> dict[tuple[str, int], int]:
    """Append time per (equipment_id, step end) of a topic's committed records.

    ``doubled`` gets a 1 for every record whose key was already read.
    """
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(
        **kafka_config(settings, isolation_level="read_committed", max_poll_records=5000)
    )
    tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
    consumer.assign(tps)
    consumer.seek_to_beginning(*tps)
    out: dict[tuple[str, int], int] = {}
    empty = 0
    while empty < 6:
        polled = consumer.poll(timeout_ms=500)
        empty = 0 if polled else empty + 1
        for messages in polled.values():
            for m in messages:
                if field == "step_end":  # a feature record, either encoding
                    rec = decode_feature(m.value)[0]
                    assert rec is not None, m.value[:80]
                    out[(rec.equipment_id, rec.step_end)] = m.timestamp
                    continue
                doc = orjson.loads(m.value)
                key = (doc["equipment_id"], doc[field])
                if doubled is not None and key in out:
                    doubled.append(1)
                out[key] = m.timestamp
                if flagged is not None and doc.get("top_sensors"):
                    flagged.append(1)
    consumer.close()
    return out


def load_test(
    settings: Settings,
    model: Path,
    machines: int,
    seconds: int,
    extra: list[str],
    backlog: bool = False,
    instances: int = 1,
    partitions: int = 3,
    encoding: str = "binary",
) -> dict[str, Any]:
    """Append-to-append delay at a fixed offered load (``backlog``: capacity on a full topic)."""
    tag = uuid.uuid4().hex[:8]
    features, preds, dlq = f"bench-f-{tag}", f"bench-p-{tag}", f"bench-fdlq-{tag}"
    _topics(settings, [features, preds, dlq], partitions)
    env = dict(os.environ)
    env.update(
        PLANTWATCH_TOPIC_FEATURES=features,
        PLANTWATCH_TOPIC_PREDICTIONS=preds,
        PLANTWATCH_TOPIC_FEATURES_DLQ=dlq,
        PLANTWATCH_SCORER_GROUP=f"bench-scorer-{tag}",
        TF_CPP_MIN_LOG_LEVEL="3",
    )
    logs = [Path(tempfile.mkdtemp()) / f"score-{k}.log" for k in range(instances)]
    cmd = [sys.executable, "-c", "from plantwatch.cli import main; main()", "score"]
    late: list[float] = [0.0]
    if backlog:
        _offer(settings, features, machines, seconds, late, paced=False, encoding=encoding)
    procs = []
    for k, log in enumerate(logs):
        with log.open("w") as err:
            procs.append(
                subprocess.Popen(
                    [*cmd, "--model", str(model), "--idle-exit", "5", "--log-every", "5", *extra],
                    env={**env, "PLANTWATCH_INSTANCE_ID": f"bench-{tag}-{k}"},
                    stdout=err,
                    stderr=err,
                )
            )
    _wait_assigned(procs, logs, partitions)
    if not backlog:
        args = (settings, features, machines, seconds, late, True, encoding)
        offer = threading.Thread(target=_offer, args=args)
        offer.start()
        offer.join()
    for proc in procs:
        proc.wait(timeout=600)
    log = logs[0]
    fed = _read(settings, features, "step_end")
    flagged: list[int] = []
    doubled: list[int] = []
    got = _read(settings, preds, "window_end", flagged, doubled)
    _drop(settings, [features, preds, dlq])
    warm = (MIN_STEPS + 5) * WINDOW.step_ms
    keys = [k for k in got if k[1] > warm]
    delays = np.array([got[k] - fed[k] for k in keys], dtype=np.float64)
    ends = np.array([k[1] for k in keys])
    expected = machines * (seconds - MIN_STEPS + 1)
    span_s = max((max(got.values()) - min(got.values())) / 1000, 1e-3)
    if backlog:
        capacity = {
            "records": len(fed),
            "predictions": len(got),
            "span_s": span_s,
            "predictions_per_s": len(got) / span_s,
            "attributed_share": len(flagged) / max(len(got), 1),
        }
        print(
            f"capacity on a backlog of {len(fed)} records ({machines} machines): "
            f"{len(got) / span_s:.0f} predictions/s ({len(got)} in {span_s:.1f}s, scorer "
            f"alone with the broker; top sensors for {100 * len(flagged) / len(got):.1f}%)",
            flush=True,
        )
        return capacity
    result = {
        "machines": machines,
        "steps_per_s": 1,
        "seconds": seconds,
        "feature_records": len(fed),
        "predictions": len(got),
        "doubled_predictions": len(doubled),
        "expected_predictions": expected,
        "producer_max_late_s": max(late),
        "attributed_share": len(flagged) / max(len(got), 1),
        "delay_ms": {
            "p50": float(np.percentile(delays, 50)),
            "p99": float(np.percentile(delays, 99)),
            "max": float(delays.max()),
            # keeping up: the delay of the last third of the steps against the first third's
            # (a scorer behind its input falls further behind with each step; module doc)
            **_trend(delays, ends),
        },
        "scorer_log_tail": [ln for ln in log.read_text().splitlines() if "score:" in ln][-3:],
    }
    print(
        f"offered load {machines} machines x 1 step/s for {seconds}s: {len(got)}/{expected} "
        f"predictions ({len(doubled)} doubled), append-to-append delay p50 {result['delay_ms']['p50']:.0f} ms "
        f"(first third of the steps {result['delay_ms']['p50_first_third']:.0f} ms, last third "
        f"{result['delay_ms']['p50_last_third']:.0f} ms), "
        f"p99 {result['delay_ms']['p99']:.0f} ms, max {result['delay_ms']['max']:.0f} ms "
        f"(producer at most {max(late):.2f}s behind its schedule; top sensors computed for "
        f"{100 * len(flagged) / max(len(got), 1):.1f}% of predictions)",
        flush=True,
    )
    return result


def _trend(delays: Any, ends: Any) -> dict[str, float]:
    """The median delay of the first and of the last third of the steps (by window end)."""
    lo, hi = np.percentile(ends, [100 / 3, 200 / 3])
    return {
        "p50_first_third": float(np.median(delays[ends <= lo])),
        "p50_last_third": float(np.median(delays[ends > hi])),
    }


def _wait_assigned(procs: list[Any], logs: list[Path], partitions: int) -> None:
    """Until the instances' latest assignments cover every partition (the group is stable)."""
    while True:
        latest = []
        for proc, log in zip(procs, logs, strict=True):
            if proc.poll() is not None:
                raise SystemExit(log.read_text()[-3000:])
            lines = [ln for ln in log.read_text().splitlines() if "score: assigned" in ln]
            latest.append(lines[-1].rsplit("[", 1)[-1].rstrip("]") if lines else "")
        if sum(len([p for p in a.split(",") if p.strip()]) for a in latest) == partitions:
            return
        time.sleep(0.2)


def _drop(settings: Settings, topics: list[str]) -> None:
    from kafka import KafkaAdminClient

    admin = KafkaAdminClient(**kafka_config(settings))
    admin.delete_topics(topics, raise_errors=False)
    admin.close()


def main() -> None:
    """Run both parts and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", default="1,64,256,1024")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--machines", type=int, default=10_000)
    parser.add_argument("--seconds", type=int, default=40)
    parser.add_argument("--max-batch", type=int, default=None)
    parser.add_argument(
        "--attribution-fraction",
        type=float,
        default=None,
        help="PLANTWATCH_SCORER_ATTRIBUTION_FRACTION for the scorer (default: its default)",
    )
    parser.add_argument(
        "--load-runs",
        type=int,
        default=3,
        help="runs of the capacity and of the offered-load test (median, min, max)",
    )
    parser.add_argument(
        "--instances",
        default="1,2",
        help="scorer processes in the group, one setting or several compared side by side "
        "(runs interleaved; default 1,2)",
    )
    parser.add_argument(
        "--partitions", type=int, default=3, help="partitions of the bench topics (default 3)"
    )
    parser.add_argument(
        "--encodings",
        default="binary",
        help="feature record encodings offered (binary, json, or both compared side by side: "
        "binary,json; default binary, what ingest writes by default)",
    )
    parser.add_argument(
        "--architectures",
        default=DEFAULT_ARCHITECTURE,
        help=f"network(s) scored, one or several compared side by side (runs interleaved), "
        f"e.g. gru,gru-stats (default {DEFAULT_ARCHITECTURE}, what `plantwatch train` builds)",
    )
    parser.add_argument("--out", type=Path, default=Path("bench/results/scorer.json"))
    parser.add_argument(
        "--resummarize",
        type=Path,
        default=None,
        metavar="JSON",
        help="only recompute the summaries of an earlier run's JSON in place (after a change "
        "of the rules that judge it; no new measurement)",
    )
    args = parser.parse_args()
    if args.resummarize is not None:
        resummarize(args.resummarize)
        return
    settings = load_settings()
    architectures = args.architectures.split(",")
    if not set(architectures) <= set(ARCHITECTURES):
        parser.error(f"--architectures {args.architectures}: expected some of {ARCHITECTURES}")
    steps = max(25, args.seconds)  # the backlog test offers 25 steps, the load test --seconds
    models = {a: make_model(Path(tempfile.mkdtemp()) / a, a, steps) for a in architectures}
    batches = [int(b) for b in args.batches.split(",")]
    counts = [int(n) for n in args.instances.split(",")]
    extra = ["--max-batch", str(args.max_batch)] if args.max_batch else []
    if args.attribution_fraction is not None:
        os.environ["PLANTWATCH_SCORER_ATTRIBUTION_FRACTION"] = str(args.attribution_fraction)
    before = machine()
    through = {}
    for architecture, model in models.items():
        print(f"network {architecture}", flush=True)
        through[architecture] = throughput(model, batches, args.runs)
    encodings = args.encodings.split(",")
    if not set(encodings) <= {"binary", "json"}:
        parser.error(f"--encodings {args.encodings}: expected binary, json or binary,json")
    # one setting per (network, instances, encoding); runs interleaved: 1, 2, 1, 2, ...
    groups = {
        f"{a} {n} {e}": {
            "architecture": a,
            "instances": n,
            "partitions": args.partitions,
            "encoding": e,
        }
        for a in architectures
        for n in counts
        for e in encodings
    }
    capacity: dict[str, list[dict[str, Any]]] = {k: [] for k in groups}
    load: dict[str, list[dict[str, Any]]] = {k: [] for k in groups}
    for _ in range(args.load_runs):
        for key, group in groups.items():
            model, options = models[group["architecture"]], _options(group)
            capacity[key].append(
                load_test(settings, model, args.machines, 25, extra, backlog=True, **options)
            )
    for _ in range(args.load_runs):
        for key, group in groups.items():
            model, options = models[group["architecture"]], _options(group)
            load[key].append(
                load_test(settings, model, args.machines, args.seconds, extra, **options)
            )
    result = {
        **run_header(before, args.load_runs),
        "cores": os.cpu_count(),
        "scorer_options": extra,
        "partitions": args.partitions,
        "attribution_fraction": args.attribution_fraction,
        "network": f"{args.architectures} (32 units), L=50, 144 features (plant rules)",
        "throughput_windows_per_s": through,
        "settings": {
            key: {**group, **_group_result(capacity[key], load[key], args)}
            for key, group in groups.items()
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    _print_summary(result, args)


def _options(group: dict[str, Any]) -> dict[str, Any]:
    """A setting's load_test options (the network is passed as its model instead)."""
    return {k: v for k, v in group.items() if k != "architecture"}


def _print_summary(result: dict[str, Any], args: argparse.Namespace) -> None:
    """One line per setting (network x instances x encoding)."""
    for group in result["settings"].values():
        c, ld = group["capacity"], group["load"]
        print(
            f"scorer, {group.get('architecture', 'gru')} network, "
            f"{group['instances']} instance(s) on {args.partitions} partitions, "
            f"{group['encoding']} feature records: capacity "
            f"({args.machines} machines, backlog) {fmt(c['predictions_per_s'])} predictions/s; "
            f"at {args.machines} machines x 1 step/s: delay p50 {fmt(ld['delay_p50_ms'], 'ms')}, "
            f"p99 {fmt(ld['delay_p99_ms'], 'ms')}; p50 of the first third of the steps "
            f"{fmt(ld['delay_p50_first_third_ms'], 'ms')}, of the last third "
            f"{fmt(ld['delay_p50_last_third_ms'], 'ms')}, "
            f"growth per run {', '.join(f'{g:+.0f}' for g in ld['delay_growth_ms_per_run'])} ms: "
            f"{'keeps up' if ld['keeps_up'] else 'falls behind'} (growth <= "
            f"{ld['keeps_up_margin_ms']} ms and last third <= "
            f"{ld.get('keeps_up_delay_bound_ms', DELAY_BOUND_MS)} ms in every run; strict rule, "
            "no growth: "
            f"{'yes' if ld['keeps_up_strict'] else 'no'}); median of {args.load_runs}; "
            f"{result['busy']}",
            flush=True,
        )


def resummarize(path: Path) -> None:
    """Recompute an earlier run's summaries from its per-run results (no new measurement)."""
    result = json.loads(path.read_text())
    for group in result["settings"].values():
        load = group["load"]
        args = argparse.Namespace(
            machines=load["machines"], seconds=load["seconds"], partitions=result["partitions"]
        )
        group.update(_group_result(group["capacity"]["per_run"], load["per_run"], args))
    measured = path.stat()
    path.write_text(json.dumps(result, indent=1))
    os.utime(path, ns=(measured.st_atime_ns, measured.st_mtime_ns))  # still when measured
    args.load_runs = result["runs"]
    _print_summary(result, args)


def _group_result(
    capacity: list[dict[str, Any]], load: list[dict[str, Any]], args: argparse.Namespace
) -> dict[str, Any]:
    """Summaries of one instance count's runs."""
    first = summarize([r["delay_ms"]["p50_first_third"] for r in load])
    last = summarize([r["delay_ms"]["p50_last_third"] for r in load])
    all_out = all(r["predictions"] == r["expected_predictions"] for r in load)
    growth = [r["delay_ms"]["p50_last_third"] - r["delay_ms"]["p50_first_third"] for r in load]
    margin = load_settings().scorer_max_wait_ms
    short = all(r["delay_ms"]["p50_last_third"] <= DELAY_BOUND_MS for r in load)
    return {
        "capacity": {
            "predictions_per_s": summarize([c["predictions_per_s"] for c in capacity]),
            "per_run": capacity,
        },
        "load": {
            "machines": args.machines,
            "seconds": args.seconds,
            "all_predictions": all_out,
            # counted from 2026-11-29 16:00Z on; earlier files hold unique keys only
            "doubled_predictions": [r.get("doubled_predictions") for r in load],
            "keeps_up": all_out and short and all(g <= margin for g in growth),
            "keeps_up_margin_ms": margin,
            "keeps_up_delay_bound_ms": DELAY_BOUND_MS,
            "keeps_up_strict": all_out and all(g <= 0 for g in growth),
            "delay_growth_ms_per_run": growth,
            "delay_p50_ms": summarize([r["delay_ms"]["p50"] for r in load]),
            "delay_p99_ms": summarize([r["delay_ms"]["p99"] for r in load]),
            "delay_max_ms": summarize([r["delay_ms"]["max"] for r in load]),
            "delay_p50_first_third_ms": first,
            "delay_p50_last_third_ms": last,
            "per_run": load,
        },
    }


if __name__ == "__main__":
    main()
