import numpy as np
import pytest

from coco2yolo.errors import UserError
from coco2yolo.dataset.split import assign_folds, split_shares, split_table


def _counts(seed=0, n=300, c=6):
    rng = np.random.default_rng(seed)
    counts = rng.poisson(rng.uniform(0.1, 2.0, c), size=(n, c))
    counts[:5, -1] = 0
    counts[:, -1] = 0
    counts[rng.choice(n, 7, replace=False), -1] = 1  # a rare class on 7 images
    return counts


def test_same_seed_same_split_and_other_seed_differs():
    c = _counts()
    a, b = assign_folds(c, [1] * 5, seed=3), assign_folds(c, [1] * 5, seed=3)
    assert (a == b).all()
    assert (assign_folds(c, [1] * 5, seed=4) != a).any()


def test_rare_class_in_every_fold_and_shares_close():
    c = _counts()
    fold = assign_folds(c, [1] * 5, seed=0)
    for f in range(5):
        assert c[fold == f, -1].sum() >= 1
    _, dev = split_table(c, fold, [f"c{i}" for i in range(c.shape[1])])
    assert dev < 2.0
    sizes = np.bincount(fold)
    assert sizes.max() - sizes.min() <= 3


def test_fraction_split_sizes():
    c = _counts(n=500)
    fold = assign_folds(c, [0.2, 0.8], seed=0)
    assert abs((fold == 0).mean() - 0.2) < 0.01


@pytest.mark.parametrize("folds, fold, frac, match", [(1, 0, None, "--folds must be"), (5, 5, None, "0..4"),
                                                      (None, 1, None, "--fold needs"), (None, None, 1.5, "val-fraction")])
def test_bad_split_flags(folds, fold, frac, match):
    with pytest.raises(UserError, match=match):
        split_shares(folds, fold, frac)
