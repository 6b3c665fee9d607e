import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from coco2yolo.training import train as train
from coco2yolo.cocodata import CategoryMap
from coco2yolo.errors import UserError
from coco2yolo.training.pseudo import build_pseudo_dataset, select_pseudo
from coco2yolo.results import Detections
from conftest import LEGACY, need, run_cli, train_tiny, write_json


def _state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)["model"].state_dict()


def test_one_epoch_writes_weights_and_sidecar(tiny_weights, yolo_data):
    side = json.loads(tiny_weights.with_suffix(".json").read_text())
    assert tiny_weights.is_file()
    assert [c["category_id"] for c in side["categories"]] == list(range(10))
    assert side["imgsz"] == 64 and side["config"]["model"] == "yolov5nu.yaml"
    assert side["dataset"]["fingerprint"] == train.dataset_fingerprint(yolo_data)
    assert "metrics/mAP50(B)" in side["metrics"]
    assert set(side["versions"]) >= {"ultralytics", "torch", "coco2yolo"}


def test_same_seed_gives_identical_weights(yolo_data, tiny_weights, tmp_path):
    again = train_tiny(yolo_data / "data.yaml", "tiny_again", tmp_path)
    a, b = _state(tiny_weights), _state(again)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    other = train_tiny(yolo_data / "data.yaml", "tiny_seed1", tmp_path, "--seed", "1")
    c = _state(other)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_mosaic_and_preset_flags_reach_ultralytics(yolo_data, tmp_path):
    train_tiny(yolo_data / "data.yaml", "flags", tmp_path, "--no-mosaic", "--close-mosaic", "0",
               "--augment-preset", "weather", "--cos-lr", "--set", "shear=2.0", "--set", "erasing=0.2")
    args = yaml.safe_load((Path(json.loads((tmp_path / "flags.json").read_text())["run_dir"]) / "args.yaml").read_text())
    assert args["mosaic"] == 0.0 and args["close_mosaic"] == 0 and args["cos_lr"] is True
    assert args["shear"] == 2.0 and args["erasing"] == 0.2
    names = [t["transform"]["__class_fullname__"] for t in args["augmentations"]]
    assert names == ["RandomFog", "RandomBrightnessContrast", "OneOf"]


def test_config_file_then_flags_override(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("epochs: 7\nmosaic: 0.5\nimgsz: 320\n")
    args = train.get_args_parser().parse_args(["--config", str(cfg_file), "--imgsz", "96", "--mosaic"])
    from coco2yolo.training import config as config

    cfg = config.resolve(args)
    assert (cfg["epochs"], cfg["imgsz"], cfg["mosaic"], cfg["batch"]) == (7, 96, 1.0, 16)
    cfg_file.write_text("epoch: 7\n")
    with pytest.raises(UserError, match="did you mean epochs"):
        config.resolve(train.get_args_parser().parse_args(["--config", str(cfg_file)]))


@need(LEGACY)
def test_legacy_checkpoint_import_copies_every_tensor_and_trains(yolo_data, tiny_weights, tmp_path):
    from coco2yolo.checkpoint import read_checkpoint
    from coco2yolo.checkpoint.legacy import import_legacy

    legacy = read_checkpoint(LEGACY)
    assert legacy.kind == "yolov5" and read_checkpoint(tiny_weights).kind == "ultralytics"

    model, msg = import_legacy(legacy, nc=10)
    src = {k: v.float() for k, v in legacy.tensors.items()}
    dst = model.state_dict()
    body = [k for k in src if int(k.split(".")[1]) < 24]
    assert len(body) == 342 and all(torch.equal(dst[k], src[k]) for k in body)
    assert "imported 342 of 349 tensors" in msg and "yolov5nu.yaml" in msg
    # no --model: the architecture comes from the checkpoint (the default yolov5lu.pt need not exist)
    w = train_tiny(yolo_data / "data.yaml", "legacy", tmp_path, "--weights", str(LEGACY), model=None)
    side = json.loads(w.with_suffix(".json").read_text())
    assert side["origin"].startswith("imported 342")
    trained = _state(w)
    assert any(not torch.equal(trained[k].float(), src[k].float()) for k in body if k.endswith("conv.weight"))


@need(LEGACY)
def test_legacy_checkpoint_refuses_a_conflicting_model(yolo_data, tmp_path, capsys):
    code, _, err = _cli(["--data", yolo_data / "data.yaml", "--weights", LEGACY, "--model", "yolov5su.yaml",
                         "--device", "cpu", "--weights-dir", tmp_path], capsys)
    assert code == 2 and "imports into yolov5nu.yaml, not --model yolov5su.yaml" in err


def test_pseudo_selection_and_merge(yolo_data, sample, tmp_path):
    cmap = CategoryMap.load(yolo_data / "categories.json")
    images = [{"id": 0, "file_name": "test/0000.jpg", "width": 64, "height": 64},
              {"id": 1, "file_name": "test/0001.jpg", "width": 64, "height": 64},
              {"id": 2, "file_name": "test/0002.jpg", "width": 64, "height": 64}]
    dets = Detections(np.array([0, 0, 1, 2]), np.array([3, 9, 3, 1]),
                      np.array([[0, 0, 32, 32], [-8, 8, 16, 16], [1, 1, 2, 2], [5, 5, 5, 5]], float),
                      np.array([0.9, 0.6, 0.2, 0.4]))
    lines, per_class = select_pseudo(dets, images, cmap, conf=0.5)
    assert set(lines) == {0} and per_class == {"Metal": 1, "Clothing": 1}
    assert lines[0][0] == "3 0.25 0.25 0.5 0.5" and lines[0][1] == "9 0.0625 0.25 0.125 0.25"  # clipped
    res = write_json(tmp_path / "preds.json", dets.to_records())
    new_yaml, summary = build_pseudo_dataset(yolo_data / "data.yaml", cmap, res, sample.parent / "test.json", 0.5,
                                             tmp_path / "pseudo")
    data = yaml.safe_load(new_yaml.read_text())
    assert len(data["train"]) == 2 and data["val"] == str(yolo_data / "images" / "val")
    assert "added 1 images and 2 boxes" in summary and "5 images had no such box" in summary
    assert (tmp_path / "pseudo" / "labels" / "train" / "test" / "0000.txt").read_text().count("\n") == 2


def test_pseudo_labels_train_end_to_end(yolo_data, sample, tmp_path):
    preds = write_json(tmp_path / "p.json", [{"image_id": 0, "category_id": 2, "bbox": [5, 5, 20, 20], "score": 0.8}])
    w = train_tiny(yolo_data / "data.yaml", "pl", tmp_path, "--pseudo-labels", str(preds),
                   "--pseudo-images", str(sample.parent / "test.json"), "--pseudo-conf", "0.5")
    assert "added 1 images and 1 boxes" in json.loads(w.with_suffix(".json").read_text())["pseudo_labels"]


def test_pseudo_with_nothing_above_the_threshold_is_an_error(yolo_data, sample, tmp_path):
    cmap = CategoryMap.load(yolo_data / "categories.json")
    res = write_json(tmp_path / "p.json", [{"image_id": 0, "category_id": 0, "bbox": [1, 1, 9, 9], "score": 0.2}])
    with pytest.raises(UserError, match="no box scores >= 0.5 .the best is 0.2."):
        build_pseudo_dataset(yolo_data / "data.yaml", cmap, res, sample.parent / "test.json", 0.5, tmp_path / "p")


def test_pseudo_refuses_validation_images(yolo_data, tmp_path):
    cmap = CategoryMap.load(yolo_data / "categories.json")
    val = json.loads((yolo_data / "val.json").read_text())
    iid = val["images"][0]["id"]
    res = write_json(tmp_path / "p.json", [{"image_id": iid, "category_id": 0, "bbox": [1, 1, 9, 9], "score": 1.0}])
    with pytest.raises(UserError, match="validation image"):
        build_pseudo_dataset(yolo_data / "data.yaml", cmap, res, yolo_data / "val.json", 0.5, tmp_path / "p")


# --- bad input -----------------------------------------------------------------------------------

def _cli(argv, capsys):
    return run_cli(train.main, train.get_args_parser(), argv, capsys)


def test_bad_inputs_are_one_line_status_2(yolo_data, sample, tmp_path, capsys):
    base = ["--model", "yolov5nu.yaml", "--epochs", "1", "--imgsz", "64", "--device", "cpu",
            "--weights-dir", str(tmp_path)]
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("names: [a\n")
    cases = [
        (["--data", tmp_path / "nope.yaml"], "data.yaml not found"),
        (["--data", bad_yaml], "not valid YAML"),
        (["--data", yolo_data / "data.yaml", "--device", "7"], "CUDA device 7 does not exist"),
        (["--data", yolo_data / "data.yaml", "--model", "yolo11x.pt"], "put it at"),
        (["--data", yolo_data / "data.yaml", "--augment-preset", "rain"], "allowed: none, weather"),
        (["--data", yolo_data / "data.yaml", "--pseudo-labels", write_json(tmp_path / "p.json", [
            {"image_id": 0, "category_id": 42, "bbox": [1, 1, 2, 2], "score": 0.9}]),
          "--pseudo-images", sample.parent / "test.json"], "category_id 42 is not in"),
    ]
    for extra, match in cases:
        code, _, err = _cli(base + extra, capsys)
        assert code == 2 and match in err and len(err.strip().splitlines()) == 1, (extra, err)


def test_category_map_that_does_not_match_the_labels(yolo_data, tmp_path, capsys):
    import shutil

    ds = tmp_path / "ds"
    shutil.copytree(yolo_data, ds, symlinks=True)
    text = (ds / "data.yaml").read_text().replace(str(yolo_data), str(ds))
    (ds / "data.yaml").write_text(text)
    cats = json.loads((ds / "categories.json").read_text())
    cats["categories"][0]["name"] = "Renamed"
    (ds / "categories.json").write_text(json.dumps(cats))
    code, _, err = _cli(["--data", ds / "data.yaml"], capsys)
    assert code == 2 and "does not match" in err
    (ds / "categories.json").write_text(json.dumps(json.loads((yolo_data / "categories.json").read_text())))
    label = next((ds / "labels" / "train").rglob("*.txt"))
    label.write_text("12 0.5 0.5 0.1 0.1\n")
    code, _, err = _cli(["--data", ds / "data.yaml"], capsys)
    assert code == 2 and "class '12' is not in the category map (0..9)" in err


def test_resume_continues_an_interrupted_run(yolo_data, tmp_path, monkeypatch):
    from ultralytics.engine import trainer as ul_trainer

    original = ul_trainer.BaseTrainer.validate
    calls = {"n": 0}

    def validate_then_stop(self):
        calls["n"] += 1
        if calls["n"] == 2:  # epoch 2 ends: stop as a killed run would, after epoch 1 was saved
            raise KeyboardInterrupt
        return original(self)

    monkeypatch.setattr(ul_trainer.BaseTrainer, "validate", validate_then_stop)
    with pytest.raises(KeyboardInterrupt):
        train_tiny(yolo_data / "data.yaml", "resumable", tmp_path, "--epochs", "3")
    assert not (tmp_path / "resumable.pt").exists()
    last = Path(os.environ["COCO2YOLO_RUNS"]) / "train" / "resumable" / "weights" / "last.pt"
    assert torch.load(last, map_location="cpu", weights_only=False)["epoch"] == 0
    monkeypatch.setattr(ul_trainer.BaseTrainer, "validate", original)
    w = train_tiny(yolo_data / "data.yaml", "resumable", tmp_path, "--epochs", "3", "--resume")
    side = json.loads(w.with_suffix(".json").read_text())
    assert side["origin"].startswith("resumed from") and w.exists()
    assert torch.load(last, map_location="cpu", weights_only=False)["epoch"] == -1  # finished
