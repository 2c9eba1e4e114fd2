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
    "train": "predictor.cli:train",
    "promote": "predictor.cli:promote",
    "predict": "service.cli:predict",
    "serve": "service.cli:serve",
    "bootstrap": "service.cli:bootstrap",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name in COMMANDS if self._importable(name))

    @staticmethod
    def _importable(name: str) -> bool:
        module = COMMANDS[name].split(":")[0]
        return importlib.util.find_spec(module) is not None and _has_attr(COMMANDS[name])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module, attr = COMMANDS[name].split(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError):
            return None


def _has_attr(target: str) -> bool:
    module, attr = target.split(":")
    try:
        return hasattr(importlib.import_module(module), attr)
    except ImportError:
        return False


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
