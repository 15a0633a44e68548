"""A local InfluxDB 2.x server built from the Go module proxy, for development and tests.

``influxd`` is built once per version into ``<cache_dir>/influxdb/<version>/influxd``:
the module ``github.com/influxdata/influxdb/v2`` is downloaded with ``go mod download``
(``go install module@version`` is refused because its go.mod has replace directives),
copied to a writable directory and built there. cgo finds Flux's Rust library through
influxdata's ``pkg-config`` wrapper, which builds it with cargo from crates.io. The UI
assets (``assets`` build tag) are left out: they would need a download from GitHub.

The server runs on loopback with its own empty config directory and data directory
under ``<state_dir>/influxdb`` (over HTTPS with ``services_tls_cert``/``services_tls_key``
when ``influx_url`` is https://) and is onboarded through ``POST /api/v2/setup`` with the
org, bucket and token from the settings.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import ssl
import stat
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

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
from pipeline.errors import AuthenticationError, ServiceError, SettingsError
from pipeline.hosts import is_loopback

MODULE = "github.com/influxdata/influxdb/v2"
PKG_CONFIG_MODULE = "github.com/influxdata/pkg-config"
BUILD_TAGS = "sqlite_foreign_keys,sqlite_json"
RETRY = "plantwatch services up"
ADMIN_USER = "plantwatch"

# Flux's crates deny warnings and pin Rust 1.72; newer compilers add lints that would
# fail the build. Capping lints through a rustc wrapper reaches build scripts and
# their dependencies too, which RUSTFLAGS does not when cargo is given --target.
_RUSTC_WRAPPER = """#!/bin/sh
rustc="$1"; shift
case " $* " in *" --cap-lints"*) exec "$rustc" "$@";; esac
exec "$rustc" "$@" --cap-lints warn
"""


@dataclass(frozen=True)
class InfluxService:
    """The local InfluxDB server described by the settings."""

    host: str
    port: int
    version: str
    org: str
    bucket: str
    token: str
    cache_dir: Path
    state_dir: Path
    scheme: str = "http"
    tls_cert: Path | None = None
    tls_key: Path | None = None
    ca_cert: Path | None = None
    verify_ssl: bool = True

    @classmethod
    def from_settings(cls, settings: ServiceSettings) -> InfluxService:
        """Derive the local server from ``influx_url`` (http or https, on loopback)."""
        url = urlsplit(settings.influx_url)
        host = url.hostname or ""
        if not is_loopback(host):
            raise SettingsError(
                env_name("influx_url"),
                settings.influx_url,
                "http(s)://127.0.0.1:PORT for the local server; "
                "`plantwatch services` only runs services on this machine",
            )
        return cls(
            host="127.0.0.1" if host == "localhost" else host,
            port=url.port or 8086,
            version=settings.influxdb_version,
            org=settings.influx_org,
            bucket=settings.influx_bucket,
            token=settings.influx_token.get_secret_value(),
            cache_dir=settings.cache_dir / "influxdb" / settings.influxdb_version,
            state_dir=settings.state_dir / "influxdb",
            scheme=url.scheme,
            tls_cert=settings.services_tls_cert,
            tls_key=settings.services_tls_key,
            ca_cert=settings.influx_ssl_ca_cert,
            verify_ssl=settings.influx_verify_ssl,
        )

    @property
    def url(self) -> str:
        """Base URL of the server."""
        return f"{self.scheme}://{self.host}:{self.port}"

    def _tls_flags(self) -> list[str]:
        if self.scheme != "https":
            return []
        if self.tls_cert is None or self.tls_key is None:
            raise SettingsError(
                env_name("influx_url"),
                self.url,
                f"{env_name('services_tls_cert')} and {env_name('services_tls_key')} set: "
                "the local server needs a certificate and key to serve HTTPS",
            )
        for name, path in (
            ("services_tls_cert", self.tls_cert),
            ("services_tls_key", self.tls_key),
        ):
            if not path.is_file():
                raise SettingsError(env_name(name), str(path), "an existing PEM file")
        return ["--tls-cert", str(self.tls_cert), "--tls-key", str(self.tls_key)]

    def _ssl_context(self) -> ssl.SSLContext | None:
        """How our own requests check the server's certificate (like the client settings)."""
        if self.scheme != "https":
            return None
        if not self.verify_ssl:
            return ssl._create_unverified_context()  # noqa: S323 - influx_verify_ssl=false
        return ssl.create_default_context(cafile=str(self.ca_cert) if self.ca_cert else None)

    def _api(
        self,
        method: str,
        url: str,
        body: dict[str, Any] | None = None,
        *,
        headers: dict[str, str] | None = None,
        timeout: float = 10,
    ) -> Any:
        return _request(
            method, url, body, headers=headers, timeout=timeout, context=self._ssl_context()
        )

    @property
    def binary(self) -> Path:
        """The cached influxd of this version."""
        return self.cache_dir / "influxd"

    @property
    def process(self) -> ManagedProcess:
        """The server process, tracked by pid file."""
        return ManagedProcess(
            name="influxdb",
            pidfile=self.state_dir / "influxd.pid",
            logfile=self.state_dir / "influxd.log",
            marker=str(self.state_dir / "engine"),
        )

    def installed(self) -> bool:
        """Whether influxd of this version is in the cache."""
        return self.binary.is_file() and os.access(self.binary, os.X_OK)

    def install(self, progress: Progress) -> None:
        """Build influxd from the Go module proxy into the per-version cache (once)."""
        if self.installed():
            return
        go = which("go", "Go is needed once to build influxd (apt-get install golang-go).")
        which("cargo", "Rust's cargo is needed once to build Flux for influxd (rustup or apt).")
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        log = self.cache_dir / "build.log"
        work = self.cache_dir / "build"
        shutil.rmtree(work, ignore_errors=True)
        (work / "bin").mkdir(parents=True)
        env = _build_env()
        progress(
            f"[influxdb] building influxd v{self.version} from the Go module proxy "
            f"(first run only; several minutes; log: {log})"
        )
        run_logged(
            [go, "mod", "download", "-json", f"{MODULE}@v{self.version}"],
            cwd=work,
            env=env,
            logfile=work / "download.json",
            progress=progress,
            label="[influxdb] go mod download",
            retry=RETRY,
        )
        source = work / "src"
        shutil.copytree(_module_dir(work / "download.json"), source)
        _make_writable(source)
        pkg_config_version = _required_version(source / "go.mod", PKG_CONFIG_MODULE)
        run_logged(
            [go, "install", f"{PKG_CONFIG_MODULE}@{pkg_config_version}"],
            cwd=source,
            env={**env, "GOBIN": str(work / "bin")},
            logfile=log,
            progress=progress,
            label="[influxdb] build pkg-config wrapper",
            retry=RETRY,
        )
        wrapper = work / "bin" / "rustc-cap-lints"
        wrapper.write_text(_RUSTC_WRAPPER)
        wrapper.chmod(0o755)
        build_env = {
            **env,
            "CGO_ENABLED": "1",
            "PKG_CONFIG": str(work / "bin" / "pkg-config"),
            "RUSTC_WRAPPER": str(wrapper),
        }
        if shutil.which("rustup"):
            build_env["RUSTUP_TOOLCHAIN"] = "stable"  # flux pins 1.72, which cannot be fetched
        ldflags = f"-X main.version=v{self.version} -X main.commit=go-module-proxy"
        run_logged(
            [
                go,
                "build",
                "-v",  # package names as they compile: the progress line moves on
                "-tags",
                BUILD_TAGS,
                "-ldflags",
                ldflags,
                "-o",
                str(work / "bin" / "influxd"),
                "./cmd/influxd",
            ],
            cwd=source,
            env=build_env,
            logfile=log,
            progress=progress,
            label="[influxdb] go build influxd (with Flux's Rust library)",
            retry=RETRY,
        )
        (work / "bin" / "influxd").replace(self.binary)
        shutil.rmtree(work, ignore_errors=True)

    def running(self) -> int | None:
        """The pid of the server that we started, if it runs."""
        return self.process.pid()

    def up(self, progress: Progress, timeout: float = 60.0) -> str:
        """Build (once), start and onboard the server; idempotent."""
        pid = self.running()
        verb = "already running"
        if pid is None:
            require_free_port(self.host, self.port, "InfluxDB", env_name("influx_url"))
            self.install(progress)
            config = self.state_dir / "config"  # empty on purpose: no stray config.* is read
            config.mkdir(parents=True, exist_ok=True)
            progress(f"[influxdb] starting influxd on {self.url}")
            pid = self.process.start(
                [
                    str(self.binary),
                    "--bolt-path",
                    str(self.state_dir / "influxd.bolt"),
                    "--engine-path",
                    str(self.state_dir / "engine"),
                    "--sqlite-path",
                    str(self.state_dir / "influxd.sqlite"),
                    "--http-bind-address",
                    f"{self.host}:{self.port}",
                    *self._tls_flags(),
                    "--reporting-disabled",
                    "--log-level",
                    "info",
                ],
                env={**_runtime_env(), "INFLUXD_CONFIG_PATH": str(config)},
                cwd=config,
            )
            verb = "started"
        wait_until(
            lambda: port_accepts(self.host, self.port) and self._healthy(),
            process=self.process,
            pid=pid,
            timeout=timeout,
            what=f"waiting for {self.url}/health to pass",
            retry=RETRY,
        )
        self._onboard(progress)
        where = f"pid {pid:<7} {self.url}  org={self.org} bucket={self.bucket}"
        return status_line("influxdb", verb, where)

    def _healthy(self) -> bool:
        try:
            body = self._api("GET", f"{self.url}/health", timeout=2)
        except (ServiceError, OSError):
            return False
        return isinstance(body, dict) and body.get("status") == "pass"

    def _onboard(self, progress: Progress) -> None:
        setup = self._api("GET", f"{self.url}/api/v2/setup")
        if isinstance(setup, dict) and setup.get("allowed"):
            password_file = self.state_dir / "admin-password"
            password = secrets.token_urlsafe(18)
            password_file.write_text(password + "\n")
            password_file.chmod(stat.S_IRUSR | stat.S_IWUSR)
            self._api(
                "POST",
                f"{self.url}/api/v2/setup",
                {
                    "username": ADMIN_USER,
                    "password": password,
                    "org": self.org,
                    "bucket": self.bucket,
                    "token": self.token,
                    "retentionPeriodSeconds": 0,
                },
            )
            progress(
                f"[influxdb] onboarded: org {self.org!r}, bucket {self.bucket!r}, "
                f"user {ADMIN_USER!r} (password in {password_file})"
            )
            return
        self._ensure_bucket(progress)

    def _ensure_bucket(self, progress: Progress) -> None:
        """Check the token against an onboarded server; create org/bucket if missing."""
        auth = {"Authorization": f"Token {self.token}"}
        try:
            orgs = self._api("GET", f"{self.url}/api/v2/orgs?org={quote(self.org)}", headers=auth)
        except AuthenticationError:
            raise AuthenticationError(
                f"InfluxDB at {self.url} was onboarded earlier with another token and refuses "
                f"{env_name('influx_token')}. Set that variable to the token used then, or wipe "
                f"the local server with `plantwatch services down --purge`."
            ) from None
        except ServiceError as exc:
            if "404" not in str(exc):
                raise
            orgs = {"orgs": []}
        found = orgs.get("orgs", []) if isinstance(orgs, dict) else []
        if found:
            org_id = found[0]["id"]
        else:
            org_id = self._api("POST", f"{self.url}/api/v2/orgs", {"name": self.org}, headers=auth)[
                "id"
            ]
            progress(f"[influxdb] created org {self.org!r}")
        try:
            buckets = self._api(
                "GET",
                f"{self.url}/api/v2/buckets?orgID={org_id}&name={quote(self.bucket)}",
                headers=auth,
            )
        except ServiceError as exc:  # v2.8 answers a missing bucket with 404
            if "404" not in str(exc):
                raise
            buckets = {"buckets": []}
        if not (isinstance(buckets, dict) and buckets.get("buckets")):
            self._api(
                "POST",
                f"{self.url}/api/v2/buckets",
                {"orgID": org_id, "name": self.bucket, "retentionRules": []},
                headers=auth,
            )
            progress(f"[influxdb] created bucket {self.bucket!r}")

    def down(self, purge: bool = False) -> str:
        """Stop the server if we started it; optionally delete its data. Safe to call twice."""
        stopped = self.process.stop(timeout=30)
        if purge:
            shutil.rmtree(self.state_dir, ignore_errors=True)
        return status_line("influxdb", "stopped" if stopped else "not running", "")

    def status(self) -> str:
        """One line: running or not, where."""
        pid = self.running()
        if pid is not None:
            health = "healthy" if self._healthy() else "not answering /health"
            log = self.process.logfile
            return status_line(
                "influxdb", "running", f"pid {pid:<7} {self.url}  {health}  log {log}"
            )
        if port_accepts(self.host, self.port):
            return status_line("influxdb", "not ours", f"{self.url} answers; not started by us")
        built = "influxd built" if self.installed() else "influxd not built yet"
        return status_line("influxdb", "stopped", f"{self.url} ({built})")


def _request(
    method: str,
    url: str,
    body: dict[str, Any] | None = None,
    *,
    headers: dict[str, str] | None = None,
    timeout: float = 10,
    context: ssl.SSLContext | None = None,
) -> Any:
    if not url.startswith(("http://", "https://")):
        raise ServiceError(f"refusing to open a non-HTTP URL: {url}")
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)  # noqa: S310 - checked above
    req.add_header("Content-Type", "application/json")
    for key, value in (headers or {}).items():
        req.add_header(key, value)
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:  # noqa: S310 - checked above
            raw = resp.read()
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")[:300]
        if exc.code in (401, 403):
            raise AuthenticationError(f"{method} {url}: HTTP {exc.code} {detail}") from exc
        raise ServiceError(f"{method} {url}: HTTP {exc.code} {detail}") from exc
    return json.loads(raw) if raw.strip() else {}


def _module_dir(download_json: Path) -> Path:
    text = download_json.read_text()
    start = text.find("{")
    info = json.loads(text[start:]) if start >= 0 else {}
    if info.get("Error") or not info.get("Dir"):
        raise ServiceError(
            f"go mod download of {MODULE} failed: {info.get('Error', text[-500:])}. "
            "If it names a newer Go, choose another version with "
            f"{env_name('influxdb_version')}."
        )
    return Path(info["Dir"])


def _required_version(go_mod: Path, module: str) -> str:
    match = re.search(rf"^\s*{re.escape(module)}\s+(v\S+)", go_mod.read_text(), re.M)
    if match is None:
        raise ServiceError(f"{go_mod} does not require {module}; cannot build Flux")
    return match.group(1)


def _make_writable(root: Path) -> None:
    for path in [root, *root.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | stat.S_IWUSR)


def _build_env() -> dict[str, str]:
    return dict(os.environ)


def _runtime_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("INFLUXD_")}
