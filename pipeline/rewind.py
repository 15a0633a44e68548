"""Rewind metadata: where a partition's windows can be rebuilt from, kept in its offset commit.

A stage with per-machine windows commits, beside each partition's offset, the earliest
offset whose records its open windows still need (``{"rewind": N}``). After a restart or a
rebalance the partition is sought back there and replayed up to the committed offset:
windows are rebuilt, and nothing is emitted again (:func:`settle_replay`).
"""

from __future__ import annotations

import json
from typing import Any


def commit_metadata(rewind: int) -> str:
    """The offset-commit metadata for a partition.

    >>> commit_metadata(41), parse_rewind('{"rewind": 41}'), parse_rewind("junk")
    ('{"rewind":41}', 41, None)
    """
    return json.dumps({"rewind": rewind}, separators=(",", ":"))


def parse_rewind(metadata: str | None) -> int | None:
    """The rewind offset in commit metadata, or None."""
    try:
        value = json.loads(metadata or "").get("rewind")
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and value >= 0 else None


def settle_replay(tp: Any, offsets: dict[Any, int], replay_until: dict[Any, int]) -> None:
    """After a batch's records of partition ``tp``: end its replay, or keep it out of the commit.

    A partition sought back to its rewind point is replayed up to its committed offset
    (``replay_until[tp]``); the outputs of those records were committed before. A batch
    that ends inside the replay must not commit its offset: that would move the
    partition's commit back below outputs already committed, and a crash before the replay
    ends would then emit them again. So such a partition is left out of the batch's
    commit (its offset and rewind point stand) until a batch reaches the mark.

    >>> offsets, until = {"p": 7}, {"p": 9}
    >>> settle_replay("p", offsets, until); offsets, until
    ({}, {'p': 9})
    >>> offsets = {"p": 9}
    >>> settle_replay("p", offsets, until); offsets, until
    ({'p': 9}, {})
    """
    until = replay_until.get(tp)
    if until is None:
        return
    if offsets.get(tp, 0) >= until:
        del replay_until[tp]
    else:
        offsets.pop(tp, None)
