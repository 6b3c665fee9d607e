"""bench/bench_label_issues.py's statistics: the intervals over several trainings per label set."""

import sys

import numpy as np

from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
from bench_label_issues import dose_response, seed_resampled  # noqa: E402


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


def test_the_line_through_the_label_sets_finds_what_undoing_every_corruption_buys():
    photos = np.random.default_rng(2).normal(0.0, 0.01, 1000)  # the same photo resamples for every set
    undone = {"corrupted": 0.0, "reviewed": 0.4, "edited": 0.9, "clean": 1.0}
    samples = {n: 0.45 + 0.04 * x + photos for n, x in undone.items()}  # 0.04 gained per share undone, exactly
    point = {n: 0.45 + 0.04 * x for n, x in undone.items()}
    out = dose_response(undone, samples, point)
    assert abs(out["slope"] - 0.04) < 1e-9 and abs(out["intercept"] - 0.45) < 1e-9
    assert np.allclose(out["slope_ci95"], 0.04)  # the photos move every set alike: the slope does not move
    assert abs(out["at"]["edited"] - 0.486) < 1e-9
    # training noise that moves one set alone widens the slope's interval; a set off the line moves the fit
    samples["edited"] = samples["edited"] + np.random.default_rng(3).normal(0.0, 0.02, 1000)
    point["reviewed"] -= 0.02
    out = dose_response(undone, samples, point)
    lo, hi = out["slope_ci95"]
    assert lo < 0.04 < hi and hi - lo > 0.01 and out["slope"] > 0.04


def test_device_reaches_every_training_and_prediction(tmp_path, monkeypatch):
    import argparse

    import bench_label_issues as bench

    cmds = []
    monkeypatch.setattr(bench, "_run", lambda cmd, log: cmds.append([str(c) for c in cmd]) or 0.0)
    monkeypatch.setattr(bench, "kfold", lambda exp, *extra: cmds.append(["kfold", *extra]))
    args = argparse.Namespace(epochs=1, final_epochs=1, imgsz=32, device="0")
    bench.trained_predictions(tmp_path / "labels.json", "fixed", tmp_path, tmp_path / "test.json", args, seed=2)
    bench.oof_issues(tmp_path / "labels.json", "corrupted", tmp_path, args)
    train = next(c for c in cmds if c[0] == "train_yolo.py")
    infer = next(c for c in cmds if c[0] == "infer.py")
    fold = next(c for c in cmds if c[0] == "kfold")
    for cmd, flag in ((train, "--device"), (infer, "--device"), (fold, "--devices")):
        assert cmd[cmd.index(flag, 1 if cmd is fold else 0) + 1] == "0", cmd
    assert "--seed" in train and train[train.index("--seed") + 1] == "2"
    args.device = "cpu"  # the default: every figure so far
    cmds.clear()
    bench.trained_predictions(tmp_path / "labels.json", "corrupted", tmp_path, tmp_path / "test.json", args)
    assert all(c[c.index("--device") + 1] == "cpu" for c in cmds if "--device" in c)


def _planted_issues(tmp_path, capsys):
    """test_label_issues' planted dataset, the finder's issues on it and a copy of the labels to corrupt: the
    dataset's path, the planted annotations' ids, the issues, the copy."""
    import json

    from conftest import run_cli
    from test_label_issues import _planted

    from coco2yolo import label_issues as li

    gt, preds, ids = _planted(tmp_path)
    code, _, err = run_cli(li.main, li.get_args_parser(), ["--gt", gt, "--preds", preds, "--out",
                                                            tmp_path / "issues.json"], capsys)
    assert code == 0, err
    return gt, ids, json.loads((tmp_path / "issues.json").read_text()), json.loads(gt.read_text())


def test_a_simulated_reviewer_accepts_exactly_the_fixes_that_undo_a_corruption(tmp_path, capsys):
    """``fix --review``: a reviewer who knows the truth, shown the top issues; its decisions go through review apply."""
    import bench_label_issues as bench
    from conftest import run_cli, write_json

    from coco2yolo.review import command as review

    gt, ids, issues, clean = _planted_issues(tmp_path, capsys)
    top4 = {i["kind"]: i for i in issues[:4]}
    orig = {a["id"]: a for a in clean["annotations"]}
    orig[ids["wrong_class"]]["category_id"] = top4["wrong_class"]["suggested_category_id"]  # a swap it undoes
    orig[ids["bad_box"]]["bbox"] = [0.0, 0.0, 10.0, 10.0]  # shifted, but not from where the suggestion puts it
    miss = top4["missing"]
    truth = {"swapped": {ids["wrong_class"]}, "shifted": {ids["bad_box"]},
             "deleted": [(miss["image_id"], miss["suggested_bbox"], miss["suggested_category_id"])]}
    decisions = bench.reviewer_decisions(issues, truth, clean, 4)
    assert {d["id"]: d["decision"] for d in decisions} == {
        top4["wrong_class"]["id"]: "accept", miss["id"]: "accept", top4["bad_box"]["id"]: "reject",
        top4["no_object"]["id"]: "reject"}
    assert len(bench.reviewer_decisions(issues, truth, clean, 2)) == 2  # only the top k are shown
    code, out, err = run_cli(review.main, review.get_args_parser(),
                             ["apply", "--gt", gt, "--issues", tmp_path / "issues.json", "--decisions",
                              write_json(tmp_path / "d.json", decisions), "--out", tmp_path / "fixed.json"], capsys)
    assert code == 0, err
    assert bench.fix_precision(tmp_path / "fixed.changes.csv", truth, clean) == {
        "applied": {"class": 1, "added": 1}, "undid_a_corruption": {"class": 1, "added": 1}, "precision": 1.0}


def test_an_editing_reviewer_puts_back_what_the_suggestions_miss(tmp_path, capsys):
    """``fix --edit-review``: the reviewer edits (class, box, a missing box's class and box) where the suggestion is
    wrong, on two pages (annotations' issues, missing boxes), the top k of each; review apply takes the edits."""
    import json

    import bench_label_issues as bench
    from conftest import run_cli, write_json

    from coco2yolo.review import command as review

    gt, ids, issues, clean = _planted_issues(tmp_path, capsys)
    top4 = {i["kind"]: i for i in issues[:4]}
    orig = {a["id"]: a for a in clean["annotations"]}
    wrong = top4["wrong_class"]
    right_class = next(c for c in range(3) if c not in (wrong["category_id"], wrong["suggested_category_id"]))
    orig[ids["wrong_class"]]["category_id"] = right_class  # the suggestion names a third class
    orig[ids["bad_box"]]["bbox"] = [0.0, 0.0, 10.0, 10.0]  # shifted, not from where the suggestion puts it
    miss = top4["missing"]
    deleted = [150.0, 20.0, 40.0, 100.0]  # IoU 0.4 with the suggested box, of another class
    truth = {"swapped": {ids["wrong_class"]}, "shifted": {ids["bad_box"]},
             "deleted": [(miss["image_id"], deleted, 2)]}
    assert not any(bench.undoes(i, truth, orig) for i in issues)  # accepting suggestions undoes nothing here
    decisions = bench.editing_reviewer_decisions(issues, truth, clean, 3)
    by_id = {d["id"]: d for d in decisions}
    assert by_id[wrong["id"]] == {"id": wrong["id"], "decision": "accept", "category_id": right_class,
                                  "bbox": wrong["bbox"]}
    assert by_id[top4["bad_box"]["id"]]["bbox"] == [0.0, 0.0, 10.0, 10.0]
    assert by_id[miss["id"]] == {"id": miss["id"], "decision": "accept", "category_id": 2, "bbox": deleted}
    assert by_id[top4["no_object"]["id"]]["decision"] == "reject"
    shown = bench.editing_reviewer_decisions(issues, truth, clean, 1)  # the top one of each page
    assert [d["id"] for d in shown] == [next(i for i in issues if i["kind"] != "missing")["id"], miss["id"]]
    code, out, err = run_cli(review.main, review.get_args_parser(),
                             ["apply", "--gt", gt, "--issues", tmp_path / "issues.json", "--decisions",
                              write_json(tmp_path / "d.json", decisions), "--out", tmp_path / "fixed.json"], capsys)
    assert code == 0, err
    assert bench.fix_precision(tmp_path / "fixed.changes.csv", truth, clean) == {
        "applied": {"class": 1, "box": 1, "added": 1}, "undid_a_corruption": {"class": 1, "box": 1, "added": 1},
        "precision": 1.0}
    fixed = {a["id"]: a for a in json.loads((tmp_path / "fixed.json").read_text())["annotations"]}
    assert fixed[ids["wrong_class"]]["category_id"] == right_class and 99 in fixed
