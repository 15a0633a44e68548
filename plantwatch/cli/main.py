"""The root command group and error handling."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

import click

from features.config import FeatureConfigError
from pipeline.errors import PlantwatchError
from plantwatch import __version__
from plantwatch.cli.options import SECRETS_HELP, settings_options
from plantwatch.settings import Settings, load_settings
from plantwatch.stages import Stage


class _Group(click.Group):
    """Prints plantwatch's own errors as one line (no traceback) and exits with 2."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (PlantwatchError, FeatureConfigError) as exc:
            click.echo(f"plantwatch: error: {_masked(str(exc))}", err=True)
            ctx.exit(2)


@click.group(
    cls=_Group,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=SECRETS_HELP,
)
@click.version_option(__version__, prog_name="plantwatch")
@click.option(
    "-v",
    "--verbose",
    is_flag=True,
    help="Show debug logs, and the third-party logs that are off by default (TensorFlow's "
    "start, the Kafka client): the same as --log-level debug.",
)
@settings_options
@click.pass_context
def cli(ctx: click.Context, /, verbose: bool, **options: Any) -> None:
    """plantwatch: streaming predictive maintenance on Kafka, Keras and InfluxDB.

    Every option below can also be set by the environment variable shown in its help;
    options given on the command line win, then the environment, then the current profile
    (`plantwatch profile`). Run `plantwatch COMMAND --help` for a command.
    """
    from plantwatch.quiet import quiet_third_party

    if verbose:
        options["log_level"] = "debug"
    # Before any command imports TensorFlow (which reads its log settings once, on import).
    quiet_third_party(verbose=_raw_setting("log_level", options).lower() == "debug")
    ctx.obj = options


def _raw_setting(name: str, options: dict[str, Any]) -> str:
    """A setting's value as given (option, environment, profile), before validation."""
    from plantwatch.profile import profile_path, read_profile
    from plantwatch.settings import env_name

    if options.get(name) is not None:
        return str(options[name])
    variable = env_name(name)
    for key, value in os.environ.items():
        if key.upper() == variable:
            return value
    try:
        profile = read_profile(profile_path(options))
    except PlantwatchError:  # reported when the command reads its settings
        return ""
    return "" if profile is None else profile.settings.get(variable, "")


def configure_logging() -> None:
    """Timestamped logs for services from PLANTWATCH_LOG_LEVEL (info) on.

    Third-party loggers are quieted by the root command (:mod:`plantwatch.quiet`).
    """
    import logging

    ctx = click.get_current_context(silent=True)
    level = settings_from(ctx).log_level if ctx is not None else "info"
    logging.basicConfig(
        level=getattr(logging, level.upper()), format="%(asctime)s %(levelname)s %(message)s"
    )


def settings_from(ctx: click.Context) -> Settings:
    """The settings for this invocation (environment + root options), validated once."""
    root = ctx.find_root()
    cached = root.meta.get("plantwatch.settings")
    if cached is None:
        cached = load_settings(root.obj or {})
        root.meta["plantwatch.settings"] = cached
    return cached


def main() -> None:
    """Console-script entry point.

    A bug's traceback is printed with every secret setting's value masked: a vendor's
    error may quote a header or a URL that holds one.
    """
    try:
        cli.main(prog_name="plantwatch")
    except PlantwatchError as exc:  # raised outside a command (e.g. in a callback)
        click.echo(f"plantwatch: error: {_masked(str(exc))}", err=True)
        sys.exit(2)
    except Exception:  # a bug: its traceback, without secrets
        import traceback

        click.echo(_masked(traceback.format_exc()), err=True, nl=False)
        sys.exit(1)


def _masked(text: str) -> str:
    """``text`` with the value of every secret setting in the environment replaced by ***."""
    from plantwatch.settings import SECRET_FIELDS, env_name

    for field in SECRET_FIELDS:
        value = os.environ.get(env_name(field), "")
        for form in {value, value.strip(), repr(value.strip())[1:-1]}:
            if len(form) >= 4:
                text = text.replace(form, "***")
    return text


def echo_err(line: str) -> None:
    """A progress or warning line to stderr."""
    click.echo(line, err=True)


def stop_event(stage: Stage[Any]) -> threading.Event:
    """An event that SIGINT/SIGTERM set for a built stage (SIGHUP calls its ``on_hup``)."""
    stop = threading.Event()
    install_stop(stage.name, stop, on_hup=stage.on_hup)
    return stop


def install_stop(
    stage: str, stop: threading.Event, on_hup: Callable[[], None] | None = None
) -> None:
    """Make SIGINT/SIGTERM set ``stop`` and SIGHUP call ``on_hup`` (when given).

    With ``stop`` set the stage finishes its batch, commits and exits.
    """

    def handler(signum: int, _frame: Any) -> None:
        click.echo(
            f"{stage}: {signal.Signals(signum).name}: finishing the batch and stopping", err=True
        )
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    if on_hup is not None:
        signal.signal(signal.SIGHUP, lambda _signum, _frame: on_hup())
