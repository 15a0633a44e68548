"""The current profile: settings that commands read when nothing else gives them.

`make demo` gives each run topics, consumer groups, an InfluxDB bucket and a ticket store
of its own, and saves them as the current profile (``plantwatch profile save NAME``), so
that ``plantwatch status``, ``tickets``, ``history``, ``report`` and ``dead-letters`` show
the newest run with no extra settings, and a second run never mixes with the first.

The profile is one JSON file, ``PLANTWATCH_PROFILE_FILE`` (default
``<PLANTWATCH_STATE_DIR>/profile.json``)::

    {"name": "demo-20261207-101500", "saved": "2026-12-07T10:15:00Z",
     "settings": {"PLANTWATCH_TOPIC_TELEMETRY": "demo-20261207-101500.telemetry", ...}}

A setting's value comes from, first to last: its option, its environment variable, the
profile, its default. Secrets, the state directory and the profile file itself are never
part of a profile. No click here: :mod:`plantwatch.cli.profile` prints what these return.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

from pipeline.errors import SettingsError

PREFIX = "PLANTWATCH_"
FILE_NAME = "profile.json"
#: Settings a profile never holds: where it is found, and secrets (environment only).
NOT_IN_PROFILE = frozenset({"state_dir", "profile_file"})
_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,100}$")


@dataclass(frozen=True)
class Profile:
    """A saved profile: its name, when it was saved, and its settings by variable name."""

    path: Path
    name: str
    saved: str
    settings: dict[str, str] = field(default_factory=dict)


def _environ(environ: Mapping[str, str] | None) -> dict[str, str]:
    source = os.environ if environ is None else environ
    return {k.upper(): v for k, v in source.items() if k.upper().startswith(PREFIX)}


def profile_path(
    options: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> Path:
    """Where the current profile lives for these options and this environment.

    >>> profile_path({}, {"PLANTWATCH_STATE_DIR": "/srv/pw"})
    PosixPath('/srv/pw/profile.json')
    >>> profile_path({"profile_file": "/tmp/p.json"}, {"PLANTWATCH_STATE_DIR": "/srv/pw"})
    PosixPath('/tmp/p.json')
    """
    opts = {k: v for k, v in (options or {}).items() if v is not None}
    env = _environ(environ)
    explicit = opts.get("profile_file") or env.get(PREFIX + "PROFILE_FILE")
    if explicit:
        return Path(explicit).expanduser()
    state = opts.get("state_dir") or env.get(PREFIX + "STATE_DIR")
    base = Path(state).expanduser() if state else Path.home() / ".local" / "state" / "plantwatch"
    return base / FILE_NAME


def path_of(settings: Any) -> Path:
    """Where the current profile of these (built) settings lives."""
    return profile_path(
        {"profile_file": settings.profile_file, "state_dir": settings.state_dir}, {}
    )


def _broken(path: Path, why: str) -> SettingsError:
    return SettingsError(
        PREFIX + "PROFILE_FILE",
        str(path),
        f'a profile {{"name": ..., "settings": {{"PLANTWATCH_...": "..."}}}} ({why}); fix the '
        "file or remove it with `plantwatch profile clear`",
    )


def settable(settings_cls: type[BaseSettings]) -> dict[str, str]:
    """``{variable name: field name}`` of the settings a profile may hold."""
    return {
        PREFIX + name.upper(): name
        for name, info in settings_cls.model_fields.items()
        if name not in NOT_IN_PROFILE and "SecretStr" not in str(info.annotation)
    }


def read_profile(path: Path, settings_cls: type[BaseSettings] | None = None) -> Profile | None:
    """The profile at ``path``, or None when there is none.

    Raises:
        SettingsError: the file is not a profile, or sets what a profile may not (a
            secret, the state directory) or what is no setting of ``settings_cls``.
    """
    try:
        raw = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _broken(path, exc.strerror or str(exc)) from None
    try:
        doc = json.loads(raw)
    except ValueError as exc:
        raise _broken(path, f"not JSON: {exc}") from None
    values = doc.get("settings") if isinstance(doc, dict) else None
    if not isinstance(values, dict) or not isinstance(doc.get("name"), str):
        raise _broken(path, "no name or no settings object")
    settings = {str(k).upper(): v for k, v in values.items()}
    for key, value in settings.items():
        if not isinstance(value, str):
            raise _broken(path, f"{key} is not a string")
    if settings_cls is not None:
        allowed = settable(settings_cls)
        known = {PREFIX + name.upper() for name in settings_cls.model_fields}
        for key in settings:
            if key in known and key not in allowed:
                raise _broken(path, f"{key}: secrets and where the profile lives stay out of it")
            if key not in allowed:
                raise _broken(path, f"{key} is no setting")
    return Profile(path, doc["name"], str(doc.get("saved", "")), settings)


def save_profile(path: Path, name: str, settings: Mapping[str, str]) -> Profile:
    """Write a profile atomically (a temporary file renamed over the old one).

    Raises:
        SettingsError: ``name`` is not 1-100 characters of A-Z a-z 0-9 . _ -.
    """
    if not _NAME_RE.match(name):
        raise SettingsError("NAME", name, "1-100 characters of A-Z a-z 0-9 . _ -")
    saved = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    values = dict(sorted(settings.items()))
    doc = {"name": name, "saved": saved, "settings": values}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    tmp.replace(path)
    return Profile(path, name, saved, values)


def clear_profile(path: Path) -> Profile | None:
    """Remove the profile; the one removed (None when there was none, or it was unreadable)."""
    try:
        profile = read_profile(path)
    except SettingsError:
        profile = None
    try:
        path.unlink()
    except FileNotFoundError:
        return None
    return profile


class ProfileSource(PydanticBaseSettingsSource):
    """The settings source of the current profile, below the environment and the options.

    It finds the profile with the values of the sources before it (options and
    environment: ``profile_file``, ``state_dir``).
    """

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """Unused: :meth:`__call__` reads the whole profile at once."""
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        """``{field name: value}`` of the profile's settings (empty without a profile)."""
        state = self.current_state
        options = {k: state.get(k) for k in ("profile_file", "state_dir")}
        profile = read_profile(profile_path(options, {}), self.settings_cls)
        if profile is None:
            return {}
        names = settable(self.settings_cls)
        return {names[key]: value for key, value in profile.settings.items()}


def profile_origin(variable: str, options: Mapping[str, Any]) -> str:
    """`` (from the profile FILE)`` when the profile, not the environment, set ``variable``."""
    if variable in _environ(None):
        return ""
    path = profile_path(options, None)
    try:
        profile = read_profile(path)
    except SettingsError:
        return ""
    if profile is None or variable not in profile.settings:
        return ""
    return f" (set by the profile {profile.name!r} in {path}; `plantwatch profile show`)"
