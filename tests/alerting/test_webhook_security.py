"""The ticket webhook refuses plain http:// to other hosts unless explicitly allowed."""

from __future__ import annotations

import pytest

from alerting.errors import RulesError
from plantwatch.settings import load_settings
from plantwatch.stages import senders_of


def _senders(url: str, allow_http: bool) -> dict[str, object]:
    settings = load_settings(
        {
            "alert_sinks": "builtin,webhook",
            "alert_webhook_url": url,
            "alert_webhook_allow_http": allow_http,
            "alert_webhook_auth": "Bearer webhook-secret-7f3a",
        },
        read_env=False,
    )
    return senders_of(settings, producer=None, writer=None)


def test_plain_http_to_another_host_is_refused_by_default() -> None:
    with pytest.raises(RulesError, match="PLANTWATCH_ALERT_WEBHOOK_ALLOW_HTTP") as info:
        _senders("http://tickets.example.com/hook", allow_http=False)
    assert "webhook-secret-7f3a" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "allow_http"),
    [
        ("https://tickets.example.com/hook", False),
        ("http://127.0.0.1:8080/hook", False),
        ("http://localhost:8080/hook", False),
        ("http://tickets.example.com/hook", True),
    ],
)
def test_https_loopback_or_explicitly_allowed_http_is_accepted(url: str, allow_http: bool) -> None:
    assert "webhook" in _senders(url, allow_http)


def test_allow_http_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANTWATCH_ALERT_WEBHOOK_URL", "http://tickets.example.com/hook")
    monkeypatch.setenv("PLANTWATCH_ALERT_WEBHOOK_ALLOW_HTTP", "true")
    assert load_settings().alert_webhook_allow_http is True
