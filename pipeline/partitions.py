"""Key partitioning: the partition of a record key, as Kafka's default partitioner picks it."""

from __future__ import annotations


class KeyPartitions:
    """The partition of each key, as kafka-python's default partitioner picks it, memoized.

    The default partitioner hashes the key with murmur2 in pure Python on every ``send``;
    a stage that sends one record per machine per step (the scorer) asks this instead and
    passes ``partition=`` explicitly. Same rule: ``murmur2(key) & 0x7fffffff`` modulo the
    partition count, over the sorted partition ids; the memo is dropped when the count
    changes.

    >>> from kafka.partitioner.default import murmur2
    >>> parts = KeyPartitions()
    >>> parts.of(b"machine-1", {0, 1, 2}) == (murmur2(b"machine-1") & 0x7FFFFFFF) % 3
    True
    """

    def __init__(self) -> None:
        self._memo: dict[bytes, int] = {}
        self._partitions: list[int] = []

    def of(self, key: bytes, partitions: set[int]) -> int:
        """The partition of ``key`` among the topic's ``partitions``."""
        if len(partitions) != len(self._partitions):
            self._memo.clear()
            self._partitions = sorted(partitions)
        found = self._memo.get(key)
        if found is None:
            from kafka.partitioner.default import murmur2

            found = self._memo[key] = self._partitions[
                (murmur2(key) & 0x7FFFFFFF) % len(self._partitions)
            ]
        return found
