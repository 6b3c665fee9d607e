"""Issue 16's paths, photos and commands: links cannot steer writes, readers take regular files only,
photos are bounded and fitted to their real size and orientation, kept aliases keep their effect, the
machine's failures are one line, and the submission CSV reads the grader's grammar only."""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from coco2yolo import inference as predict
from coco2yolo import label_issues as li
from coco2yolo import submission
from coco2yolo.dataset import convert as conv
from coco2yolo.dataset.geometry import turn_xyxy
from coco2yolo.evaluation import command as evaluation
from coco2yolo.fusion import ensemble as ensembling
from coco2yolo.images import probe
from conftest import ROOT, run_cli, write_json
from helpers import ann, make_coco, read_labels


def _one_line(code, err, match=None, status=2):
    assert code == status, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    if match:
        assert match in err, err


@pytest.fixture
def alarm():
    """A reader that blocks (a named pipe opened for reading) fails the test instead of hanging CI."""
    def timeout(*_):
        raise TimeoutError("blocked: a reader waited on a named pipe")

    old = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


# --- links and special files ---------------------------------------------------------------------------

def test_a_link_inside_the_vis_folder_cannot_send_drawings_out(tiny_weights, sample, tmp_path, capsys):
    test = json.loads((sample.parent / "test.json").read_text())
    first = test["images"][0]["file_name"]  # test/0000.jpg: drawn as VIS/test/0000.jpg
    vis, elsewhere = tmp_path / "vis", tmp_path / "elsewhere"
    vis.mkdir()
    elsewhere.mkdir()
    (vis / Path(first).parts[0]).symlink_to(elsewhere, target_is_directory=True)
    code, out, err = run_cli(predict.main, predict.get_args_parser(),
                             ["--weights", tiny_weights, "--images", sample.parent / "test.json", "--out",
                              tmp_path / "p.json", "--device", "cpu", "--save-vis", vis, "--vis-conf", "0"], capsys)
    assert code == 0, err
    assert list(elsewhere.iterdir()) == [], "a drawing followed the link out of --save-vis"
    assert f"{len(test['images'])} drawings were not written" in err and "never follow links" in err
    assert (tmp_path / "p.json").exists()


def _fifo_dataset(tmp_path):
    gt = make_coco(tmp_path / "ds", [(0, "train/a.jpg", 64, 64), (1, "train/b.jpg", 64, 64), (2, "train/c.jpg", 64, 64)],
                   [ann(0, 0, 0, [4, 4, 20, 20]), ann(1, 1, 0, [4, 4, 20, 20]), ann(2, 2, 1, [4, 4, 20, 20])], [0, 1])
    (tmp_path / "ds" / "train" / "b.jpg").unlink()
    os.mkfifo(tmp_path / "ds" / "train" / "b.jpg")
    preds = write_json(tmp_path / "preds.json", [{"image_id": i, "category_id": 0, "bbox": [4, 4, 20, 20],
                                                  "score": 0.9} for i in (0, 1)])
    return gt, preds


def test_named_pipes_where_photos_should_be_never_block(tmp_path, capsys, alarm):
    gt, preds = _fifo_dataset(tmp_path)
    code, _, err = run_cli(evaluation.main, evaluation.get_args_parser(),
                           ["--gt", gt, preds, "--report", tmp_path / "r.html", "--bootstrap", "0"], capsys)
    assert code == 0, err
    code, _, err = run_cli(li.main, li.get_args_parser(), ["--gt", gt, "--preds", preds, "--out", tmp_path / "i.json",
                                                           "--report", tmp_path / "i.html"], capsys)
    assert code == 0, err
    code, _, err = run_cli(conv.main, conv.get_args_parser(), [gt, "--out", tmp_path / "o", "--val-fraction", "0.5"],
                           capsys)
    assert code == 0 and "train/b.jpg: a named pipe, not a regular file" in err, err
    code, _, err = run_cli(evaluation.main, evaluation.get_args_parser(),
                           ["--gt", tmp_path / "ds" / "train" / "b.jpg", preds], capsys)
    _one_line(code, err, "is a named pipe, not a regular file")


# --- photos ----------------------------------------------------------------------------------------------

def _png_header(path, w, h):
    """A PNG that declares w x h pixels in a few hundred bytes (its data is not even there)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b""))
    return path


def test_a_photo_over_the_pixel_bound_is_skipped_without_decoding(tiny_weights, sample, tmp_path, capsys):
    root = tmp_path / "imgs"
    root.mkdir()
    cv2.imwrite(str(root / "ok.jpg"), np.full((64, 64, 3), 90, np.uint8))
    _png_header(root / "bomb.png", 20000, 20000)
    assert probe(root / "bomb.png").problem.startswith("too many pixels: 20000 x 20000 (400.0 MP)")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    code, _, err = run_cli(predict.main, predict.get_args_parser(),
                           ["--weights", tiny_weights, "--images", root, "--out", tmp_path / "p.json", "--device",
                            "cpu"], capsys)
    assert code == 0, err
    assert "1 of 2 images could not be read" in err and "bomb.png: too many pixels" in err
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss < 300_000  # KiB; decoding takes 1.2 GB
    code, _, err = run_cli(predict.main, predict.get_args_parser(),
                           ["--weights", tiny_weights, "--images", root, "--out", tmp_path / "q.json", "--device",
                            "cpu", "--max-pixels", "1000"], capsys)
    assert code == 0 and "2 of 2 images could not be read" in err, err


def _exif_jpeg(path, w, h, box, orientation):
    """A stored w x h photo, white inside ``box`` (x1, y1, x2, y2), with an EXIF orientation."""
    img = np.zeros((h, w, 3), np.uint8)
    x1, y1, x2, y2 = box
    img[y1:y2, x1:x2] = 255
    exif = Image.Exif()
    exif[0x0112] = orientation
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(img).save(path, "JPEG", exif=exif, quality=98)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_boxes_follow_the_exif_orientation_as_opencv_decodes_it(orientation, tmp_path):
    w, h, box = 120, 60, (10, 5, 40, 25)
    _exif_jpeg(tmp_path / "p.jpg", w, h, box, orientation)
    decoded = cv2.imread(str(tmp_path / "p.jpg"))  # what Ultralytics trains and predicts on
    ys, xs = np.where(decoded[..., 0] > 128)
    seen = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    assert np.allclose(turn_xyxy(*box, w, h, orientation), seen, atol=1)
    info = probe(tmp_path / "p.jpg")
    assert (info.width, info.height, info.orientation) == (w, h, orientation)
    assert info.shown_size == decoded.shape[1::-1]


def test_the_converter_fits_boxes_to_turned_and_resized_photos(tmp_path, capsys):
    root = tmp_path / "ds"
    _exif_jpeg(root / "train" / "turned.jpg", 120, 60, (10, 5, 40, 25), 6)   # decoded 60 x 120
    cv2.imwrite(str(root / "train" / "small.jpg"), np.zeros((32, 32, 3), np.uint8))  # the JSON says 64 x 64
    cv2.imwrite(str(root / "train" / "plain.jpg"), np.zeros((32, 32, 3), np.uint8))
    doc = {"images": [{"id": 0, "file_name": "train/turned.jpg", "width": 120, "height": 60},
                      {"id": 1, "file_name": "train/small.jpg", "width": 64, "height": 64},
                      {"id": 2, "file_name": "train/plain.jpg", "width": 32, "height": 32}],
           "categories": [{"id": 0, "name": "a"}],
           "annotations": [ann(0, 0, 0, [10, 5, 30, 20]), ann(1, 1, 0, [8, 8, 8, 8]), ann(2, 2, 0, [8, 8, 8, 8])]}
    src = write_json(root / "train.json", doc)
    before = src.read_bytes()
    code, _, err = run_cli(conv.main, conv.get_args_parser(), [src, "--out", tmp_path / "o", "--val-fraction", "0.34",
                                                               "--seed", "1"], capsys)
    assert code == 0, err
    assert "1 photos carry an EXIF rotation" in err and "1 photos are not the size their JSON says" in err
    assert len(err.strip().splitlines()) == 1 and f"every name in {tmp_path / 'o' / 'report.json'} (photos)" in err
    assert src.read_bytes() == before
    out = tmp_path / "o"
    labels = {p.stem: read_labels(p) for p in (out / "labels").rglob("*.txt")}
    # turned: stored box x 10-40, y 5-25 in 120 x 60 -> decoded x 35-55, y 10-40 in 60 x 120
    assert np.allclose(labels["turned"], [[0, 45 / 60, 25 / 120, 20 / 60, 30 / 120]], atol=1e-4)
    assert np.allclose(labels["small"], [[0, 12 / 32, 12 / 32, 8 / 32, 8 / 32]], atol=1e-4)
    report = json.loads((out / "report.json").read_text())["photos"]
    assert report["orientation"]["count"] == 1 and report["size"]["count"] == 1
    split = {im["original_file_name"]: im for f in ("train", "val") for im in
             json.loads((out / f"{f}.json").read_text())["images"]}
    assert (split["train/turned.jpg"]["width"], split["train/turned.jpg"]["height"]) == (60, 120)
    code, _, err = run_cli(conv.main, conv.get_args_parser(), [src, "--out", tmp_path / "s", "--strict"], capsys)
    _one_line(code, err, "EXIF orientation is 6")
    assert not (tmp_path / "s").exists()


# --- commands ------------------------------------------------------------------------------------------

def test_the_deprecated_weights_flag_still_weighs_the_models(tmp_path, capsys):
    gt = write_json(tmp_path / "gt.json", {"images": [{"id": 0, "file_name": "a.jpg", "width": 100, "height": 100}],
                                           "categories": [{"id": 0, "name": "a"}], "annotations": []})
    a = write_json(tmp_path / "a.json", [{"image_id": 0, "category_id": 0, "bbox": [10, 10, 20, 20], "score": 0.9}])
    b = write_json(tmp_path / "b.json", [{"image_id": 0, "category_id": 0, "bbox": [14, 10, 20, 20], "score": 0.5}])
    outs = {}
    for flag in ("--model-weights", "--weights"):
        out = tmp_path / f"{flag.strip('-')}.json"
        code, _, err = run_cli(ensembling.main, ensembling.get_args_parser(),
                               [a, b, "--images", gt, "--out", out, flag, "3", "1"], capsys)
        assert code == 0, err
        outs[flag] = json.loads(out.read_text())
    assert outs["--weights"] == outs["--model-weights"]
    equal = tmp_path / "equal.json"
    run_cli(ensembling.main, ensembling.get_args_parser(), [a, b, "--images", gt, "--out", equal], capsys)
    assert json.loads(equal.read_text()) != outs["--weights"], "the weights changed nothing: they were dropped"


def test_kfold_with_a_read_only_out_is_one_line(tmp_path, capsys, monkeypatch):
    from coco2yolo.kfold import __main__ as kfold
    from coco2yolo.sample import make_sample

    data = make_sample(tmp_path / "data", n_train=8, n_test=2, size=64, seed=0)
    exp = tmp_path / "exp.yaml"
    exp.write_text(f"train: {data}\nout: {tmp_path / 'ro' / 'exp'}\nconvert: {{folds: 2}}\n"
                   "models:\n  - {name: a, model: yolov5nu.yaml, epochs: 1, imgsz: 64, device: cpu}\n")
    real_mkdir = Path.mkdir

    def read_only(self, *a, **k):
        if str(self).startswith(str(tmp_path / "ro")):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        return real_mkdir(self, *a, **k)

    monkeypatch.setattr(Path, "mkdir", read_only)
    code, _, err = run_cli(kfold.main, kfold.get_args_parser(), [exp], capsys)
    _one_line(code, err, "Read-only file system")


def test_a_full_disk_during_training_is_one_line_and_publishes_nothing(yolo_data, tmp_path):
    """Every write past 1.5 MB fails (RLIMIT_FSIZE, as a full disk would fail it) while Ultralytics saves."""
    def limit():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1_500_000, 1_500_000))

    env = {**os.environ, "COCO2YOLO_RUNS": str(tmp_path / "runs")}
    proc = subprocess.run([sys.executable, str(ROOT / "train_yolo.py"), "--data", str(yolo_data / "data.yaml"),
                           "--model", "yolov5nu.yaml", "--epochs", "1", "--imgsz", "64", "--batch", "8", "--device",
                           "cpu", "--workers", "0", "--name", "full", "--weights-dir", str(tmp_path / "w")],
                          preexec_fn=limit, capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1, proc.stderr[-2000:]
    assert "file too large" in proc.stderr
    assert not (tmp_path / "w" / "full.pt").exists() and not (tmp_path / "w" / "full.json").exists()


# --- the submission CSV ----------------------------------------------------------------------------------

def _submission_case(tmp_path, rows):
    images = write_json(tmp_path / "test.json", {"images": [{"id": 0, "file_name": "test/0.jpg", "width": 1024,
                                                             "height": 1024}],
                                                 "categories": [{"id": k, "name": str(k)} for k in range(10)]})
    csv = tmp_path / "sub.csv"
    csv.write_text("PredictionString,image_id\n" + "".join(f"{r},test/0.jpg\n" for r in rows), encoding="utf-8")
    return csv, images


def test_a_long_valid_row_is_read(tmp_path, capsys):
    boxes = " ".join(f"{k % 10} {0.123456789012345 + k * 1e-6!r} {10 + k % 900}.123456789 20.123456789 "
                     f"{30 + k % 900}.98765432 40.98765432" for k in range(2000))
    assert len(boxes) > 131072
    csv, images = _submission_case(tmp_path, [boxes])
    code, out, err = run_cli(submission.main, submission.get_args_parser(), ["check", csv, "--images", images], capsys)
    assert code == 0 and "2000 boxes" in out, err


@pytest.mark.parametrize("text, what", [
    ("1 0.5 1_0 20 30 40", "'_' (U+005F)"),
    ("1 0.5 \uff11\uff10 20 30 40", "U+FF11"),
    ("1\u00a00.5 10 20 30 40", "U+00A0"),
    ("1 0.5 10 20 30 nan", "'n' (U+006E)"),
])
def test_numbers_follow_the_plain_decimal_grammar(tmp_path, capsys, text, what):
    csv, images = _submission_case(tmp_path, [text])
    code, _, err = run_cli(submission.main, submission.get_args_parser(), ["check", csv, "--images", images], capsys)
    assert code == 2 and what in err and "plain decimal numbers" in err, err
