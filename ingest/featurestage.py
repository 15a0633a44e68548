"""The feature stage inside ingest: valid samples -> windows -> feature records.

Wraps :class:`features.streaming.StreamingWindows` with what a Kafka consumer needs:

- per partition, the readings go in with their source offsets, in arrival order;
- steps closed by a record *below* the partition's replay mark were emitted before a
  restart or rebalance and are suppressed (their state is rebuilt, their output is not
  repeated);
- :meth:`FeatureStage.rewind_offset` says where a replay of a partition must start so
  that every machine's open windows and carried state are rebuilt exactly; it travels
  in the metadata of each committed offset.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from features.config import WindowConfig
from features.streaming import StreamingWindows
from ingest.contract import Telemetry
from pipeline.featurerecords import Encoding, encode_feature


@dataclass(frozen=True)
class FeatureOutput:
    """One feature record to produce."""

    key: bytes
    value: bytes
    timestamp_ms: int


class FeatureStage:
    """Streaming windows of all machines of the assigned partitions.

    Args:
        config: the feature rules.
        encoding: how feature records are written (``pipeline.featurerecords``).
    """

    def __init__(self, config: WindowConfig, encoding: Encoding = "binary") -> None:
        self.config = config
        self.encoding: Encoding = encoding
        self.fingerprint = config.fingerprint()
        self.windows = StreamingWindows(config)
        self.emitted = 0
        self.suppressed = 0

    def update(
        self, records: Sequence[Telemetry], offsets: Sequence[int], replay_until: int | None
    ) -> tuple[list[FeatureOutput], list[int]]:
        """Feed one partition's valid samples; returns outputs and positions of late ones.

        Args:
            records: valid samples of one partition, in arrival order.
            offsets: their source offsets.
            replay_until: the partition's committed offset while replaying, else None.
        """
        # Readings near the float range (valid: the contract takes any finite number) can
        # overflow a square or a product; such an aggregate is emitted as missing.
        with np.errstate(over="ignore", invalid="ignore"):
            update = self.windows.update(records, offsets)
        outputs: list[FeatureOutput] = []
        for step in update.steps:
            if (
                replay_until is not None
                and step.source_offset is not None
                and step.source_offset < replay_until
            ):
                self.suppressed += 1
                continue
            end = step.step_start + self.config.step_ms
            outputs.append(
                FeatureOutput(
                    step.equipment_id.encode(),
                    encode_feature(
                        step.equipment_id,
                        step.step_start,
                        end,
                        self.fingerprint,
                        step.vector,
                        self.encoding,
                    ),
                    end,
                )
            )
        self.emitted += len(outputs)
        return outputs, update.late

    def rewind_offset(self, equipment_ids: Sequence[str]) -> int | None:
        """Where a replay must start to rebuild these machines (None: nothing open)."""
        return self.windows.rewind_offset(equipment_ids)

    def forget(self, equipment_ids: Sequence[str]) -> None:
        """Drop machines whose partition was revoked."""
        self.windows.forget(equipment_ids)
