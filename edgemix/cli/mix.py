"""``edgemix mix`` and ``edgemix demo``: offline auto-mixing through the live engine.

Registered by ``edgemix/cli``.

Both run exactly what ``edgemix run`` runs live: the session's console, the offline backend
(blocks of the session's block size, as fast as possible) and the control loop
(features -> policy -> automation levels -> ``Console.stage``).  Only the source differs: a
folder of stems for ``mix``, a synthesised multitrack session for ``demo``.  Each writes the
mix and a report of what was set on every channel and why.
"""
from __future__ import annotations

import dataclasses
import json
import math
import pathlib

import click

from edgemix.app import MixResult, mix_session, resolve_policy, session_from_stems  # noqa: F401
from edgemix.automix.explain import format_value
from edgemix.errors import UserError
from edgemix.roles import colour_of

POLICIES = ("auto", "model", "rules", "none")
#: The demo's session is rendered at this rate (``edgemix.rt.synthetic``).
DEMO_SAMPLE_RATE_HZ = 48000


def write_report(res: MixResult, out_dir: pathlib.Path, mix_path: pathlib.Path) -> tuple:
    """``report.json`` (everything) and ``report.md`` (for people) beside the mix."""
    rep = res.report()
    rep["mix"] = str(mix_path)
    jpath = out_dir / "report.json"
    jpath.write_text(json.dumps(rep, indent=1, allow_nan=True))
    m = rep["master"]
    lines = [f"# edgemix mix report", "",
             f"Mix: `{mix_path}`; policy: **{rep['policy']}**; "
             f"{rep['sample_rate_hz']} Hz, {rep['block_size']}-frame blocks.", "",
             f"Master: integrated {m['integrated_lufs']:.1f} LUFS, true peak "
             f"{m['true_peak_dbtp']:.1f} dBTP, loudness range {m['loudness_range_lu']:.1f} LU.",
             "", "| channel | role | automation | trim | HPF | comp | fader | pan | reverb send |",
             "|---|---|---|---|---|---|---|---|---|"]
    for c in rep["channels"]:
        p = c["params"]
        comp = ("off" if p["comp_ratio"] <= 1.0 else
                f"{p['comp_ratio']:.1f}:1 at {p['comp_threshold_db']:.0f} dB")
        lines.append(f"| {c['name']} | {_role_cell(c)} | {c['automation']:.2f} | "
                     f"{format_value('trim_db', p['trim_db'])} | {format_value('hpf_hz', p['hpf_hz'])} | {comp} | "
                     f"{format_value('fader_db', p['fader_db'])} | {format_value('pan', p['pan'])} | "
                     f"{format_value('aux1_send_db', p['aux1_send_db'])} |")
    if m.get("why"):
        lines += ["", *(f"- {text}" for text in m["why"].values())]
    lines += ["", "## Why", ""]
    for c in rep["channels"]:
        why = c["why"]
        manual = c["manual"]
        if not why and not manual:
            continue
        lines.append(f"**{c['name']}** ({_role_cell(c)})")
        for name, value in manual.items():
            lines.append(f"- {name} = {value:g}: your setting (manual settings always win)")
        for name, sentence in why.items():
            lines.append(f"- {sentence}")
        lines.append("")
    mpath = out_dir / "report.md"
    mpath.write_text("\n".join(lines) + "\n")
    return jpath, mpath


def _role_cell(c: dict) -> str:
    """The role the channel was mixed as -- the one its explanations name -- and where it
    came from: "kick (heard, p 0.93)", "keys_piano (session; heard as bass, p 0.71)"."""
    role, heard, p = c["mixed_as"], c["recognised_role"], c["role_probability"]
    if c["role_source"] == "session":
        return f"{role} (session)" if heard in (None, role) else \
            f"{role} (session; heard as {heard}, p {p:.2f})"
    if c["role_source"] == "heard":
        return f"{role} (heard, p {p:.2f})"
    if c["role_probability"] is not None:  # a policy that listens and has not heard it
        return f"{role} (not heard yet)"
    return role


def _summary(res: MixResult, mix_path) -> str:
    m = res.meters
    s = res.stats
    share = s.get("block_time_share", {})
    return (f"edgemix: {len(res.session.channels)} channels mixed by the {res.policy} policy into "
            f"{mix_path}: {m.integrated_lufs:.1f} LUFS, true peak {m.true_peak_dbtp:.1f} dBTP; "
            f"{s.get('blocks', 0)} blocks, p99 block time {100 * share.get('p99', math.nan):.0f} % "
            f"of the deadline, {res.seconds:.1f} s")


@click.command("mix")
@click.argument("stems", type=click.Path())
@click.option("-o", "--output", default="mix.wav", show_default=True, help="the mix (WAV)")
@click.option("--params", "params_file", type=click.Path(dir_okay=False),
              help="session TOML: channel names, roles, automation levels, manual settings")
@click.option("--policy", type=click.Choice(POLICIES), default="auto", show_default=True,
              help="who proposes settings: the model, the rules, or nobody (manual mix)")
@click.option("--stems-out", "stems_out", type=click.Path(file_okay=False),
              help="also write each channel's processed stem (post-fader, panned) here")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
def mix_command(stems, output, params_file, policy, stems_out, as_json):
    """Mix a folder of WAV stems (one file per input) offline and write a report."""
    from edgemix.session import SessionError, default_session, load_session
    try:
        session = load_session(params_file) if params_file else default_session(0)
    except SessionError as e:
        raise UserError(str(e)) from None
    out = pathlib.Path(output)
    b = dataclasses.replace(session.backend, kind="offline", inputs=(str(stems),),
                            output=str(out), paced=False,
                            stems_dir=str(stems_out) if stems_out else session.backend.stems_dir)
    session = dataclasses.replace(session, backend=b)
    if not params_file:
        session = session_from_stems(session, stems)
    res = mix_session(session, policy=policy, progress=not as_json)
    write_report(res, out.parent if str(out.parent) else pathlib.Path("."), out)
    click.echo(json.dumps(res.report()) if as_json else _summary(res, out))


@click.command("demo")
@click.option("-o", "--out-dir", default="out/demo", show_default=True,
              help="where the stems, the mix and the report go")
@click.option("--seconds", type=click.FloatRange(2, 600), default=20.0, show_default=True)
@click.option("--channels", "n_channels", type=click.IntRange(2, 32), default=8,
              show_default=True)
@click.option("--kind", type=click.Choice(["band", "speech"]), default="band", show_default=True,
              help="a band, or a speech panel (gain sharing)")
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--policy", type=click.Choice(POLICIES), default="auto", show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
def demo_command(out_dir, seconds, n_channels, kind, seed, policy, as_json):
    """Synthesise a multitrack session and auto-mix it through the live engine."""
    import soundfile as sf
    from edgemix.rt.synthetic import render_synthetic
    from edgemix.session import ChannelConfig, default_session

    out = pathlib.Path(out_dir)
    stems_dir = out / "stems"
    processed_dir = out / "processed"
    try:
        stems_dir.mkdir(parents=True, exist_ok=True)
        processed_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{out}: cannot create it ({e.strerror}): choose a writable --out-dir")
    for old in [*stems_dir.glob("*.wav"), *processed_dir.glob("*.wav")]:
        old.unlink()  # a previous demo's stems: this one replaces them
    stems, roles = render_synthetic(n_channels, DEMO_SAMPLE_RATE_HZ, seconds, seed, kind)
    channels = []
    for i, role in enumerate(roles):
        name = f"{i + 1:02d}_{role}"
        sf.write(str(stems_dir / f"{name}.wav"), stems[:, i], DEMO_SAMPLE_RATE_HZ,
                 subtype="FLOAT")
        channels.append(ChannelConfig(name=name, input=i + 1, role=role, colour=colour_of(role)))
    mix_path = out / "mix.wav"
    session = default_session(0)
    session = dataclasses.replace(
        session, sample_rate_hz=DEMO_SAMPLE_RATE_HZ, channels=tuple(channels),
        channels_given=True,
        backend=dataclasses.replace(session.backend, kind="offline", inputs=(str(stems_dir),),
                                    output=str(mix_path), paced=False,
                                    stems_dir=str(processed_dir)))
    res = mix_session(session, policy=policy, progress=not as_json)
    jpath, mpath = write_report(res, out, mix_path)
    from edgemix.rt.surface import write_live_session
    live = write_live_session(out / "live.toml", channels, stems_dir,
                              resolve_policy(policy))
    if as_json:
        click.echo(json.dumps(res.report()))
    else:
        click.echo(_summary(res, mix_path))
        click.echo(f"edgemix: raw stems in {stems_dir}/, processed stems in {processed_dir}/, "
                   f"report in {mpath}")
        click.echo(f"edgemix: take part in the mix live: edgemix run --config {live} "
                   "--osc 10024 --web 8080, then open http://127.0.0.1:8080/ or point an "
                   "X-Air app (XR18) at 127.0.0.1 (docs/osc.md)")
