from __future__ import annotations


def test_metrics_are_exposed_in_prometheus_format() -> None:
    from collections import Counter

    from prometheus_client import generate_latest

    from ingest.metrics import IngestMetrics

    metrics = IngestMetrics()
    metrics.add(10, 7, 1, Counter({"not_json": 2}))
    metrics.set_lag(42)
    text = generate_latest(metrics.registry).decode()
    assert "plantwatch_ingest_messages_total 10.0" in text
    assert 'plantwatch_ingest_dead_letters_total{reason="not_json"} 2.0' in text
    assert "plantwatch_ingest_lag 42.0" in text
