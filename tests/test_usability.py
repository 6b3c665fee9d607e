"""Issue 17: what a new user trips over, caught: key=value arguments, warnings that catch mistakes, install
checks, ONNX export, the report's gallery."""

from __future__ import annotations

import json
import sys

import pytest

from coco2yolo import cli, commands
from conftest import run_cli, write_json


def _one_line(code, err, match=None):
    assert code == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    if match:
        assert match in err, err


def test_key_value_arguments_as_ultralytics_users_type_them(yolo_data, tmp_path, capsys):
    code = commands.main(["train", f"data={yolo_data / 'data.yaml'}", "model=yolov5nu.yaml", "epochs=1", "imgsz=64",
                          "batch=8", "device=cpu", "workers=0", "mosaic=false", "plots=false", "shear=0.5", "--seed", "3",
                          f"weights_dir={tmp_path / 'w'}", "name=kv"])
    out, err = capsys.readouterr()
    assert code == 0, err
    side = json.loads((tmp_path / "w" / "kv.json").read_text())
    assert side["config"]["mosaic"] == 0.0 and side["config"]["seed"] == 3 and side["config"]["plots"] is False
    assert side["extra_ultralytics_args"] == {"shear": 0.5}


def test_key_values_map_to_each_kind_of_flag():
    from coco2yolo.fusion import ensemble
    from coco2yolo.training import train

    p = train.get_args_parser()
    assert cli.key_values(p, ["cos_lr=true", "amp=false", "cache=ram", "time=30m", "mixup=0.1", "shear=2"]) == \
        ["--cos-lr", "--no-amp", "--cache=ram", "--time=30m", "--mixup=0.1", "--set", "shear=2"]
    e = ensemble.get_args_parser()
    assert cli.key_values(e, ["a=b.json", "model_weights=3,1", "--out", "o=1.json"]) == \
        ["a=b.json", "--model-weights", "3", "1", "--out", "o=1.json"]  # a path after a flag stays a value


def test_predictions_covering_few_images_are_warned_about(tmp_path, capsys):
    from coco2yolo.evaluation import command

    images = [{"id": i, "file_name": f"{i}.jpg", "width": 100, "height": 100} for i in range(20)]
    gt = write_json(tmp_path / "gt.json", {"images": images, "categories": [{"id": 0, "name": "a"}],
                                           "annotations": [{"id": i, "image_id": i, "category_id": 0, "bbox": [5, 5, 20, 20],
                                                            "iscrowd": 0} for i in range(20)]})
    preds = write_json(tmp_path / "p.json", [{"image_id": i, "category_id": 0, "bbox": [5, 5, 20, 20], "score": 0.9}
                                             for i in range(3)])
    code, out, err = run_cli(command.main, command.get_args_parser(), ["--gt", gt, preds, "--bootstrap", "0"], capsys)
    assert code == 0 and "predicts on 3 of the 20 images" in err and "(15%)" in err, err


def test_a_missing_json_is_named_before_its_folder(tmp_path, capsys):
    from coco2yolo.dataset import convert

    code, _, err = run_cli(convert.main, convert.get_args_parser(), [tmp_path / "missing" / "train.json", "--out",
                                                                     tmp_path / "o"], capsys)
    _one_line(code, err, "COCO JSON not found")


def test_a_torchvision_that_does_not_match_torch_is_one_line(monkeypatch):
    from coco2yolo import ultra
    from coco2yolo.errors import UserError

    class Broken:
        def find_spec(self, name, *a, **k):
            if name == "torchvision":
                raise RuntimeError("operator torchvision::nms does not exist")
            return None

    monkeypatch.delitem(sys.modules, "torchvision", raising=False)
    monkeypatch.setattr(sys, "meta_path", [Broken(), *sys.meta_path])
    with pytest.raises(UserError) as err:
        ultra.check_torch_pair()
    text = str(err.value)
    assert "does not work with torch" in text and "torchvision 0." in text and "requirements.txt" in text


def test_the_weather_preset_without_albumentations_says_what_to_install(monkeypatch):
    from coco2yolo.errors import UserError
    from coco2yolo.training import train

    monkeypatch.setitem(sys.modules, "albumentations", None)
    with pytest.raises(UserError, match=r"pip install 'coco2yolo\[weather\]'"):
        train.preset_transforms("weather")


def test_the_default_install_brings_one_opencv():
    import tomllib

    from conftest import ROOT

    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert not any(d.startswith(("albumentations", "opencv-python-headless")) for d in deps)


def test_onnx_export_predicts_the_same_results(tiny_weights, sample, tmp_path, capsys):
    from coco2yolo import export, inference

    code, out, err = run_cli(export.main, export.get_args_parser(), ["--weights", tiny_weights, "--out",
                                                                     tmp_path / "m.onnx"], capsys)
    assert code == 0, err
    assert (tmp_path / "m.onnx").exists() and json.loads((tmp_path / "m.json").read_text())["exported"]["format"] == "onnx"
    res = {}
    for w in (tiny_weights, tmp_path / "m.onnx"):
        o = tmp_path / f"{w.suffix[1:]}.json"
        code, _, err = run_cli(inference.main, inference.get_args_parser(), ["--weights", w, "--images",
                                                                             sample.parent / "test.json", "--out", o,
                                                                             "--device", "cpu"], capsys)
        assert code == 0, err
        res[w.suffix] = json.loads(o.read_text())
    pt, onnx = res[".pt"], res[".onnx"]
    assert len(pt) == len(onnx) and len(pt) > 0
    for b in onnx:  # each ONNX box has its twin among the .pt's (same image and class), to float tolerance
        twins = [a for a in pt if (a["image_id"], a["category_id"]) == (b["image_id"], b["category_id"])
                 and max(abs(x - y) for x, y in zip(a["bbox"], b["bbox"])) < 1e-3 and abs(a["score"] - b["score"]) < 1e-5]
        assert twins, b


def test_the_gallery_names_files_as_the_users_json_and_colours_outcomes(tmp_path):
    import numpy as np

    from coco2yolo.evaluation import command, gallery

    import cv2

    (tmp_path / "img").mkdir()
    rng = np.random.default_rng(0)
    images = []
    for i in range(3):
        cv2.imwrite(str(tmp_path / "img" / f"{i}.jpg"), rng.integers(0, 255, (96, 96, 3), dtype=np.uint8))
        images.append({"id": i, "file_name": f"img/{i}.jpg", "original_file_name": f"photos/shelf_{i}.jpg",
                       "width": 96, "height": 96})
    gt = write_json(tmp_path / "gt.json", {"images": images, "categories": [{"id": 0, "name": "can"}],
                                           "annotations": [{"id": i, "image_id": i, "category_id": 0,
                                                            "bbox": [10, 10, 30, 30], "iscrowd": 0} for i in range(3)]})
    preds = write_json(tmp_path / "p.json", [{"image_id": 0, "category_id": 0, "bbox": [60, 60, 20, 20], "score": 0.9}])
    command.evaluate_and_write(str(gt), [str(preds)], n_boot=10, report=str(tmp_path / "r.html"))
    page = (tmp_path / "r.html").read_text()
    assert "photos/shelf_0.jpg" in page and "img/0.jpg" not in page.split("Gallery")[1]
    assert "missed" in page and "false alarm" in page and 'class="gallery wide"' in page
    assert gallery.FOUND != gallery.MISSED != gallery.FALSE_ALARM
