"""Errors of the models package.

::

    PlantwatchError
    └── ModelError              anything the models package refuses on purpose
        ├── DataError           a training/evaluation input is missing or malformed
        │   └── FeedbackError   a feedback file is malformed
        └── ArtifactError       a model artifact is missing or unreadable
            └── ArtifactMismatch  the artifact's spec does not match the features config
"""

from __future__ import annotations

from pipeline.errors import PlantwatchError


class ModelError(PlantwatchError):
    """Root of the errors the models package raises on purpose."""


class DataError(ModelError):
    """A data file or table cannot be used; the message names the file, column and value."""


class FeedbackError(DataError):
    """A feedback file (equipment_id, ts, outcome) is malformed."""


class ArtifactError(ModelError):
    """A model artifact directory is missing, incomplete or unreadable."""


class ArtifactMismatch(ArtifactError):
    """An artifact was trained with other feature settings than the ones in use."""
