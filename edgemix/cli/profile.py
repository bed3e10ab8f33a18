"""``edgemix profile``: what the board runs, at a target's settings, timed stage by stage.

Registered by ``edgemix/cli``; the profiler itself is :mod:`edgemix.latency_profile`.
A user error ends the command with one line on stderr and exit status 2, no traceback.
"""
from __future__ import annotations

import click

from edgemix.errors import UserError


@click.command("profile")
@click.option("--target", required=True, help="Target profile name or .toml path.")
@click.option("--seconds", default=10.0, show_default=True, type=float,
              help="Seconds of audio to run.")
@click.option("-o", "--output", "output", default=None,
              help="Folder for profile.json, summary.md and the plots (default profile-<target>).")
@click.option("--models", "models_dir", default=None, help="Models folder (default: models/).")
@click.option("--server", default=None,
              help="JACK server name (default: JACK_DEFAULT_SERVER; a dummy one is started "
                   "when none runs and there is no sound card).")
@click.option("--paced", is_flag=True,
              help="No audio server: a Python thread releases the blocks on the deadline grid.")
@click.option("--no-rt", is_flag=True, help="Do not ask for SCHED_FIFO for the audio thread.")
@click.option("--no-control", is_flag=True, help="Leave out the control process (no policy).")
@click.option("--json", "as_json", is_flag=True, help="Print profile.json to stdout.")
def profile_command(target, seconds, output, models_dir, server, paced, no_rt, no_control,
                    as_json):
    """Run what the target's board runs (edgemix run: its backend and the control process)
    at its settings and time every stage."""
    from edgemix import latency_profile as prof_mod
    say = (lambda line: click.echo(line, err=True))
    try:
        r = prof_mod.run_profile(target, seconds, models_dir=models_dir, paced=paced,
                                 rt=not no_rt, control=not no_control, server=server, say=say)
        paths = prof_mod.write_report(r, output or f"profile-{r['target']}")
    except (ValueError, OSError, RuntimeError) as e:
        raise UserError(str(e).splitlines()[0]) from None
    if as_json:
        click.echo(paths["json"].read_text())
        return
    b = r["stages"]["block"]
    p = r["path"]
    click.echo(f"{r['target']}: {r['n_blocks']} blocks through {p['backend']} "
               f"({p['callback']}), control: {p['control'] or 'none'}; deadline "
               f"{r['deadline_ms']:.3f} ms; block p50 {b['p50_ms']:.3f} / p99 "
               f"{b['p99_ms']:.3f} / max {b['max_ms']:.3f} ms; misses: {r['misses']['ours']} "
               f"ours, {r['misses']['server']} the server's")
    for s in r["skipped"]:
        click.echo(f"not profiled: {s['what']}: {s['why']}")
    click.echo("wrote " + ", ".join(str(p) for p in paths.values()))
