"""The development services read the shell's settings through their own small protocol."""

from __future__ import annotations

from pathlib import Path

from devservices.config import ServiceSettings, env_name
from plantwatch.settings import Settings, load_settings
from plantwatch.settings import env_name as settings_env_name


def test_env_names_agree_with_the_settings() -> None:
    for field in Settings.model_fields:
        assert env_name(field) == settings_env_name(field)


def test_the_settings_have_every_attribute_the_services_read(tmp_path: Path) -> None:
    settings = load_settings({"state_dir": tmp_path}, read_env=False)
    read = [name for name, value in vars(ServiceSettings).items() if isinstance(value, property)]
    assert len(read) == 20
    for name in read:
        assert hasattr(settings, name), name
