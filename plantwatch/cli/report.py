"""`plantwatch report`: a run's outputs next to the ground truth, with a PNG."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import click

from plantwatch.cli.main import cli, settings_from
from plantwatch.cli.options import since_option


def _newest_horizon_ms(models_dir: Path) -> int | None:
    """Horizon (ms) of the newest artifact in the models directory, if any."""
    from models.registry import versions_in

    best: tuple[float, int] | None = None
    for path in versions_in(models_dir).values():
        try:
            doc = json.loads((path / "spec.json").read_text())
            horizon = int(doc["horizon_steps"]) * int(doc["feature_spec"]["window"]["step_ms"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        mtime = (path / "spec.json").stat().st_mtime
        if best is None or mtime > best[0]:
            best = (mtime, horizon)
    return None if best is None else best[1]


@cli.command("report")
@since_option("1d", "Start of the event-time range")
@click.option("--until", default=None, help="End of the range (same forms) [default: now].")
@click.option(
    "--max-lead",
    default=None,
    help="How long before a failure a ticket still counts as its warning, e.g. 60m "
    "[default: twice the newest model's horizon].",
)
@click.option(
    "--png",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write risk over time of a few failed machines, failures and tickets marked.",
)
@click.option(
    "--json-out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Also write the figures as JSON, with each false ticket (and its machine's next "
    "failure), missed failure and unjudged ticket (machine and time) to look into.",
)
@click.pass_context
def report_cmd(
    ctx: click.Context,
    since: str,
    until: str | None,
    max_lead: str | None,
    png: Path | None,
    json_out: Path | None,
) -> None:
    """Summarize a run: records, predictions, tickets, and how tickets met the failures.

    Failures come from the events topic (ground truth, e.g. the simulator's), tickets
    from the alerting store, predictions from InfluxDB. A failure is caught when a
    ticket of its machine opened at most --max-lead before it; a ticket with no failure
    of its machine within --max-lead after it is a false alarm, unless its machine's last
    prediction in the range came sooner than that: then it is not judged yet. Of the
    false alarms whose machine failed later, it says how much later (warnings that came
    too early, rather than alarms with no failure behind them).
    """
    from pipeline.errors import OptionError, PlantwatchError
    from plantwatch.connections import influx_client, influx_errors
    from plantwatch.flux import parse_duration, parse_range
    from plantwatch.report import build_report, plot_report

    settings = settings_from(ctx)
    start, stop = parse_range(since, until, datetime.now(UTC))
    if max_lead is None:
        horizon = _newest_horizon_ms(settings.models_dir)
        if horizon is None:
            raise PlantwatchError(
                f"no model in PLANTWATCH_MODELS_DIR ({settings.models_dir}) to take the "
                "horizon from: pass --max-lead (how long before a failure a ticket still "
                "counts as its warning, e.g. --max-lead 60m) or point PLANTWATCH_MODELS_DIR "
                "at the models the scorer used"
            )
        lead_ms = 2 * horizon
    else:
        delta = parse_duration(max_lead)
        if delta is None:
            raise OptionError("--max-lead", max_lead, "a duration such as 30m, 2h")
        lead_ms = int(delta.total_seconds() * 1000)
    start_ms, end_ms = int(start.timestamp() * 1000), int(stop.timestamp() * 1000)
    with influx_errors(settings), influx_client(settings) as client:
        report = build_report(settings, start_ms, end_ms, lead_ms, client)
        for line in report.lines():
            click.echo(line)
        if png is not None:
            shown = plot_report(report, client, settings, png)
            click.echo(f"report plot             {png} ({', '.join(shown) or 'no machine'})")
    if json_out is not None:
        json_out.write_text(json.dumps(report.to_doc(), indent=1))
