"""Ways to show a history frame: a text summary, a CSV file, a PNG plot."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

from plantwatch.history import EVENT_COLUMNS

if TYPE_CHECKING:
    import pandas as pd

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"


def iso(when: Any) -> str:
    """A UTC time as ``2025-01-01T00:00:00.000Z`` (milliseconds).

    >>> import pandas as pd
    >>> iso(pd.Timestamp("2025-01-01T00:00:01.5", tz="UTC"))
    '2025-01-01T00:00:01.500Z'
    """
    return str(when.strftime(_TIME_FORMAT))[:-3] + "Z"


def sensor_columns(frame: pd.DataFrame) -> list[str]:
    """The sensor columns of a history frame (everything but the event columns)."""
    return [c for c in frame.columns if c not in EVENT_COLUMNS]


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """The merged frame as CSV: ``time`` (ISO, UTC, ms) then the columns; blanks for gaps."""
    out = frame.copy()
    out.index = [iso(t) for t in frame.index]
    out.to_csv(path, index_label="time", lineterminator="\n")


def _number(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{float(value):.4g}"


def text_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """Rows as left-aligned columns, two spaces apart."""
    widths = [max(len(str(c)) for c in column) for column in zip(header, *rows, strict=True)]
    return [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]


def summary_lines(
    frame: pd.DataFrame,
    equipment_id: str,
    every: str,
    limit: int = 20,
    levels: str | None = None,
) -> list[str]:
    """A readable summary: range, sensor statistics, risk, alerts and tickets.

    ``levels`` says which rule raises the level (:func:`plantwatch.fleet.levels_text`);
    the model's own threshold is shown as that, not as an alert level.
    """
    from plantwatch.fleet import model_thresholds_text

    lines = [
        f"equipment {equipment_id}: {len(frame)} rows from {iso(frame.index[0])} "
        f"to {iso(frame.index[-1])} ({every})"
    ]
    sensors = sensor_columns(frame)
    if sensors:
        rows = []
        for name in sensors:
            values = frame[name].dropna()
            last = values.iloc[-1] if len(values) else None
            rows.append(
                [
                    name,
                    str(len(values)),
                    _number(values.min()),
                    _number(values.mean()),
                    _number(values.max()),
                    _number(last),
                ]
            )
        lines += ["", *text_table(["sensor", "n", "min", "mean", "max", "last"], rows)]
    else:
        lines += [
            "",
            "no telemetry in range (ingest writes it with PLANTWATCH_INGEST_WRITE_INFLUX)",
        ]
    risk = frame["risk"].dropna()
    if len(risk):
        at = risk.index[-1]
        peak = risk.idxmax()
        level = frame.at[at, "level"]
        lines += [
            "",
            f"risk: {len(risk)} predictions; latest {risk.iloc[-1]:.3f} "
            f"(level {level if isinstance(level, str) else '?'}) at {iso(at)}; "
            f"max {risk.max():.3f} at {iso(peak)}",
        ]
        if levels:
            lines.append(f"  {levels}")
        thresholds = frame["threshold"].dropna()
        model = model_thresholds_text((None, float(t)) for t in thresholds.unique())
        if model:
            lines.append(f"  {model}")
    else:
        lines += ["", "risk: no predictions in range"]
    for column, title in (("alert", "alerts"), ("ticket", "tickets")):
        events = frame[column].dropna()
        lines += ["", f"{title}: {len(events)}"]
        shown = events.iloc[-limit:]
        if len(events) > limit:
            lines.append(f"  … {len(events) - limit} earlier")
        lines += [f"  {iso(when)}  {text}" for when, text in shown.items()]
    return lines


def plot_history(
    frame: pd.DataFrame,
    path: Path,
    title: str,
    max_sensors: int = 12,
    levels: dict[str, float] | None = None,
) -> None:
    """A PNG: one panel per sensor, a risk panel; alerts and tickets as vertical lines.

    The risk panel shows the alert ``levels`` that raise WARNING and CRITICAL (e.g.
    ``{"WARNING": 0.5, "CRITICAL": 0.6}``) and, dotted grey, the model's own threshold.

    Alert transitions are red (to CRITICAL), orange (to WARNING) or green (back to OK)
    vertical lines; ticket changes are dashed blue ones.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sensors = sensor_columns(frame)[:max_sensors]
    panels = len(sensors) + 1
    fig, axes = plt.subplots(panels, 1, sharex=True, figsize=(11, 1.8 * panels + 1), squeeze=False)
    for ax, name in zip(axes[:, 0], sensors, strict=False):
        values = frame[name].dropna()
        ax.plot(values.index, values.to_numpy(), lw=0.9)
        ax.set_ylabel(name, rotation=0, ha="right", fontsize=8)
    risk_ax = axes[-1, 0]
    risk = frame["risk"].dropna()
    risk_ax.plot(risk.index, risk.to_numpy(), color="black", lw=1.1, label="risk")
    colors = {"CRITICAL": "red", "WARNING": "orange", "OK": "green"}
    for name, value in (levels or {}).items():
        risk_ax.axhline(value, color=colors.get(name, "purple"), ls="--", lw=0.9,
                        label=f"{name} level {value:g}")  # fmt: skip
    threshold = frame["threshold"].dropna()
    if len(threshold):
        risk_ax.step(threshold.index, threshold.to_numpy(), where="post", color="grey",
                     ls=":", lw=0.9, label="model threshold (sets no level)")  # fmt: skip
    risk_ax.set_ylim(0, 1)
    risk_ax.set_ylabel("risk", rotation=0, ha="right", fontsize=8)
    for when, text in frame["alert"].dropna().items():
        to = str(text).split("->", 1)[-1].split(" ", 1)[0].split(";", 1)[0]
        for ax in axes[:, 0]:
            ax.axvline(when, color=colors.get(to, "purple"), lw=0.8, alpha=0.8)
    for when in frame["ticket"].dropna().index:
        for ax in axes[:, 0]:
            ax.axvline(when, color="blue", ls=":", lw=0.9, alpha=0.8)
    risk_ax.legend(loc="upper left", fontsize=7)
    fig.suptitle(title)
    fig.autofmt_xdate()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
