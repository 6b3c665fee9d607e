"""Small ONNX files for tests and bench/bench_reliability.py: a minimal detector Ultralytics runs, and hostile
variants of it (issue 27's audit and more), each with the words its one-line refusal must contain.

The detector: images ``B x 3 x S x S`` -> one strided Conv -> ``B x (4 + nc) x (S/8)^2``, the layout of an
Ultralytics detection head's output, with Ultralytics' metadata.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np


def sidecar(path: Path, nc: int, imgsz: int) -> Path:
    cats = [{"class_index": i, "category_id": i, "name": f"c{i}"} for i in range(nc)]
    side = path.with_suffix(".json")
    side.write_text(json.dumps({"format": "coco2yolo-weights/1", "weights": path.name, "imgsz": imgsz,
                                "categories": cats}))
    return side


def metadata(nc: int, size: int, batch: int = 1, **extra: str) -> dict[str, str]:
    names = repr({i: f"c{i}" for i in range(nc)})
    return {"description": "crafted", "author": "tests", "stride": "32", "task": "detect", "batch": str(batch),
            "imgsz": f"[{size}, {size}]", "names": names, "channels": "3", "end2end": "False",
            "args": "{'batch': %d, 'nms': False, 'dynamic': False}" % batch, **extra}


def detector(nc: int = 2, size: int = 64, *, batch: int | None = 1, dynamic_size: bool = False,
             pre: Callable | None = None, post: Callable | None = None, meta: dict | None = None,
             weight_shape: tuple | None = None, opset: int = 17) -> object:
    """The minimal detector; ``pre(nodes, inits, x) -> name`` may rewrite the input before the Conv and
    ``post(nodes, inits, y) -> name`` the head's output."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits = [], []
    w = rng.normal(0, 0.1, weight_shape or (4 + nc, 3, 8, 8)).astype(np.float32)
    inits.append(numpy_helper.from_array(w, "W"))
    inits.append(numpy_helper.from_array(np.zeros(4 + nc, np.float32), "B"))
    x = pre(nodes, inits, "images") if pre else "images"
    nodes.append(helper.make_node("Conv", [x, "W", "B"], ["conv"], strides=[8, 8]))
    inits.append(numpy_helper.from_array(np.array([0, 4 + nc, -1], np.int64), "shape"))
    nodes.append(helper.make_node("Reshape", ["conv", "shape"], ["head"]))
    y = post(nodes, inits, "head") if post else "head"
    nodes.append(helper.make_node("Identity", [y], ["output0"]))
    hw = "S" if dynamic_size else size
    inp = helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch if batch else "B", 3, hw, hw])
    out = helper.make_tensor_value_info("output0", TensorProto.FLOAT, None)
    model = helper.make_model(helper.make_graph(nodes, "crafted", [inp], [out], inits),
                              opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    helper.set_model_props(model, meta if meta is not None else metadata(nc, size, batch or 1))
    return model


def save(model, path: Path, nc: int = 2, imgsz: int = 64) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())
    sidecar(path, nc, imgsz)
    return path


def _external(model, location: str) -> None:
    """Move initializer W's bytes to external data at ``location``."""
    from onnx import TensorProto

    t = next(t for t in model.graph.initializer if t.name == "W")
    t.ClearField("raw_data")
    t.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", "0")):
        e = t.external_data.add()
        e.key, e.value = k, v


def _w_bytes(nc: int = 2) -> bytes:
    return np.random.default_rng(0).normal(0, 0.1, (4 + nc, 3, 8, 8)).astype(np.float32).tobytes()


def _const(inits, name, value, dtype=np.int64):
    from onnx import numpy_helper

    inits.append(numpy_helper.from_array(np.array(value, dtype), name))
    return name


def _added_to(kind: str) -> Callable:
    """A ``post`` that builds a huge tensor, slices one value of it and adds it to the head's output, so the
    output's shape still fits (Ultralytics' class-count check cannot see it)."""
    from onnx import helper

    def post(nodes, inits, y):
        if kind == "constant_of_shape":
            nodes.append(helper.make_node("ConstantOfShape", [_const(inits, "huge", [30000, 30000])], ["big"]))
        elif kind == "range":
            nodes.append(helper.make_node("Range", [_const(inits, "r0", 0.0, np.float32),
                                                    _const(inits, "r1", 1e9, np.float32),
                                                    _const(inits, "r2", 1.0, np.float32)], ["big"]))
        elif kind == "expand":
            nodes.append(helper.make_node("Expand", [_const(inits, "one", [1.0], np.float32),
                                                     _const(inits, "to", [40000, 40000])], ["big"]))
        elif kind == "shape_arithmetic":  # sizes from the input's shape times 10,000: folded, then refused
            nodes.append(helper.make_node("Shape", ["images"], ["s"]))
            nodes.append(helper.make_node("Slice", ["s", _const(inits, "s0", [2]), _const(inits, "s1", [4])], ["hw"]))
            nodes.append(helper.make_node("Mul", ["hw", _const(inits, "k", [10000])], ["hw2"]))
            nodes.append(helper.make_node("ConstantOfShape", ["hw2"], ["big"]))
        elif kind == "data_dependent":  # a size read from the photo's pixels
            nodes.append(helper.make_node("Reshape", ["images", _const(inits, "flat", [-1])], ["px"]))
            nodes.append(helper.make_node("Gather", ["px", _const(inits, "i0", 0)], ["p0"]))
            nodes.append(helper.make_node("Mul", ["p0", _const(inits, "scale", 1e9, np.float32)], ["p1"]))
            nodes.append(helper.make_node("Range", [_const(inits, "z0", 0.0, np.float32), "p1",
                                                    _const(inits, "z1", 1.0, np.float32)], ["big"]))
        elif kind == "tile_like_concat":  # a Concat of the input with itself, 4096 times
            nodes.append(helper.make_node("Concat", ["images"] * 4096, ["big"], axis=0))
        nodes.append(helper.make_node("Reshape", ["big", _const(inits, "flat2", [-1])], ["bigflat"]))
        nodes.append(helper.make_node("Slice", ["bigflat", _const(inits, "a0", [0]), _const(inits, "a1", [1])],
                                      ["one_value"]))
        nodes.append(helper.make_node("Add", [y, "one_value"], ["sum"]))
        return "sum"

    return post


def _mismatched_add(nodes, inits, y):
    from onnx import helper

    nodes.append(helper.make_node("Add", [y, _const(inits, "five", np.ones(5), np.float32)], ["bad"]))
    return "bad"


def _resize(nodes, inits, x):
    from onnx import helper

    nodes.append(helper.make_node("Resize", [x, "", _const(inits, "scales", [1, 1, 1000, 1000], np.float32)],
                                  ["up"], mode="nearest"))
    nodes.append(helper.make_node("Slice", ["up", _const(inits, "z", [0, 0, 0, 0]), _const(inits, "e", [1, 3, 64, 64])],
                                  ["back"]))
    return "back"


def _loop(nodes, inits, x):
    from onnx import TensorProto, helper

    body = helper.make_graph([helper.make_node("Identity", ["cond_in"], ["cond_out"])], "body",
                             [helper.make_tensor_value_info("i", TensorProto.INT64, []),
                              helper.make_tensor_value_info("cond_in", TensorProto.BOOL, [])],
                             [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, [])])
    nodes.append(helper.make_node("Loop", [_const(inits, "trip", 10**12), _const(inits, "c", True, np.bool_)], [],
                                  body=body))
    return x


def _custom(nodes, inits, x):
    from onnx import helper

    nodes.append(helper.make_node("Evil", [x], ["ev"], domain="com.example"))
    return "ev"


def cases(root: Path, seed: int = 0) -> list[tuple[str, Path, str | None]]:
    """(name, file, words of its refusal or None where it must load and predict) for each crafted case,
    written under ``root`` (the sidecar beside each: 2 classes, 64 px)."""
    from onnx import helper

    out: list[tuple[str, Path, str | None]] = []
    root.mkdir(parents=True, exist_ok=True)

    def add(name, model, words, nc=2):
        out.append((name, save(model, root / name / "m.onnx", nc=nc), words))

    add("genuine", detector(), None)
    add("dynamic", detector(batch=None, dynamic_size=True), None)
    # external data: outside the folder (absolute, ../, a link), inside it (fine), too short
    secret = root / "elsewhere" / "secret.bin"
    secret.parent.mkdir(parents=True, exist_ok=True)
    secret.write_bytes(_w_bytes())
    for name, loc in (("external_absolute", str(secret)), ("external_parent", "../elsewhere/secret.bin"),
                      ("external_link", "link.bin")):
        m = detector()
        _external(m, loc)
        add(name, m, "outside the model's own folder")
    (root / "external_link" / "link.bin").symlink_to(secret)
    m = detector()
    _external(m, "weights.bin")
    add("external_inside", m, None)
    (root / "external_inside" / "weights.bin").write_bytes(_w_bytes())
    m = detector()
    _external(m, "short.bin")
    add("external_short", m, "bytes of external data")
    (root / "external_short" / "short.bin").write_bytes(_w_bytes()[:100])
    m = detector()
    _external(m, "missing.bin")
    add("external_missing", m, "which is not in")
    # metadata
    add("names_nested_100000", detector(meta=metadata(2, 64, names="[" * 100_000 + "]" * 100_000)), "bytes (allowed")
    add("names_nested_12", detector(meta=metadata(2, 64, names="{0: " + "[" * 12 + "]" * 12 + "}")), "nests brackets")
    add("names_not_literal", detector(meta=metadata(2, 64, names="__import__('os').system('x')")), "not a Python literal")
    add("names_wrong_count", detector(meta=metadata(3, 64)), "sidecar lists 2")
    add("names_huge_int", detector(meta=metadata(2, 64, names="{" + "9" * 5000 + ": 'a'}")), "not a Python literal")
    add("key_forward", detector(meta={**metadata(2, 64), "forward": "1"}), "not one Ultralytics' exporter writes")
    add("batch_100000", detector(meta=metadata(2, 64, batch=100_000)), "'batch'")
    add("batch_mismatch", detector(meta=metadata(2, 64, batch=4)), "pads every batch")
    add("stride_zero", detector(meta=metadata(2, 64, stride="0")), "'stride'")
    add("task_segment", detector(meta=metadata(2, 64, task="segment")), "task 'detect'")
    add("nms_inside", detector(meta=metadata(2, 64, args="{'nms': True}")), "NMS inside")
    add("imgsz_string", detector(meta=metadata(2, 64, imgsz="'big'")), "'imgsz'")
    # the graph
    add("shapes_do_not_fit", detector(post=_mismatched_add), "shapes do not fit")
    add("conv_channels", detector(weight_shape=(6, 4, 8, 8)), "cannot run")  # found when the session first runs
    for kind in ("constant_of_shape", "range", "expand", "shape_arithmetic", "tile_like_concat"):
        add(f"huge_{kind}", detector(post=_added_to(kind)), "bytes a pixel")
    add("data_dependent_range", detector(post=_added_to("data_dependent")), "depends on the data")
    add("resize_1000x", detector(pre=_resize), "bytes a pixel")
    add("loop_subgraph", detector(pre=_loop), "not an operator of an Ultralytics detection export")
    add("custom_domain", detector(pre=_custom), "operator domain")
    m = detector()
    m.opset_import[0].version = 99
    add("opset_99", m, "operator set")
    m = detector()
    m.graph.initializer[0].dims[0] = 10**9
    add("dims_beyond_data", m, "declares")
    m = detector()
    f = m.functions.add()
    f.name, f.domain = "f", "local"
    add("local_function", m, "model field 25")
    # bytes
    genuine = (root / "genuine" / "m.onnx").read_bytes()
    rng = random.Random(seed)
    for name, data in (("empty", b""), ("random_bytes", bytes(rng.randrange(256) for _ in range(4096))),
                       ("truncated", genuine[: len(genuine) // 2]), ("text", b"not an onnx file\n" * 10)):
        p = root / name / "m.onnx"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        sidecar(p, 2, 64)
        out.append((name, p, ""))  # any one-line refusal
    p = root / "fifo" / "m.onnx"
    p.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(p)
    sidecar(p, 2, 64)
    out.append(("fifo", p, "not a regular file"))
    del helper
    return out


def mutated(root: Path, n: int, seed: int) -> list[Path]:
    """``n`` random variants of the crafted cases: bytes flipped, inserted or cut, metadata values replaced,
    dims and attributes changed, huge constants. Each is written with its sidecar."""
    import onnx

    rng = random.Random(f"{seed}-onnx")
    base = detector()
    files = []
    for k in range(n):
        m = onnx.ModelProto()
        m.CopyFrom(base)
        kind = rng.randrange(6)
        if kind == 0:  # a metadata value replaced
            p = rng.choice(list(m.metadata_props))
            p.value = rng.choice(["[" * rng.choice([9, 50, 5000]), "{0: 'a'}" * 3, "-1", "1e309", "None", "{}",
                                  "{0: 'a', 1: 'b', 2: 'c'}", "'x' * 10", "(" * 8 + ")" * 8, "9" * 6000, "\x00"])
        elif kind == 1:  # a dimension of an initializer changed
            t = rng.choice(list(m.graph.initializer))
            if t.dims:
                t.dims[rng.randrange(len(t.dims))] = rng.choice([0, 1, 7, 2**31, 2**62])
        elif kind == 2:  # an attribute changed
            node = m.graph.node[0]
            a = node.attribute[0]
            a.ints[:] = [rng.choice([0, 1, 8, 10**6])] * len(a.ints)
        elif kind == 3:  # a huge constant feeding the head
            m = detector(post=_added_to(rng.choice(["constant_of_shape", "range", "expand", "shape_arithmetic"])))
        elif kind == 4:  # the input's shape changed
            d = m.graph.input[0].type.tensor_type.shape.dim[rng.randrange(4)]
            d.dim_value = rng.choice([0, 1, 2, 65536, 2**40])
        path = root / f"mut{k}" / "m.onnx"
        path.parent.mkdir(parents=True, exist_ok=True)
        data = m.SerializeToString()
        if kind == 5:  # bytes flipped, inserted or cut
            b = bytearray(data)
            for _ in range(rng.randint(1, 8)):
                i = rng.randrange(len(b))
                op = rng.randrange(3)
                if op == 0:
                    b[i] ^= 1 << rng.randrange(8)
                elif op == 1:
                    b[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
                else:
                    del b[i:i + rng.randint(1, 64)]
            data = bytes(b)
        path.write_bytes(data)
        sidecar(path, 2, 64)
        files.append(path)
    return files
