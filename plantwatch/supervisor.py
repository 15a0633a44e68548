"""Run the pipeline's stages as child processes and keep them running.

``plantwatch run`` starts each stage (``ingest``, ``score``, ``alert``) as its own
process running the same command as the standalone service, with the same settings
(passed as ``PLANTWATCH_*`` variables). A stage that crashes is restarted with a growing
delay, at most ``max_restarts`` times in a row; a stage that exits 0 (for example after
``--idle-exit``) is done. :meth:`Supervisor.stop` sends SIGTERM, so every stage finishes
its batch and commits, and SIGKILLs what is still running after a grace period.

A stage may run as several instances (``instances``, e.g. two scorers on a 2-core machine:
one Python process scores on about one core). They are named ``<stage>-1``, ``<stage>-2``,
... and all join the stage's consumer group; instance k > 1 gets ``PLANTWATCH_INSTANCE_ID`` with
``-k`` appended, so each has its own Kafka transactional id and the first keeps the one a
single instance has.

Each child's output lines are prefixed with its name and go to one sink (stderr by
default), or to ``<log_dir>/<name>.log``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from pydantic import SecretStr

from plantwatch.settings import Settings, env_name

STAGES = ("ingest", "score", "alert")


def settings_env(settings: Settings) -> dict[str, str]:
    """The ``PLANTWATCH_*`` variables that give a child process these settings.

    >>> from plantwatch.settings import load_settings
    >>> env = settings_env(load_settings({"topic_partitions": 6}, read_env=False))
    >>> env["PLANTWATCH_TOPIC_PARTITIONS"], "PLANTWATCH_KAFKA_SASL_PASSWORD" in env
    ('6', False)
    """
    env: dict[str, str] = {}
    for name in type(settings).model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, bool):
            value = "true" if value else "false"
        env[env_name(name)] = str(value)
    return env


@dataclass
class Child:
    """One supervised stage instance (``stage`` is its name: ``score`` or ``score-2``)."""

    stage: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    failures_in_row: int = 0
    next_start: float = 0.0
    done: bool = False
    exit_codes: list[int] = field(default_factory=list)
    pump: threading.Thread | None = None


class Supervisor:
    """Start, watch, restart and stop the stage processes."""

    def __init__(
        self,
        stages: Mapping[str, Sequence[str]],
        env: Mapping[str, str],
        *,
        log_dir: Path | None = None,
        max_restarts: int = 5,
        echo: Callable[[str], None] | None = None,
        program: Sequence[str] = (sys.executable, "-m", "plantwatch"),
        instances: Mapping[str, int] | None = None,
    ) -> None:
        """Prepare (not start) the children: one per stage, or ``instances[stage]``.

        Args:
            stages: stage name -> extra arguments after ``plantwatch <stage>``.
            env: the environment of every child (``PLANTWATCH_*`` included).
            log_dir: write each child's output to ``<log_dir>/<stage>.log`` instead of
                prefixed lines on stderr.
            max_restarts: crashes in a row after which a stage is given up.
            echo: where the supervisor's own messages go (default stderr).
            program: the command each stage name and its arguments are appended to.
            instances: processes per stage (default 1), see the module doc.
        """
        self.env = dict(env)
        base_id = self.env.get("PLANTWATCH_INSTANCE_ID")
        self.children = []
        for stage, args in stages.items():
            n = (instances or {}).get(stage, 1)
            if n > 1 and not base_id:
                raise ValueError(f"{n} {stage} instances need PLANTWATCH_INSTANCE_ID in env")
            for k in range(1, n + 1):
                name = stage if n == 1 else f"{stage}-{k}"
                own = {"PLANTWATCH_INSTANCE_ID": f"{base_id}-{k}"} if k > 1 else {}
                self.children.append(Child(name, [*program, stage, *args], own))
        self.log_dir = log_dir
        self.max_restarts = max_restarts
        self.echo = echo or (lambda line: print(line, file=sys.stderr, flush=True))
        self._lock = threading.Lock()
        self._stopping = False

    def start(self) -> None:
        """Start every stage."""
        for child in self.children:
            self._spawn(child)

    def _spawn(self, child: Child) -> None:
        out: IO[bytes] | int
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            out = (self.log_dir / f"{child.stage}.log").open("ab")
        else:
            out = subprocess.PIPE
        child.proc = subprocess.Popen(
            child.argv,
            env=self.env | child.env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if out is subprocess.PIPE:
            child.pump = threading.Thread(target=self._pump, args=(child.stage, child.proc))
            child.pump.daemon = True
            child.pump.start()
        else:
            out.close()  # type: ignore[union-attr]
        self.echo(f"run: {child.stage} started (pid {child.proc.pid})")

    def _pump(self, stage: str, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        with proc.stdout:
            for raw in proc.stdout:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                with self._lock:
                    self.echo(f"[{stage}] {line}")

    def poll(self) -> bool:
        """Restart crashed stages when due; True while any stage is still to run."""
        now = time.monotonic()
        alive = False
        for child in self.children:
            if child.done:
                continue
            alive = True
            if child.proc is None:
                if now >= child.next_start and not self._stopping:
                    self._spawn(child)
                continue
            rc = child.proc.poll()
            if rc is None:
                continue
            child.exit_codes.append(rc)
            child.proc = None
            if child.pump is not None:
                child.pump.join(timeout=5)  # the rest of its output, up to the pipe's end
                child.pump = None
            if rc == 0 or self._stopping:
                child.done = True
                self.echo(f"run: {child.stage} finished (exit {rc})")
                continue
            child.failures_in_row += 1
            if child.failures_in_row > self.max_restarts:
                child.done = True
                self.echo(
                    f"run: {child.stage} failed {child.failures_in_row} times in a row "
                    f"(last exit {rc}); giving it up"
                )
                continue
            delay = min(30.0, 2.0 ** (child.failures_in_row - 1))
            child.restarts += 1
            child.next_start = now + delay
            self.echo(f"run: {child.stage} exited with {rc}; restarting in {delay:.0f}s")
        return alive

    def pids(self) -> dict[str, int]:
        """The running stages' process ids."""
        return {c.stage: c.proc.pid for c in self.children if c.proc is not None}

    def stop(self, grace_s: float = 30.0) -> dict[str, list[int]]:
        """SIGTERM every stage, SIGKILL after ``grace_s``; returns each stage's exit codes."""
        self._stopping = True
        running = [c for c in self.children if c.proc is not None and c.proc.poll() is None]
        for child in running:
            assert child.proc is not None
            self.echo(f"run: stopping {child.stage} (pid {child.proc.pid})")
            child.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for child in running:
            assert child.proc is not None
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.echo(f"run: {child.stage} did not stop within {grace_s:.0f}s; killing it")
                os.killpg(child.proc.pid, signal.SIGKILL)
                child.proc.wait()
        self.poll()
        return {c.stage: c.exit_codes for c in self.children}
