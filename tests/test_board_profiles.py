"""Target profiles: the shipped ones load, bad values are refused with one-line fixes."""
import copy
import tomllib

import pytest

from edgemix.boardtools import profiles
from edgemix.params import MAX_AUX

SHIPPED = ("generic-aarch64", "rpi4", "rpi5", "x86-laptop")


def _raw(name):
    return tomllib.loads((profiles.profiles_dir() / f"{name}.toml").read_text())


def test_the_four_targets_ship():
    assert set(SHIPPED) <= set(profiles.available())


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_profile_loads_and_round_trips(name):
    p = profiles.load(name)
    raw = _raw(name)
    assert p.name == name
    assert p.sample_rate_hz == raw["audio"]["sample_rate_hz"]
    assert p.block_size == raw["audio"]["block_size"]
    # The deadline is one block period: block / rate.
    assert p.deadline_ms == pytest.approx(1000.0 * raw["audio"]["block_size"]
                                          / raw["audio"]["sample_rate_hz"])
    assert p.io_latency_ms == pytest.approx(raw["audio"]["periods"] * p.deadline_ms)
    again = profiles.parse(tomllib.loads(p.to_toml()), source=f"{name}.toml")
    assert again == profiles.parse(raw, source=f"{name}.toml")
    # The same file loaded by path gives the same profile.
    assert profiles.load(profiles.profiles_dir() / f"{name}.toml") == p


def test_pis_run_int8_tflite_and_pin_audio_off_core_0():
    for name in ("rpi4", "rpi5"):
        p = profiles.load(name)
        assert p.model_format == "tflite-int8"
        assert p.raspberry_pi and p.arch == "aarch64"
        assert p.audio_cores and 0 not in p.audio_cores
        assert not set(p.audio_cores) & set(p.control_cores)
    assert profiles.load("x86-laptop").arch == "x86_64"


BAD = [
    ("audio", "block_size", 100, "audio.block_size = 100"),
    ("audio", "block_size", 4096, "audio.block_size"),
    ("audio", "block_size", "128", "audio.block_size"),
    ("audio", "sample_rate_hz", 12345, "audio.sample_rate_hz = 12345"),
    ("audio", "periods", 1, "audio.periods = 1"),
    ("audio", "backend", "alsa", "audio.backend = 'alsa'"),
    ("audio", "n_channels", 0, "audio.n_channels = 0"),
    ("audio", "n_channels", 33, "audio.n_channels = 33"),
    ("audio", "n_aux", MAX_AUX + 1, "audio.n_aux"),
    ("audio", "n_aux", True, "audio.n_aux"),
    ("cpu", "audio_cores", [3, 3], "cpu.audio_cores"),
    ("cpu", "audio_cores", "3", "cpu.audio_cores"),
    ("cpu", "control_cores", [3], "cpu.control_cores"),
    ("cpu", "governor", "turbo", "cpu.governor = 'turbo'"),
    ("model", "format", "tflite", "model.format = 'tflite'"),
    ("model", "fallback", "tflite-int8", "model.fallback"),
    ("model", "hop_ms", 1.0, "model.hop_ms = 1.0"),
    ("priorities", "audio_rtprio", 100, "priorities.audio_rtprio = 100"),
    ("priorities", "control_nice", -21, "priorities.control_nice"),
    ("priorities", "memlock_mib", "lots", "priorities.memlock_mib = 'lots'"),
    ("target", "arch", "armv7l", "target.arch = 'armv7l'"),
    ("target", "raspberry_pi", "yes", "target.raspberry_pi"),
    ("target", "device_tree_model", "Rock 5B", "target.device_tree_model"),
]


@pytest.mark.parametrize("section,key,value,fragment", BAD)
def test_bad_values_name_the_key_and_the_fix(section, key, value, fragment):
    raw = copy.deepcopy(_raw("rpi4"))
    raw[section][key] = value
    with pytest.raises(ValueError) as e:
        profiles.parse(raw, where="rpi4.toml", source="rpi4.toml")
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith("rpi4.toml: ") and fragment in msg
    assert ": use" in msg or "must" in msg or "keep" in msg or "list" in msg or "a Pi" in msg


def test_structure_errors():
    raw = _raw("rpi4")
    bad = copy.deepcopy(raw)
    bad["audio"]["blocksize"] = 64
    with pytest.raises(ValueError, match=r"unknown key audio\.blocksize: use one of .*block_size"):
        profiles.parse(bad, where="rpi4.toml")
    bad = copy.deepcopy(raw)
    del bad["model"]["hop_ms"]
    with pytest.raises(ValueError, match=r"missing key model\.hop_ms"):
        profiles.parse(bad, where="rpi4.toml")
    bad = copy.deepcopy(raw)
    bad["network"] = {}
    with pytest.raises(ValueError, match=r"unknown section \[network\]"):
        profiles.parse(bad, where="rpi4.toml")
    bad = copy.deepcopy(raw)
    del bad["cpu"]
    with pytest.raises(ValueError, match=r"missing section \[cpu\]"):
        profiles.parse(bad, where="rpi4.toml")
    with pytest.raises(ValueError, match=r"must match the file name 'rpi5'"):
        profiles.parse(raw, where="rpi5.toml", expect_name="rpi5")
    # A copy under another file name (a bundle's profile.toml) keeps its target's name.
    assert profiles.parse(raw, where="profile.toml").name == "rpi4"


def test_hop_shorter_than_a_block_is_refused():
    raw = copy.deepcopy(_raw("generic-aarch64"))
    raw["audio"]["block_size"] = 2048          # 42.7 ms at 48 kHz
    raw["model"]["hop_ms"] = 20
    with pytest.raises(ValueError, match="at least one block"):
        profiles.parse(raw, source="generic-aarch64.toml")


def test_unknown_target_and_bad_file(tmp_path):
    with pytest.raises(ValueError, match="unknown target 'rpi3': use one of .*rpi4"):
        profiles.load("rpi3")
    f = tmp_path / "mine.toml"
    f.write_text("[target\nname=")
    with pytest.raises(ValueError, match="mine.toml: not valid TOML"):
        profiles.load(f)
    with pytest.raises(ValueError, match="no such profile file"):
        profiles.load(tmp_path / "absent.toml")
