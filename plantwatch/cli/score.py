"""`plantwatch score`: the streaming scorer service."""

from __future__ import annotations

from pathlib import Path

import click

from plantwatch.cli.main import cli, configure_logging, echo_err, settings_from, stop_event
from plantwatch.stages import build_scorer


@cli.command("score")
@click.option(
    "--model",
    "model_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Serve this model artifact directory, and swap when the artifact at this path "
    "changes (e.g. a symlink flipped to another version). Default: the newest artifact in "
    "PLANTWATCH_MODELS_DIR, and swap when a newer one appears there.",
)
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "gpu"]),
    default=None,
    help="Where to run the model: auto (a GPU when the Keras backend sees one, else the CPU), "
    "cpu (GPUs hidden), gpu (an error when there is none) [default: PLANTWATCH_SCORER_DEVICE].",
)
@click.option(
    "--max-batch",
    type=click.IntRange(1, 65536),
    default=None,
    help="Most windows per model call; one call serves many machines "
    "[default: PLANTWATCH_SCORER_MAX_BATCH, 1024].",
)
@click.option(
    "--max-wait-ms",
    type=click.IntRange(1, 65536),
    default=None,
    help="Score a batch once its oldest record waited this long, full or not; a batch is "
    "scored sooner when no record came for 20 ms and the model is idle (the input is "
    "drained) [default: PLANTWATCH_SCORER_MAX_WAIT_MS, 200].",
)
@click.option(
    "--max-poll-records",
    type=click.IntRange(1, 100_000),
    default=2000,
    show_default=True,
    help="Most records one poll takes from Kafka. Batches still close at --max-batch "
    "windows; smaller polls bound the memory of a burst and replay a restart in smaller "
    "steps.",
)
@click.option(
    "--idle-exit",
    type=click.FloatRange(min=0.1),
    default=None,
    help="Stop after this many seconds without a record (for tests, demos and benchmarks), "
    "counted only while Kafka answers and the input is read to its end: a broker outage "
    "is waited out.",
)
@click.option(
    "--log-every",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Seconds between progress lines (records, predictions, batch sizes, device, "
    "model time, lag, rate).",
)
@click.pass_context
def score_cmd(
    ctx: click.Context,
    model_path: Path | None,
    device: str | None,
    max_batch: int | None,
    max_wait_ms: int | None,
    max_poll_records: int,
    idle_exit: float | None,
    log_every: float,
) -> None:
    """Score feature records: one failure prediction per machine per step.

    Reads the features topic in the consumer group PLANTWATCH_SCORER_GROUP (read_committed),
    keeps the last L feature steps of each machine and scores the machines whose window
    advanced in batches (--max-batch, --max-wait-ms). Each prediction goes to the
    predictions topic, keyed by machine; machines with fewer real steps than the model's
    min_steps get none yet. Records that do not decode or were computed with other feature
    rules than PLANTWATCH_FEATURES_CONFIG go to PLANTWATCH_TOPIC_FEATURES_DLQ.

    Predictions, dead letters and the offsets commit as one Kafka transaction per batch;
    after a crash or rebalance the windows are rebuilt from the features topic without
    emitting a prediction twice. A new model version (see --model) is loaded, checked and
    warmed up in the background and takes over between batches; a broken one is refused
    and the old one keeps serving. SIGHUP checks for a new model now; Ctrl-C (SIGINT) or
    SIGTERM finishes the batch, commits and exits.
    """
    settings = settings_from(ctx)
    configure_logging()
    stage = build_scorer(
        settings,
        echo=echo_err,
        model_path=model_path,
        device=device,
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        max_poll_records=max_poll_records,
        log_every_s=log_every,
    )
    stop = stop_event(stage)
    with stage.started() as service:
        service.run(stop, idle_exit_s=idle_exit, on_log=echo_err)
    m = service.metrics
    click.echo(
        f"scored {m.records} feature records: {m.predictions} predictions, {m.warming} warming "
        f"up, {sum(m.dead.values())} dead letters, model {service.model.version}"
    )
