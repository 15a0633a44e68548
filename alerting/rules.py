"""Alert rules (thresholds, pending, repeat, flapping, deadman) and silences.

Levels come from the failure probability with separate raise and reset thresholds
(hysteresis): a machine goes up to WARNING at ``warning`` and back to OK only below
``warning_reset``; likewise for CRITICAL.

Silences (maintenance windows) come from a JSON or YAML file::

    {"silences": [
        {"equipment_id": "pump-17", "start": "2026-05-01T06:00:00Z", "end": 1777622400000,
         "comment": "bearing swap"},
        {"asset_type": "compressor", "start": 0, "end": "2030-01-01T00:00:00Z"}
    ],
     "asset_types": {"cmp-a7": "compressor"}}

``start``/``end`` are epoch milliseconds or ISO 8601 times (``[start, end)``). A machine's
asset type is its entry in ``asset_types`` or else its ``equipment_id`` up to the last
``-`` (``pump-17`` -> ``pump``).

>>> book = Silences.parse({"silences": [{"asset_type": "pump", "start": 0, "end": 10}]}, "f")
>>> book.active("pump-17", 5), book.active("pump-17", 10), book.active("fan-1", 5)
(True, False, False)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from alerting.errors import RulesError

LEVELS = ("OK", "WARNING", "CRITICAL")
RANK = {name: i for i, name in enumerate(LEVELS)}

# The bounds of the rules, stated once: :class:`Rules` checks its values against them and
# the settings (``PLANTWATCH_ALERT_<RULE>``, :mod:`plantwatch.settings`) check theirs, each
# in its own words.
PROBABILITY_RULES = ("warning", "warning_reset", "critical", "critical_reset")
"""Rules that are probabilities, in [0, 1]."""
COUNT_RULES = ("pending_steps", "pending_ms", "repeat_ms", "flap_window_ms", "deadman_ms")
"""Rules that count steps or milliseconds, >= 0 (0: off)."""
MIN_FLAP_COUNT = 2
"""The fewest level changes that can make a machine flap."""
TICKET_LEVELS = ("WARNING", "CRITICAL")
"""The levels whose entry may open a ticket."""


def is_probability(value: float) -> bool:
    """Whether ``value`` is a probability (NaN is not).

    >>> is_probability(0.0), is_probability(1.5), is_probability(float("nan"))
    (True, False, False)
    """
    return 0.0 <= value <= 1.0


def thresholds_out_of_order(
    warning_reset: float, warning: float, critical: float, critical_reset: float
) -> str | None:
    """Which order of the thresholds is broken, if one is.

    ``"warning"``: not ``warning_reset <= warning <= critical``; ``"critical"``: not
    ``critical_reset <= critical``; None: both hold.

    >>> thresholds_out_of_order(0.4, 0.5, 0.6, 0.5) is None
    True
    >>> thresholds_out_of_order(0.4, 0.7, 0.6, 0.5), thresholds_out_of_order(0.4, 0.5, 0.6, 0.7)
    ('warning', 'critical')
    """
    if not warning_reset <= warning <= critical:
        return "warning"
    if not critical_reset <= critical:
        return "critical"
    return None


@dataclass(frozen=True)
class Rules:
    """How probabilities become alert levels and events.

    Attributes:
        warning: probability at or above which a machine becomes WARNING.
        warning_reset: below this a WARNING (or CRITICAL) machine returns to OK.
        critical: probability at or above which a machine becomes CRITICAL.
        critical_reset: below this a CRITICAL machine steps down to WARNING.
        pending_steps: consecutive predictions above a raise threshold before firing
            (0: use ``pending_ms`` only).
        pending_ms: or: this long (prediction time) above it before firing (0: off).
        repeat_ms: reminder interval while an alert stays raised (0: no reminders).
        flap_window_ms: window in which level changes are counted for flapping.
        flap_count: this many changes within the window make a machine flap: a step
            down is then held until the machine stayed below for a whole window.
        deadman_ms: wall-clock silence of a machine's predictions that raises NODATA
            (0: off).
        ticket_level: the level whose entry opens a maintenance ticket.
    """

    warning: float = 0.5
    warning_reset: float = 0.4
    critical: float = 0.6
    critical_reset: float = 0.5
    pending_steps: int = 3
    pending_ms: int = 0
    repeat_ms: int = 3_600_000
    flap_window_ms: int = 3_600_000
    flap_count: int = 4
    deadman_ms: int = 900_000
    ticket_level: str = "CRITICAL"

    def __post_init__(self) -> None:
        for name in PROBABILITY_RULES:
            value = getattr(self, name)
            if not is_probability(value):
                raise RulesError(f"rule {name}: value {value} is not a probability in [0, 1]")
        broken = thresholds_out_of_order(
            self.warning_reset, self.warning, self.critical, self.critical_reset
        )
        if broken == "warning":
            raise RulesError(
                f"rules: expected warning_reset <= warning <= critical, got "
                f"{self.warning_reset} / {self.warning} / {self.critical}"
            )
        if broken == "critical":
            raise RulesError(
                f"rules: expected critical_reset <= critical, got "
                f"{self.critical_reset} / {self.critical}"
            )
        for name in COUNT_RULES:
            if getattr(self, name) < 0:
                raise RulesError(f"rule {name}: value {getattr(self, name)} is not >= 0")
        if self.flap_count < MIN_FLAP_COUNT:
            raise RulesError(f"rule flap_count: value {self.flap_count} is not >= {MIN_FLAP_COUNT}")
        if self.ticket_level not in TICKET_LEVELS:
            raise RulesError(
                f"rule ticket_level: value {self.ticket_level!r} is not "
                f"{' or '.join(TICKET_LEVELS)}"
            )

    @property
    def ticket_reset(self) -> float:
        """The reset of the ticket level: below it an incident at that level steps down."""
        return self.critical_reset if self.ticket_level == "CRITICAL" else self.warning_reset

    def at_level(self, level: float) -> Rules:
        """These rules with the ticket level's raise threshold at ``level``.

        Its reset keeps the configured distance below (the hysteresis), clipped at 0; the
        other level moves only as far as ``warning <= critical`` needs. What
        ``plantwatch evaluate --levels`` replays.

        >>> r = Rules().at_level(0.8)
        >>> r.critical, r.critical_reset, r.warning
        (0.8, 0.7, 0.5)
        >>> r = Rules().at_level(0.3)
        >>> r.critical, r.critical_reset, r.warning, r.warning_reset
        (0.3, 0.2, 0.3, 0.3)
        """
        if not 0.0 <= level <= 1.0:
            raise RulesError(f"ticket level: value {level} is not a probability in [0, 1]")
        if self.ticket_level == "CRITICAL":
            reset = max(0.0, round(level - (self.critical - self.critical_reset), 9))
            warning = min(self.warning, level)
            return replace(
                self,
                critical=level,
                critical_reset=reset,
                warning=warning,
                warning_reset=min(self.warning_reset, warning),
            )
        return replace(
            self,
            warning=level,
            warning_reset=max(0.0, round(level - (self.warning - self.warning_reset), 9)),
            critical=max(self.critical, level),
        )


def _time(value: Any, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp() * 1000)
        except ValueError:
            pass
    raise RulesError(f"{where}: value {value!r} is not epoch ms or an ISO 8601 time")


@dataclass(frozen=True)
class Silence:
    """One maintenance window for a machine or an asset type."""

    start_ms: int
    end_ms: int
    equipment_id: str | None = None
    asset_type: str | None = None
    comment: str = ""


@dataclass(frozen=True)
class Silences:
    """The silences in force, by machine and by asset type."""

    items: tuple[Silence, ...] = ()
    asset_types: dict[str, str] = field(default_factory=dict)

    def asset_type(self, equipment_id: str) -> str:
        """The asset type of a machine (mapping, else the id up to its last '-')."""
        found = self.asset_types.get(equipment_id)
        if found is not None:
            return found
        return equipment_id.rsplit("-", 1)[0] if "-" in equipment_id else equipment_id

    def active(self, equipment_id: str, time_ms: int) -> bool:
        """Whether alerts of this machine are silenced at ``time_ms``."""
        if not self.items:
            return False
        kind = self.asset_type(equipment_id)
        for s in self.items:
            if s.start_ms <= time_ms < s.end_ms and (
                s.equipment_id == equipment_id or s.asset_type == kind
            ):
                return True
        return False

    @classmethod
    def parse(cls, doc: Any, source: str) -> Silences:
        """Silences from a parsed JSON/YAML document.

        Raises:
            RulesError: naming the file, the entry and the field that is wrong.
        """
        if not isinstance(doc, dict) or not isinstance(doc.get("silences", []), list):
            raise RulesError(f"{source}: expected an object with a list 'silences'")
        types = doc.get("asset_types", {})
        if not isinstance(types, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in types.items()
        ):
            raise RulesError(f"{source}: 'asset_types' must map equipment ids to type names")
        items = []
        for i, entry in enumerate(doc.get("silences", [])):
            where = f"{source}: silences[{i}]"
            if not isinstance(entry, dict):
                raise RulesError(f"{where}: expected an object")
            eid, kind = entry.get("equipment_id"), entry.get("asset_type")
            if (eid is None) == (kind is None) or not isinstance(eid or kind, str):
                raise RulesError(f"{where}: expected exactly one of equipment_id, asset_type")
            start = _time(entry.get("start"), f"{where}.start")
            end = _time(entry.get("end"), f"{where}.end")
            if end <= start:
                raise RulesError(f"{where}: end {end} is not after start {start}")
            items.append(Silence(start, end, eid, kind, str(entry.get("comment", ""))))
        return cls(tuple(items), dict(types))


def load_silences(path: Path | None) -> Silences:
    """Read a silences file (``.json``, ``.yaml``/``.yml``); None: no silences.

    Raises:
        RulesError: the file is missing, unreadable or malformed.
    """
    if path is None:
        return Silences()
    try:
        text = path.read_text()
    except OSError as exc:
        raise RulesError(f"{path}: cannot read the silences file: {exc.strerror}") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise RulesError(f"{path}: YAML silences need PyYAML; install it or use JSON") from None

        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise RulesError(f"{path}: not valid YAML: {exc}") from None
    else:
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise RulesError(f"{path}: not valid JSON: {exc}") from None
    return Silences.parse(doc or {}, str(path))
