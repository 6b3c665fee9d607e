"""bench/bench_label_issues.py's statistics: the intervals over several trainings per label set."""

import sys

import numpy as np

from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
from bench_label_issues import seed_resampled  # noqa: E402


def test_one_seed_leaves_the_photo_resamples_as_they_are():
    boot = np.array([0.40, 0.42, 0.44])
    out = seed_resampled({"corrupted": {0: boot}, "fixed": {0: boot + 0.01}})
    assert np.allclose(out["corrupted"], boot) and np.allclose(out["fixed"] - out["corrupted"], 0.01)


def test_seeds_widen_the_interval_and_stay_paired():
    n = 2000
    photos = np.random.default_rng(1).normal(0.45, 0.01, n)  # the same photo resamples for every model
    # two trainings of the corrupted labels 0.02 apart; the fixed labels' models a constant 0.01 above them, seed by seed
    corrupted = {0: photos - 0.01, 1: photos + 0.01}
    fixed = {s: b + 0.01 for s, b in corrupted.items()}
    out = seed_resampled({"corrupted": corrupted, "fixed": fixed, "clean": {0: photos + 0.05}})
    assert np.allclose(out["fixed"] - out["corrupted"], 0.01)  # the same seeds drawn for both: paired
    assert out["corrupted"].std() > 1.2 * photos.std()  # seed to seed spread added to the photos'
    assert set(np.round(out["corrupted"] - photos, 6)) == {-0.01, 0.0, 0.01}  # means of two seeds drawn with replacement
    assert np.allclose(out["clean"], photos + 0.05)  # a set with its own seed list draws on its own
