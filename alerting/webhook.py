"""The webhook ticket sink: one HTTP POST of the ticket JSON per ticket (stdlib urllib).

Headers: ``Content-Type: application/json``, ``Idempotency-Key: <incident key>`` and,
when the secret setting ``PLANTWATCH_ALERT_WEBHOOK_AUTH`` is set, ``Authorization`` with
its value as is (``Bearer ...``, ``Basic ...``, ``Token ...``). Any 2xx is success;
408, 409 (a duplicate the target already holds counts as delivered), 425, 429 and 5xx,
timeouts and refused connections are retried; other 4xx are refused payloads.

Plain ``http://`` is allowed to loopback hosts only, unless
``PLANTWATCH_ALERT_WEBHOOK_ALLOW_HTTP`` is true: the token would travel in clear text.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from urllib.parse import urlsplit

from pydantic import SecretStr

from alerting.errors import DeliveryError, RulesError
from pipeline.hosts import is_loopback

RETRY_STATUS = {408, 425, 429}


def check_url(url: str, allow_http: bool) -> str:
    """Check a webhook URL; returns it.

    >>> check_url("http://127.0.0.1:8080/hook", False)
    'http://127.0.0.1:8080/hook'

    Raises:
        RulesError: not http(s), or plain http to another host without ``allow_http``.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RulesError(
            f"invalid setting PLANTWATCH_ALERT_WEBHOOK_URL={url!r}: expected an https:// URL"
        )
    if parts.scheme == "http" and not is_loopback(parts.hostname) and not allow_http:
        raise RulesError(
            f"invalid setting PLANTWATCH_ALERT_WEBHOOK_URL={url!r}: plain http:// to a "
            "non-loopback host would send the token in clear text; use https:// or set "
            "PLANTWATCH_ALERT_WEBHOOK_ALLOW_HTTP=true"
        )
    return url


class WebhookSink:
    """POSTs ticket documents to one URL.

    Args:
        url: the target (checked by :func:`check_url`).
        auth: the ``Authorization`` header value (secret), or None.
        timeout_s: seconds before a request counts as failed (and is retried).
    """

    def __init__(self, url: str, auth: SecretStr | None, timeout_s: float = 10.0) -> None:
        self.url = url
        self._auth = auth
        self._timeout = timeout_s

    def send(self, idempotency_key: str, payload: bytes) -> None:
        """Deliver one document.

        Raises:
            DeliveryError: with ``retryable`` telling whether to try again.
        """
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": idempotency_key,
            "User-Agent": "plantwatch-alerting",
        }
        if self._auth is not None:
            headers["Authorization"] = self._auth.get_secret_value()
        request = urllib.request.Request(self.url, data=payload, headers=headers, method="POST")  # noqa: S310 - scheme checked
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:  # noqa: S310
                response.read()
        except urllib.error.HTTPError as exc:
            if exc.code == 409:
                return  # the target already holds this idempotency key
            if exc.code in (401, 403):
                raise DeliveryError(
                    f"webhook {self.url} refused the credentials (HTTP {exc.code}); "
                    "check PLANTWATCH_ALERT_WEBHOOK_AUTH",
                    retryable=True,
                ) from None
            retry = exc.code >= 500 or exc.code in RETRY_STATUS
            raise DeliveryError(f"webhook {self.url} answered HTTP {exc.code}", retry) from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DeliveryError(f"webhook {self.url} unreachable ({reason})", True) from None
