"""``edgemix prep``: analyse a folder of stems before mixing, report every finding with its
evidence, and on request write corrected copies.

Registered by ``edgemix/cli``.  The analysis is :mod:`edgemix.automix.prep.report`; this
module reads the stems, writes ``prep.json`` and ``prep.md`` (and with ``-o`` the fixed
stems, one per original, same name and format) and prints a summary or, with ``--json``,
the JSON document.  The originals are only ever read: an output folder that is the stems
folder, or would overwrite any original, is refused.
"""
from __future__ import annotations

import json
import pathlib

import click
import numpy as np

from edgemix.errors import UserError

#: File types a stems folder is searched for (what soundfile reads losslessly).
AUDIO_SUFFIXES = (".wav", ".wave", ".flac", ".aif", ".aiff")


def read_stems(folder) -> tuple[list[str], list[pathlib.Path], list[np.ndarray], int]:
    """``(names, paths, signals, sample_rate_hz)``: every stem in ``folder`` (name order),
    shorter ones padded with silence to the longest; :class:`UserError` naming the fix."""
    import soundfile as sf
    from edgemix.rt.offline import StemError, expand_inputs, probe_stems
    folder = pathlib.Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: not a folder: give the folder that holds the stems")
    try:
        paths = expand_inputs([folder], suffixes=AUDIO_SUFFIXES)
        rate, frames, _ = probe_stems(paths)
    except StemError as e:
        raise UserError(str(e)) from None
    if frames < rate // 10:
        raise UserError(f"{folder}: the stems are {frames} frames long: prep needs at least "
                        "0.1 s of audio")
    sigs = []
    for p in paths:
        x, _ = sf.read(str(p), dtype="float32", always_2d=True)
        if not np.all(np.isfinite(x)):
            raise UserError(f"{p}: holds NaN or Inf samples: re-export it")
        out = np.zeros((frames, x.shape[1]), np.float32)
        out[:len(x)] = x
        sigs.append(out[:, 0] if x.shape[1] == 1 else out)
    return [p.stem for p in paths], paths, sigs, int(rate)


def _given(params_file, names):
    """A person's roles, labels and colours from a session file, by input order."""
    from edgemix.roles import colour_of
    from edgemix.session import DEFAULT_ROLE, SessionError, load_session
    try:
        s = load_session(params_file)
    except SessionError as e:
        raise UserError(str(e)) from None
    roles, labels, colours = {}, {}, {}
    for ch in s.channels:
        if not 1 <= ch.input <= len(names):
            raise UserError(f"{params_file}: channel {ch.name!r} is input {ch.input} but the "
                            f"folder has {len(names)} stems: number the inputs 1..{len(names)}")
        n = names[ch.input - 1]
        if ch.role != DEFAULT_ROLE:
            roles[n] = ch.role
        if ch.name != n:
            labels[n] = ch.name
        if ch.colour.lower() != colour_of(ch.role):
            colours[n] = ch.colour.lower()
    return roles, labels, colours


def _alignment():
    """The alignment estimator where this install has it (``find_alignments``)."""
    try:
        from edgemix.automix.prep.align import find_alignments
    except ImportError:
        return None
    return find_alignments


@click.command("prep")
@click.argument("stems", type=click.Path())
@click.option("-o", "--output", "fixed_dir", type=click.Path(file_okay=False),
              help="write corrected copies of the stems here (the originals are never touched)")
@click.option("--params", "params_file", type=click.Path(dir_okay=False),
              help="session TOML: your channel names, roles and colours win")
@click.option("--report-dir", type=click.Path(file_okay=False),
              help="where prep.json and prep.md go (default: the output folder, else the "
                   "current folder)")
@click.option("--no-gate", is_flag=True, help="with -o: leave the silences in the copies")
@click.option("--json", "as_json", is_flag=True, help="print the report as JSON")
def prep_command(stems, fixed_dir, params_file, report_dir, no_gate, as_json):
    """Analyse a folder of stems: clicks, silences, polarity and alignment, mono
    compatibility, labels, colours and groups."""
    from edgemix.automix.prep.report import analyse, corrected
    names, paths, sigs, rate = read_stems(stems)
    out = pathlib.Path(fixed_dir) if fixed_dir else None
    if out is not None:
        originals = {p.resolve() for p in paths}
        if out.resolve() == pathlib.Path(stems).resolve() or any(
                (out / p.name).resolve() in originals for p in paths):
            raise UserError(f"{out}: would overwrite the original stems: choose another "
                            "output folder with -o")
    given = _given(params_file, names) if params_file else ({}, {}, {})
    rep = analyse(names, sigs, rate, given_roles=given[0], given_labels=given[1],
                  given_colours=given[2], alignments=_alignment(),
                  progress=None if as_json else (lambda s: None))
    written = []
    if out is not None:
        import soundfile as sf
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"{out}: cannot create it ({e.strerror}): choose a writable -o")
        for p, x, c in zip(paths, sigs, rep.channels):
            info = sf.info(str(p))
            y = corrected(x, c, rate, gate_silences=not no_gate)
            sf.write(str(out / p.name), y.astype(np.float32), rate, subtype=info.subtype)
            written.append(str(out / p.name))
    rdir = pathlib.Path(report_dir) if report_dir else (out or pathlib.Path("."))
    try:
        rdir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{rdir}: cannot create it ({e.strerror}): choose a writable --report-dir")
    doc = rep.to_json()
    doc["stems_dir"] = str(stems)
    doc["fixed"] = {"dir": str(out), "files": written} if out is not None else None
    (rdir / "prep.json").write_text(json.dumps(doc, indent=1))
    (rdir / "prep.md").write_text(rep.to_markdown(str(stems), str(out) if out else None))
    if as_json:
        click.echo(json.dumps(doc))
        return
    n_clicks = sum(len(c["clicks_s"]) for c in doc["channels"])
    n_sil = sum(len(c["silent_s"]) for c in doc["channels"])
    n_al = sum(1 for c in doc["channels"] if c["aligned_to"])
    click.echo(f"edgemix: {len(names)} stems, {rep.seconds:.1f} s: {n_clicks} clicks, "
               f"{n_sil} silent regions, {n_al} aligned mics, mono correlation "
               f"{doc['mono']['correlation']:+.2f}, {len(doc['mono']['warnings'])} mono "
               f"warnings; report in {rdir / 'prep.md'}"
               + (f"; corrected stems in {out}/" if out else ""))
