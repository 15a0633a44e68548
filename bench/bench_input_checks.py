"""Benchmark: ingest throughput with and without issue 26's input checks, side by side.

The checks (full-match names, UTF-8 only, bounded numbers and times, sink refusals
isolated per source message, a tap written once) are timed against the ingest stage of
a baseline commit without them (default 3a82194), checked out in a temporary git
worktree. Each pair runs bench/bench_ingest.py once in each tree (single messages, batch
messages, single messages with features) against the same broker, the order alternating
between pairs; medians and the ratio current / baseline per mode are printed and written.

    .venv/bin/python bench/bench_input_checks.py --pairs 5 --out bench/results/input_checks.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MODES = ("single", "batch", "single+features")


def _run(tree: Path, messages: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ingest.json"
        subprocess.run(
            [
                sys.executable,
                "bench/bench_ingest.py",
                "--runs",
                "1",
                "--messages",
                str(messages),
                "--out",
                str(out),
            ],
            cwd=tree,
            env=dict(os.environ, PYTHONPATH=str(tree)),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        result = json.loads(out.read_text())
    return {mode: result[mode]["samples_per_s"]["median"] for mode in MODES}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the pairs; print a table and write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", default="3a82194", help="commit without the checks")
    parser.add_argument("--pairs", "--runs", type=int, default=5)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    runs: dict[str, dict[str, list[float]]] = {"baseline": {}, "current": {}}
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "baseline"
        subprocess.run(
            ["git", "worktree", "add", "--detach", str(base), args.baseline],
            cwd=ROOT,
            check=True,
            capture_output=True,
        )
        try:
            for pair in range(args.pairs):
                order = [("baseline", base), ("current", ROOT)]
                for name, tree in order if pair % 2 == 0 else order[::-1]:
                    for mode, rate in _run(tree, args.messages).items():
                        runs[name].setdefault(mode, []).append(rate)
                    print(
                        f"pair {pair + 1} {name}: {runs[name]['single'][-1]:,.0f} samples/s single",
                        file=sys.stderr,
                    )
        finally:
            subprocess.run(
                ["git", "worktree", "remove", "--force", str(base)], cwd=ROOT, check=False
            )
    result: dict[str, Any] = {
        "cores": os.cpu_count(),
        "pairs": args.pairs,
        "messages": args.messages,
        "baseline": args.baseline,
    }
    for mode in MODES:
        old, new = runs["baseline"][mode], runs["current"][mode]
        ratio = statistics.median(new) / statistics.median(old)
        result[mode] = {
            "baseline_samples_per_s": {
                "median": statistics.median(old),
                "min": min(old),
                "max": max(old),
            },
            "current_samples_per_s": {
                "median": statistics.median(new),
                "min": min(new),
                "max": max(new),
            },
            "ratio": ratio,
        }
        print(
            f"ingest {mode:<15} with the input checks {statistics.median(new):>9,.0f} samples/s, "
            f"without ({args.baseline}) {statistics.median(old):>9,.0f}: {ratio:.3f}x "
            f"(medians of {args.pairs} pairs, {os.cpu_count()} cores)"
        )
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
