"""The composition root (plantwatch.stages) and the registries its commands' choices come from."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from alerting import targets
from alerting.outbox import Sender
from alerting.rules import Rules
from pipeline.errors import SettingsError
from plantwatch.settings import Settings, load_settings
from plantwatch.stages import (
    NoModelError,
    alert_config,
    alert_rules,
    build_ingest,
    build_scorer,
    ingest_config,
    scorer_config,
    senders_of,
)


def test_every_rule_is_a_setting_and_the_rules_are_the_settings() -> None:
    for rule in fields(Rules):
        assert f"alert_{rule.name}" in Settings.model_fields, rule.name
    given = {
        "alert_warning": 0.3,
        "alert_warning_reset": 0.2,
        "alert_critical": 0.8,
        "alert_critical_reset": 0.7,
        "alert_pending_steps": 0,
        "alert_pending_ms": 60_000,
        "alert_repeat_ms": 0,
        "alert_flap_window_ms": 1000,
        "alert_flap_count": 9,
        "alert_deadman_ms": 0,
        "alert_ticket_level": "WARNING",
    }
    rules = alert_rules(load_settings(given, read_env=False))
    assert {f"alert_{r.name}": getattr(rules, r.name) for r in fields(Rules)} == given


def test_stage_configs_come_from_the_settings_and_the_options() -> None:
    s = load_settings(
        {
            "topic_telemetry": "t",
            "ingest_lateness_ms": 5,
            "ingest_max_past_s": 7,
            "scorer_max_batch": 64,
            "alert_sinks": "kafka,builtin",
        },
        read_env=False,
    )
    ingest = ingest_config(s, None, log_every_s=3.0)
    assert (ingest.topic, ingest.lateness_ms, ingest.limits.max_past_ms) == ("t", 5, 7000)
    assert ingest.transactional
    assert ingest.log_every_s == 3.0
    assert scorer_config(s).max_batch == 64
    assert scorer_config(s, max_batch=8, max_poll_records=10).max_batch == 8
    assert alert_config(s, crash_window_s=1.5).sinks == ("kafka",)  # builtin: the store


def test_the_ingest_stage_is_built_without_a_connection(tmp_path: Path) -> None:
    s = load_settings({"ingest_emit_features": True}, read_env=False)
    stage = build_ingest(s, tap=tmp_path / "tap.jsonl", influx=False)
    assert stage.name == "ingest"
    assert stage.on_hup is None
    assert stage.topics == ("telemetry", "telemetry.dlq", "features")
    stage.resources.close()  # the tap's file
    assert (tmp_path / "tap.jsonl").exists()
    without = build_ingest(load_settings({"ingest_emit_features": False}, read_env=False))
    assert without.topics == ("telemetry", "telemetry.dlq")


def test_the_scorer_needs_a_model(tmp_path: Path) -> None:
    with pytest.raises(NoModelError, match="no model artifact in"):
        build_scorer(load_settings({"models_dir": tmp_path}, read_env=False), echo=print)


def test_the_sinks_setting_comes_from_the_target_registry() -> None:
    assert targets.choosable() == ("builtin", "webhook", "kafka")
    description = Settings.model_fields["alert_sinks"].description or ""
    assert all(name in description for name in targets.choosable())
    assert "feedback" not in description
    assert "influx" not in description
    with pytest.raises(SettingsError, match="a comma-separated list of builtin, webhook, kafka"):
        load_settings({"alert_sinks": "influx"}, read_env=False)


def test_a_new_target_is_one_registration(monkeypatch: pytest.MonkeyPatch) -> None:
    """What a new module of alerting/targets does: the settings, outbox and stage know it."""
    targets.targets()  # the built-in targets first
    monkeypatch.setattr(targets, "_REGISTRY", dict(targets._REGISTRY))
    sent: list[bytes] = []

    @targets.target("pager", summary="test", needs=("alert_webhook_auth",), order=25)
    def pager(env: targets.TargetEnv) -> Sender:
        return lambda row: sent.append(row.payload)

    assert targets.choosable() == ("builtin", "webhook", "pager", "kafka")
    with pytest.raises(SettingsError, match="PLANTWATCH_ALERT_WEBHOOK_AUTH set"):
        load_settings({"alert_sinks": "pager"}, read_env=False)
    s = load_settings(
        {"alert_sinks": "builtin,pager", "alert_webhook_auth": "Bearer x"}, read_env=False
    )
    assert alert_config(s).sinks == ("pager",)
    assert "pager" in senders_of(s, producer=None, writer=None)
    with pytest.raises(ValueError, match="registered twice"):
        targets.target("pager")(pager)


def test_the_train_command_offers_the_registered_architectures() -> None:
    import click

    from models.network import ARCHITECTURES, AUX_MODES
    from plantwatch.cli import cli

    params = {p.name: p for p in cli.commands["train"].params}
    assert isinstance(params["architecture"].type, click.Choice)
    assert tuple(params["architecture"].type.choices) == ARCHITECTURES
    assert ARCHITECTURES == ("gru", "conv-gru", "lstm", "gru-stats")
    assert isinstance(params["aux_horizons"].type, click.Choice)
    assert tuple(params["aux_horizons"].type.choices) == AUX_MODES
