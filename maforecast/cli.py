"""The ``maforecast`` command: a small root that only registers each stage's subcommands.

Subcommands are imported lazily so ``maforecast --help`` stays fast and a stage's heavy
dependencies (torch, bentoml) load only when that stage runs. Errors that a user can fix are
printed as one line (``error: ...``) with exit code 2, never as a traceback.
"""

from __future__ import annotations

import importlib
import sys

import click

from maforecast.errors import UserError
from maforecast.settings import quiet_telemetry

# command name -> "module:attribute" of a click command defined by the stage
COMMANDS: dict[str, str] = {
    "import-reference": "collector.cli:import_reference",
    "import-published": "collector.cli:import_published_cmd",
    "collect": "collector.cli:collect",
    "fit": "fitting.cli:fit",
    "train": "registry.cli:train",
    "promote": "registry.cli:promote",
    "relog": "registry.cli:relog",
    "ui": "registry.cli:ui",
    "predict": "review.cli:predict",
    "review": "review.cli:review_cmd",
    "plan": "plan.cli:plan_cmd",
    "serve": "service.cli:serve",
    "bootstrap": "pipeline.cli:bootstrap",
    "monitor": "pipeline.monitor:monitor",
}


class BrokenCommandError(UserError):
    """A stage's command module is installed but fails to import (e.g. a missing dependency)."""


def load_command(name: str) -> click.Command:
    """Import the click command registered as ``name``; a broken import is one line naming the module.

    Never "No such command" for a known command: that would hide the ImportError behind it.
    """
    module, attr = COMMANDS[name].split(":")
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        reason = (str(exc).strip().splitlines() or [""])[0]
        raise BrokenCommandError(
            f"command '{name}' is broken: importing {module} failed: {type(exc).__name__}: {reason}"
        ) from exc
    try:
        return getattr(mod, attr)
    except AttributeError:
        raise BrokenCommandError(f"command '{name}' is broken: {module} defines no '{attr}'") from None


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        return load_command(name) if name in COMMANDS else None

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """``--help`` lists every command; a broken one shows why instead of its summary."""
        rows: list[tuple[str, str]] = []
        limit = formatter.width - 6 - max(len(n) for n in COMMANDS)
        for name in self.list_commands(ctx):
            try:
                cmd = load_command(name)
            except BrokenCommandError as exc:
                rows.append((name, "(broken) " + str(exc).split(": ", 1)[1]))
                continue
            if not cmd.hidden:
                rows.append((name, cmd.get_short_help_str(limit)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="maforecast")
def root() -> None:
    """Forecast massive-activation emergence in transformers before training."""


def main(argv: list[str] | None = None) -> None:
    quiet_telemetry()
    try:
        root.main(args=argv, prog_name="maforecast", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except UserError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("interrupted: work finished so far is saved; rerun to resume", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
