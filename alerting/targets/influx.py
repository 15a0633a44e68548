"""``influx``: ticket points (opened, acknowledged, closed) in the measurement ``tickets``.

Always on: the alerting stage and `plantwatch tickets` queue them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from alerting.targets import TargetEnv, target

if TYPE_CHECKING:
    from alerting.outbox import Sender


@target("influx", choosable=False, order=50)
def influx(env: TargetEnv) -> Sender:
    """Write the row's line with the stage's InfluxDB writer."""
    from alerting.sinks import influx_sender

    return influx_sender(env.writer)
