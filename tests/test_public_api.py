"""``import edgemix``: the names a script needs, documented, and the README's example runs."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import edgemix

ROOT = Path(__file__).resolve().parents[1]


def test_the_public_names_are_there_and_documented():
    from edgemix import console, session
    assert edgemix.Console is console.Console and edgemix.load_session is session.load_session
    assert edgemix.params.CHANNEL_SPECS["fader_db"].name == "fader_db"
    for name in edgemix.__all__:
        obj = getattr(edgemix, name)
        assert obj.__doc__ and obj.__doc__.strip(), name
    assert set(edgemix.__all__) <= set(dir(edgemix))
    with pytest.raises(AttributeError, match="no attribute 'Consol'"):
        edgemix.Consol  # noqa: B018


def test_the_readme_example_runs(tmp_path, monkeypatch, capsys):
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## From Python"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    assert Path("mix.wav").is_file()
    names = [line.split()[0] for line in out[1:]]
    assert names == ["01_kick", "02_bass", "03_vocal"]
    assert out[1].split()[1] == "kick" and out[2].split()[1] == "bass"


def test_the_readme_links_stay_inside_the_repository():
    text = (ROOT / "README.md").read_text()
    for target in re.findall(r"\]\(([^)#]+)\)", text):
        if "://" in target:
            continue
        path = (ROOT / target).resolve()
        assert path.is_relative_to(ROOT), target
        assert path.exists(), target
