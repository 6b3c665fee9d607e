"""The fusion search (coordinate ascent) and cross-fitted tuning."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from coco2yolo.fusion import search as S
from coco2yolo.fusion.ensemble import DEFAULTS
from coco2yolo.results import Detections
from conftest import run_cli, write_json

SIZE = 100.0


def _world(n_images=40, n_models=3, seed=0):
    """Ground truth and models of different quality: model k jitters boxes by 2 + 4k px and adds false
    positives with high scores, so unequal weights help."""
    rng = np.random.default_rng(seed)
    images = [{"id": i, "file_name": f"{i}.jpg", "width": SIZE, "height": SIZE} for i in range(n_images)]
    anns, k = [], 0
    for i in range(n_images):
        for _ in range(3):
            x, y = rng.uniform(0, 60, 2)
            anns.append({"id": k, "image_id": i, "category_id": int(rng.integers(2)), "bbox": [x, y, 30.0, 30.0],
                         "iscrowd": 0, "area": 900.0})
            k += 1
    gt = {"images": images, "categories": [{"id": 0, "name": "a"}, {"id": 1, "name": "b"}], "annotations": anns}
    models = []
    for m in range(n_models):
        rows = []
        for a in anns:
            if rng.uniform() < 0.8 - 0.1 * m:
                j = rng.normal(0, 2 + 4 * m, 2)
                rows.append((a["image_id"], a["category_id"], [a["bbox"][0] + j[0], a["bbox"][1] + j[1], 30, 30],
                             rng.uniform(0.3, 0.9)))
        for _ in range(n_images * (1 + m)):
            rows.append((int(rng.integers(n_images)), int(rng.integers(2)), [*rng.uniform(0, 70, 2), 25, 25],
                         rng.uniform(0.5, 1.0)))
        i, c, b, s = zip(*rows)
        models.append(Detections(np.array(i), np.array(c), np.array(b, float), np.array(s, float)))
    return gt, models


def _scorer(gt, models):
    ids = [im["id"] for im in gt["images"]]
    return S.Scorer(models, ids, np.full((len(ids), 2), SIZE), gt, [0, 1], dict(DEFAULTS))


def test_coordinate_ascent_matches_the_exhaustive_search_with_far_fewer_fusions():
    gt, models = _world()
    space = S.SearchSpace(methods=["wbf", "nms"], iou=[0.5, 0.6], weights=[0.5, 1.0, 2.0, 3.0])
    best, best_val, record = S.search(_scorer(gt, models), len(models), space, quiet=True)
    exhaustive = _scorer(gt, models)
    vals = [exhaustive({"method": m, "iou_thr": i, "conf_type": "avg", "weights": list(w)})
            for m in space.methods for i in space.iou for w in itertools.product(space.weights, repeat=len(models))]
    assert best_val >= max(vals) - 0.01  # a local optimum at worst, close to the exhaustive best
    assert record["settings_scored"] < len(vals) / 3
    assert best_val > exhaustive({"method": "wbf", "iou_thr": 0.55, "conf_type": "avg", "weights": None})


def test_search_stays_tractable_for_ten_models():
    gt, models = _world(n_images=10, n_models=10, seed=1)
    space = S.SearchSpace()
    _, _, record = S.search(_scorer(gt, models), 10, space, quiet=True)
    grid = len(space.methods) * len(space.iou)
    assert record["settings_scored"] <= grid + space.passes * (10 * len(space.weights) + grid)


def test_crossfitting_never_scores_a_setting_on_the_fold_it_was_chosen_on(monkeypatch):
    gt, models = _world(n_images=30, seed=2)
    fold_of = {im["id"]: im["id"] % 3 for im in gt["images"]}
    seen = []
    real_search = S.search

    def spying_search(scorer, n_models, space, desc="", quiet=False):
        seen.append((desc, {im["id"] for im in scorer.gt["images"]}))
        return real_search(scorer, n_models, space, desc=desc, quiet=True)

    monkeypatch.setattr(S, "search", spying_search)
    ids = [im["id"] for im in gt["images"]]
    fused, final, report = S.crossfit(models, ["a", "b", "c"], ids, np.full((30, 2), SIZE), gt, fold_of,
                                      S.SearchSpace(iou=[0.5, 0.6], weights=[1.0, 2.0]), dict(DEFAULTS),
                                      n_boot=50, quiet=True)
    per_fold = seen[:3]
    for f, (desc, images) in enumerate(per_fold):
        assert f"fold {f}" in desc and images == {i for i in ids if fold_of[i] != f}  # chosen without fold f
    assert seen[3][1] == set(ids)  # the final setting: all folds
    assert {int(i) for i in np.unique(fused.image_id)} <= set(ids)
    for f in range(3):  # each fold's fused boxes come from the setting chosen without it
        assert report["folds"][f]["images"] == 10
    assert set(report) >= {"crossfit_fused", "gain_over_best_single", "final_setting", "in_sample"}
    assert len(report["gain_over_best_single"]["ci95"]) == 2


def test_cli_crossfit_with_the_converters_split(tmp_path, capsys):
    from coco2yolo.fusion import ensemble

    gt, models = _world(n_images=24, n_models=2, seed=3)
    g = write_json(tmp_path / "gt.json", gt)
    files = [write_json(tmp_path / f"m{k}.json", m.to_records()) for k, m in enumerate(models)]
    split = write_json(tmp_path / "split.json", {"fold_of_image": {str(im["id"]): im["id"] % 2 for im in gt["images"]}})
    code, out, err = run_cli(ensemble.main, ensemble.get_args_parser(),
                             [*files, "--tune", g, "--crossfit", split, "--out", tmp_path / "oof.json",
                              "--bootstrap", "50", "--tune-iou", "0.5", "0.6", "--quiet"], capsys)
    assert code == 0, err
    assert "cross-fitted fusion: mAP50" in out and "fold 0:" in out and "fold 1:" in out
    setting = json.loads((tmp_path / "oof.setting.json").read_text())
    assert setting["report"]["method"].startswith("cross-fitted")
    assert setting["method"] == setting["report"]["final_setting"]["method"]
    bad = write_json(tmp_path / "bad_split.json", {"fold_of_image": {"0": 0}})
    code, _, err = run_cli(ensemble.main, ensemble.get_args_parser(),
                           [*files, "--tune", g, "--crossfit", bad, "--out", tmp_path / "x.json", "--quiet"], capsys)
    assert code == 2 and "have no fold" in err


@pytest.mark.parametrize("space, match", [
    (S.SearchSpace(methods=["vote"]), "unknown method"),
    (S.SearchSpace(iou=[0.0]), "every iou"),
    (S.SearchSpace(weights=[]), "at least one value"),
])
def test_bad_search_spaces(space, match):
    from coco2yolo.errors import UserError

    with pytest.raises(UserError, match=match):
        space.check()
