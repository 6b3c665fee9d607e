"""A weights file is read as data: nothing it names is constructed, downloaded or allocated beyond its size.

Each hostile file below was found by the audit of issue 16 (or is a close variant); each must give one
line and exit status 2 (or load harmlessly), never a crash, a traceback, a network connection or a
memory blow-up.
"""

from __future__ import annotations

import copy
import io
import json
import os
import pickle
import socket
import subprocess
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from coco2yolo import inference as predict
from coco2yolo.checkpoint import read_checkpoint
from coco2yolo.errors import UserError
from coco2yolo.training import train
from conftest import ROOT, run_cli


@pytest.fixture
def no_network(monkeypatch):
    """Fail loudly if anything tries to connect anywhere."""
    attempts = []

    def refuse(self, address, *a, **k):
        attempts.append(address)
        raise OSError("network disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    yield attempts
    assert not attempts, f"something tried to connect: {attempts}"


class Reduce:
    """Pickles as ``fn(*args)``: the way a hostile file asks the loader to call something."""

    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _genuine(tiny_weights):
    return torch.load(tiny_weights, map_location="cpu", weights_only=False)  # our own file, written by a fixture


def _save(ckpt, path, zip_format=True):
    torch.save(ckpt, path, _use_new_zipfile_serialization=zip_format)
    return path


def _one_line(code, err):
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err


def _infer(weights, sample, tmp_path, capsys, *extra):
    sidecar = Path(weights).with_suffix(".json")
    if not sidecar.exists():
        sidecar.write_text(json.dumps({"format": "coco2yolo-weights/1", "imgsz": 64, "categories": [
            {"class_index": i, "category_id": i, "name": f"c{i}"} for i in range(10)]}))
    return run_cli(predict.main, predict.get_args_parser(),
                   ["--weights", weights, "--images", sample.parent / "test.json", "--out", tmp_path / "p.json",
                    "--device", "cpu", *extra], capsys)


def _train(yolo_data, tmp_path, capsys, *argv):
    return run_cli(train.main, train.get_args_parser(),
                   ["--data", yolo_data / "data.yaml", "--epochs", "1", "--imgsz", "64", "--batch", "8", "--device",
                    "cpu", "--workers", "0", "--weights-dir", tmp_path / "w", "--name", tmp_path.name, *argv], capsys)


# --- crafted files ---------------------------------------------------------------------------------

def _zip_checkpoint(path, obj, storages):
    """A torch zip checkpoint written by hand: ``obj`` pickled with ``storages`` ({key: (dtype, numel, bytes)})
    as its persistent references, so the declared sizes can lie about the data."""
    buf = io.BytesIO()

    class P(pickle.Pickler):
        def persistent_id(self, o):
            if isinstance(o, _Storage):
                return ("storage", o.stype, o.key, "cpu", o.numel)
            return None

    P(buf, protocol=2).dump(obj)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("archive/data.pkl", buf.getvalue())
        zf.writestr("archive/byteorder", "little")
        for key, data in storages.items():
            zf.writestr(f"archive/data/{key}", data)
    return path


class _Storage:
    def __init__(self, key, numel, stype=torch.FloatStorage):
        self.key, self.numel, self.stype = key, numel, stype


class _Tensor:
    """Pickles like a tensor: torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)."""

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride

    def __reduce__(self):
        return torch._utils._rebuild_tensor_v2, (self.storage, self.offset, tuple(self.size), tuple(self.stride),
                                                  False, OrderedDict())


def test_a_storage_larger_than_the_file_is_refused_before_allocation(tmp_path):
    path = _zip_checkpoint(tmp_path / "big.pt", {"model": {"w": _Tensor(_Storage("0", 10**12), 0, [10**6, 10**6],
                                                                           [10**6, 1])}}, {"0": b"\0" * 16})
    with pytest.raises(UserError, match="declares 4000000000000 bytes but its record holds 16"):
        read_checkpoint(path)


def test_a_tensor_reaching_past_its_storage_is_refused(tmp_path):
    path = _zip_checkpoint(tmp_path / "oob.pt", {"model": {"w": _Tensor(_Storage("0", 4), 2, [4], [1])}},
                           {"0": b"\0" * 16})
    with pytest.raises(UserError, match="reaches past the end of its storage"):
        read_checkpoint(path)


def test_a_legacy_format_storage_larger_than_the_file_is_refused(tmp_path, tiny_weights):
    path = _save(_genuine(tiny_weights), tmp_path / "legacy.pt", zip_format=False)
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(data[: len(data) // 2]))  # every storage after the cut is missing
    with pytest.raises(UserError, match="cannot read weights"):
        read_checkpoint(path)


# --- the audit's cases -----------------------------------------------------------------------------

@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy-format"])
def test_numpy_scalar_over_file_bytes_cannot_crash_the_process(tiny_weights, tmp_path, zip_format):
    """numpy's scalar over a structured dtype with an object field reads file bytes as a pointer: signal 11
    in the old allow-listed loader. Here numpy is never called; the process must exit normally."""
    ckpt = _genuine(tiny_weights)
    dt = np.dtype([("a", "O")])
    ckpt["best_fitness"] = Reduce(np.core.multiarray.scalar, dt, b"\x41" * 8)
    ckpt["fitness"] = np.float64(0.75)  # a genuine numpy scalar still reads as a number
    path = _save(ckpt, tmp_path / "np.pt", zip_format)
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r});"
            "from coco2yolo.checkpoint import read_checkpoint, reader;"
            f"raw = reader.read_raw({str(path)!r}); assert raw.obj['best_fitness'] is None, raw.obj['best_fitness'];"
            "assert raw.obj['fitness'] == 0.75; print(len(read_checkpoint(" + repr(str(path)) + ").tensors))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert int(proc.stdout.strip()) == 427


def test_a_module_constructed_with_file_arguments_is_refused_and_nothing_downloads(tiny_weights, sample, yolo_data,
                                                                                    tmp_path, capsys, no_network):
    from ultralytics.nn.modules import TorchVision

    ckpt = _genuine(tiny_weights)
    ckpt["model"].model._modules["0"] = Reduce(TorchVision, "resnet18", "DEFAULT", True, 2, True)
    path = _save(ckpt, tmp_path / "tv.pt")
    code, _, err = _infer(path, sample, tmp_path, capsys)
    _one_line(code, err)
    assert "TorchVision to construct with the file's arguments" in err and "--trust-weights" in err
    for flag in ("--model", "--weights"):
        code, _, err = _train(yolo_data, tmp_path, capsys, flag, path, *(["--model", "yolov5nu.yaml"] if flag == "--weights"
                                                                       else []))
        _one_line(code, err)
    assert not (tmp_path / "w").exists()


def test_a_layer_constructor_cannot_allocate_gigabytes(tiny_weights, sample, tmp_path, capsys):
    """nn.Linear(25000, 25000): 1.4 KB of pickle, 2.5 GB of weights if constructed."""
    import resource

    ckpt = _genuine(tiny_weights)
    ckpt["model"].model._modules["1"] = Reduce(nn.Linear, 25000, 25000)
    path = _save(ckpt, tmp_path / "linear.pt")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    code, _, err = _infer(path, sample, tmp_path, capsys)
    _one_line(code, err)
    assert "torch.nn.modules.linear.Linear to construct" in err
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 500_000  # KiB: far below 2.5 GB


def test_weights_that_match_nothing_are_refused(tiny_weights, yolo_data, tmp_path, capsys):
    foreign = {"model": nn.Sequential(nn.Linear(3, 4)), "train_args": {}}  # a model of no YOLO layout
    path = _save(foreign, tmp_path / "foreign.pt")
    code, out, err = _train(yolo_data, tmp_path, capsys, "--model", "yolov5nu.yaml", "--weights", path)
    _one_line(code, err)
    assert "none of its 2 tensors matches" in err and "initialised" not in out


def test_initialised_counts_the_tensors_that_matched(tiny_weights, yolo_data, tmp_path, capsys):
    code, out, err = _train(yolo_data, tmp_path, capsys, "--model", "yolov8n.yaml", "--weights", tiny_weights)
    assert code == 0, err
    line = next(ln for ln in out.splitlines() if ln.startswith("initialised"))
    matched, total = (int(w) for w in line.split(": ", 1)[1].split()[0:5:4])
    assert 0 < matched < total, line  # v5 and v8 share their first conv layers, not their blocks
    side = json.loads((tmp_path / "w" / f"{tmp_path.name}.json").read_text())
    assert side["origin"] == line


def test_a_hook_on_the_model_is_refused(tiny_weights, sample, tmp_path, capsys):
    from ultralytics.nn.modules import Conv

    ckpt = _genuine(tiny_weights)
    ckpt["model"].model[2]._state_dict_hooks[0] = Conv  # an allowed class that state_dict() would construct
    path = _save(ckpt, tmp_path / "hook.pt")
    code, _, err = _infer(path, sample, tmp_path, capsys)
    _one_line(code, err)
    assert "a hook (_state_dict_hooks) on model.2" in err


@pytest.mark.parametrize("change, message", [
    (lambda y: y.update(activation="__import__('os').system('touch PWNED')"), "activation"),
    (lambda y: y["backbone"].__setitem__(0, [-1, 1, "TorchVision", [512, "resnet18", "DEFAULT"]]), "not an Ultralytics"),
    (lambda y: y["backbone"].__setitem__(0, [-1, 1, "attempt_download_asset", ["x.pt"]]), "not an Ultralytics"),
    (lambda y: y["head"].__setitem__(1, [-1, 1, "nn.Upsample", ["None", 1000, "nearest"]]), "upsampling factor"),
    (lambda y: y["backbone"].__setitem__(1, [-1, 10**6, "Conv", [64, 3, 2]]), "repeats"),
    (lambda y: y.update(nc=10**9), "nc"),
    (lambda y: y.update(backbone="not a list"), "backbone"),
])
def test_a_hostile_model_yaml_is_refused(tiny_weights, sample, tmp_path, capsys, change, message, no_network):
    ckpt = _genuine(tiny_weights)
    y = copy.deepcopy(ckpt["model"].yaml)
    change(y)
    ckpt["model"].yaml = y
    path = _save(ckpt, tmp_path / "yaml.pt")
    code, _, err = _infer(path, sample, tmp_path, capsys)
    _one_line(code, err)
    assert message in err
    assert not Path("PWNED").exists()


def test_a_model_yaml_file_is_checked_like_a_checkpoint(yolo_data, tmp_path, capsys, no_network):
    bad = tmp_path / "evil.yaml"
    bad.write_text("nc: 10\nbackbone:\n  - [-1, 1, TorchVision, [512, resnet18, DEFAULT]]\nhead:\n"
                   "  - [[0], 1, Detect, [nc]]\n")
    code, _, err = _train(yolo_data, tmp_path, capsys, "--model", bad)
    _one_line(code, err)
    assert "not an Ultralytics detection layer" in err


def test_tensors_that_do_not_fit_the_yaml_are_refused(tiny_weights, sample, tmp_path, capsys):
    ckpt = _genuine(tiny_weights)
    ckpt["model"].model[0].conv.weight = nn.Parameter(torch.zeros(1, 1, 1, 1))
    path = _save(ckpt, tmp_path / "shape.pt")
    code, _, err = _infer(path, sample, tmp_path, capsys)
    _one_line(code, err)
    assert "do not fit the model its yaml describes" in err and "model.0.conv.weight [1, 1, 1, 1]" in err


@pytest.mark.parametrize("damage", ["key", "depth", "backbone", "no-yaml"])
def test_malformed_legacy_checkpoints_are_one_line(yolo_data, tmp_path, capsys, damage):
    from test_security import _fake_yolov5_model, _save as save_legacy

    m = _fake_yolov5_model()
    if damage == "key":
        m.add_module("x", nn.Conv2d(1, 1, 1))  # a tensor outside model.N.*
    elif damage == "depth":
        m.yaml["depth_multiple"] = "abc"
    elif damage == "backbone":
        m.yaml["backbone"] = 7
        m.yaml["depth_multiple"], m.yaml["width_multiple"] = 0.33, 0.25
    else:
        del m.yaml
    path = save_legacy({"model": m}, tmp_path / "legacy.pt")
    code, _, err = _train(yolo_data, tmp_path, capsys, "--weights", path)
    _one_line(code, err)


def test_a_module_graph_that_loops_or_explodes_is_bounded(tmp_path):
    """A module shared along 60 levels (2^60 paths) and a cycle: read in a moment, tensors named once."""
    a = nn.Module()
    leaf = nn.Conv2d(1, 1, 1)
    node = leaf
    for _ in range(60):
        parent = nn.Module()
        parent.add_module("l", node)
        parent.add_module("r", node)
        node = parent
    a.add_module("model", node)
    a.yaml = {"nc": 1}
    a.add_module("loop", a)
    path = _save({"model": a}, tmp_path / "dag.pt")
    ckpt = read_checkpoint(path)
    assert len(ckpt.tensors) == 2


def test_a_named_pipe_as_weights_is_refused(tmp_path, sample, capsys):
    fifo = tmp_path / "w.pt"
    os.mkfifo(fifo)
    code, _, err = _infer(fifo, sample, tmp_path, capsys)
    _one_line(code, err)
    assert "named pipe" in err


def test_genuine_files_read_as_data_equal_torch_load(tiny_weights, tmp_path):
    ref = _genuine(tiny_weights)["model"].state_dict()
    for zip_format in (True, False):
        path = _save(_genuine(tiny_weights), tmp_path / f"g{zip_format}.pt", zip_format)
        ckpt = read_checkpoint(path)
        assert ckpt.kind == "ultralytics" and ckpt.model_class.endswith("DetectionModel")
        assert set(ckpt.tensors) == set(ref) and all(torch.equal(ckpt.tensors[k], ref[k]) for k in ref)
        assert ckpt.names and len(ckpt.names) == 10 and ckpt.yaml["nc"] == 10
