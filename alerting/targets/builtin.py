"""``builtin``: the alerting store itself (SQLite, ``PLANTWATCH_ALERT_DB``), always on.

A ticket is a row of the store (`plantwatch tickets`); nothing is queued or sent for it.
"""

from __future__ import annotations

from alerting.targets import TargetEnv, target


@target("builtin", summary="the store, always on", queued=False, order=10)
def builtin(env: TargetEnv) -> None:
    """No sender: the stage writes the ticket to the store in the batch's transaction."""
    return None
