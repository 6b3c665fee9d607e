import json
import warnings

import numpy as np
import pytest

import ensemble_boxes as eb
from coco2yolo.fusion import ensemble as ensembling
from coco2yolo.errors import UserError
from coco2yolo.fusion.kernels import fuse, split_models, stack
from coco2yolo.results import Detections
from conftest import run_cli, write_json

SIZE = 100.0


def _dets(rows):
    i, c, b, s = zip(*rows) if rows else ((), (), (), ())
    return Detections(np.array(i, np.int64), np.array(c, np.int64), np.array(b, float).reshape(-1, 4),
                      np.array(s, float))


def test_wbf_hand_computed_two_models():
    """Two boxes matching at IoU > 0.55 fuse to their score-weighted mean; avg score rescaled by
    min(models, boxes) / sum(weights) = 1: (0.9 + 0.6) / 2 = 0.75."""
    a = _dets([(0, 1, [10, 10, 40, 40], 0.9)])
    b = _dets([(0, 1, [12, 10, 40, 40], 0.6)])
    out = fuse([a, b], [0], np.array([[SIZE, SIZE]]), "wbf", iou_thr=0.55)
    assert len(out) == 1 and out.category_id[0] == 1
    assert out.score[0] == pytest.approx(0.75)
    assert out.xywh[0] == pytest.approx([(10 * 0.9 + 12 * 0.6) / 1.5, 10, 40, 40], abs=1e-4)


def test_nms_keeps_the_best_of_overlapping_boxes_per_label():
    a = _dets([(0, 1, [10, 10, 40, 40], 0.9), (0, 2, [10, 10, 40, 40], 0.3)])
    b = _dets([(0, 1, [11, 10, 40, 40], 0.95), (0, 1, [60, 60, 20, 20], 0.5)])
    out = fuse([a, b], [0], np.array([[SIZE, SIZE]]), "nms", iou_thr=0.5)
    got = sorted(zip(out.category_id.tolist(), out.score.round(3).tolist()))
    assert got == [(1, 0.5), (1, 0.95), (2, 0.3)]


def _random_models(rng, n_img, n_models, per_image, quantized):
    models = []
    for _ in range(n_models):
        n = per_image * n_img
        xy = rng.uniform(-5, 95, (n, 2))
        wh = rng.uniform(0, 40, (n, 2))
        sc = rng.uniform(0, 1, n)
        if quantized:  # ties in scores and boxes exercise the reference's sort order
            xy, wh, sc = xy.round(), wh.round(), sc.round(2)
        models.append(Detections(rng.integers(0, n_img, n), rng.integers(0, 3, n), np.c_[xy, wh], sc))
    return models


def _reference(method, boxes, scores, labels, weights, **kw):
    if not sum(map(len, boxes)) and method in ("nms", "soft-nms"):
        return np.zeros((0, 4)), np.zeros(0), np.zeros(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if method == "wbf":
            return eb.weighted_boxes_fusion(boxes, scores, labels, weights=weights, **kw)
        if method == "nms":
            return eb.nms(boxes, [s.copy() for s in scores], labels, weights=weights, iou_thr=kw["iou_thr"])
        if method == "soft-nms":
            return eb.soft_nms(boxes, [s.copy() for s in scores], labels, weights=weights, iou_thr=kw["iou_thr"],
                               sigma=0.5, thresh=0.001)
        return eb.non_maximum_weighted(boxes, scores, labels, weights=weights, iou_thr=kw["iou_thr"],
                                       skip_box_thr=kw["skip_box_thr"])


CASES = [("wbf", {"conf_type": c}) for c in ("avg", "max", "box_and_model_avg", "absent_model_aware_avg")] + \
        [("nms", {}), ("soft-nms", {}), ("nmw", {})]


@pytest.mark.parametrize("method, extra", CASES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equal_to_ensemble_boxes_on_random_inputs(method, extra, seed, capsys):
    rng = np.random.default_rng(seed)
    n_img, n_models = 5, int(rng.integers(1, 4))
    models = _random_models(rng, n_img, n_models, int(rng.integers(0, 20)), quantized=seed != 1)
    weights = None if seed == 0 else list(rng.uniform(0.5, 3, n_models).round(2))
    kw = {"iou_thr": 0.55, "skip_box_thr": 0.05 * seed, **extra}
    sizes = np.full((n_img, 2), SIZE)
    ours = fuse(models, list(range(n_img)), sizes, method, weights, **kw)
    st = stack(models, list(range(n_img)), sizes)
    for i in range(n_img):
        a, b = np.searchsorted(st.img, i), np.searchsorted(st.img, i, "right")
        boxes, scores, labels = split_models(st, a, b, n_models)
        rb, rs, rl = _reference(method, boxes, scores, labels, weights, **kw)
        ok = np.isfinite(rb).all(axis=1) & np.isfinite(rs)  # NMW yields NaN boxes for all-zero scores
        rb, rs, rl = rb[ok], rs[ok], rl[ok]
        sel = ours.image_id == i
        mine = ours.xywh[sel].copy()
        mine[:, 2:] += mine[:, :2]
        assert len(rs) == sel.sum()
        if len(rs):
            assert np.abs(mine / SIZE - rb).max() <= 1e-6
            assert np.abs(ours.score[sel] - rs).max() <= 1e-6
            assert (ours.category_id[sel] == rl).all()
    capsys.readouterr()


def test_one_model_and_empty_inputs():
    one = _dets([(0, 0, [10, 10, 20, 20], 0.8), (1, 1, [5, 5, 5, 5], 0.4)])
    out = fuse([one], [0, 1, 2], np.full((3, 2), SIZE), "wbf")
    assert len(out) == 2 and out.score.tolist() == pytest.approx([0.8, 0.4])
    for method in ("wbf", "nms", "soft-nms", "nmw"):
        assert len(fuse([Detections.empty(), Detections.empty()], [0], np.array([[SIZE, SIZE]]), method)) == 0


def test_bad_arguments_name_the_allowed_values():
    d = [Detections.empty()] * 2
    with pytest.raises(UserError, match="allowed: wbf, nms, soft-nms, nmw"):
        fuse(d, [0], np.array([[SIZE, SIZE]]), "vote")
    with pytest.raises(UserError, match="3 values for 2 results files"):
        fuse(d, [0], np.array([[SIZE, SIZE]]), "wbf", weights=[1, 1, 1])


# --- command line -------------------------------------------------------------------------------

def _cli(argv, capsys):
    return run_cli(ensembling.main, ensembling.get_args_parser(), argv, capsys)


def _val(tmp_path):
    rng = np.random.default_rng(0)
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 100, "height": 100} for i in range(30)]
    anns = [{"id": i, "image_id": i, "category_id": i % 2, "bbox": [*rng.uniform(0, 50, 2).round(1), 30, 30],
             "iscrowd": 0, "area": 900} for i in range(30)]
    return {"images": images, "categories": [{"id": 0, "name": "a"}, {"id": 1, "name": "b"}], "annotations": anns}


def test_tune_picks_the_better_setting_and_setting_file_reapplies(tmp_path, capsys):
    """Model A is right; B is off by 20 px (a false positive) with higher scores. Equal weights rank
    B's false positives first; weights [2, 1] rank A first and score 1.0: tuning must find that."""
    val = _val(tmp_path)
    g = write_json(tmp_path / "val.json", val)
    a = [{"image_id": x["image_id"], "category_id": x["category_id"], "bbox": x["bbox"], "score": 0.9}
         for x in val["annotations"]]
    b = [{**r, "bbox": [r["bbox"][0] + 20, r["bbox"][1], 30, 30], "score": 0.95} for r in a]
    pa, pb = write_json(tmp_path / "a.json", a), write_json(tmp_path / "b.json", b)
    code, out, err = _cli([pa, pb, "--tune", g, "--out", tmp_path / "fused.json", "--bootstrap", "50",
                           "--tune-iou", "0.3", "0.55"], capsys)
    assert code == 0, err
    setting = json.loads((tmp_path / "fused.setting.json").read_text())
    report = setting["report"]
    assert setting["model_weights"] == [2.0, 1.0] and report["best"]["mAP50"] == pytest.approx(1.0)
    assert report["single_models"][1]["mAP50"] < 0.01
    assert report["gain_over_best_single"]["delta_mAP50"] == pytest.approx(0.0)
    assert "best:" in out and "single models" in out
    code, out, err = _cli([pa, pb, "--images", g, "--setting", tmp_path / "fused.setting.json",
                           "--out", tmp_path / "again.json"], capsys)
    assert code == 0 and json.loads((tmp_path / "again.json").read_text()) == json.loads(
        (tmp_path / "fused.json").read_text())
    code, _, err = _cli([pa, pb, "--images", g, "--setting", tmp_path / "fused.setting.json", "--method", "nms",
                         "--out", tmp_path / "x.json"], capsys)
    assert code == 2 and "--setting fixes the fusion" in err


def test_cli_bad_inputs(tmp_path, capsys):
    val = _val(tmp_path)
    g = write_json(tmp_path / "val.json", val)
    ok = write_json(tmp_path / "ok.json", [{"image_id": 0, "category_id": 0, "bbox": [1, 1, 5, 5], "score": 0.5}])
    other_img = write_json(tmp_path / "o.json", [{"image_id": 99, "category_id": 0, "bbox": [1, 1, 5, 5], "score": 0.5}])
    other_cat = write_json(tmp_path / "c.json", [{"image_id": 0, "category_id": 7, "bbox": [1, 1, 5, 5], "score": 0.5}])
    for argv, match in [([ok, other_img], "image_id 99 is not in"), ([ok, other_cat], "category_id 7 is not in"),
                        ([ok, ok, "--model-weights", "1"], "1 values for 2 results files"),
                        ([ok, ok, "--model-weights", "nan", "1"], "must be a number >= 0, got 'nan'"),
                        ([ok, ok, "--iou-thr", "inf"], "must be a number in (0, 1], got 'inf'"),
                        ([ok, "--method", "vote"], "invalid choice: 'vote'")]:
        code, _, err = _cli([*argv, "--images", g, "--out", tmp_path / "f.json"], capsys)
        assert code == 2 and match in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "f.json").exists()


def test_old_spellings_still_work_with_a_note(tmp_path, capsys):
    val = _val(tmp_path)
    g = write_json(tmp_path / "val.json", val)
    ok = write_json(tmp_path / "ok.json", [{"image_id": 0, "category_id": 0, "bbox": [1, 1, 5, 5], "score": 0.5}])
    code, _, err = _cli([ok, ok, "--images", g, "--out", tmp_path / "f.json", "--weights", "2", "1"], capsys)
    assert code == 0 and "--weights is deprecated; use --model-weights" in err
    args = ensembling.get_args_parser().parse_args([str(ok), "--out", "x", "--max-dets", "7"])
    assert args.eval_max_dets == 7 and args.max_det == 0


@pytest.mark.parametrize("method", ["wbf", "nms"])
def test_score_zero_boxes_fuse_to_finite_boxes(tmp_path, capsys, method):
    """Boxes scored 0 (a results file may hold them): no division by zero, every fused box finite, and a
    positive box beside them keeps its own coordinates (weights 0 add nothing)."""
    val = _val(tmp_path)
    g = write_json(tmp_path / "val.json", val)
    zeros = [{"image_id": 0, "category_id": 0, "bbox": [1, 1, 5, 5], "score": 0.0},
             {"image_id": 0, "category_id": 0, "bbox": [1.5, 1, 5, 5], "score": 0.0}]
    a = write_json(tmp_path / "a.json", zeros + [{"image_id": 0, "category_id": 0, "bbox": [40, 40, 10, 10], "score": 0.6}])
    b = write_json(tmp_path / "b.json", zeros + [{"image_id": 0, "category_id": 0, "bbox": [40, 40, 10, 10], "score": 0.0}])
    code, _, err = _cli([a, b, "--images", g, "--method", method, "--out", tmp_path / "f.json"], capsys)
    assert code == 0, err
    fused = json.loads((tmp_path / "f.json").read_text())
    assert fused and all(np.isfinite(f["bbox"]).all() and np.isfinite(f["score"]) for f in fused)
    best = max(fused, key=lambda f: f["score"])
    assert np.allclose(best["bbox"], [40, 40, 10, 10], atol=1e-3) and best["score"] > 0


@pytest.mark.parametrize("method, extra", CASES)
def test_fused_a_run_of_images_at_a_time_bit_for_bit(method, extra):
    """Above FUSE_CHUNK rows, images are fused a run at a time (bounded memory): the rows are the same, bit for
    bit and in the same order, as fusing everything at once, for every method, with unsorted image ids."""
    rng = np.random.default_rng(7)
    n_img, n_models = 9, 3
    models = _random_models(rng, n_img, n_models, 15, quantized=True)
    ids = [int(v) for v in rng.permutation(np.arange(100, 100 + n_img))]
    models = [Detections(np.asarray(ids)[m.image_id], m.category_id, m.xywh, m.score) for m in models]
    sizes = rng.integers(50, 200, size=(n_img, 2)).astype(float)
    kw = {"iou_thr": 0.55, "skip_box_thr": 0.02, "weights": [1.0, 2.0, 0.5], **extra}
    whole = fuse(models, ids, sizes, method, chunk=None, **kw)
    assert len(whole) > 0
    for chunk in (1, 10, 40):
        part = fuse(models, ids, sizes, method, chunk=chunk, **kw)
        for f in ("image_id", "category_id", "xywh", "score"):
            np.testing.assert_array_equal(getattr(part, f), getattr(whole, f))
