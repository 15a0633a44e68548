"""`plantwatch ingest`: the telemetry consumer service."""

from __future__ import annotations

import threading
from pathlib import Path

import click

from plantwatch.cli.main import cli, configure_logging, install_stop, settings_from


@cli.command("ingest")
@click.option(
    "--tap",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also append every valid sample as a JSON line to this file (fsynced before each "
    "commit; once per sample, and only what InfluxDB took with --influx).",
)
@click.option(
    "--influx/--no-influx",
    default=None,
    help="Write raw telemetry to the InfluxDB measurement `telemetry` "
    "[default: PLANTWATCH_INGEST_WRITE_INFLUX, off].",
)
@click.option(
    "--max-messages", type=click.IntRange(min=1), default=None, help="Stop after this many records."
)
@click.option(
    "--idle-exit",
    type=click.FloatRange(min=0.1),
    default=None,
    help="Stop after this many seconds without a record (for batch jobs and benchmarks), "
    "counted only while Kafka answers and the input is read to its end: a broker outage "
    "is waited out.",
)
@click.option(
    "--log-every",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Seconds between progress lines (counters, dead letters by reason, lag, rate).",
)
@click.pass_context
def ingest_cmd(
    ctx: click.Context,
    tap: Path | None,
    influx: bool | None,
    max_messages: int | None,
    idle_exit: float | None,
    log_every: float,
) -> None:
    """Consume telemetry: validate, dedupe, dead-letter bad records, emit features.

    Reads the telemetry topic in the consumer group PLANTWATCH_INGEST_GROUP. Valid samples
    are windowed per machine by the rules of PLANTWATCH_FEATURES_CONFIG, and each closed
    step's feature vector goes to the features topic, encoded as
    PLANTWATCH_FEATURES_ENCODING says (binary by default; json to read the topic with
    console tools; the scorer reads both); valid samples also go to the --tap
    file and to InfluxDB with --influx. Every refused record goes to the DLQ topic with its
    original bytes and a reason in its headers.

    Feature records, dead letters and the offsets commit form one Kafka transaction per
    batch (exactly once for read_committed consumers). After a crash or a rebalance, each
    partition is replayed from the rewind point kept in its commit metadata, rebuilding
    open windows without emitting a step twice. Ctrl-C (SIGINT) or SIGTERM finishes the
    batch, commits and exits.
    """
    from kafka import KafkaConsumer, KafkaProducer

    from ingest.contract import Limits
    from ingest.service import IngestConfig, IngestService
    from ingest.sinks import InfluxTelemetrySink, JsonlTap, Sink
    from plantwatch.connections import (
        influx_client,
        kafka_errors,
        producer_config,
        stage_consumer_config,
    )

    settings = settings_from(ctx)
    configure_logging()
    features = None
    if settings.ingest_emit_features:
        from ingest.featurestage import FeatureStage
        from plantwatch.presets import load_window_config

        features = FeatureStage(
            load_window_config(settings.features_config), settings.features_encoding
        )
    lateness = settings.ingest_lateness_ms
    if features is not None:
        # A reading the windows would find late must be refused before it reaches a sink.
        lateness = min(lateness, features.config.grace_ms)
    config = IngestConfig(
        topic=settings.topic_telemetry,
        dlq_topic=settings.topic_telemetry_dlq,
        features_topic=settings.topic_features,
        transactional=True,
        limits=Limits(
            max_bytes=settings.ingest_max_message_bytes,
            max_past_ms=settings.ingest_max_past_s * 1000,
            max_future_ms=settings.ingest_max_future_s * 1000,
        ),
        lateness_ms=lateness,
        log_every_s=log_every,
    )
    sinks: list[Sink] = []
    client = None
    if settings.ingest_write_influx if influx is None else influx:
        client = influx_client(settings)
        sinks.append(InfluxTelemetrySink(client, settings.influx_bucket, settings.influx_org))
    if tap is not None:  # last: it gets only what InfluxDB took
        sinks.append(JsonlTap(tap))
    if settings.metrics_port:
        from prometheus_client import start_http_server

        from ingest.metrics import IngestMetrics

        metrics = IngestMetrics()
        start_http_server(settings.metrics_port, addr="127.0.0.1", registry=metrics.registry)
    else:
        metrics = None
    stop = threading.Event()
    install_stop("ingest", stop)
    from plantwatch.topics import ensure_topics, partitions_of

    partitions = partitions_of(settings, settings.topic_telemetry) or settings.topic_partitions
    outputs = [settings.topic_telemetry, settings.topic_telemetry_dlq]
    if features is not None:
        outputs.append(settings.topic_features)
    ensure_topics(settings, dict.fromkeys(outputs, partitions))
    with kafka_errors(settings):
        consumer = KafkaConsumer(
            **stage_consumer_config(
                settings, settings.ingest_group, max_poll_records=config.max_poll_records
            )
        )
        # One transaction per batch: dead letters, feature records and the offsets commit
        # land together or not at all. The id is stable per instance, so a restarted
        # instance fences (and aborts) what its killed predecessor left open.
        producer = KafkaProducer(
            **producer_config(
                settings,
                acks="all",
                linger_ms=5,
                transactional_id=f"{settings.ingest_group}-{settings.instance_id}",
            )
        )
        service = IngestService(consumer, producer, sinks, config, metrics, features=features)
        try:
            service.run(
                stop,
                max_messages=max_messages,
                idle_exit_s=idle_exit,
                on_log=lambda line: click.echo(line, err=True),
            )
        finally:
            consumer.close()
            producer.close(timeout=10)
            for sink in sinks:
                close = getattr(sink, "close", None)
                if close is not None:
                    close()
            if client is not None:
                client.close()
    m = service.metrics
    click.echo(
        f"consumed {m.consumed} records: {m.valid} valid samples, {m.duplicates} duplicates, "
        f"{sum(m.dead.values())} dead letters"
    )
