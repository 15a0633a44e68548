"""`plantwatch evaluate`: window metrics, and the tickets the alert rules would open.

TensorFlow/Keras are imported inside the command, so ``plantwatch --help`` stays fast.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from evaluation.groundtruth import spread
from plantwatch.cli.main import cli, configure_logging, settings_from
from plantwatch.cli.models import (
    DATA_HELP,
    EVENTS_HELP,
    FEATURES_HELP,
    echo_metrics,
    parse_horizon,
    window_of,
)


def _ticket_figures(t: dict[str, Any]) -> str:
    """``12 opened, 3 false (precision 75%); failures 10: caught 8 (recall 80%)[, lead]``."""
    lead = t["ticket_lead_median"]
    return (
        f"{t['tickets']} opened, {t['false_alarms']} false (precision "
        f"{t['ticket_precision']:.0%}); failures {t['failures']}: caught {t['caught']} "
        f"(recall {t['ticket_recall']:.0%})"
        + ("" if lead is None else f", median lead {lead:.0f} steps")
    )


def _ticket_line(t: dict[str, Any]) -> str:
    line = (
        f"tickets (alert rules replayed): {_ticket_figures(t)}; {t['unjudged']} opened within "
        f"{t['max_lead_steps']:.0f} steps of the data's end, not judged"
    )
    early = t["false_then_failed_steps"]
    if early:
        line += (
            f"\n  false, failed later: {len(early)} of the {t['false_alarms']} false tickets: "
            f"their machine failed {spread(early)} steps after the ticket, past the "
            f"{t['max_lead_steps']:.0f} steps a warning may lead"
        )
    return line


def _parse_levels(value: str | None) -> tuple[float, ...]:
    """``--levels 0.5,0.6``: probabilities in [0, 1], each once, in the order given."""
    if value is None:
        return ()
    levels: list[float] = []
    for part in value.split(","):
        try:
            level = float(part)
        except ValueError:
            level = float("nan")
        if not 0.0 <= level <= 1.0:
            raise click.BadParameter(
                f"value {part.strip()!r} is not a probability in [0, 1] "
                "(expected comma-separated levels such as 0.5,0.6,0.7)",
                param_hint="--levels",
            )
        if level not in levels:
            levels.append(level)
    return tuple(levels)


def _level_line(row: dict[str, Any]) -> str:
    return (
        f"  level {row['level']:.2f} (reset {row['reset']:.2f}): {_ticket_figures(row)}; "
        f"ticket F1 {row['ticket_f1']:.2f}"
    )


@cli.command("evaluate")
@click.option(
    "--model",
    "model_dir",
    type=click.Path(path_type=Path),
    required=True,
    help="Artifact directory written by `plantwatch train`.",
)
@click.option("--data", required=True, help=DATA_HELP)
@click.option("--events", type=click.Path(path_type=Path), default=None, help=EVENTS_HELP)
@click.option(
    "--features-config",
    default=None,
    help=FEATURES_HELP + " Must match the model's, or the model is refused.",
)
@click.option(
    "--plots",
    type=click.Path(path_type=Path),
    default=None,
    help="Directory for PNG plots: training curves, PR curve, calibration, risk.",
)
@click.option(
    "--max-lead",
    default=None,
    help="history: data: how long before a failure a ticket still counts as its warning, "
    "in steps (60) or a duration (60m) [default: twice the model's horizon].",
)
@click.option(
    "--lost-readings",
    type=click.FloatRange(0.0, 1.0, max_open=True),
    default=0.0,
    show_default=True,
    help="Score the data as a stream that lost this fraction of its readings (at random, "
    "seeded): how the model holds up when messages are malformed or late.",
)
@click.option(
    "--levels",
    default=None,
    callback=lambda _ctx, _param, value: _parse_levels(value),
    help="history: data: also replay the tickets with the ticket level (PLANTWATCH_ALERT_"
    "TICKET_LEVEL, CRITICAL by default) raised at each of these probabilities, e.g. "
    "0.5,0.6,0.7,0.8; its reset keeps the configured distance below. One line per level "
    "and `tickets_by_level` in --json-out. Choose a level on history the model was not "
    "trained on, then set PLANTWATCH_ALERT_CRITICAL (and _RESET).",
)
@click.option(
    "--json-out",
    type=click.Path(path_type=Path),
    default=None,
    help="Also write the metrics as JSON to this file (history: data: with each false "
    "ticket and its machine's next failure, each missed failure and each unjudged ticket).",
)
@click.pass_context
def evaluate_cmd(
    ctx: click.Context,
    model_dir: Path,
    data: str,
    events: Path | None,
    features_config: str | None,
    plots: Path | None,
    max_lead: str | None,
    lost_readings: float,
    levels: tuple[float, ...],
    json_out: Path | None,
) -> None:
    """Score a model: accuracy, precision, recall, F1, ROC-AUC, PR-AUC, Brier, confusion, lead time.

    With the model's saved threshold. cmapss: data is scored with the C-MAPSS protocol (the
    last window of each of the 93 test engines with at least 50 cycles, label RUL <= H);
    history: data on every labelled window, and then as the pipeline would alert: every
    window is scored, the alert rules of the settings (PLANTWATCH_ALERT_*: critical
    level, pending steps, hysteresis) are replayed per machine, and the tickets they
    open are compared with the failures, as `plantwatch report` does for a live run.
    """
    configure_logging()
    from evaluation.workflow import evaluate_artifact
    from plantwatch.stages import alert_rules

    window = window_of(features_config, data)
    lead = None if max_lead is None else parse_horizon(max_lead, window.step_ms, "--max-lead")
    metrics = evaluate_artifact(
        model_dir,
        data,
        events,
        window,
        plots,
        rules=alert_rules(settings_from(ctx)),
        max_lead_steps=lead,
        lost_readings=lost_readings,
        levels=levels,
    )
    echo_metrics("evaluation", metrics)
    if "tickets" in metrics:
        click.echo(_ticket_line(metrics["tickets"]))
    rows = metrics.get("tickets_by_level", [])
    best = max(rows, key=lambda r: r["ticket_f1"], default=None)
    for row in rows:
        click.echo(_level_line(row) + ("  <- best ticket F1 here" if row is best else ""))
    if json_out:
        json_out.write_text(json.dumps(metrics, indent=1, default=float))
