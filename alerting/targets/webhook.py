"""``webhook``: one HTTP POST of the ticket document per ticket (:mod:`alerting.webhook`).

Needs ``PLANTWATCH_ALERT_WEBHOOK_URL``; ``..._AUTH``, ``..._ALLOW_HTTP`` and ``..._TIMEOUT_S``
tune it. Made whenever the URL is set, so that rows queued before a restart without
``webhook`` in ``PLANTWATCH_ALERT_SINKS`` still go out.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from alerting.targets import TargetEnv, target

if TYPE_CHECKING:
    from alerting.outbox import Sender


@target("webhook", needs=("alert_webhook_url",), order=20)
def webhook(env: TargetEnv) -> Sender | None:
    """POST to the configured URL (checked: https://, or http:// to loopback or allowed).

    Raises:
        RulesError: a plain http:// URL to another host without the setting that allows it.
    """
    settings = env.settings
    if not settings.alert_webhook_url:
        return None
    from alerting.sinks import webhook_sender
    from alerting.webhook import WebhookSink, check_url

    url = check_url(settings.alert_webhook_url, settings.alert_webhook_allow_http)
    timeout_s = settings.alert_webhook_timeout_s
    return webhook_sender(WebhookSink(url, settings.alert_webhook_auth, timeout_s))
