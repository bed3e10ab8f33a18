"""EBU Tech 3341 / Tech 3342 test signals, generated from the levels and durations the
specifications state (the synthetic cases; the "authentic programme" cases need the EBU
test-set files and are left out).

Each case is a 1 kHz sine, phase-continuous across its segments, with every segment at a
stated peak level in dBFS; stereo cases carry the same sine on L and R.  A stereo 1 kHz
sine at A dBFS reads A LUFS (the -0.691 of BS.1770-4 eq. 2 cancels the K-weighting's
gain at 1 kHz), which is why the expected readings equal the tone levels.

Case definitions as recalled from the specifications' tables, cross-checked against the
KFR library's transcription of the same cases (kfr ``tests/ebu_test.cpp``).  "Checked
from" is where this suite starts checking a constant reading (once a full window of the
periodic signal has been seen), not a quotation:

Tech 3341 (EBU Mode meters), expected +-0.1 LU:
  1  stereo -23 dBFS, 20 s                                   M, S, I = -23.0
  2  stereo -33 dBFS, 20 s                                   M, S, I = -33.0
  3  stereo -36 / -23 / -36 dBFS for 10 / 60 / 10 s          I = -23.0 (relative gate)
  4  stereo -72 / -36 / -23 / -36 / -72 dBFS,
     10 / 10 / 60 / 10 / 10 s                                I = -23.0 (both gates)
  5  stereo -26 / -20 / -26 dBFS for 20 / 20.1 / 20 s        I = -23.0
  6  5.0: L, R -28; C -24; Ls, Rs -30 dBFS; 20 s             I = -23.0 (G = 1.41 surrounds)
  9  stereo, 5 x (-20 dBFS 1.34 s, -30 dBFS 1.66 s)          S = -23.0, constant (checked from 3 s)
  12 stereo, 25 x (-20 dBFS 0.18 s, -30 dBFS 0.22 s)         M = -23.0, constant (checked from 1 s)

Tech 3342 (loudness range), expected +-1 LU:
  1  stereo -20 then -30 dBFS, 20 s each                     LRA = 10
  2  stereo -20 then -15 dBFS, 20 s each                     LRA = 5
  3  stereo -40 then -20 dBFS, 20 s each                     LRA = 20
  4  stereo -50 / -35 / -20 / -35 / -50 dBFS, 20 s each      LRA = 15
"""
from __future__ import annotations

import numpy as np

TONE_HZ = 1000.0


def sine_segments(segments, fs: float, n_channels: int = 2, freq_hz: float = TONE_HZ,
                  channel_offsets_db=None) -> np.ndarray:
    """``segments`` = [(level_dbfs, seconds), ...] -> (frames, channels) float32.

    ``channel_offsets_db`` adds a per-channel level (for the 5.0 case); segment lengths
    are rounded to whole frames and the phase runs on across segment boundaries.
    """
    lengths = [int(round(sec * fs)) for _, sec in segments]
    amp = np.concatenate([np.full(n, 10.0 ** (db / 20.0)) for (db, _), n in zip(segments, lengths)])
    t = np.arange(amp.size) / fs
    mono = amp * np.sin(2.0 * np.pi * freq_hz * t)
    offs = np.zeros(n_channels) if channel_offsets_db is None else np.asarray(channel_offsets_db)
    return np.ascontiguousarray(mono[:, None] * 10.0 ** (offs[None, :] / 20.0), dtype=np.float32)


TECH3341 = {
    1: dict(segments=[(-23.0, 20.0)], momentary=-23.0, short_term=-23.0, integrated=-23.0),
    2: dict(segments=[(-33.0, 20.0)], momentary=-33.0, short_term=-33.0, integrated=-33.0),
    3: dict(segments=[(-36.0, 10.0), (-23.0, 60.0), (-36.0, 10.0)], integrated=-23.0),
    4: dict(segments=[(-72.0, 10.0), (-36.0, 10.0), (-23.0, 60.0), (-36.0, 10.0),
                      (-72.0, 10.0)], integrated=-23.0),
    5: dict(segments=[(-26.0, 20.0), (-20.0, 20.1), (-26.0, 20.0)], integrated=-23.0),
    9: dict(segments=[(-20.0, 1.34), (-30.0, 1.66)] * 5, short_term=-23.0,
            constant_after_s=3.0),
    12: dict(segments=[(-20.0, 0.18), (-30.0, 0.22)] * 25, momentary=-23.0,
             constant_after_s=1.0),
}

#: Case 6: levels relative to the segment level 0 dBFS, channel order L, R, C, Ls, Rs.
TECH3341_CASE6_LEVELS_DBFS = (-28.0, -28.0, -24.0, -30.0, -30.0)
TECH3341_CASE6_SECONDS = 20.0
#: BS.1770-4 Table 3 channel weights for L, R, C, Ls, Rs.
BS1770_WEIGHTS_5_0 = (1.0, 1.0, 1.0, 1.41, 1.41)

TECH3342 = {
    1: dict(segments=[(-20.0, 20.0), (-30.0, 20.0)], lra=10.0),
    2: dict(segments=[(-20.0, 20.0), (-15.0, 20.0)], lra=5.0),
    3: dict(segments=[(-40.0, 20.0), (-20.0, 20.0)], lra=20.0),
    4: dict(segments=[(-50.0, 20.0), (-35.0, 20.0), (-20.0, 20.0), (-35.0, 20.0),
                      (-50.0, 20.0)], lra=15.0),
}


def tech3341(case: int, fs: float) -> np.ndarray:
    """The signal of a Tech 3341 case at ``fs`` (frames, channels) float32."""
    if case == 6:
        return sine_segments([(0.0, TECH3341_CASE6_SECONDS)], fs, n_channels=5,
                             channel_offsets_db=TECH3341_CASE6_LEVELS_DBFS)
    return sine_segments(TECH3341[case]["segments"], fs)


def tech3342(case: int, fs: float) -> np.ndarray:
    return sine_segments(TECH3342[case]["segments"], fs)


def pink_noise(n_frames: int, n_channels: int, rng: np.random.Generator) -> np.ndarray:
    """1/f noise by shaping white noise's spectrum (amplitude ~ f^-1/2), unit RMS."""
    spec = np.fft.rfft(rng.standard_normal((n_frames, n_channels)), axis=0)
    f = np.arange(spec.shape[0], dtype=np.float64)
    f[0] = 1.0
    y = np.fft.irfft(spec / np.sqrt(f)[:, None], n=n_frames, axis=0)
    return y / np.sqrt(np.mean(y * y))
