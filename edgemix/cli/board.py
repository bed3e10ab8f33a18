"""``edgemix board bundle|check|warmup|armcheck``: deployment (registered by ``edgemix/cli``).

A user error ends the command with one line on stderr and exit status 2, no traceback.
``board check`` exits 1 when any check fails (0 with warnings), so a script can gate on it;
``board warmup`` (the systemd unit's ``ExecStartPre``) exits 1 with a one-line reason when
anything fails to compile or load, so the unit does not start a show on a broken install;
``board armcheck compare`` exits 1 when a comparison fails (``scripts/arm_check.sh``).
"""
from __future__ import annotations

import json
import sys

import click

from edgemix.errors import UserError


@click.group("board")
def board():
    """Deploy to a board: build the install bundle, check a machine, warm it up."""


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


@board.command("warmup")
@click.option("--profile", "profile_path", required=True,
              help="Target profile: a name (rpi4) or a path to a profile .toml.")
@click.option("--session", "session_path", default=None,
              help="Session config whose settings and model to warm (optional).")
def warmup_cmd(profile_path, session_path):
    """Compile every kernel and load the model before the stream opens.

    The board's systemd unit runs it as ExecStartPre; exit status 1 with a one-line
    reason when something fails to compile or load."""
    from edgemix.boardtools import profiles
    from edgemix.boardtools.warmup import warm
    try:
        profile = profiles.load(profile_path)
        session = None
        if session_path:
            from edgemix.session import load_session
            session = load_session(session_path)
        times = warm(profile, session)
    except (ValueError, OSError, RuntimeError) as e:
        click.echo(f"edgemix warmup: {str(e).splitlines()[0]}", err=True)
        sys.exit(1)
    click.echo("edgemix warmup: " + ", ".join(f"{w} {s:.1f} s" for w, s in times), err=True)


@board.group("armcheck")
def armcheck():
    """Render a session and every model backend; compare two renders.

    The ARM check (scripts/arm_check.sh) runs render natively and under qemu-aarch64,
    then compare."""


@armcheck.command("render")
@click.option("--profile", "profile_name", required=True)
@click.option("--models", "models_dir", default=None)
@click.option("--seconds", default=2.0, type=float)
@click.option("-o", "--output", required=True)
def armcheck_render_cmd(profile_name, models_dir, seconds, output):
    """Mix a short synthetic session, extract its features, run every model backend."""
    from edgemix.boardtools import armcheck as A
    try:
        r = A.render(profile_name, models_dir, seconds)
    except (ValueError, OSError) as e:
        raise UserError(str(e).splitlines()[0]) from None
    A.save(r, output)
    click.echo(f"armcheck: {r['machine']}: warm-up {r['warmup_s']:.1f} s, render "
               f"{r['render_s']:.1f} s for {seconds:g} s of audio; "
               + "; ".join(r["notes"] or ["all backends ran"]), err=True)


@armcheck.command("compare")
@click.argument("host_npz")
@click.argument("target_npz")
@click.option("--json", "json_path", default=None)
def armcheck_compare_cmd(host_npz, target_npz, json_path):
    """Compare the build machine's render with the target's; exit 1 when any row fails."""
    from pathlib import Path
    from edgemix.boardtools import armcheck as A
    try:
        rep = A.compare(A.load(host_npz), A.load(target_npz))
    except (ValueError, OSError, KeyError) as e:
        raise UserError(f"{host_npz} / {target_npz}: not two armcheck renders ({e})") from None
    if json_path:
        Path(json_path).write_text(json.dumps(rep, indent=2) + "\n")
    for r in rep["rows"]:
        click.echo(f"{'ok  ' if r['ok'] else 'FAIL'}  {r['what']}: max |diff| "
                   f"{r['max_abs_diff']:.3g} (tolerance {r['tolerance']})")
    for n in rep["notes_target"]:
        click.echo(f"note  {rep['target']}: {n}")
    if rep["not_run_on_target"]:
        click.echo("note  not run on the target: " + ", ".join(rep["not_run_on_target"]))
    t = rep["timing_target_s"]
    click.echo(f"{rep['target']} under emulation: warm-up {t['warmup']:.1f} s, render "
               f"{t['render']:.1f} s")
    sys.exit(0 if rep["ok"] else 1)
