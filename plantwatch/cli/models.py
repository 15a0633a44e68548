"""`plantwatch train | fine-tune`, and what `evaluate` (plantwatch.cli.evaluate) shares with them.

TensorFlow/Keras are imported inside the commands, so ``plantwatch --help`` stays fast.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from models.network import ARCHITECTURES, AUX_MODES, DEFAULT_ARCHITECTURE, DEFAULT_AUX
from plantwatch.cli.main import cli, configure_logging

_DURATION = re.compile(r"^(\d+)(ms|s|m|h|d)?$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}

DATA_HELP = (
    "Data source: cmapss:DIR[:FD00N] (train/test/RUL_FD00N.txt of subset FD001-FD004; FD001, "
    "or the directory's only subset, when not named; failures at each training engine's "
    "last cycle) or history:FILE (CSV or Parquet telemetry: equipment_id, ts in epoch ms, one "
    "column per sensor; events from --events)."
)
EVENTS_HELP = (
    "Events table for history: data (CSV or Parquet: equipment_id, ts, kind failure|repair). "
    "Default: <telemetry stem>.events.<ext>, events.parquet or events.csv next to the telemetry."
)
FEATURES_HELP = (
    "Feature configuration: a preset (cmapss, plant) or a WindowConfig JSON file. "
    "Default: cmapss for cmapss: data, plant otherwise."
)


def parse_horizon(text: str, step_ms: int, what: str = "horizon") -> int:
    """H in steps from ``30`` (steps) or a duration ``30m``, ``5h``, ``2d``, ``90s``, ``500ms``.

    >>> parse_horizon("30", 600_000), parse_horizon("5h", 600_000)
    (30, 30)
    """
    from models.errors import DataError

    match = _DURATION.match(text.strip())
    if not match:
        raise DataError(f"{what} {text!r} is not valid: expected steps (30) or a duration (5h)")
    value, unit = int(match.group(1)), match.group(2)
    steps = value if unit is None else -(-value * _UNIT_MS[unit] // step_ms)
    if steps < 1:
        raise DataError(f"{what} {text!r} is shorter than one step ({step_ms} ms)")
    return steps


def window_of(features_config: str | None, data: str) -> Any:
    """The WindowConfig of ``--features-config``, or the data's preset (cmapss or plant)."""
    from plantwatch.presets import load_window_config

    default = "cmapss" if data.startswith("cmapss:") else "plant"
    return load_window_config(features_config or default)


def echo_metrics(title: str, metrics: dict[str, Any]) -> None:
    """One line of the window metrics, e.g. ``validation: n=... f1=... confusion=...``."""
    keys = (
        "n",
        "positives",
        "accuracy",
        "precision",
        "recall",
        "f1",
        "roc_auc",
        "pr_auc",
        "brier",
        "lead_median",
        "missed",
    )
    parts = [
        f"{k}={metrics[k]:.4g}" if isinstance(metrics[k], float) else f"{k}={metrics[k]}"
        for k in keys
        if k in metrics
    ]
    click.echo(f"{title}: " + " ".join(parts) + f" confusion={metrics.get('confusion')}")


@cli.command("train")
@click.option("--data", required=True, help=DATA_HELP)
@click.option("--events", type=click.Path(path_type=Path), default=None, help=EVENTS_HELP)
@click.option(
    "--horizon",
    required=True,
    help="H: a window is positive when a failure follows its end within H. Steps "
    "(30) or a duration (5h, 30m), rounded up to whole steps.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Artifact directory to write (model.keras + spec.json + plots/).",
)
@click.option("--features-config", default=None, help=FEATURES_HELP)
@click.option(
    "--sequence-length",
    type=int,
    default=50,
    show_default=True,
    help="L: steps per model input window.",
)
@click.option(
    "--min-steps",
    type=int,
    default=10,
    show_default=True,
    help="Windows with fewer real steps (short histories, masked) are left out.",
)
@click.option(
    "--architecture",
    type=click.Choice(ARCHITECTURES),
    default=DEFAULT_ARCHITECTURE,
    show_default=True,
    help="Network architecture: gru = a GRU over the window; gru-stats = the GRU beside "
    "per-feature window means and trend slopes (chosen on C-MAPSS and on the tickets of "
    "simulated plant fleets, see docs/models.md).",
)
@click.option("--units", type=int, default=32, show_default=True, help="Recurrent units.")
@click.option(
    "--age-feature/--no-age-feature",
    default=None,
    help="Add each step's age (steps since its history segment started, e.g. the "
    "C-MAPSS cycle) as a feature. Default: on for cmapss: data, off otherwise.",
)
@click.option(
    "--aux-horizons",
    type=click.Choice(AUX_MODES),
    default=DEFAULT_AUX,
    show_default=True,
    help="Also train outputs for failure within other horizons, with the same BCE (extra "
    "supervision of how far the failure is; the saved model keeps the single H logit): "
    "sparse = H/3, 2H/3, 4H/3, 5H/3, 5H/2; dense = every H/6 up to 25H/6 (chosen on "
    "C-MAPSS and plant fleets, see docs/models.md).",
)
@click.option("--epochs", type=int, default=40, show_default=True, help="Most epochs.")
@click.option(
    "--patience",
    type=int,
    default=10,
    show_default=True,
    help="Stop after this many epochs without a better validation PR-AUC.",
)
@click.option("--batch-size", type=int, default=256, show_default=True, help="Windows per step.")
@click.option("--learning-rate", type=float, default=1e-3, show_default=True, help="AdamW rate.")
@click.option(
    "--weight-decay",
    type=float,
    default=1e-4,
    show_default=True,
    help="Decoupled weight decay lambda.",
)
@click.option(
    "--validation-fraction",
    type=float,
    default=0.2,
    show_default=True,
    help="Fraction of machines (never rows) held out for validation (with --folds 1).",
)
@click.option(
    "--folds",
    type=click.IntRange(1, 20),
    default=1,
    show_default=True,
    help="K > 1: split machines in K folds, train one member per fold, choose calibration "
    "and threshold on every machine's out-of-fold score, and serve the K members as one "
    "model (mean logit; K times the inference cost). Measured on C-MAPSS in "
    "docs/models.md. Not with --members.",
)
@click.option(
    "--members",
    type=click.IntRange(1, 20),
    default=1,
    show_default=True,
    help="M > 1: train M copies of the network on the same training machines from M seeds "
    "(seed + 1000 k: weights and batch order), each stopping early on the same validation "
    "machines, and serve them as one model (mean logit; M times the training and "
    "inference cost). Not with --folds.",
)
@click.option(
    "--target-recall",
    type=float,
    default=None,
    help="Choose the threshold reaching this validation recall instead of max F1.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seed of the split, the initial weights and the batches.",
)
@click.option(
    "--lost-readings",
    type=click.FloatRange(0.0, 1.0, max_open=True),
    default=None,
    help="Fraction of readings removed at random before training, so that the model "
    "learns what a lost or late reading looks like in a stream (a filled step) instead "
    "of taking it for a failure. [default: 0.02 for history: data, 0 for cmapss:]",
)
@click.option("--quiet", is_flag=True, help="No per-epoch progress bar.")
def train_cmd(
    data: str,
    events: Path | None,
    horizon: str,
    out: Path,
    features_config: str | None,
    sequence_length: int,
    min_steps: int,
    architecture: str,
    units: int,
    age_feature: bool | None,
    aux_horizons: str,
    epochs: int,
    patience: int,
    batch_size: int,
    learning_rate: float,
    weight_decay: float,
    validation_fraction: float,
    folds: int,
    members: int,
    target_recall: float | None,
    seed: int,
    lost_readings: float | None,
    quiet: bool,
) -> None:
    """Train a failure model and write an artifact directory.

    Machines are split into training and validation (seeded; or into K folds with
    --folds); normalization is fitted on the training machines; training stops early on
    validation PR-AUC; the probability calibration and the alert threshold are chosen on
    validation machines and saved with the model. For cmapss: data the test protocol is
    scored too (never tuned on).
    """
    if folds > 1 and members > 1:
        raise click.UsageError(
            f"--folds {folds} and --members {members}: choose one kind of ensemble "
            "(K folds, or M seeds on one split)"
        )
    configure_logging()
    from evaluation.workflow import train_artifact

    window = window_of(features_config, data)
    summary = train_artifact(
        data=data,
        events=events,
        window=window,
        horizon_steps=parse_horizon(horizon, window.step_ms),
        out=out,
        sequence_length=sequence_length,
        min_steps=min_steps,
        architecture=architecture,
        units=units,
        age_feature=data.startswith("cmapss:") if age_feature is None else age_feature,
        aux=aux_horizons,
        epochs=epochs,
        patience=patience,
        batch_size=batch_size,
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        validation_fraction=validation_fraction,
        folds=folds,
        members=members,
        target_recall=target_recall,
        lost_readings=lost_readings,
        seed=seed,
        verbose=0 if quiet else 1,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    for name, metrics in summary.items():
        if isinstance(metrics, dict) and "f1" in metrics:
            echo_metrics(name, metrics)
    click.echo(f"wrote {out}")


@cli.command("fine-tune")
@click.option(
    "--model",
    "model_dir",
    type=click.Path(path_type=Path),
    required=True,
    help="Artifact directory to start from.",
)
@click.option(
    "--feedback",
    type=click.Path(path_type=Path),
    required=True,
    help="CSV or Parquet: equipment_id, ts (epoch ms), outcome (confirmed, "
    "false-alarm, no-fault-found). Confirmed labels the machine's windows within "
    "H before ts positive, the others negative.",
)
@click.option("--data", required=True, help=DATA_HELP + " Must hold the feedback's machines.")
@click.option("--events", type=click.Path(path_type=Path), default=None, help=EVENTS_HELP)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Directory for the fine-tuned artifact.",
)
@click.option("--features-config", default=None, help=FEATURES_HELP)
@click.option(
    "--learning-rate",
    type=float,
    default=3e-4,
    show_default=True,
    help="AdamW rate (lower than training's, to stay near the trained model).",
)
@click.option("--epochs", type=int, default=5, show_default=True, help="Most epochs.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the batches.")
@click.option("--quiet", is_flag=True, help="No per-epoch progress bar.")
def fine_tune_cmd(
    model_dir: Path,
    feedback: Path,
    data: str,
    events: Path | None,
    out: Path,
    features_config: str | None,
    learning_rate: float,
    epochs: int,
    seed: int,
    quiet: bool,
) -> None:
    """Fine-tune a model on operator feedback with the training core at a lower rate."""
    configure_logging()
    from evaluation.workflow import fine_tune_artifact

    n = fine_tune_artifact(
        model_dir,
        feedback,
        data,
        events,
        window_of(features_config, data),
        out,
        learning_rate=learning_rate,
        epochs=epochs,
        seed=seed,
        verbose=0 if quiet else 1,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    click.echo(f"fine-tuned on {n} windows; wrote {out}")
