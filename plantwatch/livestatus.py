"""One live progress line for `plantwatch run --status-every`.

Each line shows how much each stage has processed and how far it is behind (consumer
lag of its group), the riskiest machines right now (latest prediction in InfluxDB), and
the tickets opened so far (the alerting store). Lookups that fail show ``?`` instead of
stopping the run.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from plantwatch.settings import Settings

log = logging.getLogger("plantwatch.run")


def _count_tickets(settings: Settings) -> int | None:
    path = settings.alert_db
    if not path.is_file():
        return 0
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2)
        try:
            return int(conn.execute("SELECT COUNT(*) FROM tickets").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return None


@dataclass
class LiveStatus:
    """Keeps the previous sample so that it can show rates."""

    settings: Settings
    since: timedelta = timedelta(days=2)
    top: int = 3
    _last: dict[str, tuple[float, int]] = field(default_factory=dict)

    def line(self, client: Any | None = None) -> str:
        """The status line now."""
        parts = [self._stages(), self._riskiest(client), self._tickets()]
        return "status: " + " | ".join(parts)

    def _stages(self) -> str:
        from plantwatch.fleet import group_lags, stage_groups

        try:
            lags = group_lags(self.settings, stage_groups(self.settings))
        except Exception as exc:  # a status line must not stop the run
            log.debug("status: lag lookup failed: %s", exc)
            return "lag ?"
        out = []
        now = time.monotonic()
        for lag in lags:
            if lag.lag is None:
                out.append(f"{lag.stage} -")
                continue
            done = self._committed(lag.group)
            text = f"{lag.stage} lag {lag.lag:,}"
            if done is not None:
                before = self._last.get(lag.group)
                if before is not None and now > before[0]:
                    text += f" {(done - before[1]) / (now - before[0]):,.0f}/s"
                self._last[lag.group] = (now, done)
            out.append(text)
        return ", ".join(out)

    def _committed(self, group: str) -> int | None:
        from kafka import KafkaAdminClient

        from plantwatch.connections import kafka_config

        try:
            admin = KafkaAdminClient(**kafka_config(self.settings, request_timeout_ms=5_000))
            try:
                offsets = admin.list_group_offsets([group]).get(group) or {}
            finally:
                admin.close()
        except Exception:  # a status line must not stop the run
            return None
        return int(sum(max(0, int(om.offset)) for om in offsets.values()))

    def _riskiest(self, client: Any | None) -> str:
        if client is None:
            return "riskiest ?"
        from plantwatch.fleet import fleet_status

        try:
            start = datetime.now(UTC) - self.since
            machines, _ = fleet_status(client, self.settings, start, None)
        except Exception as exc:  # a status line must not stop the run
            log.debug("status: risk lookup failed: %s", exc)
            return "riskiest ?"
        shown = [f"{m.equipment_id} {m.risk:.2f}" for m in machines[: self.top] if m.risk]
        return "riskiest " + (", ".join(shown) or "-")

    def _tickets(self) -> str:
        count = _count_tickets(self.settings)
        return f"tickets {'?' if count is None else count}"
