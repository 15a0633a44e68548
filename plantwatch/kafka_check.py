"""A direct check of a secured Kafka listener: TLS handshake and SASL login, one connection.

kafka-python (3.0) retries failed logins until its bootstrap timeout and, over TLS, loses
the broker's "authentication failed" answer when the broker closes the connection right
after it. So a client reports "Unable to bootstrap" after 30 s for a wrong password.
This check speaks just enough of the Kafka protocol (SaslHandshake v1, SaslAuthenticate
v1) to tell a refused login or an untrusted certificate apart from a broker that is down,
in well under a second, and names the setting to fix. Before it, one TCP connection per
bootstrap server tells a broker that is down from a wrong host name
(:func:`check_kafka_reachable`), retried for PLANTWATCH_KAFKA_START_WAIT_S when that is set
(:func:`wait_for_kafka`).
"""

from __future__ import annotations

import logging
import socket
import ssl
import struct
import time
from collections.abc import Callable
from typing import Any

from pipeline.errors import AuthenticationError, ConnectionCheckError
from plantwatch.settings import Settings, env_name

_SASL_HANDSHAKE, _SASL_AUTHENTICATE, _API_VERSIONS = 17, 36, 18
_CLIENT_ID = b"plantwatch-check"
_log = logging.getLogger("plantwatch")


def check_kafka_reachable(settings: Settings, timeout_s: float = 3.0) -> None:
    """Raise a one-line error at once when no bootstrap server accepts a TCP connection.

    kafka-python only gives up after its 30 s bootstrap timeout, with "Unable to
    bootstrap" and no cause. A broker that is down refuses the connection at once and a
    wrong host name fails its lookup at once, so this says which, per server, in well
    under a second (at most ``timeout_s`` per server that does not answer). A server that
    accepts the connection passes; whether it speaks Kafka is the client's to find out.

    Raises:
        ConnectionCheckError: no bootstrap server could be connected to.
    """
    failures = []
    for host, port in settings.kafka_hosts:
        try:
            socket.create_connection((host, port), timeout=timeout_s).close()
        except socket.gaierror:
            failures.append(f"{host}:{port} host name not found")
        except ConnectionRefusedError:
            failures.append(f"{host}:{port} refused the connection")
        except TimeoutError:
            failures.append(f"{host}:{port} did not answer in {timeout_s:g} s")
        except OSError as exc:
            failures.append(f"{host}:{port} {exc.strerror or type(exc).__name__}")
        else:
            return
    raise ConnectionCheckError(
        f"cannot reach Kafka: {'; '.join(failures)} (set "
        f"{env_name('kafka_bootstrap_servers')}; is the broker running? "
        "`plantwatch services up` starts a local one)"
    )


def wait_for_kafka(
    settings: Settings,
    log: Callable[[str], object] = _log.warning,
    sleep: Callable[[float], object] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    every_s: float = 10.0,
) -> None:
    """:func:`check_kafka_reachable`, retried for up to ``settings.kafka_start_wait_s``.

    A stage started together with its broker (a boot, a container restart) would
    otherwise exit before the broker listens. Retries back off from 0.5 s to 5 s; ``log``
    gets the cause at the first failure and then at most every ``every_s``.

    Raises:
        ConnectionCheckError: no bootstrap server accepted a connection within the wait
            (the last causes, and how long it waited).
    """
    wait_s, setting = settings.kafka_start_wait_s, env_name("kafka_start_wait_s")
    deadline = clock() + wait_s
    delay, said, tries = 0.5, None, 0
    while True:
        try:
            check_kafka_reachable(settings)
        except ConnectionCheckError as exc:
            tries += 1
            left = deadline - clock()
            if left <= 0:
                if wait_s <= 0:
                    raise
                raise ConnectionCheckError(f"{exc} (waited {wait_s:g} s, {setting})") from exc
            if said is None or clock() - said >= every_s:
                log(f"waiting for Kafka, {left:.0f} s left ({setting}): {exc}")
                said = clock()
            sleep(min(delay, left))
            delay = min(delay * 2, 5.0)
        else:
            if tries:
                failed = "1 failed try" if tries == 1 else f"{tries} failed tries"
                log(f"Kafka answers at {settings.kafka_bootstrap_servers} after {failed}")
            return


def check_kafka_login(settings: Settings, timeout_s: float = 5.0) -> None:
    """Raise a one-line error when the first broker refuses our TLS trust or SASL login.

    For PLAINTEXT, checks only that the first server speaks Kafka (one ApiVersions
    request): a port of another service (an HTTP server) would otherwise cost the client's
    30 s bootstrap timeout and a page of its warnings. Does nothing when the broker cannot
    be reached at all (the client's own bootstrap error says that, naming the setting).

    Raises:
        AuthenticationError: the broker refused the SASL mechanism or credentials.
        ConnectionCheckError: the broker's certificate is not trusted, or TLS failed.
    """
    protocol = settings.kafka_security_protocol
    host, port = settings.kafka_hosts[0]
    where = f"Kafka at {host}:{port}"
    try:
        sock = socket.create_connection((host, port), timeout=timeout_s)
    except OSError:
        return
    if protocol == "PLAINTEXT":
        with sock:
            _check_speaks_kafka(sock, host, port)
        return
    try:
        if "SSL" in protocol:
            sock = _wrap_tls(sock, host, settings, where)
        if protocol.startswith("SASL_"):
            _login(sock, settings, where)
        else:
            _exchange(sock, _API_VERSIONS, 0, b"")  # a listener that wants SASL hangs up
    except (OSError, EOFError, struct.error) as exc:
        raise ConnectionCheckError(
            f"{where} closed the connection during the {protocol} handshake "
            f"({type(exc).__name__}); check {env_name('kafka_security_protocol')}"
        ) from exc
    finally:
        sock.close()


def _check_speaks_kafka(sock: socket.socket, host: str, port: int) -> None:
    """Raise a one-line error unless the server answers an ApiVersions request as Kafka."""
    what = "closed the connection"
    try:
        request = struct.pack(">hhi", _API_VERSIONS, 0, _API_VERSIONS) + _string(_CLIENT_ID)
        sock.sendall(struct.pack(">i", len(request)) + request)
        head = _recv(sock, 8)
        size, correlation = struct.unpack(">ii", head)
        if 4 <= size <= 1_000_000 and correlation == _API_VERSIONS:
            return
        what = "answered like HTTP" if head.startswith(b"HTTP") else "answered something else"
    except TimeoutError:
        what = "did not answer a Kafka request"
    except (OSError, EOFError):
        pass
    raise ConnectionCheckError(
        f"{host}:{port} is not a Kafka broker: it {what} (set "
        f"{env_name('kafka_bootstrap_servers')} to the broker's host:port; "
        f"{env_name('kafka_security_protocol')} is PLAINTEXT)"
    )


def _wrap_tls(sock: socket.socket, host: str, settings: Settings, where: str) -> ssl.SSLSocket:
    cafile = settings.kafka_ssl_cafile
    try:
        context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
        return context.wrap_socket(sock, server_hostname=host)
    except ssl.SSLCertVerificationError as exc:
        raise ConnectionCheckError(
            f"{where}: the broker's TLS certificate is not trusted ({exc.verify_message}); set "
            f"{env_name('kafka_ssl_cafile')} to the CA certificate (PEM) that signed it"
        ) from exc
    except ssl.SSLError as exc:
        raise ConnectionCheckError(
            f"{where}: TLS handshake failed ({exc.reason or exc}); check "
            f"{env_name('kafka_security_protocol')}={settings.kafka_security_protocol} and "
            f"{env_name('kafka_ssl_cafile')}"
        ) from exc


def _login(sock: socket.socket, settings: Settings, where: str) -> None:
    from kafka.net.sasl import get_sasl_mechanism

    mechanism = settings.kafka_sasl_mechanism or ""
    password = settings.kafka_sasl_password
    config: dict[str, Any] = {
        "sasl_mechanism": mechanism,
        "sasl_plain_username": settings.kafka_sasl_username,
        "sasl_plain_password": password.get_secret_value() if password else None,
        "security_protocol": settings.kafka_security_protocol,
    }
    body = _exchange(sock, _SASL_HANDSHAKE, 1, _string(mechanism.encode()))
    if error := struct.unpack_from(">h", body)[0]:
        enabled, offset = [], 6
        for _ in range(struct.unpack_from(">i", body, 2)[0]):
            text, offset = _read_string(body, offset)
            enabled.append(text or "")
        raise AuthenticationError(
            f"{where} does not offer SASL mechanism {mechanism} (enabled: "
            f"{', '.join(enabled) or 'none'}); check {env_name('kafka_sasl_mechanism')}"
        )
    client = get_sasl_mechanism(mechanism)(host=settings.kafka_hosts[0][0], **config)
    while not client.is_done():
        body = _exchange(sock, _SASL_AUTHENTICATE, 1, _bytes(client.auth_bytes()))
        error = struct.unpack_from(">h", body)[0]
        message, offset = _read_string(body, 2)
        if error:
            raise AuthenticationError(
                f"{where} refused the SASL login of {settings.kafka_sasl_username!r} "
                f"({message or f'error {error}'}); check {env_name('kafka_sasl_mechanism')}, "
                f"{env_name('kafka_sasl_username')} and {env_name('kafka_sasl_password')}"
            )
        size = struct.unpack_from(">i", body, offset)[0]
        client.receive(body[offset + 4 : offset + 4 + max(size, 0)])
    if not client.is_authenticated():
        raise AuthenticationError(
            f"{where}: the SASL {mechanism} login did not complete; check "
            f"{env_name('kafka_sasl_mechanism')}, {env_name('kafka_sasl_username')} and "
            f"{env_name('kafka_sasl_password')}"
        )


def _exchange(sock: socket.socket, api_key: int, version: int, body: bytes) -> bytes:
    """Send one request (header v1) and return the body of its response."""
    request = struct.pack(">hhi", api_key, version, api_key) + _string(_CLIENT_ID) + body
    sock.sendall(struct.pack(">i", len(request)) + request)
    size = struct.unpack(">i", _recv(sock, 4))[0]
    return _recv(sock, size)[4:]  # drop the correlation id


def _recv(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise EOFError("the broker closed the connection")
        data += chunk
    return data


def _string(value: bytes) -> bytes:
    return struct.pack(">h", len(value)) + value


def _bytes(value: bytes) -> bytes:
    return struct.pack(">i", len(value)) + value


def _read_string(body: bytes, offset: int) -> tuple[str | None, int]:
    size = struct.unpack_from(">h", body, offset)[0]
    if size < 0:
        return None, offset + 2
    end = offset + 2 + size
    return body[offset + 2 : end].decode("utf-8", "replace"), end
