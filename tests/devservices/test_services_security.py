"""Secured local-service configuration (no services started: config files and checks only)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from devservices.influxdb import InfluxService
from devservices.kafka import KafkaService
from pipeline.errors import SettingsError
from plantwatch.kafka_check import check_kafka_login
from plantwatch.settings import Settings, load_settings

KEY = "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n"
CERT = "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n"


def _settings(tmp_path: Path, **extra: object) -> Settings:
    (tmp_path / "server.key").write_text(KEY)
    (tmp_path / "server.pem").write_text(CERT)
    values: dict[str, object] = {
        "state_dir": tmp_path / "state",
        "kafka_bootstrap_servers": "127.0.0.1:62292",
        "kafka_security_protocol": "SASL_SSL",
        "kafka_sasl_mechanism": "SCRAM-SHA-512",
        "kafka_sasl_username": "admin",
        "kafka_sasl_password": "s3cret-pass-9q",
        "services_tls_cert": tmp_path / "server.pem",
        "services_tls_key": tmp_path / "server.key",
        "influx_url": "https://127.0.0.1:62286",
    }
    values.update(extra)
    return load_settings(values, read_env=False)


def test_sasl_ssl_broker_config_has_a_secured_listener_and_no_password(tmp_path: Path) -> None:
    kafka = KafkaService.from_settings(_settings(tmp_path))
    props = kafka._write_config()
    text = props.read_text()
    assert "listeners=SASL_SSL://127.0.0.1:62292,INTERNAL://127.0.0.1:62294," in text
    assert "inter.broker.listener.name=INTERNAL" in text
    assert "listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512" in text
    assert "listener.name.sasl_ssl.ssl.keystore.type=PEM" in text
    assert "s3cret-pass-9q" not in text
    keystore = kafka.state_dir / "keystore.pem"
    assert keystore.read_text() == KEY + CERT
    assert stat.S_IMODE(keystore.stat().st_mode) == 0o600
    assert kafka.url == "SASL_SSL://127.0.0.1:62292"
    assert kafka.internal_endpoint == "127.0.0.1:62294"
    assert "s3cret-pass-9q" not in repr(kafka)


def test_plain_users_live_in_a_private_server_properties(tmp_path: Path) -> None:
    kafka = KafkaService.from_settings(_settings(tmp_path, kafka_sasl_mechanism="PLAIN"))
    props = kafka._write_config()
    assert 'user_admin="s3cret-pass-9q"' in props.read_text()
    assert stat.S_IMODE(props.stat().st_mode) == 0o600


def test_plaintext_broker_config_is_unchanged(tmp_path: Path) -> None:
    kafka = KafkaService.from_settings(
        load_settings(
            {"state_dir": tmp_path, "kafka_bootstrap_servers": "127.0.0.1:62292"}, read_env=False
        )
    )
    text = kafka._write_config().read_text()
    assert "listeners=PLAINTEXT://127.0.0.1:62292,CONTROLLER://127.0.0.1:62293" in text
    assert "inter.broker.listener.name=PLAINTEXT" in text
    assert "INTERNAL" not in text
    assert "keystore" not in text


def test_tls_without_certificate_names_the_settings(tmp_path: Path) -> None:
    kafka = KafkaService.from_settings(_settings(tmp_path, services_tls_cert=None))
    with pytest.raises(SettingsError, match="PLANTWATCH_SERVICES_TLS_CERT"):
        kafka._write_config()
    influx = InfluxService.from_settings(_settings(tmp_path, services_tls_key=None))
    with pytest.raises(SettingsError, match="PLANTWATCH_SERVICES_TLS_KEY"):
        influx._tls_flags()


def test_pkcs1_key_is_refused_with_the_conversion(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    (tmp_path / "server.key").write_text(KEY.replace("PRIVATE KEY", "RSA PRIVATE KEY"))
    with pytest.raises(SettingsError, match="openssl pkcs8 -topk8"):
        KafkaService.from_settings(settings)._write_config()


def test_a_password_the_storage_tool_cannot_parse_is_refused_masked(tmp_path: Path) -> None:
    kafka = KafkaService.from_settings(_settings(tmp_path, kafka_sasl_password="a,b]=c-long"))
    with pytest.raises(SettingsError, match="PLANTWATCH_KAFKA_SASL_PASSWORD='\\*\\*\\*'") as info:
        kafka._write_config()
    assert "a,b]=c-long" not in str(info.value)


def test_https_influx_gets_tls_flags(tmp_path: Path) -> None:
    influx = InfluxService.from_settings(_settings(tmp_path))
    assert influx.url == "https://127.0.0.1:62286"
    assert influx._tls_flags() == [
        "--tls-cert",
        str(tmp_path / "server.pem"),
        "--tls-key",
        str(tmp_path / "server.key"),
    ]


def test_login_check_does_nothing_for_plaintext_or_an_unreachable_broker(tmp_path: Path) -> None:
    check_kafka_login(load_settings({"kafka_bootstrap_servers": "127.0.0.1:1"}, read_env=False))
    check_kafka_login(_settings(tmp_path, kafka_bootstrap_servers="127.0.0.1:1"))
