"""Session config: parsing, validation against the parameter schema, one-line errors."""
from __future__ import annotations

import numpy as np
import pytest

from edgemix import params as P
from edgemix.session import SessionError, load_session, parse_session

GOOD = """
[session]
sample_rate_hz = 44100
block_size = 128

[backend]
kind = "portaudio"
device = "system"
ring_blocks = 3

[model]
policy = "none"
hop_ms = 50

[master]
limiter_ceiling_dbtp = -2.0

[[buses]]
name = "hall"
kind = "reverb"

[[channels]]
name = "Kick"
input = 3
role = "kick"
automation = 0.25
fader_db = -6.5
hpf_hz = 45.0
comp_on = true

[[channels]]
name = "Vox"
input = 1
role = "lead_vocal"
colour = "#123abc"
"""


def test_good_session_round_trip(tmp_path):
    f = tmp_path / "s.toml"
    f.write_text(GOOD)
    s = load_session(f)
    assert (s.sample_rate_hz, s.block_size, s.n_channels, s.n_aux) == (44100, 128, 2, 1)
    assert s.backend.kind == "portaudio" and s.backend.ring_blocks == 3
    assert [c.input for c in s.channels] == [3, 1]
    assert s.channels[0].colour == "#d62728"  # the role's colour when none is given
    cp, lock = s.channel_params(), s.locked()
    assert cp[0, P.CH.fader_db] == -6.5 and cp[0, P.CH.hpf_hz] == 45.0
    assert cp[0, P.CH.comp_on] == 1.0
    # everything not set manually is the schema default, and only manual entries are locked
    defaults = P.channel_defaults(2)
    assert np.array_equal(cp[1], defaults[1])
    assert lock.sum() == 3 and lock[0, P.CH.fader_db] and not lock[1].any()
    assert s.master_params()[P.MS.limiter_ceiling_dbtp] == -2.0
    assert np.allclose(s.automation(), [0.25, 1.0])
    c = s.build_console()
    assert c.n_channels == 2 and c.n_aux == 1
    assert c.get(0, "fader_db") == -6.5


def _err(text: str) -> str:
    import tomllib
    with pytest.raises(SessionError) as e:
        parse_session(tomllib.loads(text), "session.toml")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("session.toml: ")
    return msg


def _chans(n, extra=""):
    return "".join(f"[[channels]]\ninput = {i + 1}\n" + (extra if i == n - 1 else "")
                   for i in range(n))


def test_out_of_range_names_key_and_schema_range():
    spec = P.CHANNEL_SPECS["fader_db"]
    msg = _err(_chans(4, "fader_db = 30\n"))
    assert msg == (f"session.toml: channels[3].fader_db = 30: out of range, use "
                   f"{spec.min:g} .. {spec.max:g}")


@pytest.mark.parametrize("text, words", [
    ("[[channels]]\nfadr_db = 1\n", ["channels[0]", "fadr_db", "fader_db"]),
    ("[[channels]]\nmaster_fader_db = 1\n", ["master parameter", "[master]"]),
    ("[[channels]]\nrole = \"tuba\"\n", ["role", "tuba", "lead_vocal"]),
    ("[[channels]]\ncolour = \"red\"\n", ["colour", "#rrggbb"]),
    ("[[channels]]\nautomation = 1.5\n", ["automation", "0 .. 1"]),
    ("[[channels]]\ninput = 1\n[[channels]]\ninput = 1\n", ["channels[1]", "already used"]),
    ("[[channels]]\nhpf_slope_db_oct = 18\n", ["hpf_slope_db_oct", "12, 24"]),
    ("[[channels]]\ngate_on = 0.5\n", ["gate_on", "true or false"]),
    ("[[channels]]\npan = \"left\"\n", ["pan", "number"]),
    ("[session]\nblock_size = 100\n", ["session.block_size", "64"]),
    ("[session]\nsample_rate_hz = 12345\n", ["sample_rate_hz", "48000"]),
    ("[backend]\nkind = \"alsa\"\n", ["backend.kind", "jack, portaudio"]),
    ("[backend]\nringblocks = 2\n", ["ring_blocks"]),
    ("[backend]\nring_blocks = -1\n", ["backend.ring_blocks", "0"]),
    ("[model]\npolicy = \"model\"\n", ["model", "path"]),
    ("[master]\nlimiter_ceiling_dbtp = 3\n", ["limiter_ceiling_dbtp", "out of range"]),
    ("[[buses]]\nkind = \"monitor\"\n", ["buses[0]", "reverb"]),
    ("[mixer]\nx = 1\n", ["unknown key 'mixer'"]),
])
def test_bad_values_are_one_line_errors(text, words):
    msg = _err(text)
    for w in words:
        assert w in msg, (w, msg)


def test_file_errors(tmp_path):
    with pytest.raises(SessionError, match="no such file"):
        load_session(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[session\nblock_size = 64\n")
    with pytest.raises(SessionError, match="not valid TOML"):
        load_session(bad)


def test_no_channels_means_backend_count():
    import tomllib
    s = parse_session(tomllib.loads("[backend]\nn_channels = 5\n"))
    assert s.n_channels == 5 and not s.channels_given
    assert [c.input for c in s.channels] == [1, 2, 3, 4, 5]


def test_ring_blocks_default_is_each_live_backends_own():
    """Not set (0): JACK's 2 periods, PortAudio's 4; set: exactly what the session says."""
    import tomllib
    from edgemix.rt.jack_backend import DEFAULT_RING_BLOCKS, JackBackend
    from edgemix.rt.portaudio_backend import RtmixerBackend
    from edgemix.app import build_runner
    assert parse_session(tomllib.loads("[backend]\nkind = \"jack\"\n")).backend.ring_blocks == 0
    for kind, cls, default in (("jack", JackBackend, DEFAULT_RING_BLOCKS),
                               ("portaudio", RtmixerBackend, 4)):
        for text, want in (("", default), ("ring_blocks = 3\n", 3)):
            s = parse_session(tomllib.loads(f'[backend]\nkind = "{kind}"\n{text}'
                                            '[model]\npolicy = "none"\n'))
            runner, _ = build_runner(s)
            assert isinstance(runner.backend, cls) and runner.backend.ring_blocks == want


def test_every_session_rate_runs_the_whole_chain_and_others_are_one_line():
    """The rate limits live in params.py: a rate a session accepts builds the console and
    the feature extractor the policies listen through (a 16 kHz session used to be valid and
    then fail in the feature extractor); a rate it refuses says which ones to use."""
    from edgemix.console import Console
    from edgemix.features import FeatureExtractor
    for fs in P.SAMPLE_RATES_HZ:
        s = parse_session({"session": {"sample_rate_hz": fs}}, "s.toml")
        assert s.sample_rate_hz == fs
        Console(fs, 64, 2, 1)
        FeatureExtractor(fs, 2)
        lo, hi = P.FEATURE_SAMPLE_RATE_RANGE_HZ
        assert lo <= fs <= hi
    for fs in (16000, 22050, 24000):
        with pytest.raises(SessionError) as e:
            parse_session({"session": {"sample_rate_hz": fs}}, "s.toml")
        msg = str(e.value)
        assert "\n" not in msg and msg.startswith("s.toml: session.sample_rate_hz")
        assert "48000" in msg
    # features.py states its range in its own source (its bytes key the shipped training
    # pack, models/sampled_sessions.npz): it must be the range params.py names
    lo, hi = P.FEATURE_SAMPLE_RATE_RANGE_HZ
    for fs in (lo - 1.0, hi + 1.0):
        with pytest.raises(ValueError):
            FeatureExtractor(fs, 2)
    FeatureExtractor(hi, 2)
    assert P.MODEL_MAX_CHANNELS < P.CONSOLE_MAX_CHANNELS
