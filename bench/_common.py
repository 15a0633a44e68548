"""Shared tail of the benchmarks: summaries, the machine's state, JSON output, topics.

Every benchmark reports medians of several runs with min and max, the core count and how
busy the machine was (load average before and after), so a figure can be judged.
"""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plantwatch.settings import Settings

if TYPE_CHECKING:
    from features.config import WindowConfig


def summarize(values: Sequence[float]) -> dict[str, float]:
    """Median, min and max (and the runs' values)."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "runs": [round(v, 4) for v in values],
    }


def fmt(s: dict[str, float], unit: str = "", digits: int = 0) -> str:
    """``median unit (min .. max)`` of a :func:`summarize` dict."""
    u = f" {unit}" if unit else ""
    return f"{s['median']:,.{digits}f}{u} (min {s['min']:,.{digits}f}, max {s['max']:,.{digits}f})"


def machine() -> dict[str, Any]:
    """Core count and load averages now (1, 5, 15 min): was the machine busy?"""
    return {"cores": os.cpu_count(), "loadavg": [round(x, 2) for x in os.getloadavg()]}


def busy_note(before: dict[str, Any], after: dict[str, Any]) -> str:
    """One line on how busy the machine was around a benchmark."""
    cores = before["cores"] or 1
    peak = max(before["loadavg"][0], after["loadavg"][0])
    busy = peak > 0.5 * cores + 0.5
    state = "busy (other processes running besides the benchmark)" if busy else "otherwise quiet"
    return (
        f"{cores} cores; load average {before['loadavg'][0]:.2f} before, "
        f"{after['loadavg'][0]:.2f} after: {state}"
    )


def run_header(before: dict[str, Any], runs: int | None = None) -> dict[str, Any]:
    """The first keys of a result file: the machine before and now, how busy, the runs."""
    after = machine()
    head = {"machine": before, "machine_after": after, "busy": busy_note(before, after)}
    return head if runs is None else head | {"runs": runs}


def write_result(path: Path | None, result: dict[str, Any]) -> None:
    """Write the result as JSON (with a UTC time stamp) when a path is given."""
    if path is None:
        return
    result.setdefault("measured_at", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")


def create_topics(settings: Settings, topics: dict[str, int], **configs: str) -> None:
    """Create fresh topics (name -> partitions), with optional topic configs."""
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    from plantwatch.connections import kafka_config

    admin = KafkaAdminClient(**kafka_config(settings))
    try:
        admin.create_topics(
            [
                NewTopic(name, num_partitions=n, replication_factor=1, topic_configs=configs)
                for name, n in topics.items()
            ]
        )
    finally:
        admin.close()


def drop_topics(settings: Settings, prefix: str) -> None:
    """Delete every topic whose name starts with ``prefix`` (the benchmark's own)."""
    from kafka import KafkaAdminClient

    from plantwatch.connections import kafka_config

    admin = KafkaAdminClient(**kafka_config(settings))
    try:
        names = [t for t in admin.list_topics() if t.startswith(prefix)]
        if names:
            admin.delete_topics(names, raise_errors=False)
    finally:
        admin.close()


def end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    """The end offset of each partition of ``topic``."""
    from kafka import KafkaConsumer, TopicPartition

    from plantwatch.connections import kafka_config

    consumer = KafkaConsumer(**kafka_config(settings))
    try:
        parts = consumer.partitions_for_topic(topic) or set()
        tps = [TopicPartition(topic, p) for p in parts]
        return {tp.partition: off for tp, off in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


class GroupWatch:
    """Polls a consumer group's committed offsets (one admin connection)."""

    def __init__(self, settings: Settings, group: str) -> None:
        from kafka import KafkaAdminClient

        from plantwatch.connections import kafka_config

        self.group = group
        self.admin = KafkaAdminClient(**kafka_config(settings))

    def committed(self) -> int:
        """Committed records, summed over partitions."""
        from kafka.errors import KafkaError

        try:
            offsets = self.admin.list_group_offsets(self.group).get(self.group, {})
        except KafkaError:  # no coordinator yet: the group is being created
            return 0
        return sum(max(o.offset, 0) for o in offsets.values())

    def stable_with(self, members: int) -> bool:
        """Whether the group is stable with at least ``members`` members."""
        from kafka.errors import KafkaError

        try:
            desc = self.admin.describe_groups([self.group]).get(self.group, {})
        except KafkaError:
            return False
        state = desc.get("group_state") or desc.get("state")
        return state == "Stable" and len(desc.get("members", [])) >= members

    def close(self) -> None:
        self.admin.close()


def proc_memory(pid: int) -> dict[str, int]:
    """Resident size now (VmRSS) and its peak (VmHWM) of a process, in bytes."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0]) * 1024
    return out


def make_model(path: Path, window: WindowConfig, length: int = 20, min_steps: int = 2) -> Path:
    """A random-weight GRU(8) artifact for ``window``'s features.

    Memory and latency need a model of the right shape, not a trained one.
    """
    import numpy as np

    from features.spec import fit_spec
    from models.artifact import ModelMeta, save_artifact
    from models.network import build_model

    F = len(window.feature_names())
    spec = fit_spec(np.random.default_rng(0).normal(size=(500, F)), window, sequence_length=length)
    meta = ModelMeta(30, min_steps, 0.5, (1.0, 0.0), "gru", "bench", "2026-01-01T00:00:00")
    return save_artifact(path, build_model(length, F, "gru", units=8, seed=0), spec, meta)
