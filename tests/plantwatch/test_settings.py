from __future__ import annotations

import pytest

from pipeline.errors import SettingsError
from plantwatch.settings import Settings, env_name, load_settings, option_name


def test_defaults_are_loopback_and_valid() -> None:
    s = load_settings(read_env=False)
    assert s.kafka_bootstrap_servers == "127.0.0.1:9092"
    assert s.influx_url == "http://127.0.0.1:8086"
    assert s.kafka_hosts == [("127.0.0.1", 9092)]


def test_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANTWATCH_TOPIC_TELEMETRY", "plant.telemetry")
    monkeypatch.setenv("PLANTWATCH_INFLUX_TOKEN", "a-very-secret-token")
    s = load_settings()
    assert s.topic_telemetry == "plant.telemetry"
    assert s.influx_token.get_secret_value() == "a-very-secret-token"


def test_options_override_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANTWATCH_INFLUX_BUCKET", "from-env")
    assert load_settings({"influx_bucket": "from-cli"}).influx_bucket == "from-cli"
    assert load_settings({"influx_bucket": None}).influx_bucket == "from-env"


def test_settings_are_frozen() -> None:
    s = load_settings(read_env=False)
    with pytest.raises(Exception, match="frozen"):
        s.influx_org = "other"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("kafka_bootstrap_servers", "localhost", "host:port"),
        ("kafka_bootstrap_servers", "a:1,,b:2", "host:port"),
        ("kafka_bootstrap_servers", "h:99999", "between 1 and 65535"),
        ("kafka_security_protocol", "TLS", "one of 'PLAINTEXT'"),
        ("influx_url", "127.0.0.1:8086", "http:// or https:// URL"),
        ("influx_url", "http://h:70000", "port between 1 and 65535"),
        ("topic_features", "bad topic!", "Kafka topic name"),
        ("topic_features", "..", "Kafka topic name"),
        ("influx_bucket", "", "1-64 characters"),
        ("kafka_heap_mb", "12", "between 128 and 65536"),
        ("kafka_controller_port", "0", "between 1 and 65535"),
        ("influxdb_version", "1.8.10", "InfluxDB 2.x"),
        ("kafka_version", "latest", "Apache Kafka release"),
        ("influx_verify_ssl", "maybe", "valid boolean"),
    ],
)
def test_wrong_values_name_setting_value_and_expectation(
    monkeypatch: pytest.MonkeyPatch, field: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(env_name(field), value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert "\n" not in message
    assert env_name(field) in message
    assert repr(value) in message
    assert expected in message
    assert info.value.setting == env_name(field)


def test_cli_value_errors_name_the_option() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({"influx_url": "ftp://x"}, read_env=False)
    assert info.value.setting == option_name("influx_url") == "--influx-url"


def test_secret_values_are_never_echoed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANTWATCH_INFLUX_TOKEN", "short")
    with pytest.raises(SettingsError) as info:
        load_settings()
    assert "short" not in str(info.value)
    assert "***" in str(info.value)


def test_secrets_are_masked_in_repr() -> None:
    s = load_settings(
        {
            "kafka_security_protocol": "SASL_SSL",
            "kafka_sasl_mechanism": "SCRAM-SHA-512",
            "kafka_sasl_username": "svc",
            "kafka_sasl_password": "hunter2-hunter2",
            "influx_token": "token-token-token",
        },
        read_env=False,
    )
    text = repr(s) + str(s) + s.model_dump_json()
    assert "hunter2" not in text
    assert "token-token-token" not in text


def test_sasl_needs_its_credentials() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({"kafka_security_protocol": "SASL_PLAINTEXT"}, read_env=False)
    message = str(info.value)
    assert "PLANTWATCH_KAFKA_SASL_MECHANISM" in message
    assert "PLANTWATCH_KAFKA_SASL_PASSWORD" in message


def test_unknown_setting_is_refused() -> None:
    with pytest.raises(SettingsError):
        load_settings({"influx_buckt": "x"}, read_env=False)


def test_every_field_has_a_description() -> None:
    for name, field in Settings.model_fields.items():
        assert field.description, name


# --- issue 26: a secret with white space or control characters is refused, never printed ---
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("influx_token", "tok-en-secret-1234\n"),
        ("influx_token", "tok-en secret-1234"),
        ("influx_token", "tok-en-secret\x1b-1234"),
        ("kafka_sasl_password", "pass-word-secret\n"),
        ("kafka_sasl_password", "\tpass-word-secret"),
        ("alert_webhook_auth", "Bearer web-hook-secret\r\n"),
        ("alert_webhook_auth", "Bearer web\x7fhook-secret"),
    ],
)
def test_secrets_with_blanks_are_refused_without_echo(
    monkeypatch: pytest.MonkeyPatch, field: str, value: str
) -> None:
    monkeypatch.setenv(env_name(field), value)
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert info.value.setting == env_name(field)
    assert "\n" not in message
    assert "secret" not in message.replace("secret: environment", "")
    assert "***" in message


def test_a_webhook_auth_with_a_space_inside_is_fine(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANTWATCH_ALERT_WEBHOOK_AUTH", "Bearer abc.def")
    assert load_settings().alert_webhook_auth is not None
