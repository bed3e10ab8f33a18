"""The ``edgemix`` command: one entry point, subcommands, ``--json`` for machines.

Every user mistake ends a command with one line on stderr (``edgemix: error: ...``) and exit
status 2; a traceback means a bug in edgemix, never a bad file or flag.
"""
from __future__ import annotations

import click

from edgemix.errors import UserError  # noqa: F401  (re-exported: the one user-error type)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="edgemix")
def cli():
    """edgemix: real-time automatic mixing for low-power boards."""


def _register():
    from edgemix.board_commands import board, profile
    from edgemix.mixing_commands import demo_command, mix_command
    from edgemix.rt.commands import devices_command, run_command

    for command in (demo_command, mix_command, run_command, devices_command, board, profile):
        cli.add_command(command)


_register()


def main() -> None:
    cli(prog_name="edgemix")


if __name__ == "__main__":
    main()
