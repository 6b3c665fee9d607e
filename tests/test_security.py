"""No code runs from a weights file unless the user says they trust it.

Each malicious checkpoint carries a payload that would create a marker file; the tests assert the
command refuses the file in one line naming the global, exits 2, and the marker never appears.
"""

from __future__ import annotations

import argparse
import os
import sys
import types

import pytest
import torch
from torch import nn

from coco2yolo import inference as predict
from coco2yolo.training import train as train
from conftest import LEGACY, need, run_cli


class _Payload:
    """Unpickling this calls ``fn(arg)``: os.system or builtins.exec with a command creating a marker."""

    def __init__(self, fn, arg):
        self.fn, self.arg = fn, arg

    def __reduce__(self):
        return self.fn, (self.arg,)


def _payloads(marker):
    return {"os.system": _Payload(os.system, f"touch {marker}"),
            "builtins.exec": _Payload(exec, f"open({str(marker)!r}, 'w').close()")}


def _fake_yolov5_model():
    """An object pickled as ``models.yolo.Model`` (the old yolov5 repository's class), as in its checkpoints."""
    mod_models, mod_yolo = types.ModuleType("models"), types.ModuleType("models.yolo")

    class Model(nn.Module):
        pass

    Model.__module__, Model.__qualname__ = "models.yolo", "Model"
    mod_yolo.Model = Model
    mod_models.yolo = mod_yolo
    sys.modules.update({"models": mod_models, "models.yolo": mod_yolo})
    m = Model()
    m.yaml = {"depth_multiple": 0.33, "width_multiple": 0.25, "backbone": [], "head": []}
    m.conv = nn.Conv2d(3, 4, 1)
    return m


def _save(obj, path, zip_format=True):
    try:
        torch.save(obj, path, _use_new_zipfile_serialization=zip_format)
    finally:
        sys.modules.pop("models", None)
        sys.modules.pop("models.yolo", None)
    return path


@pytest.fixture(params=["os.system", "builtins.exec"])
def payload(request, tmp_path):
    marker = tmp_path / f"PWNED_{request.param}"
    return request.param, _payloads(marker)[request.param], marker


def _train(argv, capsys):
    return run_cli(train.main, train.get_args_parser(), argv, capsys)


def _infer(argv, capsys):
    return run_cli(predict.main, predict.get_args_parser(), argv, capsys)


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "old-non-zip"])
@pytest.mark.parametrize("flag", ["--weights", "--model"])
def test_legacy_checkpoint_with_a_payload_is_refused(yolo_data, tmp_path, capsys, payload, zip_format, flag):
    name, evil, marker = payload
    path = _save({"model": _fake_yolov5_model(), "opt": evil}, tmp_path / "evil.pt", zip_format)
    code, _, err = _train(["--data", yolo_data / "data.yaml", flag, path, "--epochs", "1", "--imgsz", "64",
                           "--device", "cpu", "--weights-dir", tmp_path / "w"], capsys)
    assert not marker.exists(), "the payload ran"
    want = {"os.system": ("posix.system", "os.system"), "builtins.exec": ("builtins.exec",)}[name]
    assert code == 2 and any(w in err for w in want) and "--trust-weights" in err, err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "w").exists()


def _with_payload(genuine, path, evil):
    ckpt = torch.load(genuine, map_location="cpu", weights_only=False)  # our own file, written by the fixture
    ckpt["extra"] = evil
    torch.save(ckpt, path)
    return path


def test_ultralytics_checkpoint_with_a_payload_is_refused_by_train(tiny_weights, yolo_data, tmp_path, capsys,
                                                                   payload):
    name, evil, marker = payload
    path = _with_payload(tiny_weights, tmp_path / "evil.pt", evil)
    for flag in ("--weights", "--model"):
        code, _, err = _train(["--data", yolo_data / "data.yaml", flag, path, "--model" if flag == "--weights"
                               else "--epochs", "yolov5nu.yaml" if flag == "--weights" else "1", "--imgsz", "64",
                               "--device", "cpu", "--weights-dir", tmp_path / "w"], capsys)
        assert not marker.exists(), f"the payload ran through {flag}"
        assert code == 2 and "refused to load" in err and "--trust-weights" in err, (flag, err)
        assert len(err.strip().splitlines()) == 1


def test_ultralytics_checkpoint_with_a_payload_is_refused_by_infer(tiny_weights, sample, tmp_path, capsys,
                                                                   payload):
    _, evil, marker = payload
    path = _with_payload(tiny_weights, tmp_path / "evil.pt", evil)
    (tmp_path / "evil.json").write_text(tiny_weights.with_suffix(".json").read_text())
    out = tmp_path / "p.json"
    code, _, err = _infer(["--weights", path, "--images", sample.parent / "test.json", "--out", out,
                           "--device", "cpu"], capsys)
    assert not marker.exists(), "the payload ran"
    assert code == 2 and "refused to load" in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()


def test_trusted_file_loads_and_untrusted_is_refused(tiny_weights, sample, tmp_path, capsys):
    """A harmless but non-allow-listed global (argparse.Namespace): refused unless --trust-weights."""
    path = _with_payload(tiny_weights, tmp_path / "ns.pt", argparse.Namespace(note="harmless"))
    (tmp_path / "ns.json").write_text(tiny_weights.with_suffix(".json").read_text())
    argv = ["--weights", path, "--images", sample.parent / "test.json", "--out", tmp_path / "p.json",
            "--device", "cpu"]
    code, _, err = _infer(argv, capsys)
    assert code == 2 and "argparse.Namespace" in err
    code, _, err = _infer(argv + ["--trust-weights"], capsys)
    assert code == 0, err
    assert (tmp_path / "p.json").exists()


def test_genuine_checkpoints_still_load(tiny_weights, sample, tmp_path, capsys):
    code, _, err = _infer(["--weights", tiny_weights, "--images", sample.parent / "test.json", "--out",
                           tmp_path / "p.json", "--device", "cpu"], capsys)
    assert code == 0, err


@need(LEGACY)
def test_official_yolov5n_passes_the_allow_list():
    from coco2yolo.checkpoint import read_checkpoint

    legacy = read_checkpoint(LEGACY)
    assert legacy.kind == "yolov5" and len(legacy.tensors) == 349


def test_corrupt_weights_are_one_line(sample, tmp_path, capsys):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"\x89PNG not a checkpoint at all" * 10)
    (tmp_path / "bad.json").write_text('{"format": "coco2yolo-weights/1", "imgsz": 64, "categories": '
                                       '[{"class_index": 0, "category_id": 0, "name": "a"}]}')
    code, _, err = _infer(["--weights", bad, "--images", sample.parent / "test.json", "--out", tmp_path / "p.json",
                           "--device", "cpu"], capsys)
    assert code == 2 and str(bad) in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
