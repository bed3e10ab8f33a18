"""RBJ biquads: the strip's filters against the cookbook formulas through scipy.signal.freqz."""
import numpy as np
import pytest
from scipy import signal

from edgemix.console import Console
from edgemix.dsp.biquad import Biquad, coefficients
from tests.reference.strip_ref import hpf_sections, lfilter_df1, rbj

RATES = (44100.0, 48000.0, 96000.0)
FREQS = np.geomspace(20.0, 20000.0, 300)


def _db(h):
    return 20 * np.log10(np.maximum(np.abs(h), 1e-12))


def _console_response(fs, settings, n=1 << 17):
    """Magnitude response of one channel strip, measured from its impulse response."""
    c = Console(fs, 1024, 1, 1)
    base = dict(hpf_on=0, eq_on=0, comp_on=0, pan=-1.0)  # hard left: L gain exactly 1
    for k, v in {**base, **settings}.items():
        c.set_channel(0, k, v)
    c.set_master("limiter_on", 0)
    x = np.zeros((n, 1), np.float32)
    x[0, 0] = 1.0
    h = c.process(x)[:, 0].astype(np.float64)
    assert np.abs(h[-256:]).max() < 1e-7, "impulse response not decayed: lengthen n"
    w, H = signal.freqz(h, worN=FREQS, fs=fs)
    return H


def _ref_response(fs, sections):
    H = np.ones(len(FREQS), complex)
    for b, a in sections:
        H *= signal.freqz(b, a, worN=FREQS, fs=fs)[1]
    return H


@pytest.mark.parametrize("fs", RATES)
@pytest.mark.parametrize("slope", [12, 24])
@pytest.mark.parametrize("f0", [30.0, 120.0, 800.0])
def test_highpass_matches_rbj(fs, slope, f0):
    H = _console_response(fs, dict(hpf_on=1, hpf_hz=f0, hpf_slope_db_oct=slope))
    R = _ref_response(fs, hpf_sections(f0, fs, slope))
    sel = _db(R) > -60  # compare where the response is meaningful (float32 output)
    assert np.max(np.abs(_db(H)[sel] - _db(R)[sel])) < 0.05
    # a Butterworth high-pass is 3.01 dB down at its corner, and 12 or 24 dB/oct below it
    _, Hc = signal.freqz(*_cascade(hpf_sections(f0, fs, slope)), worN=[f0, f0 / 8], fs=fs)
    assert abs(_db(Hc[0]) + 3.0103) < 0.05
    assert abs(_db(Hc[1]) - (-slope * 3)) < 1.0


def _cascade(sections):
    b, a = np.array([1.0]), np.array([1.0])
    for bb, aa in sections:
        b, a = np.convolve(b, bb), np.convolve(a, aa)
    return b, a


@pytest.mark.parametrize("fs", RATES)
@pytest.mark.parametrize("gains", [(6.0, -9.0, 4.5, -3.0), (-12.0, 12.0, -18.0, 18.0)])
def test_four_band_eq_matches_rbj(fs, gains):
    bands = dict(eq1_hz=90.0, eq1_q=0.707, eq2_hz=350.0, eq2_q=1.4, eq3_hz=3200.0, eq3_q=3.0,
                 eq4_hz=9000.0, eq4_q=0.9)
    settings = dict(eq_on=1, **bands)
    for i, g in enumerate(gains, 1):
        settings[f"eq{i}_gain_db"] = g
    H = _console_response(fs, settings)
    kinds = ("lowshelf", "peak", "peak", "highshelf")
    R = _ref_response(fs, [rbj(k, bands[f"eq{i}_hz"], fs, bands[f"eq{i}_q"], gains[i - 1])
                           for i, k in enumerate(kinds, 1)])
    assert np.max(np.abs(_db(H) - _db(R))) < 0.05


@pytest.mark.parametrize("fs", RATES)
@pytest.mark.parametrize("kind,f0,q,g", [("peak", 1000.0, 2.0, 9.0), ("lowshelf", 200.0, 0.707, -6.0),
                                         ("highshelf", 5000.0, 0.5, 12.0), ("lowpass", 3000.0, 0.707, 0.0)])
def test_section_coefficients_match_cookbook(fs, kind, f0, q, g):
    ours = coefficients(kind, f0, fs, q, g)
    b, a = rbj(kind, f0, fs, q, g)
    np.testing.assert_allclose(ours, [b[0], b[1], b[2], a[1], a[2]], rtol=1e-12, atol=1e-14)
    # the defining points of each kind
    _, h = signal.freqz(b, a, worN=[f0, 1e-3, fs / 2 * 0.999999], fs=fs)
    if kind == "peak":
        assert abs(_db(h[0]) - g) < 1e-6
    if kind == "lowshelf":
        assert abs(_db(h[1]) - g) < 1e-3 and abs(_db(h[2])) < 1e-3
    if kind == "highshelf":
        assert abs(_db(h[2]) - g) < 1e-3 and abs(_db(h[1])) < 1e-3


def test_biquad_streaming_equals_difference_equation():
    rng = np.random.default_rng(1)
    x = rng.standard_normal(3000)
    bq = Biquad("peak", 700.0, 48000.0, q=1.2, gain_db=7.0)
    y = np.concatenate([bq.process(x[i:i + 37]) for i in range(0, len(x), 37)])
    b, a = rbj("peak", 700.0, 48000.0, 1.2, 7.0)
    np.testing.assert_allclose(y, lfilter_df1(b, a, x), atol=1e-10)


def test_bad_filter_arguments_are_one_line_errors():
    with pytest.raises(ValueError, match="unknown filter kind"):
        coefficients("bandstop", 100.0, 48000.0)
    with pytest.raises(ValueError, match="positive"):
        coefficients("peak", -5.0, 48000.0)
