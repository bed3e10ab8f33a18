"""Slow, obvious reference of the gain-sharing automixer (``edgemix.dsp.gain_sharing``).

Plain Python, one sample and one channel at a time, written from the description in the
module docstring: Dugan power shares g_i^2 = w_i P_i / sum_j w_j P_j over the open set, the
open set by sorting, the noise floor as the minimum over explicit lists of sub-window minima,
last-mic hold by not recomputing.  Only the design constants come from the module.
"""
from __future__ import annotations

import math

import numpy as np

from edgemix import params as P
from edgemix.dsp import gain_sharing as A


def automix_reference(x_cf, fs, chan_schedule, master_schedule):
    """``x_cf`` ``(channels, frames)`` -> (output ``(channels, frames)`` float64,
    per-sample applied gains ``(channels, frames)``).

    The schedules are lists of ``(start_sample, array)`` (channel ``(C, N_CH)`` and master
    ``(N_MS,)`` parameters); like the kernel, parameters are read at control ticks only.
    """
    x = np.asarray(x_cf, dtype=np.float64)
    n_ch, frames = x.shape

    def at(schedule, t):
        cur = schedule[0][1]
        for start, arr in schedule:
            if start <= t:
                cur = arr
        return cur

    a_fast_max = 1.0 - math.exp(-1000.0 / (A.FAST_MS * fs))
    a_gain = 1.0 - math.exp(-1000.0 / (A.GAIN_GLIDE_MS * fs))
    sub_ticks = max(1, round(A.NOISE_WINDOW_S / A.NOISE_SUBWINDOWS * fs / A.TICK))
    warm = math.ceil(A.WARMUP_MS * fs / 1000.0)
    floor_gain = 10.0 ** (A.FLOOR_DB / 20.0)
    inf = float("inf")

    slow = [0.0] * n_ch
    fast = [0.0] * n_ch
    gain = [1.0] * n_ch
    target = [1.0] * n_ch
    was_open = [False] * n_ch
    was_member = [False] * n_ch
    cur_min = [inf] * n_ch
    ring = [[inf] * A.NOISE_SUBWINDOWS for _ in range(n_ch)]
    has_shares = False
    a_slow = a_fast = 0.0

    y = np.zeros_like(x)
    gains = np.zeros_like(x)
    for t in range(frames):
        if t % A.TICK == 0:
            chan = at(chan_schedule, t)
            m = at(master_schedule, t)
            a_slow = 1.0 - math.exp(-1000.0 / (m[P.MS.automix_detector_ms] * fs))
            a_fast = max(a_fast_max, a_slow)
            k = t // A.TICK
            members = [chan[c, P.CH.automix_on] >= 0.5 for c in range(n_ch)]
            active = []
            for c in range(n_ch):
                if t >= warm:
                    cur_min[c] = min(cur_min[c], fast[c])
                if k % sub_ticks == 0:
                    ring[c][(k // sub_ticks) % A.NOISE_SUBWINDOWS] = cur_min[c]
                    cur_min[c] = inf
                noise_floor = min([cur_min[c]] + ring[c])
                active.append(members[c] and fast[c] > noise_floor * 10.0 ** (A.ACTIVITY_DB / 10.0))
            changed = members != was_member
            was_member = members
            hold = m[P.MS.automix_last_hold_on] >= 0.5
            if not (hold and not any(active) and not changed and has_shares):
                has_shares = True
                w = [10.0 ** (chan[c, P.CH.automix_weight_db] / 10.0) for c in range(n_ch)]
                score = [w[c] * slow[c] for c in range(n_ch)]
                idx = [c for c in range(n_ch) if members[c]]
                n_open = max(1, int(m[P.MS.automix_max_open] + 0.5))
                bonus = 10.0 ** (A.OPEN_BONUS_DB / 10.0)
                ranked = sorted(idx, key=lambda c: (-score[c] * (bonus if was_open[c] else 1.0), c))
                open_set = set(ranked[:n_open])
                total = sum(score[c] for c in open_set)
                for c in range(n_ch):
                    if not members[c]:
                        target[c] = 1.0
                    elif c in open_set:
                        share = score[c] / total if total > 1e-30 else 1.0 / len(open_set)
                        target[c] = max(math.sqrt(share), floor_gain)
                    else:
                        target[c] = floor_gain
                    was_open[c] = c in open_set
        for c in range(n_ch):
            v = x[c, t]
            p = v * v
            if not p < 1e12:
                p = 0.0
            slow[c] += a_slow * (p - slow[c])
            fast[c] += a_fast * (p - fast[c])
            gain[c] += a_gain * (target[c] - gain[c])
            y[c, t] = v * gain[c]
            gains[c, t] = gain[c]
    return y, gains
