"""Kafka SASL_SSL (SCRAM-SHA-512) and InfluxDB over HTTPS, on a private secured pair of services.

A test CA and a server certificate for 127.0.0.1 are made with `openssl` at test time; the
secured broker and influxd get their own ports and state directory, so the rest of the suite
keeps its plaintext services. Secrets are unique per run, so a grep for them means something.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from plantwatch.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _free_port(pair: bool = False) -> int:
    """A free loopback port; with ``pair`` the next port is free too."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if not pair or port >= 65535:
            return port
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no free pair of ports")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_test_pki(folder: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1/localhost signed by it.

    Returns (ca.pem, server.pem, server.key); the key is unencrypted PKCS#8.
    """
    folder.mkdir(parents=True, exist_ok=True)
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", "/CN=plantwatch test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=folder,
    )  # fmt: skip
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
        "-subj", "/CN=127.0.0.1",
        cwd=folder,
    )  # fmt: skip
    (folder / "ext.cnf").write_text(
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
        "authorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n"
    )
    _openssl(
        "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf",
        cwd=folder,
    )  # fmt: skip
    return folder / "ca.pem", folder / "server.pem", folder / "server.key"


def _cli(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from plantwatch.cli import main; main()", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )


class Secured:
    """The environment of the secured services and the secrets in it."""

    def __init__(self, env: dict[str, str], state: Path) -> None:
        self.env = env
        self.state = state
        self.password = env["PLANTWATCH_KAFKA_SASL_PASSWORD"]
        self.token = env["PLANTWATCH_INFLUX_TOKEN"]

    def with_env(self, **changes: str | None) -> dict[str, str]:
        """The environment with some variables changed (None: removed)."""
        env = dict(self.env)
        for key, value in changes.items():
            if value is None:
                env.pop(key, None)
            else:
                env[key] = value
        return env


@pytest.fixture(scope="module")
def secured(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Secured]:
    """A private SASL_SSL broker and HTTPS influxd, started with `plantwatch services up`."""
    root = tmp_path_factory.mktemp("secured")
    ca, cert, key = make_test_pki(root / "pki")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PLANTWATCH_")}
    env.update(
        PLANTWATCH_STATE_DIR=str(root / "state"),
        PLANTWATCH_CACHE_DIR=str(settings.cache_dir),  # reuse the cached builds
        PLANTWATCH_KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{_free_port()}",
        PLANTWATCH_KAFKA_CONTROLLER_PORT=str(_free_port(pair=True)),  # +1: inter-broker
        PLANTWATCH_KAFKA_HEAP_MB="256",
        PLANTWATCH_KAFKA_SECURITY_PROTOCOL="SASL_SSL",
        PLANTWATCH_KAFKA_SASL_MECHANISM="SCRAM-SHA-512",
        PLANTWATCH_KAFKA_SASL_USERNAME="plantwatch-admin",
        PLANTWATCH_KAFKA_SASL_PASSWORD=f"pw-{secrets.token_hex(12)}",
        PLANTWATCH_KAFKA_SSL_CAFILE=str(ca),
        PLANTWATCH_INFLUX_URL=f"https://127.0.0.1:{_free_port()}",
        PLANTWATCH_INFLUX_TOKEN=f"tok-{secrets.token_hex(12)}",
        PLANTWATCH_INFLUX_SSL_CA_CERT=str(ca),
        PLANTWATCH_SERVICES_TLS_CERT=str(cert),
        PLANTWATCH_SERVICES_TLS_KEY=str(key),
        PLANTWATCH_MODELS_DIR=str(root / "models"),
        PLANTWATCH_ALERT_DB=str(root / "alerting.sqlite"),
    )
    up = _cli(env, "services", "up", timeout=240)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        assert "SASL_SSL://127.0.0.1" in up.stdout
        assert "https://127.0.0.1" in up.stdout
        yield Secured(env, root / "state")
    finally:
        _cli(env, "services", "down", "--purge", timeout=120)


def _one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("plantwatch: error: "), result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_smoke_passes_with_credentials_and_ca(secured: Secured) -> None:
    result = _cli(secured.env, "smoke")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "kafka     ok" in result.stdout
    assert "influxdb  ok" in result.stdout


def test_wrong_sasl_password_fails_fast_naming_the_setting(secured: Secured) -> None:
    wrong = f"wrong-{secrets.token_hex(8)}"
    started = time.monotonic()
    result = _cli(secured.with_env(PLANTWATCH_KAFKA_SASL_PASSWORD=wrong), "smoke", timeout=60)
    elapsed = time.monotonic() - started
    line = _one_line_error(result)
    assert "refused the SASL login" in line
    assert "PLANTWATCH_KAFKA_SASL_PASSWORD" in line
    assert elapsed < 30, f"took {elapsed:.1f}s"
    assert wrong not in result.stdout + result.stderr


def test_wrong_sasl_mechanism_names_the_enabled_ones(secured: Secured) -> None:
    env = secured.with_env(PLANTWATCH_KAFKA_SASL_MECHANISM="SCRAM-SHA-256")
    line = _one_line_error(_cli(env, "smoke", timeout=60))
    assert "PLANTWATCH_KAFKA_SASL_" in line


def test_wrong_influx_token_names_the_setting(secured: Secured) -> None:
    wrong = f"wrong-{secrets.token_hex(8)}"
    result = _cli(secured.with_env(PLANTWATCH_INFLUX_TOKEN=wrong), "smoke", timeout=60)
    line = _one_line_error(result)
    assert "refused the token" in line
    assert "PLANTWATCH_INFLUX_TOKEN" in line
    assert wrong not in result.stdout + result.stderr


def test_untrusted_kafka_certificate_names_the_ca_setting(secured: Secured) -> None:
    started = time.monotonic()
    result = _cli(secured.with_env(PLANTWATCH_KAFKA_SSL_CAFILE=None), "smoke", timeout=60)
    line = _one_line_error(result)
    assert "certificate is not trusted" in line
    assert "PLANTWATCH_KAFKA_SSL_CAFILE" in line
    assert time.monotonic() - started < 30


def test_untrusted_influx_certificate_names_the_ca_setting(secured: Secured) -> None:
    result = _cli(secured.with_env(PLANTWATCH_INFLUX_SSL_CA_CERT=None), "smoke", timeout=60)
    line = _one_line_error(result)
    assert "certificate is not trusted" in line
    assert "PLANTWATCH_INFLUX_SSL_CA_CERT" in line


def test_secrets_never_appear_in_output_or_logs(secured: Secured) -> None:
    """A short real flow with the secured services; the password and token appear nowhere."""
    env = secured.with_env(PLANTWATCH_INGEST_WRITE_INFLUX="true")
    wrong = f"wrong-{secrets.token_hex(8)}"
    runs = [
        _cli(env, "simulate", "--machines", "5", "--count", "200"),
        _cli(env, "ingest", "--idle-exit", "5"),
        _cli(env, "status"),
        _cli(env, "services", "status"),
        _cli(env, "--help"),
        _cli(env, "smoke", "--help"),
        _cli(secured.with_env(PLANTWATCH_KAFKA_SASL_PASSWORD=wrong), "smoke", timeout=60),
        _cli(secured.with_env(PLANTWATCH_INFLUX_TOKEN=wrong), "smoke", timeout=60),
        _cli(secured.with_env(PLANTWATCH_KAFKA_SASL_PASSWORD=wrong), "status", timeout=60),
    ]
    for run in runs[:4]:
        assert run.returncode == 0, f"{run.args}: {run.stdout}{run.stderr}"
    assert runs[6].returncode == 2
    assert runs[7].returncode == 2
    assert "PLANTWATCH_KAFKA_SASL_PASSWORD" in runs[8].stdout + runs[8].stderr
    texts = {f"{' '.join(map(str, r.args[3:]))}": r.stdout + r.stderr for r in runs}
    logs = [
        p for p in secured.state.rglob("*") if p.is_file() and p.suffix in {".log", ".properties"}
    ]
    assert any(p.name == "server.log" for p in logs)
    assert any(p.name == "influxd.log" for p in logs)
    for path in logs:
        texts[str(path)] = path.read_text(errors="replace")
    for secret in (secured.password, secured.token, wrong):
        leaks = [where for where, text in texts.items() if secret in text]
        assert not leaks, f"a secret appears in {leaks}"
