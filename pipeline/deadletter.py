"""Dead letters: a refused record goes to the DLQ topic with its original bytes untouched.

The dead letter's key and value are the source record's key and value, byte for byte; the
reason and the source coordinates travel in headers (as Kafka Connect does), so any tool can
read, inspect and re-publish a dead letter:

=========================== =====================================================
header                      value (UTF-8)
=========================== =====================================================
``plantwatch.reason``       a reason code (``ingest.contract.REASONS``, ``duplicate``
                            is never dead-lettered, ``too_late`` is)
``plantwatch.detail``       the precise message: field, value, what was expected
``plantwatch.source.topic`` source topic
``plantwatch.source.partition`` source partition
``plantwatch.source.offset``    source offset
``plantwatch.source.timestamp`` source record timestamp (epoch ms)
``plantwatch.stage``        the stage that refused it (``ingest``)
``plantwatch.redriven.from`` only on a letter of a record that a redrive re-published:
                            the earlier letter, ``dlq-topic[partition]@offset``
``plantwatch.original.size`` only on a truncated letter: the source value's size in bytes
``plantwatch.original.sha256`` only on a truncated letter: the source value's SHA-256 (hex)
``plantwatch.original.key_size`` only when the key was truncated: its size in bytes
=========================== =====================================================

A letter must fit the broker's record limit (``message.max.bytes``, 1 MiB by default),
while a compressed source batch can carry a record several times larger: a value longer
than :data:`MAX_LETTER_VALUE` bytes (a key longer than :data:`MAX_LETTER_KEY`) is stored
truncated, with the original size and hash in headers, so the letter is never refused
and never retried forever.

The source record's own headers follow, unchanged, except ``plantwatch.*`` ones (a
producer cannot forge a reason); a redrive puts them back on the copy.

>>> letter = dead_letter("telemetry", 2, 41, 1700000000000, b"k", b"{", "not_json", "bad")
>>> dict(letter.headers)["plantwatch.source.offset"]
b'41'
>>> reason_of(letter.headers)
('not_json', 'bad')
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

REASON = "plantwatch.reason"
DETAIL = "plantwatch.detail"
REDRIVEN_FROM = "plantwatch.redriven.from"
"""Header on a redriven copy (and on a letter of one): ``dlq-topic[partition]@offset``."""
PREFIX = "plantwatch."
ORIGINAL_SIZE = "plantwatch.original.size"
ORIGINAL_SHA256 = "plantwatch.original.sha256"
ORIGINAL_KEY_SIZE = "plantwatch.original.key_size"
_MAX_DETAIL = 2000
#: Longest value a letter stores (with key and headers it stays below the broker's 1 MiB).
MAX_LETTER_VALUE = 1_000_000
#: Longest key a letter stores.
MAX_LETTER_KEY = 4096
#: Most bytes of the source record's own headers a letter keeps.
MAX_SOURCE_HEADERS = 16_384


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """What to produce to the DLQ topic."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def dead_letter(
    topic: str,
    partition: int,
    offset: int,
    timestamp_ms: int | None,
    key: bytes | None,
    value: bytes | None,
    reason: str,
    detail: str,
    stage: str = "ingest",
    source_headers: Sequence[tuple[str, bytes]] | None = None,
) -> DeadLetter:
    """Build the dead letter for one refused source record.

    ``source_headers``: the record's own headers, kept after plantwatch's (but for
    ``plantwatch.*`` ones other than :data:`REDRIVEN_FROM`).

    >>> own = [("trace", b"t-1"), ("plantwatch.reason", b"forged"), (REDRIVEN_FROM, b"d[0]@3")]
    >>> letter = dead_letter("telemetry", 0, 1, None, None, b"{", "not_json", "bad",
    ...                      source_headers=own)
    >>> reason_of(letter.headers), letter.headers[-2:]
    (('not_json', 'bad'), [('trace', b't-1'), ('plantwatch.redriven.from', b'd[0]@3')])

    A value too large for the DLQ is cut, with its size and hash in headers:

    >>> big = dead_letter("telemetry", 0, 1, None, None, b"x" * 2_000_000, "too_large", "big")
    >>> len(big.value), headers_of(big.headers)["original.size"]
    (1000000, '2000000')
    """
    headers = [
        (REASON, reason.encode()),
        (DETAIL, detail[:_MAX_DETAIL].encode("utf-8", "replace")),
        ("plantwatch.source.topic", topic.encode()),
        ("plantwatch.source.partition", str(partition).encode()),
        ("plantwatch.source.offset", str(offset).encode()),
        (
            "plantwatch.source.timestamp",
            str(timestamp_ms if timestamp_ms is not None else -1).encode(),
        ),
        ("plantwatch.stage", stage.encode()),
    ]
    if value is not None and len(value) > MAX_LETTER_VALUE:
        headers.append((ORIGINAL_SIZE, str(len(value)).encode()))
        headers.append((ORIGINAL_SHA256, hashlib.sha256(value).hexdigest().encode()))
        value = value[:MAX_LETTER_VALUE]
    if key is not None and len(key) > MAX_LETTER_KEY:
        headers.append((ORIGINAL_KEY_SIZE, str(len(key)).encode()))
        key = key[:MAX_LETTER_KEY]
    room = MAX_SOURCE_HEADERS
    for k, v in source_headers or ():
        if k.startswith(PREFIX) and k != REDRIVEN_FROM:
            continue
        room -= len(k.encode("utf-8", "replace")) + len(v or b"")
        if room < 0:
            break
        headers.append((k, v))
    return DeadLetter(key, value, headers)


def letter_of(tp: Any, message: Any, reason: str, detail: str, stage: str = "ingest") -> DeadLetter:
    """:func:`dead_letter` of a consumed record (kafka-python's ``ConsumerRecord``) of ``tp``."""
    return dead_letter(
        tp.topic,
        tp.partition,
        message.offset,
        message.timestamp,
        message.key,
        message.value,
        reason,
        detail,
        stage=stage,
        source_headers=message.headers,
    )


def headers_of(headers: Sequence[tuple[str, bytes]] | None) -> dict[str, str]:
    """A dead letter's ``plantwatch.*`` headers as text, without the prefix.

    >>> letter = dead_letter("telemetry", 2, 41, None, None, b"{", "not_json", "bad")
    >>> fields = headers_of(letter.headers)
    >>> fields["reason"], fields["source.offset"], fields["source.timestamp"], fields["stage"]
    ('not_json', '41', '-1', 'ingest')
    """
    return {
        k[len(PREFIX) :]: v.decode("utf-8", "replace")
        for k, v in headers or ()
        if k.startswith(PREFIX)
    }


def reason_of(headers: Sequence[tuple[str, bytes]]) -> tuple[str, str]:
    """The (reason, detail) pair of a dead letter's headers."""
    found = headers_of(headers)
    return found.get("reason", ""), found.get("detail", "")
