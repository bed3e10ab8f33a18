"""The one error type for user mistakes, shared by every command."""
from __future__ import annotations

import click


class UserError(click.ClickException):
    """A mistake the user can fix: one line on stderr, exit status 2, no traceback."""

    exit_code = 2

    def show(self, file=None):
        click.echo(f"edgemix: error: {self.message}", err=True)
