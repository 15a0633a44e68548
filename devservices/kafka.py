"""A single-node Apache Kafka broker (KRaft) from Maven Central jars, for development and tests.

The jars of ``org.apache.kafka:kafka_2.13`` and its runtime dependencies, plus a
log4j2 binding, are fetched once with Maven into ``<cache_dir>/kafka/<version>/libs``.
The broker runs as a combined broker+controller on loopback with its data, config,
logs and pid file under ``<state_dir>/kafka``.

With ``kafka_security_protocol`` other than PLAINTEXT the client listener speaks that
protocol: TLS from ``services_tls_cert``/``services_tls_key`` (a PEM keystore), SASL
for the user ``kafka_sasl_username`` (SCRAM credentials are created when the storage
is formatted; PLAIN users live in the broker's JAAS config). The controller and an
inter-broker listener (controller port + 1) stay PLAINTEXT on loopback.
"""

from __future__ import annotations

import shutil
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from pydantic import SecretStr

from devservices.config import ServiceSettings, env_name
from devservices.process import (
    ManagedProcess,
    Progress,
    port_accepts,
    require_free_port,
    run_logged,
    status_line,
    wait_until,
    which,
)
from pipeline.errors import ServiceError, SettingsError
from pipeline.hosts import is_loopback

# Pinned so that Maven 3.8 does not fall back to its ancient default plugin.
DEPENDENCY_PLUGIN_VERSION = "3.8.1"
# Kafka 4.x logs through SLF4J 1.7 + log4j2; log4j-slf4j-impl is that binding.
LOG4J_VERSION = "2.24.3"
RETRY = "plantwatch services up"

_POM = """<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>io.plantwatch.local</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>{kafka}</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{kafka}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId>
      <version>{log4j}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId><version>{log4j}</version></dependency>
  </dependencies>
  <build><plugins><plugin>
    <groupId>org.apache.maven.plugins</groupId><artifactId>maven-dependency-plugin</artifactId>
    <version>{plugin}</version>
  </plugin></plugins></build>
</project>
"""

_LOG4J2 = """status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {logfile}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.kafka.name = org.apache.kafka
logger.kafka.level = INFO
"""


@dataclass(frozen=True)
class KafkaService:
    """The local Kafka broker described by the settings."""

    host: str
    port: int
    controller_port: int
    version: str
    heap_mb: int
    cache_dir: Path
    state_dir: Path
    protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> KafkaService:
        """Derive the local broker from ``kafka_bootstrap_servers`` (its first, loopback entry)."""
        host, port = settings.kafka_hosts[0]
        if not is_loopback(host):
            raise SettingsError(
                env_name("kafka_bootstrap_servers"),
                settings.kafka_bootstrap_servers,
                "a loopback address (127.0.0.1:PORT) for the local broker; "
                "`plantwatch services` only runs services on this machine",
            )
        controller = settings.kafka_controller_port or port + 1
        if controller == port:
            raise SettingsError(
                env_name("kafka_controller_port"), str(controller), "a port other than the broker's"
            )
        return cls(
            host="127.0.0.1" if host == "localhost" else host,
            port=port,
            controller_port=controller,
            version=settings.kafka_version,
            heap_mb=settings.kafka_heap_mb,
            cache_dir=settings.cache_dir / "kafka" / settings.kafka_version,
            state_dir=settings.state_dir / "kafka",
            protocol=settings.kafka_security_protocol,
            sasl_mechanism=settings.kafka_sasl_mechanism,
            sasl_username=settings.kafka_sasl_username,
            sasl_password=settings.kafka_sasl_password,
            tls_cert=settings.services_tls_cert,
            tls_key=settings.services_tls_key,
        )

    @property
    def endpoint(self) -> str:
        """The bootstrap address clients use."""
        return f"{self.host}:{self.port}"

    @property
    def internal_endpoint(self) -> str:
        """A PLAINTEXT loopback address for the broker itself (and readiness checks)."""
        if self.protocol == "PLAINTEXT":
            return self.endpoint
        return f"{self.host}:{self.controller_port + 1}"

    @property
    def url(self) -> str:
        """The listener as a URL, for messages."""
        return f"{self.protocol}://{self.endpoint}"

    @property
    def libs(self) -> Path:
        """Cached jars of this Kafka version."""
        return self.cache_dir / "libs"

    @property
    def process(self) -> ManagedProcess:
        """The broker process, tracked by pid file."""
        return ManagedProcess(
            name="kafka",
            pidfile=self.state_dir / "kafka.pid",
            logfile=self.state_dir / "logs" / "stdout.log",
            marker=str(self.state_dir / "server.properties"),
        )

    def installed(self) -> bool:
        """Whether the jars of this version are in the cache."""
        return (self.cache_dir / ".complete").exists()

    def install(self, progress: Progress) -> None:
        """Fetch the broker's jars with Maven into the per-version cache (once)."""
        if self.installed():
            return
        mvn = which("mvn", "Maven is needed once to fetch Kafka's jars (apt-get install maven).")
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        pom = self.cache_dir / "pom.xml"
        pom.write_text(
            _POM.format(kafka=self.version, log4j=LOG4J_VERSION, plugin=DEPENDENCY_PLUGIN_VERSION)
        )
        staging = self.cache_dir / "libs.partial"
        shutil.rmtree(staging, ignore_errors=True)
        progress(f"[kafka] fetching Apache Kafka {self.version} jars with Maven (first run only)")
        run_logged(
            [
                mvn,
                "-B",
                "--no-transfer-progress",
                "-f",
                str(pom),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={staging}",
                "-DincludeScope=runtime",
            ],
            cwd=self.cache_dir,
            env=_env(),
            logfile=self.cache_dir / "fetch.log",
            progress=progress,
            label="[kafka] maven fetch",
            retry=RETRY,
        )
        if not any(staging.glob(f"kafka_2.13-{self.version}.jar")):
            raise ServiceError(
                f"Maven finished but kafka_2.13-{self.version}.jar is missing from {staging}; "
                f"see {self.cache_dir / 'fetch.log'}"
            )
        shutil.rmtree(self.libs, ignore_errors=True)
        staging.rename(self.libs)
        (self.cache_dir / ".complete").write_text(time.strftime("%Y-%m-%dT%H:%M:%S\n"))

    def _write_config(self) -> Path:
        data = self.state_dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        (self.state_dir / "logs").mkdir(parents=True, exist_ok=True)
        props = self.state_dir / "server.properties"
        props.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@{self.host}:{self.controller_port}",
                    *self._listener_config(),
                    f"log.dirs={data}",
                    "num.partitions=3",
                    "auto.create.topics.enable=true",
                    # One node: internal topics must not ask for more replicas than exist,
                    # or consumer groups never get a coordinator.
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=10",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "log.retention.hours=168",
                    "",
                ]
            )
        )
        props.chmod(stat.S_IRUSR | stat.S_IWUSR)  # PLAIN users' passwords may be in it
        (self.state_dir / "log4j2.properties").write_text(
            _LOG4J2.format(logfile=self.state_dir / "logs" / "server.log")
        )
        return props

    def _listener_config(self) -> list[str]:
        """Listener lines of server.properties: PLAINTEXT only, or a secured client listener."""
        client = f"{self.protocol}://{self.endpoint}"
        controller = f"CONTROLLER://{self.host}:{self.controller_port}"
        if self.protocol == "PLAINTEXT":
            return [
                f"listeners={client},{controller}",
                f"advertised.listeners={client}",
                "controller.listener.names=CONTROLLER",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                "inter.broker.listener.name=PLAINTEXT",
            ]
        internal = f"INTERNAL://{self.internal_endpoint}"
        name = self.protocol.lower()
        lines = [
            f"listeners={client},{internal},{controller}",
            f"advertised.listeners={client},{internal}",
            "controller.listener.names=CONTROLLER",
            f"listener.security.protocol.map={self.protocol}:{self.protocol},"
            "INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "inter.broker.listener.name=INTERNAL",
        ]
        if "SSL" in self.protocol:
            lines += [
                f"listener.name.{name}.ssl.keystore.type=PEM",
                f"listener.name.{name}.ssl.keystore.location={self._write_keystore()}",
            ]
        if self.protocol.startswith("SASL_"):
            mechanism, user, password = self._sasl_user()
            module = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            if mechanism == "PLAIN":
                module = (
                    "org.apache.kafka.common.security.plain.PlainLoginModule required "
                    f'user_{user}="{password}";'
                )
            lines += [
                f"listener.name.{name}.sasl.enabled.mechanisms={mechanism}",
                f"listener.name.{name}.{mechanism.lower()}.sasl.jaas.config={module}",
            ]
        return lines

    def _sasl_user(self) -> tuple[str, str, str]:
        """Mechanism, user and password of the client listener, checked for the config."""
        mechanism, user = self.sasl_mechanism, self.sasl_username
        password = self.sasl_password.get_secret_value() if self.sasl_password else None
        if mechanism is None or user is None or password is None:
            raise SettingsError(
                env_name("kafka_security_protocol"),
                self.protocol,
                f"{env_name('kafka_sasl_mechanism')}, {env_name('kafka_sasl_username')} and "
                f"{env_name('kafka_sasl_password')} set for the local broker",
            )
        bad = set(',[]="\\;') | {" ", "\t", "\n"}
        if not user or bad & set(user):
            raise SettingsError(
                env_name("kafka_sasl_username"),
                user,
                'a user name without spaces or any of , [ ] = " \\ ; for the local broker',
            )
        if not password or bad & set(password):
            raise SettingsError(
                env_name("kafka_sasl_password"),
                "***",
                'a password without spaces or any of , [ ] = " \\ ; for the local broker',
            )
        return mechanism, user, password

    def _write_keystore(self) -> Path:
        """The PEM keystore (PKCS#8 key, then the certificate chain) for the TLS listener."""
        if self.tls_cert is None or self.tls_key is None:
            raise SettingsError(
                env_name("kafka_security_protocol"),
                self.protocol,
                f"{env_name('services_tls_cert')} and {env_name('services_tls_key')} set: "
                "the local broker needs a certificate and key to serve TLS",
            )
        try:
            key = self.tls_key.read_text()
            chain = self.tls_cert.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingsError(
                env_name("services_tls_cert"), str(self.tls_cert), f"readable PEM files ({exc})"
            ) from None
        if "-----BEGIN PRIVATE KEY-----" not in key:
            raise SettingsError(
                env_name("services_tls_key"),
                str(self.tls_key),
                "an unencrypted PKCS#8 PEM key (-----BEGIN PRIVATE KEY-----; convert with "
                "`openssl pkcs8 -topk8 -nocrypt`)",
            )
        if "-----BEGIN CERTIFICATE-----" not in chain:
            raise SettingsError(
                env_name("services_tls_cert"), str(self.tls_cert), "a PEM certificate chain"
            )
        keystore = self.state_dir / "keystore.pem"
        keystore.touch(mode=0o600)
        keystore.chmod(stat.S_IRUSR | stat.S_IWUSR)
        keystore.write_text(key.strip() + "\n" + chain.strip() + "\n")
        return keystore

    def _java(self) -> list[str]:
        java = which(
            "java", "Java 17 or newer is needed to run Kafka (apt-get install openjdk-17-jre)."
        )
        return [
            java,
            f"-Xms{min(self.heap_mb, 256)}m",
            f"-Xmx{self.heap_mb}m",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.state_dir / 'log4j2.properties'}",
            f"-Dkafka.logs.dir={self.state_dir / 'logs'}",
            "-cp",
            f"{self.libs}/*",
        ]

    def _format_storage(self, props: Path, progress: Progress) -> None:
        if (self.state_dir / "data" / "meta.properties").exists():
            return
        progress("[kafka] formatting storage (first start of this state directory)")
        log = self.state_dir / "logs" / "format.log"
        run_logged(
            [*self._java(), "kafka.tools.StorageTool", "random-uuid"],
            cwd=self.state_dir,
            env=_env(),
            logfile=log,
            progress=progress,
            label="[kafka] random-uuid",
            retry=RETRY,
        )
        cluster_id = _last_line(log)
        scram: list[str] = []
        secrets: list[str] = []
        if self.protocol.startswith("SASL_") and self.sasl_mechanism != "PLAIN":
            mechanism, user, password = self._sasl_user()
            scram = ["--add-scram", f"{mechanism}=[name={user},password={password}]"]
            secrets = [password]
        run_logged(
            [
                *self._java(),
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(props),
                *scram,
            ],
            cwd=self.state_dir,
            env=_env(),
            logfile=log,
            progress=progress,
            label="[kafka] format",
            retry=RETRY,
            secrets=secrets,
        )

    def running(self) -> int | None:
        """The pid of the broker that we started, if it runs."""
        return self.process.pid()

    def up(self, progress: Progress, timeout: float = 90.0) -> str:
        """Install (once), format (once) and start the broker; idempotent."""
        pid = self.running()
        if pid is not None:
            self._wait_ready(pid, timeout)
            return status_line("kafka", "already running", f"pid {pid:<7} {self.url}")
        require_free_port(self.host, self.port, "Kafka", env_name("kafka_bootstrap_servers"))
        require_free_port(
            self.host, self.controller_port, "Kafka's controller", env_name("kafka_controller_port")
        )
        if self.internal_endpoint != self.endpoint:
            require_free_port(
                self.host,
                self.controller_port + 1,
                "Kafka's inter-broker listener (controller port + 1)",
                env_name("kafka_controller_port"),
            )
        self.install(progress)
        props = self._write_config()
        self._format_storage(props, progress)
        progress(f"[kafka] starting broker on {self.endpoint}")
        pid = self.process.start(
            [*self._java(), "kafka.Kafka", str(props)], env=_env(), cwd=self.state_dir
        )
        self._wait_ready(pid, timeout)
        return status_line("kafka", "started", f"pid {pid:<7} {self.url}")

    def _wait_ready(self, pid: int, timeout: float) -> None:
        wait_until(
            lambda: port_accepts(self.host, self.port) and _broker_answers(self.internal_endpoint),
            process=self.process,
            pid=pid,
            timeout=timeout,
            what=f"waiting for the broker to answer on {self.endpoint}",
            retry=RETRY,
        )

    def down(self) -> str:
        """Stop the broker if we started it; safe to call twice."""
        stopped = self.process.stop(timeout=30)
        return status_line("kafka", "stopped" if stopped else "not running", "")

    def status(self) -> str:
        """One line: running or not, where."""
        pid = self.running()
        if pid is not None:
            logs = self.state_dir / "logs"
            return status_line("kafka", "running", f"pid {pid:<7} {self.url}  logs {logs}")
        if port_accepts(self.host, self.port):
            return status_line("kafka", "not ours", f"{self.url} answers; not started by us")
        cached = "jars cached" if self.installed() else "jars not fetched yet"
        return status_line("kafka", "stopped", f"{self.url} ({cached})")


def _broker_answers(endpoint: str) -> bool:
    """A real API round trip: the broker returns cluster metadata."""
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        admin = KafkaAdminClient(bootstrap_servers=endpoint, request_timeout_ms=3000)
    except (KafkaError, OSError, ValueError):
        return False
    try:
        admin.describe_cluster()
        return True
    except (KafkaError, OSError, ValueError):
        return False
    finally:
        admin.close()


def _last_line(path: Path) -> str:
    lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def _env() -> dict[str, str]:
    import os

    env = dict(os.environ)
    env.pop("KAFKA_OPTS", None)
    env.pop("JAVA_TOOL_OPTIONS", None)
    return env
