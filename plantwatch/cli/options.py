"""Command-line options generated from the settings model, one per (non-secret) setting."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import UnionType
from typing import Any, Literal, TypeVar, Union, get_args, get_origin

import click
from pydantic.fields import FieldInfo

from plantwatch.settings import SECRET_FIELDS, Settings, env_name, option_name

F = TypeVar("F", bound=Callable[..., Any])


def _click_type(field: FieldInfo) -> Any:
    annotation = field.annotation
    inner = annotation
    if get_origin(annotation) in (Union, UnionType):
        inner = next(a for a in get_args(annotation) if a is not type(None))
    if get_origin(inner) is Literal:
        return click.Choice([str(c) for c in get_args(inner)])
    if inner is bool:
        return click.BOOL
    if inner is int:
        return click.INT
    if inner is Path:
        return click.Path(path_type=Path)
    return click.STRING


def _default_text(name: str, field: FieldInfo) -> str:
    if field.default_factory is not None:
        return str(field.default_factory())  # type: ignore[call-arg]
    if field.default is None:
        return "unset"
    return str(field.default)


def settings_options(func: F) -> F:
    """Add ``--<setting>`` options for every non-secret setting to a click command.

    Each option defaults to None so that the environment variable (read by
    :func:`plantwatch.settings.load_settings`) applies when the option is left out.
    """
    for name, field in reversed(list(Settings.model_fields.items())):
        if name in SECRET_FIELDS:
            continue
        help_text = (
            f"{field.description} [env: {env_name(name)}; default: {_default_text(name, field)}]"
        )
        func = click.option(
            option_name(name),
            name,
            type=_click_type(field),
            # floats stay strings for click, so that a bad value gets the settings' message
            metavar="FLOAT" if field.annotation is float else None,
            default=None,
            help=help_text,
            show_default=False,
        )(func)
    return func


SECRETS_HELP = "Secrets are read from the environment only: " + ", ".join(
    env_name(n) for n in sorted(SECRET_FIELDS)
)


def since_option(default: str, what: str) -> Callable[[F], F]:
    """The ``--since`` option of the commands that read a time range.

    Args:
        default: e.g. ``1d``.
        what: what the time starts, e.g. ``Start of the range``.
    """
    return click.option(
        "--since",
        default=default,
        show_default=True,
        help=f"{what}: a duration back from now (30m, 12h, 7d, 2w) or an ISO date "
        "(2025-01-31 or 2025-01-31T12:00; UTC unless it has an offset).",
    )
