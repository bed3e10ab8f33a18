"""The teacher on synthetic sessions with known offsets, checked with the real engine,
pyloudnorm (BS.1770 integrated loudness) and an oversampled true-peak measurement."""
from __future__ import annotations

import numpy as np
import pyloudnorm
import pytest
import scipy.signal

from edgemix import params as P
from edgemix.automix.rules import (LEAD_OVER_REST_LU, ROLE_TARGETS, TRIM_TARGET_LUFS,
                                   share_above_hz)
from edgemix.console import Console
from export.synth import NOMINAL_LUFS, source_level_lufs, synth_session
from export.teacher import CEILING_DBTP, MIX_REF_LUFS, TARGET_LUFS, band_levels, teach

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
    p[np.atleast_1d(keep), P.CH.mute_on] = 0.0
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
    """Each role at its balance from the lead, the rest moved together by the one step that
    puts the lead on top (issue 10: the targets are the role's plus that common move)."""
    s, r = taught
    m = r.master_params.copy()
    m[P.MS.master_fader_db] = 0.0
    m[P.MS.limiter_on] = 0.0
    move = r.report["rest_move_db"]
    assert move < 0.0                       # six channels at their role levels outshout a lead
    for c, role in enumerate(ROLES):
        y = _render_only(s, r.channel_params, m, c)
        level = source_level_lufs(y, SR)
        want = MIX_REF_LUFS + (0.0 if role == "lead_vocal" else ROLE_TARGETS[role].balance_lu
                               + move)
        assert r.report["solo_target_lufs"][c] == pytest.approx(want)
        assert abs(level - want) <= 2.0, role


def test_lead_sits_on_top_of_the_rest(taught):
    """The lead vocal LEAD_OVER_REST_LU over the sum of everything else, measured with
    pyloudnorm's BS.1770 meter on the engine's renders of the two groups."""
    s, r = taught
    m = r.master_params.copy()
    m[P.MS.master_fader_db] = 0.0
    m[P.MS.limiter_on] = 0.0
    lead = ROLES.index("lead_vocal")
    meter = pyloudnorm.Meter(SR)
    lead_lufs = meter.integrated_loudness(_render_only(s, r.channel_params, m, [lead])
                                          .astype(np.float64))
    rest_lufs = meter.integrated_loudness(_render_only(
        s, r.channel_params, m, [c for c in range(len(ROLES)) if c != lead]).astype(np.float64))
    assert lead_lufs - rest_lufs == pytest.approx(LEAD_OVER_REST_LU, abs=0.5)
    assert r.report["lead_over_rest_lu"] == pytest.approx(LEAD_OVER_REST_LU, abs=0.3)
    assert "LU over the rest" in r.explanations[0]["fader_db"]


@pytest.fixture(scope="module")
def bright():
    """A band whose mix is too bright for the tilt target: hats, overheads and a guitar
    with their mics tilted up, so the teacher asks for more low end."""
    roles = ("kick", "bass", "hats_overheads", "hats_overheads", "guitar", "lead_vocal")
    for seed in range(40, 80):
        s = synth_session(seed, roles=roles, seconds=4.0)
        r = teach(s)
        if any(r.channel_params[c, P.CH.eq1_gain_db] > 0.5 for c in range(len(roles))):
            return s, r
    pytest.fail("no synthesised session needed a low boost: pick sessions that do")


def test_no_low_boost_on_a_high_frequency_source(bright):
    """The tilt goes on the channels that carry the low end: a channel whose energy lies
    above 2 kHz gets no low-shelf boost, and the shelves are not the same on every channel."""
    s, r = bright
    high = 0
    for c in range(s.n_channels):
        share = share_above_hz(band_levels(s.stems[:, c], SR), 2000.0)
        if share >= 0.5:
            high += 1
            assert r.channel_params[c, P.CH.eq1_gain_db] <= 0.0, (c, s.roles[c], share)
    assert high >= 1
    boosted = [c for c in range(s.n_channels) if r.channel_params[c, P.CH.eq1_gain_db] > 0.5]
    assert boosted and len(boosted) < s.n_channels
    for c in boosted:
        assert "of the mix's energy below 250 Hz" in r.explanations[c]["eq1_gain_db"]


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
