"""Click commands ``edgemix board bundle|check`` and ``edgemix profile``.

Registered by ``edgemix/cli.py`` (``cli.add_command(board)``, ``cli.add_command(profile)``).
A user error ends the command with one line on stderr and exit status 2, no traceback;
``board check`` exits 1 when any check fails (0 with warnings), so a script can gate on it.
"""
from __future__ import annotations

import json
import sys

import click


class UserError(click.ClickException):
    """One line on stderr, exit status 2."""

    exit_code = 2

    def show(self, file=None):
        click.echo(f"edgemix: error: {self.message}", err=True)


@click.group("board")
def board():
    """Deploy to a board: build the install bundle, check a machine before a show."""


@board.command("bundle")
@click.option("--target", required=True,
              help="Target profile: rpi4, rpi5, generic-aarch64, x86-laptop, or a .toml path.")
@click.option("-o", "--output", "output", default="dist", show_default=True,
              help="Folder for the tarball and its .sha256.")
@click.option("--models", "models_dir", default=None,
              help="Models folder to take the artifacts from (default: the tree's models/).")
@click.option("--source", default=None, help="edgemix source tree (default: this checkout).")
@click.option("--with-wheels", is_flag=True,
              help="Download the target's binary wheels (pip --platform) for an offline install.")
@click.option("--python-version", default="3.11", show_default=True,
              help="The board's Python, for --with-wheels.")
@click.option("--wheel", default=None,
              help="Use this edgemix wheel instead of building one from the tree.")
@click.option("--json", "as_json", is_flag=True, help="Print the bundle's metadata as JSON.")
def bundle_cmd(target, output, models_dir, source, with_wheels, python_version, wheel, as_json):
    """Build a self-contained, versioned install tarball for a target board."""
    from edgemix.boardtools.bundle import build_bundle
    try:
        tarball = build_bundle(target, output, models_dir=models_dir, source=source,
                               with_wheels=with_wheels, python_version=python_version,
                               wheel=wheel)
    except (ValueError, RuntimeError, OSError) as e:
        raise UserError(str(e)) from None
    digest = tarball.with_name(tarball.name + ".sha256").read_text().split()[0]
    if as_json:
        click.echo(json.dumps({"tarball": str(tarball), "sha256": digest,
                               "bytes": tarball.stat().st_size}, indent=2))
    else:
        click.echo(f"{tarball}  ({tarball.stat().st_size / 1e6:.1f} MB, sha256 {digest[:16]}...)")
        click.echo(f"install on the board: tar xzf {tarball.name} && cd "
                   f"{tarball.name[:-len('.tar.gz')]} && sudo ./install.sh")


@board.command("check")
@click.option("--target", default=None,
              help="Profile to check against (default: the one that fits this machine).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
def check_cmd(target, as_json):
    """Preflight: kernel, governor, limits, audio, thermals, model runtime — with fixes."""
    from edgemix.boardtools import check
    host = check.Host()
    try:
        prof, checks = check.run_checks(target, host)
    except ValueError as e:
        raise UserError(str(e)) from None
    if as_json:
        click.echo(json.dumps(check.report_dict(prof, checks, host), indent=2))
    else:
        click.echo(check.format_table(prof, checks))
    if any(c.status == "fail" for c in checks):
        sys.exit(1)


@click.command("profile")
@click.option("--target", required=True, help="Target profile name or .toml path.")
@click.option("--seconds", default=10.0, show_default=True, type=float,
              help="Seconds of audio to run.")
@click.option("-o", "--output", "output", default=None,
              help="Folder for profile.json, summary.md and the plots (default profile-<target>).")
@click.option("--models", "models_dir", default=None, help="Models folder (default: models/).")
@click.option("--live", is_flag=True,
              help="Run through the profile's live backend (JACK/PortAudio) instead of pacing.")
@click.option("--no-rt", is_flag=True, help="Do not ask for SCHED_FIFO for the audio loop.")
@click.option("--no-control", is_flag=True, help="Leave out the control thread (inference).")
@click.option("--json", "as_json", is_flag=True, help="Print profile.json to stdout.")
def profile(target, seconds, output, models_dir, live, no_rt, no_control, as_json):
    """Run the engine and the auto-mix at a target's settings and time every stage."""
    from edgemix import profile as prof_mod
    try:
        r = prof_mod.run_profile(target, seconds, models_dir=models_dir, live=live,
                                 rt=not no_rt, control=not no_control)
        paths = prof_mod.write_report(r, output or f"profile-{r['target']}")
    except (ValueError, OSError, RuntimeError) as e:
        raise UserError(str(e).splitlines()[0]) from None
    if as_json:
        click.echo(paths["json"].read_text())
        return
    b = r["stages"]["block"]
    click.echo(f"{r['target']}: {r['n_blocks']} blocks, deadline {r['deadline_ms']:.3f} ms; "
               f"block p50 {b['p50_ms']:.3f} / p99 {b['p99_ms']:.3f} / max {b['max_ms']:.3f} ms;"
               f" {r['deadline_misses']} deadline misses, {r['xruns']} xruns")
    for s in r["skipped"]:
        click.echo(f"not profiled: {s['what']}: {s['why']}")
    click.echo("wrote " + ", ".join(str(p) for p in paths.values()))
