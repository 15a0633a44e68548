"""A real local HTTP ticket target for tests: scripted failures, idempotency by header."""

from __future__ import annotations

import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class TicketTarget:
    """Answers each POST per ``script`` (a list of "500" / "timeout" / "ok"), then "ok".

    ``created`` counts tickets per Idempotency-Key (a repeated key is answered 200 but
    not created again, as ticket systems do); ``accepted`` counts the requests answered
    2xx per key (repeats included); ``requests`` counts every request. Setting ``mode``
    to "500" or "timeout" answers every request so until it is set back to None.
    """

    def __init__(self, script: list[str], sleep_s: float = 2.0) -> None:
        self.script = list(script)
        self.sleep_s = sleep_s
        self.created: Counter[str] = Counter()
        self.accepted: Counter[str] = Counter()
        self.mode: str | None = None
        self.requests = 0
        self.headers: list[dict[str, str]] = []
        self.lock = threading.Lock()
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with target.lock:
                    target.requests += 1
                    if target.mode is not None:
                        action = target.mode
                    else:
                        action = target.script.pop(0) if target.script else "ok"
                    target.headers.append(dict(self.headers))
                if action == "500":
                    self.send_response(500)
                    self.end_headers()
                    return
                if action == "timeout":
                    time.sleep(target.sleep_s)  # the client gives up first; the ticket is created
                key = self.headers.get("Idempotency-Key", "")
                with target.lock:
                    if body and key not in target.created:
                        target.created[key] += 1
                try:
                    self.send_response(201)
                    self.end_headers()
                    self.wfile.write(b'{"ok": true}')
                except OSError:
                    return
                if action == "ok":
                    with target.lock:
                        target.accepted[key] += 1

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/tickets"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
