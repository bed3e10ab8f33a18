"""The ``edgemix`` command: one click group, one module per command group.

=================  ==========================================================
module             commands
=================  ==========================================================
``cli/mix.py``     ``edgemix mix``, ``edgemix demo`` (offline, through the live engine)
``cli/run.py``     ``edgemix run``, ``edgemix devices`` (live audio)
``cli/board.py``   ``edgemix board bundle|check|warmup|armcheck`` (deployment)
``cli/profile.py`` ``edgemix profile`` (what the board runs, timed)
``cli/prep.py``    ``edgemix prep`` (mix preparation: clicks, silences, alignment, mono, labels)
``cli/scene.py``   ``edgemix scene save|recall|list`` (scenes of a running mixer)
=================  ==========================================================

Every user mistake ends a command with one line on stderr (``edgemix: error: ...``) and exit
status 2 (:class:`edgemix.errors.UserError`, the one user-error type); a traceback means a
bug in edgemix, never a bad file or flag.  The console script ``edgemix`` and
``python -m edgemix`` both call :func:`main`.
"""
from __future__ import annotations

import click

from edgemix.errors import UserError  # noqa: F401  (re-exported: the one user-error type)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="edgemix")
def cli():
    """edgemix: real-time automatic mixing for low-power boards."""


def _register():
    from edgemix.cli.board import board
    from edgemix.cli.mix import demo_command, mix_command
    from edgemix.cli.prep import prep_command
    from edgemix.cli.profile import profile_command
    from edgemix.cli.run import devices_command, run_command
    from edgemix.cli.scene import scene

    for command in (demo_command, mix_command, run_command, devices_command, board,
                    profile_command, prep_command, scene):
        cli.add_command(command)


_register()


def main() -> None:
    """The ``edgemix`` console script (``[project.scripts]`` in pyproject.toml)."""
    cli(prog_name="edgemix")
