"""The ``plantwatch`` command line: one entry, a subcommand per service.

Heavy libraries (TensorFlow, pandas, the Kafka and InfluxDB clients) are imported
inside the commands that use them, so ``plantwatch --help`` stays instant.
"""

from __future__ import annotations

from plantwatch.cli import (  # noqa: F401 - registers the subcommands
    alert,
    deadletters,
    evaluate,
    history,
    ingest,
    models,
    profile,
    replay,
    report,
    run,
    score,
    services,
    simulate,
    smoke,
    status,
    tickets,
)
from plantwatch.cli.main import cli, main

__all__ = ["cli", "main"]
