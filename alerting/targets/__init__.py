"""Ticket targets: where tickets go besides the store, one module each, found by name.

A target is a module of this package that registers the factory of its sender::

    @target("webhook", needs=("alert_webhook_url",), order=20)
    def webhook(env: TargetEnv) -> Sender | None:
        ...  # the sender, or None when the settings leave the target unconfigured

Its name is its sink name in the outbox (:mod:`alerting.outbox`) and, when ``choosable``, a
value of ``PLANTWATCH_ALERT_SINKS``. The settings' check of that setting and its help, the
sinks each new ticket is queued for and the senders of the outbox dispatcher all come from
this registry: a new target is a new module here (its settings, if it needs any, are fields
of :class:`plantwatch.settings.Settings` that it names in ``needs``).

A sender takes an :class:`~alerting.store.OutboxRow` and raises
:class:`~alerting.errors.DeliveryError` when the target did not take it; the transports
that senders share (HTTP, Kafka, InfluxDB) are in :mod:`alerting.sinks`.

>>> [t.name for t in targets()]
['builtin', 'webhook', 'kafka', 'feedback', 'influx']
>>> choosable(), queued(["builtin", "kafka"])
(('builtin', 'webhook', 'kafka'), ('kafka',))
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from alerting.outbox import Sender


@dataclass(frozen=True)
class TargetEnv:
    """What a target's sender is made from.

    Attributes:
        settings: the plantwatch settings, read by attribute (``topic_tickets``,
            ``alert_webhook_url``, ...).
        producer: a Kafka producer (``acks=all``), or None where Kafka is out of reach.
        writer: the InfluxDB writer (:class:`~alerting.influx.InfluxWriter`), or None.
    """

    settings: Any
    producer: Any = None
    writer: Any = None


class SenderFactory(Protocol):
    """What a target module registers: its sender, or None when it is not configured."""

    def __call__(self, env: TargetEnv, /) -> Sender | None:
        """The target's sender made from ``env``, or None."""


@dataclass(frozen=True)
class Target:
    """One ticket target.

    Attributes:
        name: the sink name of its outbox rows (and its value of PLANTWATCH_ALERT_SINKS).
        sender: builds its sender.
        summary: a few words after its name in help texts (none: the name alone).
        choosable: a value of PLANTWATCH_ALERT_SINKS; the others get the rows the stages
            queue for them by name (``influx``, ``feedback``).
        queued: when chosen, each new ticket is queued in the outbox for it (``builtin``,
            the store itself, is not).
        needs: settings (field names) that must be set when it is chosen.
        order: its place in lists (help texts, messages).
    """

    name: str
    sender: SenderFactory
    summary: str = ""
    choosable: bool = True
    queued: bool = True
    needs: tuple[str, ...] = ()
    order: int = 100


_REGISTRY: dict[str, Target] = {}
_loaded = False


def target(
    name: str,
    *,
    summary: str = "",
    choosable: bool = True,
    queued: bool = True,
    needs: tuple[str, ...] = (),
    order: int = 100,
) -> Callable[[SenderFactory], SenderFactory]:
    """Register the decorated sender factory as the target ``name`` (see :class:`Target`).

    Raises:
        ValueError: another target has this name.
    """

    def register(factory: SenderFactory) -> SenderFactory:
        if name in _REGISTRY:
            raise ValueError(f"ticket target {name!r} is registered twice")
        _REGISTRY[name] = Target(name, factory, summary, choosable, queued, needs, order)
        return factory

    return register


def targets() -> tuple[Target, ...]:
    """Every target, in order (the modules of this package are imported on first use)."""
    global _loaded
    if not _loaded:
        for module in pkgutil.iter_modules(__path__):
            if not module.name.startswith("_"):
                importlib.import_module(f"{__name__}.{module.name}")
        _loaded = True
    return tuple(sorted(_REGISTRY.values(), key=lambda t: (t.order, t.name)))


def get(name: str) -> Target:
    """The target ``name`` (a KeyError when there is none)."""
    return {t.name: t for t in targets()}[name]


def choosable() -> tuple[str, ...]:
    """The values of PLANTWATCH_ALERT_SINKS, in order."""
    return tuple(t.name for t in targets() if t.choosable)


def describe() -> str:
    """The choosable targets as help text: ``builtin (the store, always on), webhook, ...``."""
    return ", ".join(
        f"{t.name} ({t.summary})" if t.summary else t.name for t in targets() if t.choosable
    )


def queued(chosen: Iterable[str]) -> tuple[str, ...]:
    """The chosen targets that each new ticket is queued for in the outbox."""
    return tuple(name for name in chosen if get(name).queued)


def senders(env: TargetEnv) -> dict[str, Sender]:
    """The sender of every target that ``env`` configures, by sink name."""
    made = {t.name: t.sender(env) for t in targets()}
    return {name: send for name, send in made.items() if send is not None}
