"""The ARM check's render and comparator (the qemu run itself is ``scripts/arm_check.sh``,
too slow for the suite); here natively, on a tiny model in the shipped format."""
import copy

import numpy as np
import pytest

from edgemix.boardtools import armcheck as A
from test_profile import tiny_random_model


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("arm")
    tiny_random_model(tmp / "models")
    r = A.render("rpi4", tmp / "models", 0.3)
    A.save(r, tmp / "host.npz")
    return A.load(tmp / "host.npz"), r


def test_render_and_round_trip(rendered):
    loaded, r = rendered
    from edgemix.boardtools import profiles
    prof = profiles.load("rpi4")
    assert loaded["mix"].shape == (int(0.3 * prof.sample_rate_hz), 2)
    assert np.array_equal(loaded["mix"], r["mix"]) and np.isfinite(loaded["mix"]).all()
    assert np.abs(loaded["mix"]).max() > 1e-3            # the session is audible
    assert loaded["features"].shape[0] == prof.n_channels
    assert {"params01:numba", "params01:numpy"} <= set(loaded)
    # a weights file alone has no golden I/O beside it: no golden rows
    assert "golden" not in loaded
    rep = A.compare(loaded, loaded)
    assert rep["ok"] and all(row["max_abs_diff"] == 0 or "reference" in row["what"]
                             for row in rep["rows"])
    # numba against the numpy reference: float round-off only
    row = next(x for x in rep["rows"] if x["what"].startswith("numba: params01 vs numpy"))
    assert row["ok"] and row["max_abs_diff"] < A.FLOAT_ATOL


def test_comparator_catches_differences(rendered):
    host, _ = rendered
    arm = copy.deepcopy(host)
    arm["machine"] = "aarch64"
    arm["mix"] = arm["mix"] + np.float32(2 * A.MIX_ATOL)
    rep = A.compare(host, arm)
    mix = next(x for x in rep["rows"] if x["what"].startswith("mix"))
    assert not mix["ok"] and not rep["ok"]
    assert mix["max_abs_diff"] == pytest.approx(2 * A.MIX_ATOL, rel=1e-3)

    arm = copy.deepcopy(host)
    arm["params01:numba"] = arm["params01:numba"] + 1e-3
    rep = A.compare(host, arm)
    bad = {x["what"] for x in rep["rows"] if not x["ok"]}
    assert any(w.startswith("numba: params01") for w in bad)

    arm = copy.deepcopy(host)
    arm["features"] = arm["features"] * 1.01 + 1.0
    assert not A.compare(host, arm)["ok"]


def test_golden_rows_blame_arm_only_when_the_host_passes(rendered):
    host, _ = rendered
    g_ok = {"max_err_01": 1e-7, "max_err_logit": 1e-6, "role_agreement": 1.0, "ok": True}
    g_bad = {"max_err_01": 0.3, "max_err_logit": 1.0, "role_agreement": 0.5, "ok": False}
    for h, a, ok in ((g_ok, g_ok, True), (g_ok, g_bad, False), (g_bad, g_bad, True)):
        hh, aa = copy.deepcopy(host), copy.deepcopy(host)
        hh["golden"], aa["golden"] = {"numba": h}, {"numba": a}
        rows = [x for x in A.compare(hh, aa)["rows"] if "golden" in x["what"]]
        assert len(rows) == 1 and rows[0]["ok"] is ok
