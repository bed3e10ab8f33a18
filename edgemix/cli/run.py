"""``edgemix devices`` and ``edgemix run``: live audio (registered by ``edgemix/cli``).

``run`` builds its runner with :func:`edgemix.app.build_runner`, the one composition root,
so what it runs is what ``mix``, ``demo`` and ``profile`` run.  Every user error (session
file, stems, device) ends the command with one line on stderr and exit status 2; no
traceback.
"""
from __future__ import annotations

import json
import logging
import os
import sys

import click

from edgemix.errors import UserError
from edgemix.app import build_runner
from edgemix.session import SessionError, default_session, load_session
from edgemix.rt.backend import DeviceError

log = logging.getLogger("edgemix.rt")


def _setup_logging(verbose: bool = False) -> None:
    if not logging.getLogger("edgemix").handlers:
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("edgemix: %(message)s"))
        logging.getLogger("edgemix").addHandler(h)
    logging.getLogger("edgemix").setLevel(logging.INFO if verbose else logging.WARNING)


@click.command("devices")
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.option("--server", default=None, help="JACK server name (default: JACK_DEFAULT_SERVER)")
def devices_command(as_json, server):
    """List PortAudio devices and, when a JACK server runs, its ports."""
    _setup_logging()
    out = {"portaudio": [], "jack": None}
    try:
        from edgemix.rt.portaudio_backend import list_devices
        out["portaudio"] = list_devices()
    except DeviceError as e:
        out["portaudio_error"] = str(e)
    try:
        from edgemix.rt.jack_backend import import_jack
        jack = import_jack()  # libjack's own stderr complaints go to the log
        c = jack.Client("edgemix-devices", no_start_server=True, servername=server)
        try:
            out["jack"] = {"sample_rate_hz": c.samplerate, "block_size": c.blocksize,
                           "capture": [p.name for p in c.get_ports(is_physical=True,
                                                                   is_output=True, is_audio=True)],
                           "playback": [p.name for p in c.get_ports(is_physical=True,
                                                                    is_input=True, is_audio=True)]}
        finally:
            c.close()
    except Exception:  # no JACK library or no server: nothing to list
        out["jack"] = None
    if as_json:
        click.echo(json.dumps(out, indent=1))
        return
    if "portaudio_error" in out:
        click.echo(f"PortAudio: {out['portaudio_error']}")
    elif not out["portaudio"]:
        click.echo("PortAudio: no devices")
    for d in out["portaudio"]:
        click.echo(f"{d['index']:3d}  {d['name']} ({d['hostapi']}): "
                   f"{d['max_input_channels']} in, {d['max_output_channels']} out, "
                   f"{d['default_samplerate']:g} Hz")
    if out["jack"]:
        j = out["jack"]
        click.echo(f"JACK: {j['sample_rate_hz']} Hz, {j['block_size']} frames; "
                   f"{len(j['capture'])} capture and {len(j['playback'])} playback ports")
    else:
        click.echo("JACK: no server running")


@click.command("run")
@click.option("--config", "config", type=click.Path(dir_okay=False),
              help="session TOML file (default: the built-in synthetic session)")
@click.option("--duration-s", type=float, default=None, help="stop after this many seconds")
@click.option("--record", "record_dir", type=click.Path(file_okay=False),
              help="record every input and the mix to WAV files in this folder")
@click.option("--server", default=None, help="JACK server name (default: JACK_DEFAULT_SERVER)")
@click.option("--no-rt", is_flag=True, help="do not ask for CPU affinity / real-time priority")
@click.option("--retries", type=int, default=None,
              help="give up after this many re-opens of a lost device (default: keep trying)")
@click.option("--osc", "osc", metavar="[ADDR:]PORT", default=None,
              help="OSC control surface in the X-Air dialect (UDP; e.g. 10024, "
                   "0.0.0.0:10024); binds 127.0.0.1 unless an address is given")
@click.option("--web", "web", metavar="[ADDR:]PORT", default=None,
              help="web control surface (HTTP; e.g. 8080); binds 127.0.0.1 unless an "
                   "address is given")
@click.option("--json", "as_json", is_flag=True, help="print the run's statistics as JSON")
@click.option("-v", "--verbose", is_flag=True)
def run_command(config, duration_s, record_dir, server, no_rt, retries, osc, web, as_json,
                verbose):
    """Mix live (JACK, PortAudio) or offline (stems, synthetic) as the session says."""
    _setup_logging(verbose)
    from edgemix.rt.surface import SurfaceError, announce, control_from_cli
    try:
        session = load_session(config) if config else default_session(8, output="")
        control = control_from_cli(session, osc=osc, web=web)
        runner, session = build_runner(session, record_dir=record_dir, server=server,
                                       rt_priority=not no_rt, max_retries=retries,
                                       control=control)
    except (SessionError, DeviceError, ValueError) as e:
        raise UserError(str(e)) from None
    if runner.control is not None and hasattr(runner.control, "announce"):
        runner.control.announce = announce
    log.info("%d channels via %s, %d Hz / %d frames (pid %d)", session.n_channels,
             runner.backend.name, session.sample_rate_hz, session.block_size, os.getpid())
    try:
        stats = runner.run(duration_s=duration_s)
    except (DeviceError, ValueError, SurfaceError) as e:
        raise UserError(str(e)) from None
    if as_json:
        click.echo(json.dumps(stats))
    else:
        s = stats["block_time_share"]
        click.echo(f"edgemix: {stats['blocks']} blocks, {stats['xruns']} xruns, "
                   f"{stats['late_blocks']} late; block time p50 {100 * s['p50']:.1f} % "
                   f"p99 {100 * s['p99']:.1f} % max {100 * s['max']:.1f} % of "
                   f"{stats['deadline_ms']:.2f} ms; latency {stats['latency_frames']} frames; "
                   f"stopped: {stats['stop_reason']}")
        if stats.get("recorder"):
            r = stats["recorder"]
            click.echo(f"edgemix: recorded {r['frames_written']} frames to {r['mix_path']} "
                       f"({r['dropped_frames']} dropped)")
