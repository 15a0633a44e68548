"""Processes that plantwatch starts and stops by pid file, and the helpers they share."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import PortInUseError, ServiceError

Progress = Callable[[str], None]


def tail(path: Path, lines: int = 25) -> str:
    """The last ``lines`` lines of a log file ('' when it does not exist)."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(data.splitlines()[-lines:])


def port_in_use(host: str, port: int) -> bool:
    """Whether something already listens on (or holds) ``host:port``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def port_accepts(host: str, port: int, timeout: float = 0.5) -> bool:
    """Whether a TCP connection to ``host:port`` succeeds."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_free_port(host: str, port: int, service: str, setting: str) -> None:
    """Raise a clear error when ``host:port`` is taken by a process that is not ours."""
    if port_in_use(host, port):
        raise PortInUseError(
            f"{service} cannot listen on {host}:{port}: the port is in use by another process "
            f"(not started by plantwatch). Stop that process or choose another port with {setting}."
        )


@dataclass(frozen=True)
class ManagedProcess:
    """A long-running child process tracked by a pid file.

    Attributes:
        name: short name used in messages ("kafka", "influxdb").
        pidfile: where the pid is kept while the process runs.
        logfile: where the process's stdout and stderr go.
        marker: a string that the process's command line contains; guards against a
            recycled pid being taken for ours.
    """

    name: str
    pidfile: Path
    logfile: Path
    marker: str

    def pid(self) -> int | None:
        """The pid of our running process, or None (stale pid files are removed)."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        for _ in range(20):
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                stat = Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                break
            if stat.rsplit(")", 1)[-1].split()[0] == "Z":
                break
            if self.marker.encode() in cmdline.replace(b"\0", b" "):
                return pid
            if cmdline:
                break
            time.sleep(0.05)  # an empty cmdline: the process is in the middle of exec
        self.pidfile.unlink(missing_ok=True)
        return None

    def start(self, argv: Sequence[str], *, env: Mapping[str, str], cwd: Path) -> int:
        """Start the process detached from our session, logging to ``logfile``."""
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        self.pidfile.parent.mkdir(parents=True, exist_ok=True)
        with self.logfile.open("ab") as log:
            log.write(
                f"\n==== {time.strftime('%Y-%m-%dT%H:%M:%S')} starting {self.name}\n".encode()
            )
            log.flush()
            # posix_spawn rather than Popen: the service outlives us, so there is no
            # Popen object to wait for; setsid keeps our Ctrl-C away from it.
            pid = os.posix_spawn(
                "/bin/sh",
                ["/bin/sh", "-c", 'cd "$0" && exec "$@"', str(cwd), *argv],
                dict(env),
                file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_DUP2, log.fileno(), 1),
                    (os.POSIX_SPAWN_DUP2, log.fileno(), 2),
                ],
                setsid=True,
            )
        self.pidfile.write_text(f"{pid}\n")
        return pid

    def alive(self, pid: int) -> bool:
        """Whether ``pid`` still runs (and is not a zombie)."""
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        if stat.rsplit(")", 1)[-1].split()[0] == "Z":
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            return False
        return True

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop the process (SIGTERM, then SIGKILL after ``timeout``); False if none ran."""
        pid = self.pid()
        if pid is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if self.alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            while self.alive(pid):
                time.sleep(0.1)
        self.pidfile.unlink(missing_ok=True)
        return True

    def failure(self, what: str, retry: str) -> ServiceError:
        """A ServiceError that carries the tail of the log and the command to retry."""
        return ServiceError(
            f"{what}\n--- last lines of {self.logfile} ---\n{tail(self.logfile)}\n---\n"
            f"Fix the cause above, then retry with: {retry}"
        )


def run_logged(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    logfile: Path,
    progress: Progress,
    label: str,
    retry: str,
    every: float = 15.0,
    secrets: Sequence[str] = (),
) -> None:
    """Run a (long) build step with its output in ``logfile``, reporting progress.

    Every ``every`` seconds one line says how long the step has run and the last
    line it logged. A non-zero exit raises ServiceError with the tail of the log.
    The command line is logged with each of ``secrets`` replaced by ``***``.
    """
    logfile.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    shown = redact(" ".join(argv), secrets)
    with logfile.open("ab") as log:
        log.write(f"\n==== {time.strftime('%Y-%m-%dT%H:%M:%S')} $ {shown}\n".encode())
        log.flush()
        try:
            proc = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        except FileNotFoundError as exc:
            raise ServiceError(f"{label}: command not found: {argv[0]} ({exc})") from exc
        next_report = started + every
        while proc.poll() is None:
            time.sleep(0.5)
            now = time.monotonic()
            if now >= next_report:
                last = redact(tail(logfile, 1).strip(), secrets)[:120]
                progress(f"  {label}: {now - started:4.0f}s ... {last}")
                next_report = now + every
    if proc.returncode != 0:
        raise ServiceError(
            f"{label} failed (exit {proc.returncode}).\n--- last lines of {logfile} ---\n"
            f"{redact(tail(logfile, 30), secrets)}\n---\n"
            f"Fix the cause above, then retry with: {retry}"
        )
    progress(f"  {label}: done in {time.monotonic() - started:.0f}s")


def redact(text: str, secrets: Sequence[str]) -> str:
    """``text`` with every non-empty string of ``secrets`` replaced by ``***``.

    >>> redact("user=a password=hunter22", ["hunter22"])
    'user=a password=***'
    """
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def wait_until(
    check: Callable[[], bool],
    *,
    process: ManagedProcess,
    pid: int,
    timeout: float,
    what: str,
    retry: str,
) -> None:
    """Poll ``check`` until it passes; fail fast with the log if the process dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if not process.alive(pid):
            process.pidfile.unlink(missing_ok=True)
            raise process.failure(f"{process.name} exited while starting ({what})", retry)
        time.sleep(0.25)
    raise process.failure(f"{process.name} did not become ready in {timeout:.0f}s ({what})", retry)


def status_line(service: str, state: str, detail: str) -> str:
    """One aligned line of `plantwatch services status` / `up`."""
    return f"{service:<9} {state:<16} {detail}".rstrip()


def which(program: str, hint: str) -> str:
    """The full path of ``program`` on PATH, or a ServiceError saying how to get it."""
    found = shutil.which(program)
    if found is None:
        raise ServiceError(f"{program} is not on PATH; {hint}")
    return found
