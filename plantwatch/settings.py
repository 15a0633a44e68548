"""The one settings object of plantwatch.

Settings come from ``PLANTWATCH_*`` environment variables and from command-line
options (options win). Only the command line builds a :class:`Settings` from the
environment, through :func:`load_settings`; every other module receives the frozen
object (or the parts of it that it needs) as an argument.

A wrong value fails at start with a :class:`~pipeline.errors.SettingsError` whose
one-line message names the setting, the value and what was expected.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from alerting import targets as ticket_targets
from alerting.rules import (
    COUNT_RULES,
    MIN_FLAP_COUNT,
    PROBABILITY_RULES,
    is_probability,
    thresholds_out_of_order,
)
from pipeline.errors import SettingsError
from plantwatch.profile import ProfileSource, profile_origin

ENV_PREFIX = "PLANTWATCH_"

_TOPIC_RE = re.compile(r"^[A-Za-z0-9._-]{1,249}$")


def kafka_name(value: str, what: str = "a Kafka topic name") -> str:
    """``value`` when Kafka accepts it as a topic or group name, else a ValueError.

    >>> kafka_name("telemetry.dlq")
    'telemetry.dlq'
    >>> kafka_name("..")
    Traceback (most recent call last):
    ValueError: a Kafka topic name: 1-249 characters of A-Z a-z 0-9 . _ - (not . or ..)
    """
    if not _TOPIC_RE.match(value) or value in {".", ".."}:
        raise ValueError(f"{what}: 1-249 characters of A-Z a-z 0-9 . _ - (not . or ..)")
    return value


_HOSTPORT_RE = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")


def _is_control(char: str) -> bool:
    return char < " " or "\x7f" <= char <= "\x9f"


def _no_blanks(value: SecretStr, what: str) -> SecretStr:
    """``value`` if it has no white space or control characters (a stray newline of a file)."""
    if any(c.isspace() or _is_control(c) for c in value.get_secret_value()):
        raise ValueError(
            f"{what} without white space or control characters (a trailing newline from "
            "a file or a copy is a common cause)"
        )
    return value


def _default_state_dir() -> Path:
    return Path.home() / ".local" / "state" / "plantwatch"


def _default_instance() -> str:
    import socket

    return re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:100] or "plantwatch"


def _default_models_dir() -> Path:
    return Path.home() / ".local" / "share" / "plantwatch" / "models"


def _default_alert_db() -> Path:
    return Path.home() / ".local" / "share" / "plantwatch" / "alerting.sqlite"


def _default_cache_dir() -> Path:
    return Path.home() / ".cache" / "plantwatch"


def parse_host_port(value: str) -> tuple[str, int]:
    """Split ``host:port`` (IPv6 hosts in brackets) and check the port range.

    >>> parse_host_port("127.0.0.1:9092")
    ('127.0.0.1', 9092)
    >>> parse_host_port("[::1]:9092")
    ('::1', 9092)
    """
    match = _HOSTPORT_RE.match(value.strip())
    if match is None:
        raise ValueError("host:port")
    host, port = match.group(1).strip("[]"), int(match.group(2))
    if not 1 <= port <= 65535:
        raise ValueError("a port between 1 and 65535")
    return host, port


class Settings(BaseSettings):
    """Every setting of plantwatch, frozen once built.

    Each field is read from the environment variable ``PLANTWATCH_<FIELD NAME>``
    (upper case) and, except for secrets, from the option ``--<field-name>``.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        frozen=True,
        extra="forbid",
        case_sensitive=False,
        validate_default=True,
    )

    # --- Kafka -------------------------------------------------------------------
    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092",
        description="Kafka brokers to bootstrap from, as host:port[,host:port...].",
    )
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="How clients talk to the brokers."
    )
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None, description="SASL mechanism; required with SASL_PLAINTEXT or SASL_SSL."
    )
    kafka_sasl_username: str | None = Field(None, description="SASL user name.")
    kafka_sasl_password: SecretStr | None = Field(
        None, description="SASL password (secret: environment only)."
    )
    kafka_ssl_cafile: Path | None = Field(
        None, description="CA certificate (PEM) that signed the brokers' certificates."
    )
    kafka_compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = Field(
        "zstd",
        description="Compression of the record batches plantwatch's producers write (every "
        "stage reads all five, whatever a producer chose); zstd: the smallest batches and "
        "no slower than none here (bench/results/codecs.json).",
    )
    kafka_start_wait_s: float = Field(
        0.0,
        description="Seconds a command waits at start for a broker it cannot reach (refused, "
        "no answer, host name not found) before it gives up; 0 fails at once. For stages "
        "started together with their broker (systemd, containers).",
    )
    # --- Topics ------------------------------------------------------------------
    topic_telemetry: str = Field("telemetry", description="Topic of raw sensor telemetry.")
    topic_telemetry_dlq: str = Field(
        "telemetry.dlq", description="Dead-letter topic for telemetry that failed validation."
    )
    topic_features: str = Field("features", description="Topic of windowed feature vectors.")
    topic_predictions: str = Field("predictions", description="Topic of failure predictions.")
    topic_events: str = Field(
        "maintenance.events", description="Topic of failures and repairs (ground truth)."
    )
    topic_tickets: str = Field("maintenance.tickets", description="Topic of maintenance tickets.")
    topic_feedback: str = Field(
        "maintenance.feedback", description="Topic of ticket outcomes used as labels."
    )
    topic_partitions: int = Field(
        3, description="Partitions of topics plantwatch creates (the scale-out limit per stage)."
    )
    # --- InfluxDB ----------------------------------------------------------------
    influx_url: str = Field("http://127.0.0.1:8086", description="InfluxDB 2.x base URL.")
    influx_org: str = Field("plantwatch", description="InfluxDB organization.")
    influx_bucket: str = Field("plantwatch", description="InfluxDB bucket for all measurements.")
    influx_token: SecretStr = Field(
        SecretStr("plantwatch-local-dev-token"),
        description="InfluxDB API token (secret: environment only).",
    )
    influx_verify_ssl: bool = Field(True, description="Verify the InfluxDB TLS certificate.")
    influx_ssl_ca_cert: Path | None = Field(
        None, description="CA certificate (PEM) for an InfluxDB served over HTTPS."
    )
    # --- Ingest -------------------------------------------------------------------
    ingest_group: str = Field(
        "plantwatch-ingest", description="Consumer group of the ingest stage."
    )
    ingest_lateness_ms: int = Field(
        120_000,
        description="How far (ms) behind a machine's newest reading a reading may arrive; "
        "later ones go to the DLQ as too_late (with features on: at most the feature rules' "
        "grace_ms).",
    )
    ingest_max_past_s: int = Field(
        90 * 86400,
        description="Refuse readings whose event time is more than this (s) in the past.",
    )
    ingest_max_future_s: int = Field(
        600, description="Refuse readings whose event time is more than this (s) in the future."
    )
    ingest_max_message_bytes: int = Field(
        1_000_000, description="Refuse telemetry messages larger than this (bytes)."
    )
    ingest_write_influx: bool = Field(
        False, description="Also write raw telemetry to the InfluxDB measurement `telemetry`."
    )
    ingest_emit_features: bool = Field(
        True,
        description="Emit one feature vector per machine per closed step to the features topic.",
    )
    features_config: str = Field(
        "plant",
        description="Feature rules: a preset (plant, cmapss) or a JSON file of a WindowConfig.",
    )
    features_encoding: Literal["binary", "json"] = Field(
        "binary",
        description="How feature records are written: binary (compact and fast to decode) or "
        "json (readable with Kafka console tools); the scorer reads both.",
    )
    # --- Models ------------------------------------------------------------------
    models_dir: Path = Field(
        default_factory=_default_models_dir,
        description="Directory of model artifacts (one sub-directory each); the scorer serves "
        "the newest valid one and the alerting stage accepts predictions of any of them.",
    )
    # --- Scorer (#6) ---------------------------------------------------------------
    scorer_group: str = Field("plantwatch-scorer", description="Consumer group of the scorer.")
    topic_features_dlq: str = Field(
        "features.dlq",
        description="Dead-letter topic for feature records the scorer refuses (undecodable, "
        "or computed with other feature rules than the model's).",
    )
    scorer_max_batch: int = Field(
        1024, description="Most windows per model call (batches are padded to pinned sizes)."
    )
    scorer_max_wait_ms: int = Field(
        200,
        description="Longest wait (ms) for a batch to fill before it is scored anyway (sooner "
        "when no record came for 20 ms and the model is idle).",
    )
    scorer_device: Literal["auto", "cpu", "gpu"] = Field(
        "auto", description="Where the scorer runs the model: auto (a GPU when present), cpu, gpu."
    )
    scorer_model_poll_s: float = Field(
        5.0, description="Seconds between checks for a new model version (SIGHUP: check now)."
    )
    scorer_attribution_fraction: float = Field(
        0.5,
        description="Top sensors are computed for predictions with probability >= this "
        "fraction of the alert threshold (0: all; above 1/threshold: none).",
    )

    @field_validator("scorer_max_batch", "scorer_max_wait_ms")
    @classmethod
    def _check_scorer_batch(cls, value: int) -> int:
        if not 1 <= value <= 65536:
            raise ValueError("a number between 1 and 65536")
        return value

    @field_validator("scorer_model_poll_s", "scorer_attribution_fraction", "kafka_start_wait_s")
    @classmethod
    def _check_scorer_float(cls, value: float) -> float:
        if not (value >= 0 and value < float("inf")):
            raise ValueError("a finite number >= 0")
        return value

    # --- Alerting (#7) -------------------------------------------------------------
    topic_predictions_dlq: str = Field(
        "predictions.dlq",
        description="Dead-letter topic for prediction records the alerting stage refuses.",
    )
    alert_group: str = Field(
        "plantwatch-alerting", description="Consumer group of the alerting stage."
    )
    alert_db: Path = Field(
        default_factory=_default_alert_db,
        description="The alerting store (SQLite): alert state, tickets, outbox; instances on "
        "one host share it.",
    )
    alert_sinks: str = Field(
        "builtin",
        description=f"Ticket sinks, comma-separated: {ticket_targets.describe()}.",
    )
    alert_warning: float = Field(0.5, description="Probability that raises WARNING.")
    alert_warning_reset: float = Field(
        0.4, description="Probability below which WARNING returns to OK (hysteresis)."
    )
    alert_critical: float = Field(
        0.6,
        description="Probability that raises CRITICAL (chosen on the tickets of simulated "
        "fleets, docs/alerting.md).",
    )
    alert_critical_reset: float = Field(
        0.5, description="Probability below which CRITICAL steps down to WARNING."
    )
    alert_pending_steps: int = Field(
        3, description="Consecutive predictions above a threshold before an alert fires (0: off)."
    )
    alert_pending_ms: int = Field(
        0, description="Or: prediction-time ms above a threshold before it fires (0: off)."
    )
    alert_repeat_ms: int = Field(
        3_600_000, description="Reminder interval (ms) while an alert stays raised (0: none)."
    )
    alert_flap_window_ms: int = Field(
        3_600_000, description="Window (ms) in which level changes count towards flapping."
    )
    alert_flap_count: int = Field(
        4, description="Level changes within the window that make a machine flap (held alert)."
    )
    alert_deadman_ms: int = Field(
        900_000,
        description="Wall-clock ms without a machine's predictions that raise NODATA (0: off).",
    )
    alert_ticket_level: Literal["WARNING", "CRITICAL"] = Field(
        "CRITICAL", description="Entering this level opens a maintenance ticket."
    )
    alert_silences: Path | None = Field(
        None, description="JSON/YAML file of maintenance windows per machine or asset type."
    )
    alert_webhook_url: str | None = Field(
        None, description="Ticket webhook URL (https://, or http:// to loopback)."
    )
    alert_webhook_auth: SecretStr | None = Field(
        None, description="Authorization header value for the webhook (secret: environment only)."
    )
    alert_webhook_allow_http: bool = Field(
        False, description="Allow plain http:// webhooks to non-loopback hosts."
    )
    alert_webhook_timeout_s: float = Field(
        10.0, description="Seconds before a webhook request counts as failed (and is retried)."
    )
    alert_retry_max_s: float = Field(
        300.0, description="Longest backoff (s) between deliveries to a failing ticket sink."
    )

    @field_validator("alert_sinks")
    @classmethod
    def _check_alert_sinks(cls, value: str) -> str:
        names = [n.strip() for n in value.split(",") if n.strip()]
        choosable = ticket_targets.choosable()
        if not names or not set(names) <= set(choosable):
            raise ValueError(f"a comma-separated list of {', '.join(choosable)}")
        return ",".join(dict.fromkeys(names))

    # The alert rules' bounds are alerting.rules' (stated once, for Rules as well).
    @field_validator(*(f"alert_{name}" for name in PROBABILITY_RULES))
    @classmethod
    def _check_alert_probability(cls, value: float) -> float:
        if not is_probability(value):
            raise ValueError("a probability between 0 and 1")
        return value

    @field_validator(*(f"alert_{name}" for name in COUNT_RULES))
    @classmethod
    def _check_alert_non_negative(cls, value: int) -> int:
        if value < 0:
            raise ValueError("a number >= 0")
        return value

    @field_validator("alert_flap_count")
    @classmethod
    def _check_alert_flap(cls, value: int) -> int:
        if value < MIN_FLAP_COUNT:
            raise ValueError(f"a number >= {MIN_FLAP_COUNT}")
        return value

    @field_validator("alert_webhook_timeout_s", "alert_retry_max_s")
    @classmethod
    def _check_alert_seconds(cls, value: float) -> float:
        if not 0.0 < value <= 86400.0:
            raise ValueError("a number of seconds > 0 and <= 86400")
        return value

    @model_validator(mode="after")
    def _check_alert_rules(self) -> Settings:
        broken = thresholds_out_of_order(
            self.alert_warning_reset,
            self.alert_warning,
            self.alert_critical,
            self.alert_critical_reset,
        )
        if broken == "warning":
            raise SettingsError(
                env_name("alert_warning"),
                str(self.alert_warning),
                f"{env_name('alert_warning_reset')} <= {env_name('alert_warning')} <= "
                f"{env_name('alert_critical')}",
            )
        if broken == "critical":
            raise SettingsError(
                env_name("alert_critical_reset"),
                str(self.alert_critical_reset),
                f"a value <= {env_name('alert_critical')}={self.alert_critical}",
            )
        for name in self.alert_sinks.split(","):  # what a chosen ticket target needs
            for needed in ticket_targets.get(name).needs:
                if not getattr(self, needed):
                    raise SettingsError(
                        env_name("alert_sinks"), self.alert_sinks, f"{env_name(needed)} set"
                    )
        return self

    instance_id: str = Field(
        default_factory=_default_instance,
        description="This instance's stable name (default: host name); makes the Kafka "
        "transactional id, so a restarted instance fences its predecessor. Give each "
        "instance of a stage its own.",
    )
    metrics_port: int = Field(
        0, description="Serve Prometheus metrics on this port (127.0.0.1); 0 turns it off."
    )
    # --- Local development services ---------------------------------------------
    state_dir: Path = Field(
        default_factory=_default_state_dir,
        description="Where the local services keep data, logs and pid files.",
    )
    profile_file: Path | None = Field(
        None,
        description="The current profile: settings (JSON) that commands read when neither an "
        "option nor the environment sets them; `make demo` saves its run's there "
        "(`plantwatch profile`). Unset: <state_dir>/profile.json.",
    )
    log_level: Literal["debug", "info", "warning"] = Field(
        "info",
        description="Our own log lines from this level on. Third-party logs (TensorFlow, "
        "Kafka client) are shown only with debug (also: plantwatch --verbose).",
    )
    cache_dir: Path = Field(
        default_factory=_default_cache_dir,
        description="Where the Kafka jars and the influxd build are cached per version.",
    )
    kafka_version: str = Field("4.1.2", description="Apache Kafka version of the local broker.")
    influxdb_version: str = Field("2.8.0", description="InfluxDB version of the local server.")
    kafka_controller_port: int | None = Field(
        None, description="KRaft controller port of the local broker (default: broker port + 1)."
    )
    kafka_heap_mb: int = Field(512, description="Java heap of the local broker, in MiB.")
    services_tls_cert: Path | None = Field(
        None,
        description="Certificate chain (PEM) the local services serve TLS with, when the Kafka "
        "protocol is SSL/SASL_SSL or the InfluxDB URL is https://.",
    )
    services_tls_key: Path | None = Field(
        None, description="Unencrypted PKCS#8 private key (PEM) of services_tls_cert."
    )

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _check_bootstrap(cls, value: str) -> str:
        parts = [p.strip() for p in value.split(",")]
        if not parts or any(not p for p in parts):
            raise ValueError("host:port[,host:port...]")
        for part in parts:
            try:
                parse_host_port(part)
            except ValueError as exc:
                raise ValueError(f"host:port[,host:port...] ({part!r} is not {exc})") from None
        return ",".join(parts)

    @field_validator(
        "topic_telemetry",
        "topic_telemetry_dlq",
        "topic_features",
        "topic_predictions",
        "topic_events",
        "topic_tickets",
        "topic_feedback",
        "topic_features_dlq",
        "topic_predictions_dlq",
        "ingest_group",
        "scorer_group",
        "alert_group",
    )
    @classmethod
    def _check_kafka_name(cls, value: str, info: ValidationInfo) -> str:
        group = str(info.field_name).endswith("_group")
        return kafka_name(value, "a consumer group id" if group else "a Kafka topic name")

    @field_validator("influx_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError("an http:// or https:// URL such as http://127.0.0.1:8086")
        try:
            parts.port  # noqa: B018 - raises on a bad port
        except ValueError:
            raise ValueError("a URL with a port between 1 and 65535") from None
        return value.rstrip("/")

    @field_validator("influx_org", "influx_bucket")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise ValueError("1-64 characters of letters, digits, space . _ - (not leading)")
        return value

    @field_validator("influx_token")
    @classmethod
    def _check_token(cls, value: SecretStr) -> SecretStr:
        secret = value.get_secret_value()
        if len(secret.strip()) < 8:
            raise ValueError("a token of at least 8 characters")
        return _no_blanks(value, "a token")

    @field_validator("kafka_sasl_password")
    @classmethod
    def _check_password(cls, value: SecretStr | None) -> SecretStr | None:
        return None if value is None else _no_blanks(value, "a password")

    @field_validator("alert_webhook_auth")
    @classmethod
    def _check_header_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        secret = value.get_secret_value()
        if secret != secret.strip() or any(_is_control(c) for c in secret):
            raise ValueError(
                "an Authorization header value without control characters (a newline, a "
                "tab) or spaces at either end, such as 'Bearer <token>'"
            )
        return value

    @field_validator("kafka_version")
    @classmethod
    def _check_kafka_version(cls, value: str) -> str:
        if not re.fullmatch(r"[34]\.\d+\.\d+", value):
            raise ValueError("an Apache Kafka release such as 4.1.2 (3.x or 4.x)")
        return value

    @field_validator("influxdb_version")
    @classmethod
    def _check_influx_version(cls, value: str) -> str:
        if not re.fullmatch(r"2\.\d+\.\d+", value):
            raise ValueError("an InfluxDB 2.x release such as 2.8.0")
        return value

    @field_validator("kafka_controller_port")
    @classmethod
    def _check_port(cls, value: int | None) -> int | None:
        if value is not None and not 1 <= value <= 65535:
            raise ValueError("a port between 1 and 65535")
        return value

    @field_validator("instance_id")
    @classmethod
    def _check_instance(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9._-]{1,100}", value):
            raise ValueError("1-100 characters of A-Z a-z 0-9 . _ -")
        return value

    @field_validator("ingest_lateness_ms", "ingest_max_future_s")
    @classmethod
    def _check_non_negative(cls, value: int) -> int:
        if value < 0:
            raise ValueError("a number >= 0")
        return value

    @field_validator("ingest_max_past_s", "ingest_max_message_bytes")
    @classmethod
    def _check_positive(cls, value: int) -> int:
        if value <= 0:
            raise ValueError("a number > 0")
        return value

    @field_validator("metrics_port")
    @classmethod
    def _check_metrics_port(cls, value: int) -> int:
        if not 0 <= value <= 65535:
            raise ValueError("a port between 1 and 65535, or 0 for off")
        return value

    @field_validator("topic_partitions")
    @classmethod
    def _check_partitions(cls, value: int) -> int:
        if not 1 <= value <= 1000:
            raise ValueError("a partition count between 1 and 1000")
        return value

    @field_validator("kafka_heap_mb")
    @classmethod
    def _check_heap(cls, value: int) -> int:
        if not 128 <= value <= 65536:
            raise ValueError("a heap size between 128 and 65536 MiB")
        return value

    @model_validator(mode="after")
    def _check_sasl(self) -> Settings:
        if self.kafka_security_protocol.startswith("SASL_"):
            missing = [
                env_name(name)
                for name in ("kafka_sasl_mechanism", "kafka_sasl_username", "kafka_sasl_password")
                if getattr(self, name) is None
            ]
            if missing:
                raise SettingsError(
                    env_name("kafka_security_protocol"),
                    self.kafka_security_protocol,
                    f"{', '.join(missing)} to be set as well",
                )
        return self

    @property
    def kafka_hosts(self) -> list[tuple[str, int]]:
        """The bootstrap servers as (host, port) pairs."""
        return [parse_host_port(p) for p in self.kafka_bootstrap_servers.split(",")]

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Options, then the environment, then the current profile (:mod:`plantwatch.profile`)."""
        return (init_settings, env_settings, ProfileSource(settings_cls))


class _WithoutEnvironment(Settings):
    """Settings from explicit values only (for tests and embedding), ignoring PLANTWATCH_*."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        *args: PydanticBaseSettingsSource,
        **kwargs: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


SECRET_FIELDS = frozenset(
    name for name, field in Settings.model_fields.items() if "SecretStr" in str(field.annotation)
)


def env_name(field: str) -> str:
    """The environment variable that sets ``field``.

    >>> env_name("influx_url")
    'PLANTWATCH_INFLUX_URL'
    """
    return ENV_PREFIX + field.upper()


def option_name(field: str) -> str:
    """The command-line option that sets ``field``.

    >>> option_name("influx_url")
    '--influx-url'
    """
    return "--" + field.replace("_", "-")


def _describe(error: ErrorDetails) -> str:
    message = str(error.get("msg", "a valid value"))
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    if error.get("type") == "literal_error":
        allowed = (error.get("ctx") or {}).get("expected", "")
        return f"one of {allowed}"
    if message.startswith("Input should be "):  # "expected a valid number, unable to ..."
        return message[len("Input should be ") :]
    return message[0].lower() + message[1:] if message else "a valid value"


def load_settings(overrides: dict[str, Any] | None = None, *, read_env: bool = True) -> Settings:
    """Build the settings from the environment plus explicit overrides.

    Args:
        overrides: values given on the command line, by field name; ``None`` values
            are ignored so that an option left out falls back to the environment.
        read_env: read ``PLANTWATCH_*`` variables (the command line does; tests may not).

    Raises:
        SettingsError: naming the first wrong setting, its value and what was expected.
    """
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    try:
        if read_env:
            return Settings(**given)
        return _WithoutEnvironment(**given)
    except SettingsError:
        raise
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0]) if error.get("loc") else "?"
        if field in SECRET_FIELDS:
            value = "***"
        elif field in given:
            value = str(given[field])
        else:
            value = str(error.get("input", ""))
        setting = option_name(field) if field in given else env_name(field)
        origin = "" if field in given else profile_origin(env_name(field), given)
        raise SettingsError(setting, value, _describe(error) + origin) from None
