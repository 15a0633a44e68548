"""`plantwatch profile save | show | clear`: the current profile (:mod:`plantwatch.profile`)."""

from __future__ import annotations

import os
from typing import Any

import click

from plantwatch.cli.main import cli


def _options(ctx: click.Context) -> dict[str, Any]:
    return {k: v for k, v in (ctx.find_root().obj or {}).items() if v is not None}


@cli.group("profile")
def profile_group() -> None:
    """The current profile: settings that commands read when no option or variable sets them.

    A setting comes from its option, else its PLANTWATCH_* variable, else the current
    profile, else its default. `make demo` saves each run's topics, consumer groups,
    InfluxDB bucket, ticket store and models directory as the profile, so that `status`,
    `tickets`, `history`, `report` and `dead-letters` show that run. The profile is the
    JSON file PLANTWATCH_PROFILE_FILE (default <state_dir>/profile.json).
    """


@profile_group.command("save")
@click.argument("name")
@click.pass_context
def save_cmd(ctx: click.Context, name: str) -> None:
    """Save the settings of this environment and these options as the profile NAME.

    Every PLANTWATCH_* variable set now and every setting option given is saved (paths made
    absolute), except secrets (environment only), the state directory and the profile
    file; the profile replaces the current one.
    """
    from plantwatch.profile import profile_path, save_profile, settable
    from plantwatch.settings import Settings, env_name, load_settings

    options = _options(ctx)
    allowed = settable(Settings)
    values = {k.upper(): v for k, v in os.environ.items() if k.upper() in allowed}
    values |= {env_name(k): str(v) for k, v in options.items() if env_name(k) in allowed}
    for key, value in values.items():  # a path must mean the same file from any directory
        if "Path" in str(Settings.model_fields[allowed[key]].annotation) and value:
            values[key] = os.path.abspath(os.path.expanduser(value))
    path = profile_path(options)
    trial = path.with_name(f".{path.name}.{os.getpid()}.check")
    try:  # the settings that commands will read: checked before they replace the profile
        save_profile(trial, name, values)
        load_settings({**options, "profile_file": trial})
        profile = save_profile(path, name, values)
    finally:
        trial.unlink(missing_ok=True)
    click.echo(f"saved the profile {profile.name} ({len(values)} settings) to {path}")


@profile_group.command("show")
@click.pass_context
def show_cmd(ctx: click.Context) -> None:
    """Print the current profile: its name, file and settings (and which ones are overridden)."""
    from plantwatch.profile import profile_path, read_profile
    from plantwatch.settings import Settings

    path = profile_path(_options(ctx))
    profile = read_profile(path, Settings)
    if profile is None:
        click.echo(f"no profile ({path}): settings come from options, environment, defaults")
        return
    click.echo(f"profile {profile.name} (saved {profile.saved or '?'}) in {path}")
    environ = {k.upper() for k in os.environ}
    for key, value in profile.settings.items():
        note = "  (the environment's value wins)" if key in environ else ""
        click.echo(f"  {key}={value}{note}")
    click.echo("`plantwatch profile clear` removes it; an option or variable overrides a setting")


@profile_group.command("clear")
@click.pass_context
def clear_cmd(ctx: click.Context) -> None:
    """Remove the current profile: commands use options, environment and defaults again."""
    from plantwatch.profile import clear_profile, profile_path

    path = profile_path(_options(ctx))
    if not path.exists():
        click.echo(f"no profile ({path})")
        return
    removed = clear_profile(path)
    click.echo(f"removed the profile {removed.name if removed else ''} ({path})".replace("  ", " "))
