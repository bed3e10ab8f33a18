"""The console engine: reference equivalence, block-size invariance, reset, guard,
no allocation, pan law, smoothing, sends, bypass and validation."""
import math

import numpy as np
import pytest

from edgemix import params as P
from edgemix.console import Console
from tests.alloc_helpers import heap_bytes
from tests.reference.strip_ref import strip

FS = 48000.0


def _quiet_master(c):
    """Master section transparent: limiter out, no reverb return (for strip-level checks)."""
    c.set_master("limiter_on", 0)
    c.set_master("reverb_return_db", P.OFF_DB)


def _random_settings(rng):
    return dict(
        trim_db=rng.uniform(-6, 12), polarity_invert=float(rng.integers(2)),
        hpf_on=1.0, hpf_hz=rng.uniform(30, 200), hpf_slope_db_oct=float(rng.choice([12, 24])),
        eq_on=1.0, eq1_gain_db=rng.uniform(-9, 9), eq2_hz=rng.uniform(200, 800),
        eq2_gain_db=rng.uniform(-9, 9), eq2_q=rng.uniform(0.5, 3), eq3_hz=rng.uniform(1500, 5000),
        eq3_gain_db=rng.uniform(-9, 9), eq4_gain_db=rng.uniform(-9, 9),
        comp_on=1.0, comp_threshold_db=rng.uniform(-30, -10), comp_ratio=rng.uniform(1.5, 8),
        comp_knee_db=rng.uniform(0, 12), comp_attack_ms=rng.uniform(1, 30),
        comp_release_ms=rng.uniform(40, 300), comp_makeup_db=rng.uniform(0, 6),
        comp_detector_rms=float(rng.integers(2)),
        fader_db=rng.uniform(-20, 3), pan=rng.uniform(-1, 1),
        # whole samples, short fractional (fewer taps) and full-length fractional delays
        delay_ms=float(rng.choice([0.0, 7.0 / 48, rng.uniform(0.01, 0.3), rng.uniform(1, 20)])),
    )


def _signal(n, channels, seed=0):
    rng = np.random.default_rng(seed)
    t = np.arange(n) / FS
    env = np.repeat(rng.uniform(0.02, 0.7, (n // 480 + 1, channels)), 480, axis=0)[:n]
    x = rng.standard_normal((n, channels)) * 0.3 + np.sin(2 * np.pi * 110 * t)[:, None]
    return (x * env).astype(np.float32)


def test_console_equals_slow_reference_strips():
    rng = np.random.default_rng(7)
    n_ch = 3
    c = Console(FS, 256, n_ch, 2)
    _quiet_master(c)
    settings = [_random_settings(rng) for _ in range(n_ch)]
    for ch, s in enumerate(settings):
        for k, v in s.items():
            c.set_channel(ch, k, v)
    x = _signal(6000, n_ch)
    lat = c.latency_frames  # the limiter's lookahead delays the output, in or out of circuit
    y = c.process(x)[lat:]
    left = np.zeros(len(x))
    right = np.zeros(len(x))
    for ch in range(n_ch):
        p = {spec.name: spec.default for spec in P.CHANNEL_PARAMS}
        p.update(settings[ch])
        l, r, _ = strip(x[:, ch].astype(np.float64), FS, p)
        left += l
        right += r
    left, right = left[:len(y)], right[:len(y)]
    # the console carries float32 between its passes: compare at float32 resolution
    np.testing.assert_allclose(y[:, 0], left, atol=2e-5 * max(1, np.abs(left).max()))
    np.testing.assert_allclose(y[:, 1], right, atol=2e-5 * max(1, np.abs(right).max()))


def _scenario(block, n=3 * 4352):
    """Everything active, with parameter moves at sample 4352 and 8704 (lcm of 17 and 256)."""
    rng = np.random.default_rng(11)
    n_ch = 4
    c = Console(FS, 256, n_ch, 3)
    first = [_random_settings(rng) for _ in range(n_ch)]
    for ch, s in enumerate(first):
        for k, v in s.items():
            c.set_channel(ch, k, v)
        c.set_channel(ch, "gate_on", 1)
        c.set_channel(ch, "gate_threshold_db", -35)
        c.set_channel(ch, "aux1_send_db", -6)
        c.set_channel(ch, "aux2_send_db", -3)
    x = _signal(n, n_ch, seed=5)
    x[1000:1003, 1] = np.nan
    moves = {4352: [(0, "fader_db", -40.0), (1, "eq2_gain_db", 12.0), (2, "hpf_hz", 400.0),
                    (3, "comp_on", 0.0), (0, "pan", 1.0), (1, "delay_ms", 2.345)],
             8704: [(0, "fader_db", 0.0), (3, "comp_on", 1.0), (1, "eq_on", 0.0),
                    (2, "aux1_pre", 1.0), (2, "delay_ms", 0.0), (1, "delay_ms", 0.5)]}
    out, aux = [], []
    pos = 0
    while pos < n:
        if pos in moves:
            for ch, k, v in moves[pos]:
                c.set_channel(ch, k, v)
        nxt = min([m for m in moves if m > pos] + [n])
        step = nxt - pos if block is None else min(block, nxt - pos)
        out.append(c.process(x[pos:pos + step]).copy())
        if block is not None:  # aux_out holds one block: record it only block by block
            aux.append(c.aux_out[:, :step].copy())
        pos += step
    return np.concatenate(out), (np.concatenate(aux, axis=1) if aux else None), c


@pytest.mark.parametrize("block", [1, 17, 64])
def test_any_block_size_gives_the_same_output(block):
    whole, _, _ = _scenario(None)
    _, aux256, _ = _scenario(256)
    got, got_aux, _ = _scenario(block)
    # bit-identical, as docs/design-notes.md promises (ticks on the absolute sample clock)
    np.testing.assert_array_equal(got, whole)
    np.testing.assert_array_equal(got_aux, aux256)
    assert np.all(np.isfinite(got))


def test_reset_clears_state_and_keeps_parameters():
    rng = np.random.default_rng(2)
    c = Console(FS, 64, 2, 2)
    for ch in range(2):
        for k, v in _random_settings(rng).items():
            c.set_channel(ch, k, v)
    x = _signal(4000, 2)
    first = c.process(x).copy()
    params_before = c.channel_params
    c.reset()
    np.testing.assert_array_equal(c.channel_params, params_before)
    again = c.process(x)
    np.testing.assert_array_equal(again, first)


def test_nan_and_inf_are_replaced_counted_and_never_poison_state():
    c = Console(FS, 64, 2, 2)
    ref = Console(FS, 64, 2, 2)
    for con in (c, ref):
        con.set_channel(0, "eq2_gain_db", 9.0)
        con.set_channel(1, "comp_ratio", 4.0)
    x = _signal(4800, 2)
    bad = x.copy()
    bad[100:164, 0] = np.nan
    bad[2000, 1] = np.inf
    bad[2001, 1] = -np.inf
    bad[3000, 0] = 1e30
    clean = bad.copy()
    clean[~(np.abs(clean) <= 1e6)] = 0.0
    y = c.process(bad)
    assert np.all(np.isfinite(y))
    assert c.guard_count == 64 + 2 + 1
    np.testing.assert_array_equal(y, ref.process(clean))


def test_no_allocation_in_the_block_path():
    frames = 1024
    c = Console(FS, frames, 32, 2)
    for ch in range(32):
        c.set_channel(ch, "comp_ratio", 3.0)
        c.set_channel(ch, "aux1_send_db", -10.0)
        c.set_channel(ch, "gate_on", 1.0)
        c.set_channel(ch, "delay_ms", 0.0 if ch % 3 == 0 else 0.37 * ch)
    x = _signal(frames, 32)
    out = np.empty((frames, 2), np.float32)
    c.warmup()
    transient, retained = heap_bytes(lambda: c.process(x, out=out), 3000, warmup=50)
    assert retained < 256, f"{retained} bytes kept"
    # An input copy would be 128 KiB, an output array 8 KiB, a work buffer more: nothing of
    # the kind happens.  What remains is the fixed cost of one Python call into the kernel
    # (the argument tuple), freed at once and independent of frames and channels.
    assert transient < 4096, f"{transient} bytes allocated inside process()"


@pytest.mark.parametrize("pan", [-1.0, -0.5, 0.0, 0.3, 1.0])
def test_constant_power_pan_law(pan):
    c = Console(FS, 64, 1, 1)
    _quiet_master(c)
    for k in ("hpf_on", "eq_on", "comp_on"):
        c.set_channel(0, k, 0)
    c.set_channel(0, "pan", pan)
    y = c.process(np.full((2000, 1), 0.5, np.float32))[-1] / 0.5
    assert abs(y[0] ** 2 + y[1] ** 2 - 1.0) < 1e-6  # constant power
    if pan == 0.0:
        assert abs(20 * math.log10(y[0]) + 3.0103) < 1e-3 and abs(y[0] - y[1]) < 1e-7
    if pan == -1.0:
        assert y[1] == 0.0
    if pan == 1.0:
        assert abs(y[0]) < 1e-7


def test_fader_moves_are_smoothed_not_jumps():
    c = Console(FS, 64, 1, 1)
    _quiet_master(c)
    c.set_channel(0, "hpf_on", 0)
    x = np.full((int(0.3 * FS), 1), 0.5, np.float32)
    c.process(x[:480])
    c.set_channel(0, "fader_db", P.OFF_DB)
    y = c.process(x)[c.latency_frames:, 0]
    steps = np.abs(np.diff(y))
    assert steps.max() < 0.5 * 0.01  # no step bigger than 1 % of the signal per sample
    # 20 ms time constant: down by 1/e after ~960 samples, below -70 dB after 300 ms
    i = np.argmax(y < y[0] * math.exp(-1))
    assert abs(i - 0.02 * FS) < 0.05 * 0.02 * FS + 16
    assert abs(y[-1]) < 1e-4


def test_aux_sends_pre_and_post_fader_and_mute():
    c = Console(FS, 512, 1, 2)
    _quiet_master(c)
    c.set_channel(0, "hpf_on", 0)
    c.set_channel(0, "aux1_send_db", -6.0)   # post-fader by default
    c.set_channel(0, "aux2_send_db", -12.0)  # pre-fader by default
    c.set_channel(0, "fader_db", -20.0)
    x = np.full((512, 1), 0.5, np.float32)
    c.process(x)
    aux = c.aux_out[:, -1] / 0.5
    assert abs(20 * math.log10(aux[0]) - (-6.0 - 20.0)) < 1e-3
    assert abs(20 * math.log10(aux[1]) - (-12.0)) < 1e-3
    c.set_channel(0, "mute_on", 1)
    for _ in range(40):  # 0.43 s: the 20 ms mute fade is far below -100 dB
        c.process(x)
    assert np.abs(c.aux_out).max() < 1e-6


def test_stage_bypass_crossfades_to_the_dry_signal():
    c = Console(FS, 256, 1, 1)
    _quiet_master(c)
    c.set_channel(0, "hpf_on", 0)
    c.set_channel(0, "pan", -1)
    c.set_channel(0, "comp_threshold_db", -40)
    c.set_channel(0, "comp_ratio", 10)
    x = np.full((9600, 1), 0.5, np.float32)
    wet = c.process(x)[:, 0].copy()
    c.set_channel(0, "comp_on", 0)
    y = c.process(x)[:, 0]
    assert wet[-1] < 0.1  # compressed hard
    assert abs(y[-1] - 0.5) < 1e-4  # bypassed: the dry signal
    assert np.abs(np.diff(y)).max() < 0.01  # and no click on the way


def test_a_channel_never_depends_on_another_channels_stages():
    """The strip runs each stage for all channels when any has it in; a channel with the
    stage out must come out the same as if no channel had it, including when it switches
    the stage in and out mid-signal (its state starts from rest)."""
    rng = np.random.default_rng(7)
    x = _signal(48000, 2, seed=3)
    mine = _random_settings(rng)
    mine.update(pan=-1.0, gate_on=0.0)
    other = _random_settings(rng)
    other.update(pan=1.0, gate_on=1.0, gate_threshold_db=-30.0)

    def render(other_on):
        c = Console(FS, 64, 2, 1)
        _quiet_master(c)
        for k, v in mine.items():
            c.set_channel(0, k, v)
        for k, v in other.items():
            c.set_channel(1, k, v)
        for stage in ("hpf_on", "eq_on", "gate_on", "comp_on"):
            c.set_channel(1, stage, other[stage] if other_on else 0.0)
            c.set_channel(0, stage, 0.0)
        out = []
        for i, start in enumerate(range(0, 48000, 4000)):
            if i == 3:  # switch my stages in, then out again, then in
                for stage in ("hpf_on", "eq_on", "gate_on", "comp_on"):
                    c.set_channel(0, stage, 1.0)
            if i == 6:
                c.set_channel(0, "eq_on", 0.0)
                c.set_channel(0, "comp_on", 0.0)
            if i == 8:
                c.set_channel(0, "eq_on", 1.0)
                c.set_channel(0, "comp_on", 1.0)
            out.append(c.process(x[start:start + 4000])[:, 0].copy())
        return np.concatenate(out)

    alone, beside = render(False), render(True)
    assert np.abs(alone).max() > 0.05
    np.testing.assert_allclose(beside, alone, rtol=0, atol=1e-7)


def test_meters_read_peak_rms_and_gain_reduction():
    c = Console(FS, 480, 2, 1)
    _quiet_master(c)
    c.set_channel(1, "hpf_on", 0)  # channel 1 is DC
    c.set_channel(1, "comp_threshold_db", -30)
    c.set_channel(1, "comp_ratio", 4)
    c.set_channel(1, "comp_knee_db", 0)
    t = np.arange(3 * 48000) / FS  # 10 time constants of the 300 ms RMS meter
    x = np.stack([np.sin(2 * np.pi * 997 * t), np.full_like(t, 0.1)], 1).astype(np.float32)
    c.process(x)
    m = c.meters
    assert abs(m.channel_peak_db[0]) < 0.05  # sample peak: no sample lands on the crest
    assert abs(m.channel_rms_db[0] + 3.01) < 0.05
    assert abs(m.channel_gain_reduction_db[1] - (-20 + 30) * (1 - 1 / 4)) < 0.05


def test_bad_input_and_parameters_are_one_line_errors():
    c = Console(FS, 64, 4, 2)
    with pytest.raises(ValueError, match=r"expected \(frames, 4\)"):
        c.process(np.zeros((64, 3), np.float32))
    with pytest.raises(ValueError, match="did you mean fader_db"):
        c.set_channel(0, "fadr_db", 0)
    with pytest.raises(ValueError, match="out of range: use -90 .. 10"):
        c.set_channel(0, "fader_db", 30)
    with pytest.raises(ValueError, match="channel 9"):
        c.set_channel(9, "fader_db", 0)
    with pytest.raises(ValueError, match="master parameter"):
        c.set_channel(0, "master_fader_db", 0)
    with pytest.raises(ValueError, match="block size"):
        Console(FS, 0, 4)
    with pytest.raises(ValueError, match="sample rate"):
        Console(1000, 64, 4)
    with pytest.raises(ValueError, match="shape"):
        c.stage(np.zeros((3, P.N_CH)))


def test_staged_parameters_are_picked_up_latest_wins():
    c = Console(FS, 64, 2, 1)
    a = c.channel_params
    a[:, P.CH.fader_db] = -6.0
    c.stage(a)
    b = c.channel_params
    b[:, P.CH.fader_db] = -12.0
    c.stage(b)  # a never reaches the audio side
    c.process(np.zeros((64, 2), np.float32))
    assert np.all(c._p[:, P.CH.fader_db] == -12.0)
    # values outside the schema's range are clipped, not passed on
    b[0, P.CH.hpf_hz] = 1e6
    c.stage(b)
    assert c.channel_params[0, P.CH.hpf_hz] == P.CHANNEL_SPECS["hpf_hz"].max


def _speech_like(n, seed):
    """Noise bursts at syllable rate: a talker."""
    rng = np.random.default_rng(seed)
    env = (np.sin(2 * np.pi * 4.0 * np.arange(n) / FS) > 0).astype(np.float64)
    return rng.standard_normal(n) * 0.2 * env


def test_gain_sharing_through_the_console():
    c = Console(FS, 256, 3, 1)
    for ch in range(3):
        c.set_channel(ch, "automix_on", 1)
    n = int(3 * FS)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((n, 3)) * 1e-3  # room noise on every mic
    x[:, 1] += _speech_like(n, 5)           # one talker on mic 2
    c.process(x.astype(np.float32))
    g = c.meters.automix_gain_db
    assert abs(g[1]) < 0.5 and g[0] < -15 and g[2] < -15


def test_reverb_return_through_the_fx_bus():
    c = Console(FS, 256, 1, 1)
    c.set_channel(0, "hpf_on", 0)  # no 20 Hz ringing in the dry path: only the room remains
    c.set_channel(0, "aux1_send_db", 0.0)
    c.set_master("reverb_decay_s", 1.0)
    x = np.zeros((int(1.0 * FS), 1), np.float32)
    x[:2400, 0] = np.random.default_rng(0).standard_normal(2400) * 0.3
    y = c.process(x)
    lat = c.latency_frames
    tail = y[lat + 2400 + int(0.1 * FS):lat + 2400 + int(0.3 * FS)]
    assert np.sqrt(np.mean(tail ** 2)) > 1e-3            # the room rings on ...
    assert abs(np.corrcoef(tail[:, 0], tail[:, 1])[0, 1]) < 0.5  # ... in stereo
    c.set_master("reverb_return_db", P.OFF_DB)
    c.reset()
    y = c.process(x)
    assert np.abs(y[lat + 2400 + 2400:]).max() < 1e-6     # return off: dry signal only


def test_limiter_holds_the_true_peak_ceiling_through_the_console():
    from scipy.signal import resample_poly
    c = Console(FS, 64, 2, 1)
    c.set_master("limiter_ceiling_dbtp", -1.0)
    for ch in range(2):
        c.set_channel(ch, "trim_db", 18.0)
    t = np.arange(int(1.0 * FS)) / FS
    x = np.stack([np.sign(np.sin(2 * np.pi * 997 * t)),
                  np.sin(2 * np.pi * FS / 4 * t + np.pi / 4)], 1).astype(np.float32) * 0.5
    y = c.process(x).astype(np.float64)
    tp = 20 * np.log10(np.abs(resample_poly(y, 8, 1, axis=0)).max())
    assert tp <= -1.0 + 1e-3
    assert c.meters.true_peak_dbtp <= -1.0 + 1e-3
    assert c.meters.limiter_gain_reduction_db > 6.0


def test_master_loudness_meters_agree_with_pyloudnorm():
    pyln = pytest.importorskip("pyloudnorm")
    c = Console(FS, 512, 2, 1)
    c.set_master("limiter_on", 0)
    x = _signal(int(6 * FS), 2, seed=9) * 0.3
    y = c.process(x)
    integrated = pyln.Meter(int(FS)).integrated_loudness(y[c.latency_frames:].astype(np.float64))
    assert abs(c.meters.integrated_lufs - integrated) < 0.1
    assert np.isfinite(c.meters.momentary_lufs) and np.isfinite(c.meters.short_term_lufs)
    assert -1.0 <= c.meters.correlation <= 1.0


@pytest.mark.parametrize("block", [1, 64])
def test_block_size_invariance_with_automixer_reverb_and_limiter(block):
    def run(step):
        c = Console(FS, 256, 3, 1)
        for ch in range(3):
            c.set_channel(ch, "automix_on", 1)
            c.set_channel(ch, "aux1_send_db", -6)
            c.set_channel(ch, "trim_db", 12)
        n = 6000
        x = np.stack([_speech_like(n, s) for s in range(3)], 1).astype(np.float32)
        return np.concatenate([c.process(x[i:i + step]).copy() for i in range(0, n, step)])
    whole = run(256)
    np.testing.assert_array_equal(run(block), whole)  # bit-identical


@pytest.mark.parametrize("block", [1, 64, 1000])
def test_direct_outs_are_the_stems_that_sum_to_the_mix(block):
    """Each channel's direct out is its post-fader, post-pan signal: with the master
    section transparent they sum to the mix, and any block size gives the same stems."""
    rng = np.random.default_rng(11)
    x = _signal(6000, 3, seed=5)
    c = Console(FS, 64, 3, 2)
    _quiet_master(c)
    for ch in range(3):
        for k, v in _random_settings(rng).items():
            c.set_channel(ch, k, v)
    direct = np.zeros((block, 3, 2), np.float32)
    c.set_direct_outs(direct)
    mix, stems = [], []
    for start in range(0, 6000, block):
        n = min(block, 6000 - start)
        if start == 3000 // block * block:
            c.set_channel(1, "fader_db", -12.0)  # a move mid-signal glides in the stem too
        mix.append(c.process(x[start:start + n]).copy())
        stems.append(direct[:n].copy())
    mix, stems = np.concatenate(mix), np.concatenate(stems)
    assert np.abs(stems).max() > 0.01
    lat = c.latency_frames  # the limiter's lookahead delays the mix, in circuit or not
    np.testing.assert_allclose(stems.sum(axis=1)[:-lat], mix[lat:], rtol=0, atol=2e-6)

    # the same stems with one call and the explicit argument
    c2 = Console(FS, 64, 3, 2)
    _quiet_master(c2)
    rng = np.random.default_rng(11)
    for ch in range(3):
        for k, v in _random_settings(rng).items():
            c2.set_channel(ch, k, v)
    whole = np.zeros((6000, 3, 2), np.float32)
    first = x[:3000 // block * block]
    c2.process(first, direct=whole[:first.shape[0]])
    c2.set_channel(1, "fader_db", -12.0)
    c2.process(x[first.shape[0]:], direct=whole[first.shape[0]:])
    np.testing.assert_allclose(whole, stems, rtol=0, atol=1e-7)
    with pytest.raises(ValueError, match="direct"):
        c2.process(x[:10], direct=np.zeros((10, 2, 2), np.float32))
