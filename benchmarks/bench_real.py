"""The model on real sampled instruments, beside the rules, and what the data costs.

Run: ``scripts/bench.sh benchmarks/bench_real.py`` (pytest-benchmark; numbers, not
pass/fail; they land in ``extra_info``):

- role accuracy per library (shipped pack, held-out and training libraries) from the
  shipped model's held-out metrics (``models/metrics.json``);
- model and rules side by side through ``edgemix mix`` on sessions of the held-out
  libraries and held-out synthesised sessions: role accuracy, loudness and spectral
  balance against the teacher, trim invariance, lead level, HPF and pan errors
  (``export/compare.py``; two sessions of each kind here, six in the card);
- the cost of the training set: rendering one sampled session, teaching it, extracting
  its features, scaled to the shipped count; and of one training epoch on the shipped data.
"""
import json
import pathlib
import time

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_role_accuracy_per_library(benchmark):
    m = json.loads((ROOT / "models" / "metrics.json").read_text())
    s = benchmark.pedantic(lambda: m["sampled"], rounds=1, iterations=1)
    for part in ("heldout_libraries", "training_libraries"):
        benchmark.extra_info[f"{part}_accuracy"] = s[part]["roles"]["accuracy"]
        for lib, v in s[part]["roles"]["per_library"].items():
            benchmark.extra_info[f"{part}:{lib}"] = v["accuracy"]


@pytest.mark.parametrize("kind", ["heldout_libraries", "synthesised"])
def test_model_and_rules_side_by_side(benchmark, kind, tmp_path):
    from export import compare as C
    gen = C.heldout_library_sessions if kind == "heldout_libraries" else \
        C.heldout_synth_sessions

    def run():
        rows = []
        for i, s in enumerate(gen(2)):
            rows.append(C.session_measures(s.stems, s.roles, s.sample_rate_hz,
                                           C.taught(s, f"{kind}-{i}"),
                                           seed=i, work=tmp_path / str(i)))
        return C.summarise(rows)
    summary = benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(summary)


def test_cost_of_the_training_set(benchmark):
    from export import sampled as SM
    from export.dataset import gain_variant_snapshots
    from export.build_models import N_SAMPLED_HELDOUT, N_SAMPLED_TRAIN
    from export.teacher import teach
    t = {}

    def one():
        t0 = time.perf_counter()
        ss = SM.render_session(1000, "train")
        t["render_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        teach(ss.session)
        t["teach_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        gain_variant_snapshots(ss.session, np.random.default_rng(0))
        t["features_s"] = time.perf_counter() - t0
    benchmark.pedantic(one, rounds=1, iterations=1)
    n = N_SAMPLED_TRAIN + N_SAMPLED_HELDOUT
    benchmark.extra_info.update({**t, "sessions": n,
                                 "render_all_min": t["render_s"] * n / 60,
                                 "teach_all_min": t["teach_s"] * n / 60,
                                 "features_all_min": t["features_s"] * n / 60})


def test_cost_of_one_training_epoch(benchmark):
    from export import sampled_data as SD
    from export.train import TrainConfig, train
    pack = SD.load_pack()
    data, _ = SD.to_dataset(pack["train"])
    res = benchmark.pedantic(lambda: train(data, TrainConfig(epochs=1)), rounds=1, iterations=1)
    benchmark.extra_info.update({"examples": len(data), "epoch_s": res.seconds})
