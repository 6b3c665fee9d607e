import json
import subprocess
import sys

from conftest import ROOT


def test_sample_has_the_competition_layout(sample):
    root = sample.parent
    train = json.loads((root / "train.json").read_text())
    test = json.loads((root / "test.json").read_text())
    assert "annotations" not in test and len(test["images"]) == 6
    assert [c["id"] for c in train["categories"]] == list(range(10))
    assert train["categories"][0]["name"] == "General trash" and train["categories"][9]["name"] == "Clothing"
    assert min(a["id"] for a in train["annotations"]) == 0
    with_boxes = {a["image_id"] for a in train["annotations"]}
    assert len(with_boxes) < len(train["images"])  # some images have no boxes
    for im in train["images"] + test["images"]:
        assert (root / im["file_name"]).is_file() and im["file_name"].split("/")[0] in ("train", "test")


def test_demo_pipeline_runs_at_toy_size(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "coco2yolo.demo", "--out", str(tmp_path / "demo"),
                           "--data", str(tmp_path / "sample"), "--train-images", "30", "--test-images", "3",
                           "--size", "64", "--epochs", "1", "--imgsz", "64", "--bootstrap", "20",
                           "--min-map50", "0"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = tmp_path / "demo"
    assert "ensemble (WBF)" in proc.stdout and "95% interval" in proc.stdout
    assert (out / "plots" / "ap50_per_class.png").exists() and any((out / "vis").rglob("*.jpg"))
    assert (out / "ensemble_test.json").exists() and len(json.loads((out / "metrics.json").read_text())["files"]) == 3
    assert (out / "ensemble_submission.csv").exists()  # the ensemble gets a submission like each model
    assert (out / "runs" / "train").is_dir()  # Ultralytics' runs stay inside the demo's folder
    assert "epoch 1/1: validation mAP50" in proc.stdout and "demo_yolov5nu: validation mAP50" in proc.stdout
    assert proc.stdout.count("epoch 1/1:") == 2  # one line per epoch and model, not two
    again = subprocess.run([sys.executable, "-m", "coco2yolo.demo", "--out", str(out), "--data", str(tmp_path / "sample"),
                            "--train-images", "30", "--test-images", "3", "--size", "64", "--epochs", "2"],
                           cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 2 and "holds a demo run with other options" in again.stderr and "epochs 1 -> 2" in again.stderr
