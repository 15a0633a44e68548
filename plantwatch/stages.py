"""The composition root: each stage built from the settings, once.

``build_<stage>(settings, ...)`` turns the validated settings (and the few options of the
stage's command) into the stage's config objects and service parts, and returns a
:class:`Stage` that starts them; ``plantwatch <stage>`` parses its options, builds the
settings, calls the builder and runs what it returns. The stage configs are made here only
(``ingest_config``, ``scorer_config``, ``alert_config``, ``alert_rules``), and nothing here
checks a value: every check is a settings validator (:mod:`plantwatch.settings`), which
states the stage's bounds once where the stage has them (:mod:`alerting.rules`).

Heavy libraries (Kafka and InfluxDB clients, Keras) are imported inside the builders, so
importing this module costs nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from pipeline.errors import PlantwatchError
from plantwatch.settings import Settings

if TYPE_CHECKING:
    from alerting.outbox import Sender
    from alerting.rules import Rules, Silences
    from alerting.service import AlertConfig, AlertingService
    from ingest.featurestage import FeatureStage
    from ingest.service import IngestConfig, IngestService
    from models.scorer import ScorerConfig, ScorerService
    from plantwatch.supervisor import Supervisor

S = TypeVar("S")
Echo = Callable[[str], None]


class NoModelError(PlantwatchError):
    """No model to serve."""


@dataclass
class Stage(Generic[S]):
    """A stage built from the settings, ready to start.

    Attributes:
        name: the stage's name in its progress and signal lines (ingest, score, alert).
        settings: the settings it was built from.
        connect: makes the Kafka clients and the service, and registers on the ExitStack
            it gets what must be closed after the run (in reverse order).
        topics: the input topic, then the outputs: made, when missing, with the input's
            partition count when the stage starts.
        on_hup: what SIGHUP does (the scorer: look for a new model now).
        resources: what the builder opened (InfluxDB client, store, sinks): closed after
            what ``connect`` registered.
    """

    name: str
    settings: Settings
    connect: Callable[[ExitStack], S]
    topics: tuple[str, ...] = ()
    on_hup: Callable[[], None] | None = None
    resources: ExitStack = field(default_factory=ExitStack)

    @contextmanager
    def started(self) -> Iterator[S]:
        """The service with its topics made and its Kafka clients open; all closed on leaving.

        A Kafka error inside, the service's run included, is one line naming the setting
        (:func:`plantwatch.connections.kafka_errors`).
        """
        from plantwatch.connections import kafka_errors

        ensure_stage_topics(self.settings, self.topics)
        with kafka_errors(self.settings), self.resources as closing:
            yield self.connect(closing)


def ensure_stage_topics(settings: Settings, topics: Sequence[str]) -> None:
    """Make the missing ones of a stage's topics, with the partition count of the first.

    The first is the stage's input; a new one gets ``PLANTWATCH_TOPIC_PARTITIONS``.
    """
    if not topics:
        return
    from plantwatch.topics import ensure_topics, partitions_of

    partitions = partitions_of(settings, topics[0]) or settings.topic_partitions
    ensure_topics(settings, dict.fromkeys(topics, partitions))


class _Served(Protocol):
    @property
    def registry(self) -> Any: ...


M = TypeVar("M", bound=_Served)


def _serve_metrics(settings: Settings, metrics: M) -> M:
    """``metrics`` served to Prometheus on 127.0.0.1:PLANTWATCH_METRICS_PORT."""
    from prometheus_client import start_http_server

    start_http_server(settings.metrics_port, addr="127.0.0.1", registry=metrics.registry)
    return metrics


def _close_kafka(consumer: Any, producer: Any) -> None:
    consumer.close()
    producer.close(timeout=10)


# --- ingest ----------------------------------------------------------------------------


def ingest_config(
    settings: Settings, features: FeatureStage | None, log_every_s: float = 10.0
) -> IngestConfig:
    """The ingest loop's config (transactional): topics, contract bounds, lateness."""
    from ingest.contract import Limits
    from ingest.service import IngestConfig

    lateness = settings.ingest_lateness_ms
    if features is not None:
        # A reading the windows would find late must be refused before it reaches a sink.
        lateness = min(lateness, features.config.grace_ms)
    return IngestConfig(
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
        log_every_s=log_every_s,
    )


def build_ingest(
    settings: Settings,
    *,
    tap: Path | None = None,
    influx: bool | None = None,
    log_every_s: float = 10.0,
) -> Stage[IngestService]:
    """`plantwatch ingest`: telemetry -> dead letters, features (and InfluxDB, the tap).

    Args:
        settings: the settings.
        tap: also append every valid sample to this JSON-lines file.
        influx: write raw telemetry to InfluxDB (None: PLANTWATCH_INGEST_WRITE_INFLUX).
        log_every_s: seconds between progress lines.
    """
    from ingest.sinks import InfluxTelemetrySink, JsonlTap, Sink
    from plantwatch.connections import influx_client

    features = None
    if settings.ingest_emit_features:
        from ingest.featurestage import FeatureStage
        from plantwatch.presets import load_window_config

        features = FeatureStage(
            load_window_config(settings.features_config), settings.features_encoding
        )
    config = ingest_config(settings, features, log_every_s)
    resources = ExitStack()
    sinks: list[Sink] = []
    if settings.ingest_write_influx if influx is None else influx:
        client = influx_client(settings)
        resources.callback(client.close)
        sinks.append(InfluxTelemetrySink(client, settings.influx_bucket, settings.influx_org))
    if tap is not None:  # last: it gets only what InfluxDB took
        sinks.append(JsonlTap(tap))
    resources.callback(_close_sinks, sinks)  # before the client
    metrics = None
    if settings.metrics_port:
        from ingest.metrics import IngestMetrics

        metrics = _serve_metrics(settings, IngestMetrics())

    def connect(closing: ExitStack) -> IngestService:
        from kafka import KafkaConsumer, KafkaProducer

        from ingest.service import IngestService
        from plantwatch.connections import producer_config, stage_consumer_config

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
        closing.callback(_close_kafka, consumer, producer)
        return IngestService(consumer, producer, sinks, config, metrics, features=features)

    topics = [settings.topic_telemetry, settings.topic_telemetry_dlq]
    if features is not None:
        topics.append(settings.topic_features)
    return Stage("ingest", settings, connect, tuple(topics), resources=resources)


def _close_sinks(sinks: Iterable[Any]) -> None:
    for sink in sinks:
        close = getattr(sink, "close", None)
        if close is not None:
            close()


# --- scorer ----------------------------------------------------------------------------


def scorer_config(
    settings: Settings,
    *,
    max_batch: int | None = None,
    max_wait_ms: int | None = None,
    max_poll_records: int = 2000,
    log_every_s: float = 10.0,
) -> ScorerConfig:
    """The scorer loop's config; ``max_batch``, ``max_wait_ms``: None for the settings'."""
    from models.scorer import ScorerConfig

    return ScorerConfig(
        topic=settings.topic_features,
        predictions_topic=settings.topic_predictions,
        dlq_topic=settings.topic_features_dlq,
        max_batch=max_batch or settings.scorer_max_batch,
        max_wait_ms=max_wait_ms or settings.scorer_max_wait_ms,
        max_poll_records=max_poll_records,
        attribution_fraction=settings.scorer_attribution_fraction,
        log_every_s=log_every_s,
    )


def build_scorer(
    settings: Settings,
    *,
    echo: Echo,
    model_path: Path | None = None,
    device: str | None = None,
    max_batch: int | None = None,
    max_wait_ms: int | None = None,
    max_poll_records: int = 2000,
    log_every_s: float = 10.0,
) -> Stage[ScorerService]:
    """`plantwatch score`: features -> predictions, with the model loaded and warmed up.

    Args:
        settings: the settings.
        echo: where the line naming the model served goes.
        model_path: serve this artifact (and swap when it changes); None: the newest in
            PLANTWATCH_MODELS_DIR (and swap when a newer one appears).
        device: auto, cpu or gpu; None: PLANTWATCH_SCORER_DEVICE.
        max_batch: most windows per model call; None: PLANTWATCH_SCORER_MAX_BATCH.
        max_wait_ms: longest wait for a batch; None: PLANTWATCH_SCORER_MAX_WAIT_MS.
        max_poll_records: most records one poll takes.
        log_every_s: seconds between progress lines.

    Raises:
        NoModelError: no artifact in the models directory.
    """
    from models.hotswap import newest_artifact

    directory = model_path is None
    source = settings.models_dir if model_path is None else model_path
    first = newest_artifact(source) if directory else source
    if first is None:
        raise NoModelError(
            f"no model artifact in {source} (PLANTWATCH_MODELS_DIR): train one with "
            "`plantwatch train --out DIR` into that directory, or give --model PATH"
        )
    from models import backend
    from models.hotswap import ModelWatcher
    from models.servable import describe, load_servable
    from plantwatch.presets import load_window_config

    window = load_window_config(settings.features_config)
    config = scorer_config(
        settings,
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        max_poll_records=max_poll_records,
        log_every_s=log_every_s,
    )
    keras_device = backend.select_device(device or settings.scorer_device)

    def load(path: Path) -> Any:
        return load_servable(path, window, keras_device, config.max_batch)

    servable = load(first)
    echo(
        f"score: serving {first} {describe(servable)} on {keras_device} "
        f"(backend {backend.keras().backend.backend()}), max_batch={config.max_batch} "
        f"max_wait_ms={config.max_wait_ms}"
    )
    watcher = ModelWatcher(load, source, directory, servable.version, settings.scorer_model_poll_s)
    metrics = None
    if settings.metrics_port:
        from models.scoremetrics import ScorerMetrics

        metrics = _serve_metrics(settings, ScorerMetrics())

    def connect(closing: ExitStack) -> ScorerService:
        from kafka import KafkaConsumer, KafkaProducer

        from models.scorer import ScorerService
        from plantwatch.connections import producer_config, stage_consumer_config

        consumer = KafkaConsumer(
            **stage_consumer_config(
                settings,
                settings.scorer_group,
                isolation_level="read_committed",
                max_poll_records=config.max_poll_records,
            )
        )
        producer = KafkaProducer(
            **producer_config(
                settings,
                acks="all",
                # The commit flushes each batch: lingering only makes fewer, larger requests.
                linger_ms=50,
                batch_size=1 << 20,
                transactional_id=f"{settings.scorer_group}-{settings.instance_id}",
            )
        )
        closing.callback(_close_kafka, consumer, producer)
        service = ScorerService(consumer, producer, servable, window, config, metrics, watcher)
        watcher.start()
        closing.callback(watcher.stop)
        return service

    topics = (settings.topic_features, settings.topic_predictions, settings.topic_features_dlq)
    return Stage("score", settings, connect, topics, on_hup=watcher.wake)


# --- alerting --------------------------------------------------------------------------


def alert_rules(settings: Settings) -> Rules:
    """The alert rules of the settings: rule ``<name>`` is ``PLANTWATCH_ALERT_<NAME>``."""
    from alerting.rules import Rules

    return Rules(**{rule.name: getattr(settings, f"alert_{rule.name}") for rule in fields(Rules)})


def alert_config(
    settings: Settings, *, log_every_s: float = 10.0, crash_window_s: float = 0.0
) -> AlertConfig:
    """The alerting loop's config: topics, group, bucket, the targets tickets are queued for."""
    from alerting import targets
    from alerting.service import AlertConfig

    return AlertConfig(
        topic=settings.topic_predictions,
        dlq_topic=settings.topic_predictions_dlq,
        group=settings.alert_group,
        bucket=settings.influx_bucket,
        sinks=targets.queued(settings.alert_sinks.split(",")),
        log_every_s=log_every_s,
        crash_window_s=crash_window_s,
    )


def senders_of(settings: Settings, producer: Any, writer: Any) -> dict[str, Sender]:
    """The outbox senders of every ticket target the settings configure (:mod:`alerting.targets`).

    Raises:
        RulesError: a webhook URL that is not allowed (plain http:// to another host).
    """
    from alerting import targets

    return targets.senders(targets.TargetEnv(settings, producer, writer))


class _Silences:
    """The silences file, re-read when it changes (maintenance windows without restart)."""

    def __init__(self, path: Path | None, echo: Echo) -> None:
        from alerting.rules import load_silences

        self._path, self._echo = path, echo
        self._mtime = self._stat()
        self.current = load_silences(path)

    def _stat(self) -> float:
        try:
            return self._path.stat().st_mtime if self._path else 0.0
        except OSError:
            return 0.0

    def __call__(self) -> Silences:
        from alerting.errors import RulesError
        from alerting.rules import load_silences

        mtime = self._stat()
        if mtime != self._mtime:
            self._mtime = mtime
            try:
                self.current = load_silences(self._path)
            except RulesError as exc:
                self._echo(f"alert: keeping the previous silences: {exc}")
        return self.current


class _Versions:
    """Known model versions; an unknown one re-reads the models directory (at most every 10 s)."""

    def __init__(self, models_dir: Path) -> None:
        from models.registry import versions_in

        self._dir, self._read = models_dir, time.monotonic()
        self.known = set(versions_in(models_dir))

    def __call__(self, version: str) -> bool:
        if version in self.known:
            return True
        if time.monotonic() - self._read >= 10:
            from models.registry import versions_in

            self.known, self._read = set(versions_in(self._dir)), time.monotonic()
        return version in self.known


def build_alert(
    settings: Settings, *, echo: Echo, log_every_s: float = 10.0, crash_window_s: float = 0.0
) -> Stage[AlertingService]:
    """`plantwatch alert`: predictions -> InfluxDB, alerts, tickets (and their outbox).

    Args:
        settings: the settings.
        echo: where warnings go (no model yet, a silences file that became unreadable).
        log_every_s: seconds between progress lines.
        crash_window_s: (tests) crash inside the batch after this long.
    """
    from alerting import store
    from alerting.influx import InfluxWriter
    from plantwatch.connections import influx_client

    rules = alert_rules(settings)
    silences = _Silences(settings.alert_silences, echo)
    versions = _Versions(settings.models_dir)
    if not versions.known:
        echo(
            f"alert: warning: no model in {settings.models_dir} (PLANTWATCH_MODELS_DIR): "
            "every prediction will be dead-lettered until one appears"
        )
    config = alert_config(settings, log_every_s=log_every_s, crash_window_s=crash_window_s)
    # Its topics are made at once, before InfluxDB and the store are opened.
    topics = (
        settings.topic_predictions,
        settings.topic_predictions_dlq,
        settings.topic_tickets,
        settings.topic_feedback,
    )
    ensure_stage_topics(settings, topics)
    resources = ExitStack()
    client = influx_client(settings)
    writer = InfluxWriter(client, settings.influx_bucket, settings.influx_org)
    conn = store.connect(settings.alert_db)
    resources.callback(conn.close)
    resources.callback(client.close)  # before the store
    metrics = None
    if settings.metrics_port:
        from alerting.metrics import AlertMetrics

        metrics = _serve_metrics(settings, AlertMetrics())

    def connect(closing: ExitStack) -> AlertingService:
        from kafka import KafkaConsumer, KafkaProducer

        from alerting.outbox import Backoff, Dispatcher
        from alerting.service import AlertingService
        from plantwatch.connections import producer_config, stage_consumer_config

        consumer = KafkaConsumer(
            **stage_consumer_config(
                settings, settings.alert_group, max_poll_records=config.max_poll_records
            )
        )
        producer = KafkaProducer(**producer_config(settings, acks="all", linger_ms=5))
        closing.callback(_close_kafka, consumer, producer)
        dispatcher = Dispatcher(
            store.connect(settings.alert_db),
            senders_of(settings, producer, writer),
            Backoff(base_s=0.5, max_s=settings.alert_retry_max_s),
        )
        dispatcher.start()
        closing.callback(dispatcher.stop)
        return AlertingService(
            consumer, producer, writer, conn, rules, config, silences, versions, metrics
        )

    return Stage("alert", settings, connect, resources=resources)


# --- the whole pipeline ----------------------------------------------------------------


def build_run(
    settings: Settings,
    stages: Sequence[str],
    *,
    echo: Echo,
    scorers: int = 1,
    model: Path | None = None,
    idle_exit_s: float | None = None,
    log_every_s: float = 10.0,
    log_dir: Path | None = None,
) -> Supervisor:
    """`plantwatch run`: a supervisor of one process per stage (``scorers`` for score).

    Each runs the stage's command with these settings (as ``PLANTWATCH_*`` variables, in
    place of the caller's) and the options given here.
    """
    import os

    from plantwatch.supervisor import Supervisor, settings_env

    common = ["--log-every", str(log_every_s)]
    if idle_exit_s is not None:
        common += ["--idle-exit", str(idle_exit_s)]
    args: dict[str, list[str]] = {s: list(common) for s in stages}
    if model is not None and "score" in args:
        args["score"] += ["--model", str(model)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLANTWATCH_")}
    env |= settings_env(settings)
    return Supervisor(args, env, log_dir=log_dir, echo=echo, instances={"score": scorers})
