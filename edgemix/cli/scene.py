"""``edgemix scene save|recall|list``: scenes of a running ``edgemix run --osc``.

Registered by ``edgemix/cli``.  A scene is the whole desk as a session TOML file in the
run's ``[control] scenes_dir`` (:mod:`edgemix.rt.scenes`); these commands ask the running
mixer over OSC (``/edgemix/scene/...``, ``docs/osc.md``), so the file is written and read
where the mixer runs.
"""
from __future__ import annotations

import click

from edgemix.errors import UserError

_OSC = click.option("--osc", "osc", metavar="[ADDR:]PORT", default="10024", show_default=True,
                    help="where the running mixer's OSC surface listens")


def _ask(osc: str, address: str, *args):
    from edgemix.rt.osc.client import RequestError, request
    from edgemix.session import OSC_PORT, parse_listen
    try:
        host, port = parse_listen(osc, OSC_PORT, "--osc")
        return request(host, port, address, *args)
    except (ValueError, RequestError) as e:
        raise UserError(str(e)) from None


@click.group("scene")
def scene():
    """Save, recall and list scenes of a running mixer (edgemix run --osc)."""


@scene.command("save")
@click.argument("name")
@_OSC
def save_command(name, osc):
    """Save the whole desk as scene NAME."""
    reply = _ask(osc, "/edgemix/scene/save", name)
    click.echo(f"edgemix: scene {name!r} saved" + (f" to {reply[1]}" if len(reply) > 1 else ""))


@scene.command("recall")
@click.argument("name")
@click.option("--crossfade-s", type=click.FloatRange(0, 600), default=0.0, show_default=True,
              help="move to the scene over this many seconds")
@_OSC
def recall_command(name, crossfade_s, osc):
    """Recall scene NAME (its settings become the person's)."""
    _ask(osc, "/edgemix/scene/recall", name, float(crossfade_s))
    click.echo(f"edgemix: scene {name!r} recalled"
               + (f" over {crossfade_s:g} s" if crossfade_s else ""))


@scene.command("list")
@_OSC
def list_command(osc):
    """List the saved scenes."""
    for name in _ask(osc, "/edgemix/scene/list"):
        click.echo(name)
