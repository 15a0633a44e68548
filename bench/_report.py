"""The markdown table of every ``bench/results/*.json`` (appended to latest.md by bench.sh).

Each figure a benchmark summarised as median/min/max becomes a row; a file with no such
summary (a single run) contributes its rates, delays and percentiles as one-run rows, so
that nothing measured is left out. Each row names its file and the core count (and
whether the machine was busy) that file recorded.

    python bench/_report.py bench/results >> bench/results/latest.md
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Any

_HEADLINE = re.compile(r"(_per_s|_ms|^p50|^p99|^max|_mib|ratio_to_quix)$")
_CORES = re.compile(r"(\d+) (?:CPUs|cores)")
_SKIP = {"config", "per_run", "machine_after", "scorer_log_tail"}
# settings, not measurements
_SETTINGS = {"interval_ms", "step_ms", "grace_ms", "steps_per_s", "records_per_s", "poll_s"}


def _is_summary(v: Any) -> bool:
    return isinstance(v, dict) and {"median", "min", "max"} <= v.keys()


def _rows(data: Any, path: str, out: list[tuple[str, dict[str, Any]]]) -> None:
    if _is_summary(data):
        out.append((path, data))
        return
    if isinstance(data, dict):
        for k, v in data.items():
            if k not in _SKIP:
                _rows(v, f"{path}.{k}" if path else str(k), out)


def _singles(data: Any, path: str, out: list[tuple[str, float]]) -> None:
    if isinstance(data, dict):
        for k, v in data.items():
            if k in _SKIP or _is_summary(v):
                continue
            p = f"{path}.{k}" if path else str(k)
            number = isinstance(v, int | float) and not isinstance(v, bool)
            if number and k not in _SETTINGS and _HEADLINE.search(k):
                out.append((p, float(v)))
            else:
                _singles(v, p, out)


def _cores(data: dict[str, Any]) -> str:
    for key in ("cores", "machine_cores"):
        if isinstance(data.get(key), int):
            return str(data[key])
    m = data.get("machine")
    if isinstance(m, dict) and isinstance(m.get("cores"), int):
        return str(m["cores"])
    found = _CORES.search(json.dumps(data))
    return found.group(1) if found else "?"


def _num(x: float) -> str:
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 1:
        return f"{x:,.2f}"
    return f"{x:.4f}"


def table(results: Path) -> str:
    """The markdown table of every result file under ``results``."""
    lines = [
        "| benchmark | figure | median | min | max | runs | cores | measured |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    notes = []
    for path in sorted(results.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except ValueError:
            lines.append(f"| {path.stem} | (unreadable JSON) | | | | | | |")
            continue
        if not isinstance(data, dict):
            continue
        when = data.get("measured_at") or time.strftime(
            "%Y-%m-%dT%H:%MZ", time.gmtime(path.stat().st_mtime)
        )
        cores = _cores(data)
        summaries: list[tuple[str, dict[str, Any]]] = []
        _rows(data, "", summaries)
        for name, s in summaries:
            runs = len(s["runs"]) if isinstance(s.get("runs"), list) else data.get("runs", "")
            if not isinstance(runs, int):
                runs = len(runs) if isinstance(runs, list) else ""
            lines.append(
                f"| {path.stem} | {name} | {_num(s['median'])} | {_num(s['min'])} | "
                f"{_num(s['max'])} | {runs} | {cores} | {when} |"
            )
        singles: list[tuple[str, float]] = []
        _singles(data, "", singles)
        for name, v in singles:
            lines.append(f"| {path.stem} | {name} | {_num(v)} | | | 1 | {cores} | {when} |")
        if isinstance(data.get("busy"), str):
            notes.append(f"- {path.stem}: {data['busy']}")
    if notes:
        lines += ["", "Machine state during each run:", "", *notes]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(table(Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results")))
