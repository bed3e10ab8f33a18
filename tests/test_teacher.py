"""The teacher on synthetic sessions with known offsets, checked with the real engine,
pyloudnorm (BS.1770 integrated loudness) and an oversampled true-peak measurement."""
from __future__ import annotations

import numpy as np
import pyloudnorm
import pytest
import scipy.signal

from edgemix import params as P
from edgemix.automix.rules import ROLE_TARGETS, TRIM_TARGET_LUFS
from edgemix.console import Console
from export.synth import NOMINAL_LUFS, source_level_lufs, synth_session
from export.teacher import CEILING_DBTP, MIX_REF_LUFS, TARGET_LUFS, teach

SR = 48000
ROLES = ("kick", "snare", "bass", "guitar", "lead_vocal", "backing_vocal")


@pytest.fixture(scope="module")
def taught():
    s = synth_session(21, roles=ROLES, seconds=6.0)
    return s, teach(s)


def _render_only(session, params, master, keep):
    """The engine's mix with every channel but ``keep`` muted (and no reverb)."""
    p = params.copy()
    p[:, P.CH.mute_on] = 1.0
    p[keep, P.CH.mute_on] = 0.0
    p[:, P.CH.aux1_send_db] = P.OFF_DB
    con = Console(sample_rate_hz=SR, block_size=512, n_channels=session.n_channels, n_aux=1)
    con.stage(p, master)
    return con.process(session.stems)


def test_trims_undo_the_recording_offsets(taught):
    s, r = taught
    trims = r.channel_params[:, P.CH.trim_db]
    # raw level = NOMINAL + offset, so staging to TRIM_TARGET asks TRIM_TARGET - NOMINAL - offset
    np.testing.assert_allclose(trims, TRIM_TARGET_LUFS - NOMINAL_LUFS - s.gain_offsets_db,
                               atol=1.0)


def test_roles_end_at_their_balance_targets(taught):
    s, r = taught
    m = r.master_params.copy()
    m[P.MS.master_fader_db] = 0.0
    m[P.MS.limiter_on] = 0.0
    for c, role in enumerate(ROLES):
        y = _render_only(s, r.channel_params, m, c)
        level = source_level_lufs(y, SR)
        assert abs(level - (MIX_REF_LUFS + ROLE_TARGETS[role].balance_lu)) <= 2.0, role


def test_mix_meets_loudness_target_and_true_peak_ceiling(taught):
    s, r = taught
    assert r.mix.shape == (s.stems.shape[0], 2) and r.mix.dtype == np.float32
    loud = pyloudnorm.Meter(SR).integrated_loudness(r.mix.astype(np.float64))
    assert abs(loud - TARGET_LUFS) <= 1.0
    up = scipy.signal.resample_poly(r.mix.astype(np.float64), 4, 1, axis=0)
    assert 20 * np.log10(np.abs(up).max()) <= CEILING_DBTP + 0.1
    assert r.master_params[P.MS.limiter_ceiling_dbtp] == CEILING_DBTP


def test_settings_are_legal_and_explained(taught):
    s, r = taught
    assert r.model_outputs.shape == (len(ROLES), len(P.MODEL_OUTPUTS))
    for j, spec in enumerate(P.CHANNEL_PARAMS):
        col = r.channel_params[:, j]
        assert np.all((col >= spec.min) & (col <= spec.max)), spec.name
    for c, role in enumerate(ROLES):
        lo, hi = ROLE_TARGETS[role].hpf_range_hz
        assert lo <= r.channel_params[c, P.CH.hpf_hz] <= hi
        for name in ("trim_db", "hpf_hz", "fader_db", "pan", "aux1_send_db"):
            assert name in r.explanations[c]
    # the lead vocal is never the one cut for masking; something is cut for it
    lead = ROLES.index("lead_vocal")
    assert r.channel_params[lead, P.CH.eq2_gain_db] == 0.0
    assert r.channel_params[lead, P.CH.eq3_gain_db] == 0.0
    cuts = [r.explanations[c].get(f"eq{k}_gain_db", "") for c in range(len(ROLES)) for k in (2, 3)
            if r.channel_params[c, getattr(P.CH, f"eq{k}_gain_db")] < 0]
    assert any("lead vocal" in text for text in cuts), cuts
    # pans: centre roles centred, the guitar off centre
    pan = r.channel_params[:, P.CH.pan]
    assert pan[0] == pan[1] == pan[2] == pan[lead] == 0.0 and pan[3] != 0.0


def test_mix_is_the_engine_render_of_the_settings(taught):
    s, r = taught
    con = Console(sample_rate_hz=SR, block_size=64, n_channels=s.n_channels, n_aux=1)
    con.stage(r.channel_params, r.master_params)
    out = con.process(s.stems)
    lat = con.latency_frames
    np.testing.assert_allclose(out[lat:], r.mix[:len(out) - lat], atol=1e-5)
