import contextlib
import csv
import io
import json
import shutil

import numpy as np
import torch

from coco2yolo import inference as predict
from coco2yolo.dataset.convert import ConvertOptions, convert
from conftest import run_cli, train_tiny
from helpers import ann, make_coco


def _cli(argv, capsys):
    return run_cli(predict.main, predict.get_args_parser(), argv, capsys)


def test_results_have_original_ids_and_load_in_pycocotools(tiny_weights, sample, tmp_path, capsys):
    out, sub = tmp_path / "preds.json", tmp_path / "sub.csv"
    code, stdout, err = _cli(["--weights", tiny_weights, "--images", sample.parent / "test.json", "--out", out,
                              "--submission", sub, "--save-vis", tmp_path / "vis", "--device", "cpu"], capsys)
    assert code == 0, err
    preds = json.loads(out.read_text())
    test = json.loads((sample.parent / "test.json").read_text())
    assert preds and {p["image_id"] for p in preds} <= {im["id"] for im in test["images"]}
    assert {p["category_id"] for p in preds} <= set(range(10))
    assert max(np.bincount([p["image_id"] for p in preds])) <= 300 and min(p["score"] for p in preds) >= 0.001
    from pycocotools.coco import COCO

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = {**test, "annotations": []}
        gt.createIndex()
        dt = gt.loadRes(str(out))
    assert len(dt.anns) == len(preds)
    rows = list(csv.reader(sub.open()))
    assert rows[0] == ["PredictionString", "image_id"] and len(rows) == 1 + len(test["images"])
    parsed = []
    for pred, file_name in rows[1:]:
        iid = next(im["id"] for im in test["images"] if im["file_name"] == file_name)
        v = pred.split()
        for k in range(0, len(v), 6):
            c, s, x1, y1, x2, y2 = int(v[k]), *map(float, v[k + 1:k + 6])
            parsed.append((iid, c, round(s, 5), round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)))
    want = [(p["image_id"], p["category_id"], p["score"], *p["bbox"]) for p in preds]
    assert len(parsed) == len(want)
    assert np.abs(np.array(sorted(parsed)) - np.array(sorted(want))).max() <= 0.011
    assert len(list((tmp_path / "vis").rglob("*.jpg"))) == len(test["images"])
    assert "images/s" in stdout


def test_gapped_category_ids_round_trip(tmp_path):
    """A dataset with ids {3, 7, 11}: a model trained on it predicts exactly those ids."""
    rng = np.random.default_rng(0)
    images, anns = [], []
    for i in range(16):
        images.append((i, f"train/{i:03d}.jpg", 64, 64))
        for _ in range(2):
            x, y = rng.uniform(0, 40, 2)
            anns.append(ann(len(anns), i, int(rng.choice([3, 7, 11])), [x, y, 20, 20]))
    src = make_coco(tmp_path / "gap", images, anns, [3, 7, 11])
    convert(src, tmp_path / "gy", ConvertOptions(val_fraction=0.25))
    w = train_tiny(tmp_path / "gy" / "data.yaml", "gapped", tmp_path / "w")
    args = predict.get_args_parser().parse_args(["--weights", str(w), "--images", str(tmp_path / "gy" / "val.json"),
                                                 "--out", str(tmp_path / "p.json"), "--device", "cpu"])
    assert predict.main(args) == 0
    cats = {p["category_id"] for p in json.loads((tmp_path / "p.json").read_text())}
    assert cats and cats <= {3, 7, 11}


def test_folder_source_writes_images_json(tiny_weights, sample, tmp_path, capsys):
    out = tmp_path / "f.json"
    code, _, err = _cli(["--weights", tiny_weights, "--images", sample.parent / "test", "--out", out,
                         "--device", "cpu"], capsys)
    assert code == 0 and "sorted file names" in err
    imgs = json.loads((tmp_path / "f.images.json").read_text())["images"]
    assert [im["file_name"] for im in imgs] == sorted(p.name for p in (sample.parent / "test").iterdir())
    assert {p["image_id"] for p in json.loads(out.read_text())} <= {im["id"] for im in imgs}


def test_missing_sidecar_is_derived_from_the_checkpoint_or_explained(tiny_weights, sample, tmp_path, capsys):
    w = tmp_path / "best.pt"  # like runs/train/N/weights/best.pt: no sidecar beside it
    shutil.copy(tiny_weights, w)
    code, _, err = _cli(["--weights", w, "--images", sample.parent / "test.json", "--out", tmp_path / "p.json",
                         "--device", "cpu"], capsys)
    assert code == 0 and "has no sidecar" in err and "categories.json" in err, err
    assert {p["category_id"] for p in json.loads((tmp_path / "p.json").read_text())} <= set(range(10))
    from coco2yolo.checkpoint import save_ultralytics_checkpoint

    bare = save_ultralytics_checkpoint(torch.load(tiny_weights, map_location="cpu", weights_only=False)["model"],
                                       tmp_path / "bare.pt")  # no train_args: nothing to derive from
    code, _, err = _cli(["--weights", bare, "--images", sample.parent / "test.json", "--out", tmp_path / "q.json",
                         "--device", "cpu"], capsys)
    assert code == 2 and "python -m coco2yolo.sidecar" in err and not (tmp_path / "q.json").exists()


def test_unreadable_image_warns_or_fails_with_strict(tiny_weights, sample, tmp_path, capsys):
    root = tmp_path / "ds"
    shutil.copytree(sample.parent / "test", root / "test")
    shutil.copy(sample.parent / "test.json", root / "test.json")
    (root / "test" / "0001.jpg").write_bytes(b"not a jpeg")
    out = tmp_path / "p.json"
    code, _, err = _cli(["--weights", tiny_weights, "--images", root / "test.json", "--out", out, "--device", "cpu",
                         "--strict"], capsys)
    assert code == 2 and "could not be read" in err and not out.exists()
    code, _, err = _cli(["--weights", tiny_weights, "--images", root / "test.json", "--out", out, "--device", "cpu"],
                        capsys)
    assert code == 0 and "1 of 6 images could not be read" in err and out.exists()


def test_bad_flags(tiny_weights, sample, tmp_path, capsys):
    code, _, err = _cli(["--weights", tiny_weights, "--images", sample.parent / "test.json", "--out",
                         tmp_path / "p.json", "--imgsz", "65"], capsys)
    assert code == 2 and "multiple of 32" in err
    code, _, err = _cli(["--weights", tiny_weights, "--images", tmp_path / "nothing", "--out", tmp_path / "p.json"],
                        capsys)
    assert code == 2 and "no images found" in err


def test_multi_label_keeps_every_class_above_conf(tiny_weights, sample, tmp_path, capsys):
    """Validation's NMS: the same place may carry several classes; predict's keeps one class per box."""
    runs = {}
    for flag in (["--no-multi-label"], ["--multi-label"]):
        out = tmp_path / f"p{flag[0]}.json"
        code, _, err = _cli(["--weights", tiny_weights, "--images", sample.parent / "test.json", "--out", out,
                             "--device", "cpu", "--conf", "0.001", *flag], capsys)
        assert code == 0, err
        runs[flag == ["--multi-label"]] = json.loads(out.read_text())

    def places(preds):
        by_box = {}
        for p in preds:
            by_box.setdefault((p["image_id"], *[round(v, 3) for v in p["bbox"]]), set()).add(p["category_id"])
        return by_box

    single, multi = places(runs[False]), places(runs[True])
    assert all(len(c) == 1 for c in single.values())  # predict: one class per place
    assert any(len(c) > 1 for c in multi.values())    # multi-label: several classes at one place
