"""Scenes: the whole desk as a session TOML file; recall and crossfade round-trip exactly."""
from __future__ import annotations

import time

import numpy as np
import pytest

from edgemix import params as P
from edgemix.rt.desk import Desk
from edgemix.rt.scenes import SceneError, SceneStore
from edgemix.session import load_session


def _desk():
    d = Desk(3, names=["Kick", "Bass", "Vox"], roles=["kick", "bass", "lead_vocal"])
    rng = np.random.default_rng(7)
    for ch in (1, 2, 3):  # odd values everywhere: exactness is the point
        for s in P.CHANNEL_PARAMS:
            if s.scale == "bool":
                v = float(rng.integers(0, 2))
            elif s.scale == "choice":
                v = float(rng.choice(s.choices))
            else:
                v = float(s.from_norm(rng.random()))
            d.set(ch, s.name, v)
    d.set("master", "master_fader_db", -3.123456789)
    d.set(2, "automation", 0.37)
    d.set(3, "name", "Lead vocal")
    return d


def test_save_and_recall_round_trip_exactly(tmp_path):
    d = _desk()
    store = SceneStore(d, tmp_path)
    path = store.save("song 1")
    saved = d.snapshot()
    assert load_session(path).n_channels == 3                  # a valid session file
    for ch in (1, 2, 3):
        d.set(ch, "fader_db", -60.0)
        d.set(ch, "pan", 0.0)
    d.set(2, "automation", 1.0)                                 # hands channel 2 back
    d.set("master", "master_fader_db", 0.0)
    store.recall("song 1")
    now = d.snapshot()
    for a, b in zip(saved["channels"], now["channels"]):
        assert a["params"] == b["params"] and a["name"] == b["name"]
        assert a["automation"] == b["automation"]
        assert set(b["owner"].values()) == {"person"}             # a scene is the person's
    assert saved["master"]["params"] == now["master"]["params"]
    assert store.names() == ["song 1"]


def test_crossfade_moves_on_each_scale_and_lands_exactly(tmp_path):
    d = Desk(2)
    store = SceneStore(d, tmp_path)
    d.set(1, "fader_db", -7.77)
    d.set(1, "hpf_hz", 333.3)
    d.set(2, "mute_on", 1.0)
    store.save("b")
    d.set(1, "fader_db", -40.0)
    d.set(1, "hpf_hz", 20.0)
    d.set(2, "mute_on", 0.0)
    seen = []
    d.add_listener(lambda c: seen.append((c.channel, c.param, c.value)))
    store.recall("b", crossfade_s=0.4)
    time.sleep(0.05)
    assert d.get(2, "mute_on") == 1.0                           # switches at the start
    assert store.wait(5.0)
    assert d.get(1, "fader_db") == -7.77 and d.get(1, "hpf_hz") == 333.3
    faders = [v for ch, p, v in seen if (ch, p) == (1, "fader_db")]
    hpfs = [v for ch, p, v in seen if (ch, p) == (1, "hpf_hz")]
    assert len(faders) >= 4 and faders == sorted(faders)       # several steps, one way
    # Hz moves on a log scale: the middle step is near the geometric mean
    mid = hpfs[len(hpfs) // 2]
    assert 20.0 < mid < 333.3 and abs(np.log(mid) - np.mean(np.log([20.0, 333.3]))) < 0.8


def test_a_move_during_the_fade_wins(tmp_path):
    d = Desk(1)
    store = SceneStore(d, tmp_path)
    d.set(1, "fader_db", 0.0)
    store.save("a")
    d.set(1, "fader_db", -50.0)
    store.recall("a", crossfade_s=0.5)
    time.sleep(0.15)
    d.set(1, "fader_db", -20.0, source="osc")
    store.wait(5.0)
    assert d.get(1, "fader_db") == -20.0


def test_scene_errors_are_one_line(tmp_path):
    d = Desk(2)
    store = SceneStore(d, tmp_path)
    for bad in ("../x", "", ".hidden", "a/b"):
        with pytest.raises(SceneError):
            store.save(bad)
    with pytest.raises(SceneError, match="no scene"):
        store.recall("missing")
    SceneStore(Desk(3), tmp_path).save("three")
    with pytest.raises(SceneError, match="3 channels"):
        store.recall("three")
    (tmp_path / "broken.toml").write_text("[[channels]]\nfader_db = 99\n")
    with pytest.raises(SceneError) as e:
        store.recall("broken")
    assert "\n" not in str(e.value) and "fader_db" in str(e.value)
