from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

from devservices.process import (
    ManagedProcess,
    port_accepts,
    port_in_use,
    require_free_port,
    run_logged,
    tail,
)
from pipeline.errors import PortInUseError, ServiceError


def test_tail_returns_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert tail(log, 3) == "line 97\nline 98\nline 99"
    assert tail(tmp_path / "missing.log") == ""


def test_busy_port_is_detected_and_named() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        assert port_in_use("127.0.0.1", port)
        assert port_accepts("127.0.0.1", port)
        with pytest.raises(PortInUseError, match=f"127.0.0.1:{port}.*PLANTWATCH_X"):
            require_free_port("127.0.0.1", port, "Thing", "PLANTWATCH_X")
    assert not port_in_use("127.0.0.1", port)


def test_managed_process_start_stop_twice(tmp_path: Path) -> None:
    marker = str(tmp_path / "marker-arg")
    proc = ManagedProcess("sleeper", tmp_path / "s.pid", tmp_path / "s.log", marker)
    pid = proc.start(
        [sys.executable, "-c", "import time; time.sleep(60)", marker], env={}, cwd=tmp_path
    )
    assert proc.pid() == pid
    assert proc.stop(timeout=5) is True
    assert proc.pid() is None
    assert proc.stop(timeout=5) is False  # safe to call twice
    assert not (tmp_path / "s.pid").exists()


def test_stale_or_foreign_pidfile_is_ignored(tmp_path: Path) -> None:
    proc = ManagedProcess("x", tmp_path / "x.pid", tmp_path / "x.log", "no-such-marker-anywhere")
    (tmp_path / "x.pid").write_text("1\n")  # pid 1 runs, but is not ours
    assert proc.pid() is None
    assert not (tmp_path / "x.pid").exists()
    (tmp_path / "x.pid").write_text("garbage")
    assert proc.pid() is None


def test_failed_step_reports_log_tail_and_retry(tmp_path: Path) -> None:
    messages: list[str] = []
    with pytest.raises(ServiceError) as info:
        run_logged(
            [sys.executable, "-c", "print('boom: missing thing'); raise SystemExit(3)"],
            cwd=tmp_path,
            env={},
            logfile=tmp_path / "b.log",
            progress=messages.append,
            label="[x] build",
            retry="plantwatch services up",
        )
    text = str(info.value)
    assert "exit 3" in text
    assert "boom: missing thing" in text
    assert "retry with: plantwatch services up" in text


def test_missing_tool_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ServiceError, match="command not found"):
        run_logged(
            ["/nonexistent/tool"],
            cwd=tmp_path,
            env={},
            logfile=tmp_path / "b.log",
            progress=lambda _m: None,
            label="[x]",
            retry="r",
        )
