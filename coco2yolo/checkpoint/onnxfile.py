"""ONNX files read as data before ONNX Runtime or Ultralytics see them (``infer.py --weights N.onnx``).

An ONNX file runs no Python, but it still chooses what is read and allocated: an initializer's external
data may name any file on the machine, a 299-byte graph may build a tensor of any size from constants
(``ConstantOfShape([30000, 30000])``: 3.6 GB), Ultralytics parses metadata values with ``ast.literal_eval``
(100,000 nested brackets: a SyntaxError), makes every metadata key an attribute of its backend and pads a
static batch up to the metadata's ``batch``. :func:`check_onnx`, before any session is built:

1. the file is a regular file of at most 2 GiB (protobuf's limit for one message), and its wire format is
   walked without parsing it: only the fields an inference model has; nodes, initializers, value infos and
   metadata entries counted and bounded, so that parsing it cannot take more than a small multiple of the
   file;
2. it is parsed with external data left on disk; opsets, operators (those Ultralytics' detection exports
   use, every family and opset from 11, static and dynamic: :data:`OPS`), attributes (no subgraphs) and
   tensors (the values declared equal to the bytes held; external data only inside the model's own
   folder, within its file) are checked;
3. metadata keys are those Ultralytics' exporter writes; values are bounded in length and bracket nesting
   before anything parses them, then parsed as literals and typed; the class names are counted against the
   sidecar; an export with NMS inside is refused (``infer.py`` runs its own, at the scoring thresholds);
4. every tensor's shape is inferred for the input that will be fed (``batch x 3 x size x size``) by ONNX's
   own shape inference, with the small shape arithmetic of dynamic exports (``Shape -> Gather -> Range``)
   evaluated here on at most :data:`MAX_FOLDED` values, so that ``Range``, ``Expand`` and ``ConstantOfShape``
   get concrete sizes (ONNX's own data propagation is left off: on ``ConstantOfShape([30000, 30000])`` it
   allocates the tensor's gigabytes itself). A tensor whose size still depends on the data is refused, and so are a tensor, or
   the live memory of the graph run node by node, beyond a bound per input pixel set at four times the
   largest genuine export's (:data:`TENSOR_BYTES_PER_PIXEL`, :data:`PEAK_BYTES_PER_PIXEL`; measured in
   ``tests/test_onnx_file.py``).

Every refusal is a :class:`~coco2yolo.errors.UserError`: one line naming the file and what is allowed.
"""

from __future__ import annotations

import ast
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from coco2yolo.errors import UserError, short
from coco2yolo.fileio import open_regular

MAX_FILE_BYTES = 2**31 - 1  # protobuf's bound on one message: larger models keep their weights as external data
MAX_EXTERNAL_BYTES = 16 << 30  # all external data together (YOLOv8x: 260 MB in all)
MAX_NODES = 20_000  # YOLOv8x: 400 nodes simplified, about 1,000 unsimplified
MAX_INITIALIZERS = 20_000
MAX_VALUE_INFOS = 100_000
MAX_NODE_BYTES = 64 << 20  # all node messages together (YOLOv8x: about 60 KB)
MAX_META_ENTRIES, MAX_META_KEY, MAX_META_VALUE, MAX_META_NESTING = 64, 64, 1 << 16, 8
MAX_RANK = 8
MAX_FOLDED = 1024  # shape arithmetic evaluated here on tensors of at most this many values
MAX_BATCH = 256
# Bounds per input pixel (batch x height x width), four times the largest genuine export's (YOLOv8x, static
# or dynamic, 320 or 640 px: 100 bytes for its largest tensor, 240 bytes live at most; nano models 16 and 48),
# plus a floor for small inputs.
TENSOR_BYTES_PER_PIXEL = 400
PEAK_BYTES_PER_PIXEL = 1000
FLOOR_BYTES = 64 << 20

# What Ultralytics' detection exports use (YOLOv5u, v8, 11 and 26; simplified or not; static or dynamic;
# opsets 11 to 18), activations the model yaml may choose, and the end-to-end heads' top-k.
OPS = frozenset({
    "Add", "Cast", "Concat", "Constant", "ConstantOfShape", "Conv", "Div", "Expand", "Gather", "Identity",
    "MatMul", "MaxPool", "Mul", "Range", "Reshape", "Resize", "Shape", "Sigmoid", "Slice", "Softmax", "Split",
    "Sub", "Transpose", "Unsqueeze", "Squeeze", "Flatten",
    "Relu", "LeakyRelu", "HardSwish", "HardSigmoid", "Clip", "Tanh", "Softplus", "Erf", "Sqrt", "Pow", "Neg",
    "Exp", "Log", "Min", "Max", "BatchNormalization", "AveragePool", "ReduceMax", "ArgMax", "TopK",
    "GatherElements", "Einsum",
})
NMS_OPS = frozenset({"NonMaxSuppression", "NonZero"})
OPSET_VERSIONS = range(7, 31)
# Keys Ultralytics' exporter writes (ultralytics/engine/exporter.py); each becomes an attribute of its backend
META_KEYS = frozenset({"description", "author", "date", "version", "license", "docs", "stride", "task", "batch",
                       "imgsz", "names", "args", "channels", "end2end", "head", "kpt_shape", "kpt_names", "dla",
                       "half", "int8", "quantize"})
LITERAL_KEYS = frozenset({"imgsz", "names", "kpt_shape", "kpt_names", "args", "end2end"})  # Ultralytics literal_evals
INT_KEYS = frozenset({"stride", "batch", "channels"})  # Ultralytics int()s

# TensorProto data types: (bytes per value, the typed field that holds them when raw_data is not used)
_DTYPES = {1: (4, "float_data"), 2: (1, "int32_data"), 3: (1, "int32_data"), 4: (2, "int32_data"),
           5: (2, "int32_data"), 6: (4, "int32_data"), 7: (8, "int64_data"), 9: (1, "int32_data"),
           10: (2, "int32_data"), 11: (8, "double_data"), 12: (4, "uint64_data"), 13: (8, "uint64_data"),
           16: (2, "int32_data")}
_EXTERNAL = 1  # TensorProto.EXTERNAL


@dataclass
class OnnxCheck:
    """What :func:`check_onnx` found: the class names, the input fed (batch, 3, height, width), whether the
    file left its batch or size open, and the largest tensor and live memory of one run, in bytes."""

    names: dict[int, str]
    input_shape: tuple[int, int, int, int]
    dynamic: bool
    largest_tensor: int
    peak_bytes: int
    nodes: int


class _Refused(Exception):
    """A problem with the file; :func:`check_onnx` prefixes the file's name."""


# ---------------------------------------------------------------------------------------------------------
# 1. The wire format, walked without parsing


def _varint(buf: memoryview, i: int, end: int) -> tuple[int, int]:
    value = shift = 0
    for _ in range(10):
        if i >= end:
            raise _Refused("is cut short (a varint runs past its message)")
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7
    raise _Refused("is not a protobuf message (a varint longer than 10 bytes)")


def _fields(buf: memoryview, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(field number, wire type, start, end) of each field of the message in ``buf[start:end]``."""
    i = start
    while i < end:
        tag, i = _varint(buf, i, end)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            _, j = _varint(buf, i, end)
        elif wire == 1:
            j = i + 8
        elif wire == 2:
            n, i = _varint(buf, i, end)
            j = i + n
        elif wire == 5:
            j = i + 4
        else:
            raise _Refused(f"is not an ONNX model (protobuf wire type {wire} at byte {i})")
        if j > end or number == 0:
            raise _Refused("is cut short or not an ONNX model (a field runs past its message)")
        yield number, wire, i, j
        i = j


# ModelProto: ir_version, producer_name/_version, domain, model_version, doc_string, graph, opset_import,
# metadata_props. Not: training_info (20), functions (25), configuration (26), or anything unknown.
_MODEL_FIELDS = {1, 2, 3, 4, 5, 6, 7, 8, 14}
# GraphProto: node, name, initializer, doc_string, input, output, value_info, quantization_annotation,
# metadata_props. Not: sparse_initializer (15).
_GRAPH_FIELDS = {1, 2, 5, 10, 11, 12, 13, 14, 16}


def _walk(buf: memoryview) -> None:
    """Bound what parsing ``buf`` can build: only known fields, counted."""
    graphs = metas = 0
    for number, wire, s, e in _fields(buf, 0, len(buf)):
        if number not in _MODEL_FIELDS:
            raise _Refused(f"holds model field {number}, which an exported inference model does not have "
                           "(training info, functions or configurations are refused)")
        if number == 7:
            graphs += 1
            _walk_graph(buf, s, e)
        elif number == 14:
            metas += 1
            if metas > MAX_META_ENTRIES:
                raise _Refused(f"has more than {MAX_META_ENTRIES} metadata entries")
            for n2, _, s2, e2 in _fields(buf, s, e):
                limit = MAX_META_KEY if n2 == 1 else MAX_META_VALUE
                if e2 - s2 > limit:
                    raise _Refused(f"metadata entry {metas} has a {'key' if n2 == 1 else 'value'} of {e2 - s2:,} "
                                   f"bytes (allowed: {limit:,})")
    if graphs != 1:
        raise _Refused(f"has {graphs} graphs, not one (an empty or foreign file?)")


def _walk_graph(buf: memoryview, start: int, end: int) -> None:
    nodes = inits = infos = node_bytes = 0
    for number, _, s, e in _fields(buf, start, end):
        if number not in _GRAPH_FIELDS:
            raise _Refused(f"holds graph field {number} (sparse initializers and unknown fields are refused)")
        if number == 1:
            nodes += 1
            node_bytes += e - s
            if nodes > MAX_NODES or node_bytes > MAX_NODE_BYTES:
                raise _Refused(f"has more than {MAX_NODES:,} nodes or {MAX_NODE_BYTES >> 20} MB of them "
                               "(YOLOv8x has about 400)")
        elif number == 5:
            inits += 1
            if inits > MAX_INITIALIZERS:
                raise _Refused(f"has more than {MAX_INITIALIZERS:,} initializers")
        elif number in (11, 12, 13):
            infos += 1
            if infos > MAX_VALUE_INFOS:
                raise _Refused(f"declares more than {MAX_VALUE_INFOS:,} inputs, outputs and value infos")


# ---------------------------------------------------------------------------------------------------------
# 2. The parsed model: opsets, operators, attributes, tensors


def _check_tensor(t: Any, where: str, folder: Path) -> int:
    """Check a TensorProto's declared size against what it holds; return its external bytes."""
    if t.data_type not in _DTYPES:
        raise _Refused(f"{where} has data type {t.data_type} (allowed: numbers and booleans)")
    if len(t.dims) > MAX_RANK or any(d < 0 for d in t.dims):
        raise _Refused(f"{where} has dims {short(list(t.dims))} (at most {MAX_RANK}, none negative)")
    count = math.prod(t.dims)
    size, field = _DTYPES[t.data_type]
    if t.data_location == _EXTERNAL:
        return _check_external(t, where, folder, count * size)
    if t.external_data:
        raise _Refused(f"{where} names external data but is not stored externally")
    held = len(t.raw_data) if t.HasField("raw_data") else len(getattr(t, field))
    want = count * size if t.HasField("raw_data") else count
    if t.data_type in (4, 5, 10, 16) and not t.HasField("raw_data"):
        want = count  # 16-bit values one per int32
    if held != want:
        raise _Refused(f"{where} declares {count:,} values (dims {short(list(t.dims))}) but holds "
                       f"{held:,} {'bytes' if t.HasField('raw_data') else 'values'}")
    return 0


def _check_external(t: Any, where: str, folder: Path, want: int) -> int:
    entries = {}
    for e in t.external_data:
        if e.key not in ("location", "offset", "length", "checksum") or e.key in entries:
            raise _Refused(f"{where}: external data entry {short(e.key)} (allowed once each: location, offset, "
                           "length, checksum)")
        entries[e.key] = e.value
    loc = entries.get("location", "")
    rel = Path(loc)
    inside = folder / rel
    real_folder = os.path.realpath(folder)
    real = os.path.realpath(inside)
    if (not loc or rel.is_absolute() or ".." in rel.parts or "\x00" in loc
            or os.path.commonpath([real_folder, real]) != real_folder or real == real_folder):
        raise _Refused(f"{where} keeps its data in {short(loc)}, outside the model's own folder {folder}: "
                       "external data is read only from files beside the model")
    try:
        with open_regular(real, "external data") as fh:
            file_size = os.fstat(fh.fileno()).st_size
    except FileNotFoundError:
        raise _Refused(f"{where} keeps its data in {short(loc)}, which is not in {folder}") from None
    except UserError as err:
        raise _Refused(f"{where}: {err}") from None
    try:
        offset = int(entries.get("offset", "0"))
        length = int(entries["length"]) if "length" in entries else file_size - offset
    except ValueError:
        raise _Refused(f"{where}: external data offset/length {short(entries)} are not integers") from None
    if offset < 0 or length != want or offset + length > file_size:
        raise _Refused(f"{where} needs {want:,} bytes of external data; {short(loc)} gives {length:,} from "
                       f"offset {offset:,} of its {file_size:,}")
    return want


def _check_graph(model: Any, folder: Path) -> int:
    for op in model.opset_import:
        if op.domain not in ("", "ai.onnx") or op.version not in OPSET_VERSIONS:
            raise _Refused(f"imports operator set {short(op.domain or 'ai.onnx')} version {op.version} "
                           f"(allowed: ai.onnx {OPSET_VERSIONS.start} to {OPSET_VERSIONS.stop - 1})")
    external, names = 0, set()
    for t in model.graph.initializer:
        external += _check_tensor(t, f"initializer {short(t.name)}", folder)
        names.add(t.name)
    for k, node in enumerate(model.graph.node):
        what = f"node {k} ({short(node.op_type)})"
        if node.domain not in ("", "ai.onnx"):
            raise _Refused(f"{what} is from operator domain {short(node.domain)} (allowed: ai.onnx)")
        if node.op_type in NMS_OPS:
            raise _Refused(f"{what}: the graph has NMS inside (exported with nms=True); infer.py runs its own at the "
                           "scoring thresholds: export without it (coco2yolo export)")
        if node.op_type not in OPS:
            raise _Refused(f"{what} is not an operator of an Ultralytics detection export (allowed: "
                           f"{', '.join(sorted(OPS))})")
        for a in node.attribute:
            if a.ref_attr_name or a.type in (5, 10, 11, 12, 13, 14):  # graph(s), sparse tensor(s), type proto(s)
                raise _Refused(f"{what} has attribute {short(a.name)} holding a subgraph or sparse tensor")
            if a.type == 4:  # a tensor (Constant's value)
                external += _check_tensor(a.t, f"{what}'s {short(a.name)}", folder)
            elif a.type == 9 or a.tensors:
                raise _Refused(f"{what} has a list of tensors as attribute {short(a.name)}")
    if external > MAX_EXTERNAL_BYTES:
        raise _Refused(f"has {external:,} bytes of external data (allowed: {MAX_EXTERNAL_BYTES:,})")
    return external


# ---------------------------------------------------------------------------------------------------------
# 3. Metadata: bounded before anything parses it


def _nesting(text: str) -> int:
    """The deepest bracket nesting of a Python literal, brackets inside quoted strings not counted."""
    depth = deepest = 0
    quote, i = "", 0
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = ""
        elif c in "'\"":
            quote = c
        elif c in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif c in ")]}":
            depth -= 1
        i += 1
    return deepest


def _literal(key: str, text: str) -> Any:
    if _nesting(text) > MAX_META_NESTING:
        raise _Refused(f"metadata {key!r} nests brackets more than {MAX_META_NESTING} deep")
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        raise _Refused(f"metadata {key!r} is not a Python literal: {short(text)}") from None


def _small_int(key: str, text: str, lo: int, hi: int) -> int:
    t = text.strip()
    if not (t.isascii() and t.isdigit() and len(t) <= 6) or not lo <= int(t) <= hi:
        raise _Refused(f"metadata {key!r} is {short(text)} (allowed: an integer from {lo} to {hi})")
    return int(t)


def _check_metadata(model: Any, n_classes: int | None) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for p in model.metadata_props:
        if p.key not in META_KEYS:
            raise _Refused(f"has metadata key {short(p.key)}, not one Ultralytics' exporter writes (Ultralytics makes "
                           f"each key an attribute of its backend; allowed: {', '.join(sorted(META_KEYS))})")
        if p.key in meta:
            raise _Refused(f"has metadata key {p.key!r} twice")
        meta[p.key] = p.value
    if "task" in meta and meta["task"] != "detect":
        raise _Refused(f"is a {short(meta['task'])} model; infer.py predicts boxes (task 'detect')")
    out: dict[str, Any] = dict(meta)
    out["stride"] = _small_int("stride", meta.get("stride", "32"), 1, 256)
    out["batch"] = _small_int("batch", meta.get("batch", "1"), 1, MAX_BATCH)
    out["channels"] = _small_int("channels", meta.get("channels", "3"), 3, 3)
    for key in LITERAL_KEYS & meta.keys():
        out[key] = _literal(key, meta[key])
    names = out.get("names")
    if not isinstance(names, dict) or not names or any(type(k) is not int or not isinstance(v, str)
                                                       for k, v in names.items()):
        raise _Refused(f"metadata 'names' is {short(names)} (allowed: {{0: 'name', 1: ...}}, as Ultralytics exports)")
    if sorted(names) != list(range(len(names))):
        raise _Refused(f"metadata 'names' has class indices {short(sorted(names))}, not 0 to {len(names) - 1}")
    if n_classes is not None and len(names) != n_classes:
        raise _Refused(f"predicts {len(names)} classes (metadata 'names') but its sidecar lists {n_classes}")
    imgsz = out.get("imgsz", [640, 640])
    if (not isinstance(imgsz, (list, tuple)) or len(imgsz) not in (1, 2)
            or any(type(v) is not int or not 32 <= v <= 16384 for v in imgsz)):
        raise _Refused(f"metadata 'imgsz' is {short(imgsz)} (allowed: [height, width], each 32 to 16384)")
    args = out.get("args", {})
    if not isinstance(args, dict) or any(not isinstance(k, str) for k in args):
        raise _Refused(f"metadata 'args' is {short(args)} (allowed: a dict of export settings)")
    if args.get("nms"):
        raise _Refused("was exported with NMS inside (args nms=True); infer.py runs its own at the scoring "
                       "thresholds: export without it (coco2yolo export)")
    if out.get("end2end") not in (None, False, True):
        raise _Refused(f"metadata 'end2end' is {short(out.get('end2end'))} (allowed: True or False)")
    return out


# ---------------------------------------------------------------------------------------------------------
# 4. Shapes for the input fed, with the shape arithmetic of dynamic exports folded


def _np_dtype(elem: int) -> Any:
    from onnx import helper

    return helper.tensor_dtype_to_np_dtype(elem)


def _attr(node: Any, name: str, default: Any = None) -> Any:
    from onnx import helper

    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _evaluate(node: Any, values: dict[str, Any], shapes: dict[str, tuple]) -> Any | None:
    """The value of a node's one output where it is small shape arithmetic on known small values, else None."""
    import numpy as np

    op, ins = node.op_type, list(node.input)
    if op == "Shape":
        shape = shapes.get(ins[0])
        if shape is None:
            return None
        start, end = _attr(node, "start", 0), _attr(node, "end", None)
        return np.array(shape, np.int64)[start:end]
    if any(i and i not in values for i in ins) or len(node.output) != 1:
        return None
    x = [values.get(i) if i else None for i in ins]
    if op == "Constant":
        from onnx import numpy_helper

        t = _attr(node, "value")
        if t is None or t.data_location == _EXTERNAL or math.prod(t.dims) > MAX_FOLDED:
            return None
        return numpy_helper.to_array(t)
    if op == "Identity":
        return x[0]
    if op == "Cast":
        return x[0].astype(_np_dtype(_attr(node, "to")))
    if op == "Gather":
        idx = x[1]
        axis = _attr(node, "axis", 0)
        if x[0].ndim == 0 or not -x[0].ndim <= axis < x[0].ndim:
            return None
        n = x[0].shape[axis]
        if idx.size and (idx.min() < -n or idx.max() >= n):
            return None
        return np.take(x[0], idx, axis=axis)
    if op == "Concat":
        try:
            return np.concatenate(x, axis=_attr(node, "axis", 0))
        except ValueError:
            return None
    if op in ("Unsqueeze", "Squeeze"):
        axes = x[1] if len(x) > 1 and x[1] is not None else _attr(node, "axes")
        if axes is None:
            return np.squeeze(x[0]) if op == "Squeeze" else None
        try:
            axes = tuple(int(a) for a in np.ravel(axes))
            return np.expand_dims(x[0], axes) if op == "Unsqueeze" else np.squeeze(x[0], axes)
        except (ValueError, np.exceptions.AxisError):
            return None
    if op in ("Add", "Sub", "Mul", "Div"):
        a, b = x
        if math.prod(np.broadcast_shapes(a.shape, b.shape)) > MAX_FOLDED:
            return None
        with np.errstate(all="ignore"):
            if op == "Div" and np.issubdtype(a.dtype, np.integer):
                if np.any(b == 0):
                    return None
                return (np.trunc(a / b)).astype(a.dtype)
            return {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}[op](a, b).astype(a.dtype)
    if op == "Range":
        start, limit, delta = (v.item() if v.size == 1 else None for v in x)
        if None in (start, limit, delta) or delta == 0:
            return None
        count = max(math.ceil((limit - start) / delta), 0)
        return np.arange(start, limit, delta, dtype=x[0].dtype) if count <= MAX_FOLDED else None
    if op == "ConstantOfShape":
        dims = [int(d) for d in np.ravel(x[0])]
        if any(d < 0 for d in dims) or math.prod(dims) > MAX_FOLDED:
            return None
        from onnx import numpy_helper

        t = _attr(node, "value")
        fill = numpy_helper.to_array(t).ravel() if t is not None else np.zeros(1, np.float32)
        return np.full(dims, fill[0] if fill.size else 0, fill.dtype)
    if op == "Slice" and len(x) >= 3:
        data, starts, ends = x[0], x[1], x[2]
        axes = x[3] if len(x) > 3 and x[3] is not None else np.arange(len(starts))
        steps = x[4] if len(x) > 4 and x[4] is not None else np.ones(len(starts), np.int64)
        sl = [slice(None)] * data.ndim
        try:
            for s, e, a, st in zip(starts.tolist(), ends.tolist(), axes.tolist(), steps.tolist()):
                if st == 0:
                    return None
                sl[int(a)] = slice(int(s), int(e), int(st))
            return data[tuple(sl)]
        except (IndexError, OverflowError):
            return None
    return None


def _skeleton(model: Any, values: dict[str, Any], fed: Any, input_shape: tuple[int, ...]) -> Any:
    """A copy of ``model`` without its weights (large initializers become typed inputs), its input pinned to
    ``input_shape``, nodes whose outputs are known values replaced by those values."""
    import onnx
    from onnx import helper, numpy_helper

    g = model.graph
    inputs = [helper.make_tensor_value_info(fed.name, fed.type.tensor_type.elem_type, list(input_shape))]
    inputs += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in g.initializer
               if t.name not in values]
    inits = [numpy_helper.from_array(v, name) for name, v in values.items()]
    nodes = [n for n in g.node if not all(o in values for o in n.output)]
    outputs = [helper.make_tensor_value_info(o.name, o.type.tensor_type.elem_type, None) for o in g.output]
    graph = helper.make_graph(nodes, "skeleton", inputs, outputs, inits)
    m = helper.make_model(graph, opset_imports=list(model.opset_import))
    m.ir_version = max(model.ir_version, 4)
    return onnx.ModelProto.FromString(m.SerializeToString())


def _infer(skel: Any) -> dict[str, tuple[tuple[int, ...] | None, int]]:
    """Each value's (shape or None where a dimension is unknown, element type), by ONNX's shape inference."""
    from onnx import shape_inference

    try:
        inferred = shape_inference.infer_shapes(skel, check_type=True, strict_mode=True, data_prop=False)
    except Exception as err:  # noqa: BLE001 - onnx raises InferenceError, ValidationError, RuntimeError ...
        first = " ".join(str(err).split())
        raise _Refused(f"has a graph whose shapes do not fit together: {first[:240]}") from None
    out = {}
    for v in [*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output]:
        tt = v.type.tensor_type
        if not tt.HasField("shape"):
            out[v.name] = (None, tt.elem_type)
            continue
        dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim)
        out[v.name] = (None if any(d < 0 for d in dims) else dims, tt.elem_type)
    return out


def _small_initializers(model: Any) -> dict[str, Any]:
    from onnx import numpy_helper

    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer
            if t.data_location != _EXTERNAL and math.prod(t.dims) <= MAX_FOLDED}


def _shapes(model: Any, fed: Any, input_shape: tuple[int, ...]) -> tuple[dict, dict]:
    """Every value's shape and type for ``input_shape``, folding shape arithmetic until nothing changes."""
    values = _small_initializers(model)
    for _ in range(16):
        info = _infer(_skeleton(model, values, fed, input_shape))
        shapes = {k: s for k, (s, _) in info.items() if s is not None}
        for k, v in values.items():
            shapes[k] = tuple(v.shape)
        changed = False
        for node in model.graph.node:
            if all(o in values for o in node.output):
                continue
            try:
                v = _evaluate(node, values, shapes)
            except (ValueError, TypeError, OverflowError, IndexError, MemoryError):
                v = None
            if v is not None and v.size <= MAX_FOLDED:
                values[node.output[0]] = v
                changed = True
        if not changed:
            return info, values
    return info, values


def _peak(model: Any, sizes: dict[str, int], outputs: set[str], fed: str) -> int:
    """The most bytes live at once when the nodes run one after another in the file's order, the input live
    from the start, each value freed after its last use (ONNX Runtime's planner reuses memory at least this
    well)."""
    last: dict[str, int] = {}
    for k, node in enumerate(model.graph.node):
        for i in node.input:
            last[i] = k
    alive: dict[str, int] = {fed: sizes[fed]}
    live = peak = sizes[fed]
    for k, node in enumerate(model.graph.node):
        for o in node.output:
            if o in sizes and o not in alive:
                alive[o] = sizes[o]
                live += sizes[o]
        peak = max(peak, live)
        for i in node.input:
            if last.get(i) == k and i in alive and i not in outputs:
                live -= alive.pop(i)
    return peak


def check_onnx(path: str | os.PathLike, n_classes: int | None = None, imgsz: int | None = None,
               batch: int = 1) -> OnnxCheck:
    """Check an ONNX file as data (module docstring); ``imgsz``/``batch``: the input it will be fed where the
    file leaves them open. One-line :class:`UserError` on anything refused."""
    path = Path(path)
    try:
        return _check(path, n_classes, imgsz, batch)
    except _Refused as err:
        raise UserError(f"{path} {err}") from None


def _check(path: Path, n_classes: int | None, imgsz: int | None, batch: int) -> OnnxCheck:
    try:
        with open_regular(path, "weights") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size > MAX_FILE_BYTES:
                raise _Refused(f"is {size:,} bytes; one ONNX file holds at most {MAX_FILE_BYTES:,} (larger models keep "
                               "their weights as external data beside it)")
            data = fh.read(size + 1)
    except FileNotFoundError:
        raise _Refused("was not found") from None
    _walk(memoryview(data))
    import onnx
    from google.protobuf.message import DecodeError

    try:
        model = onnx.ModelProto.FromString(data)
    except (DecodeError, RuntimeError, ValueError) as err:
        raise _Refused(f"is not an ONNX model ({' '.join(str(err).split())[:120]})") from None
    del data
    if model.functions or model.training_info or model.graph.sparse_initializer:
        raise _Refused("holds functions, training info or sparse initializers, which an inference export does not")
    meta = _check_metadata(model, n_classes)
    _check_graph(model, path.parent)

    # drop the weights' bytes now: shapes need only their dims
    for t in model.graph.initializer:
        if math.prod(t.dims) > MAX_FOLDED:
            t.ClearField("raw_data")
            for f in ("float_data", "int32_data", "int64_data", "double_data", "uint64_data"):
                t.ClearField(f)
    init_names = {t.name for t in model.graph.initializer}
    fed = [i for i in model.graph.input if i.name not in init_names]
    if len(fed) != 1:
        raise _Refused(f"takes {len(fed)} inputs (an Ultralytics export takes one image batch)")
    tt = fed[0].type.tensor_type
    if tt.elem_type not in (1, 10) or len(tt.shape.dim) != 4:
        raise _Refused(f"takes input {short(fed[0].name)} of type {tt.elem_type} and rank {len(tt.shape.dim)} "
                       "(allowed: float or float16 images, batch x 3 x height x width)")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
    dynamic = any(d is None for d in dims)
    size_fed = imgsz or (meta["imgsz"][0] if meta.get("imgsz") else 640)
    shape = (dims[0] or batch, dims[1] or 3, dims[2] or size_fed, dims[3] or size_fed)
    if shape[1] != 3 or not 1 <= shape[0] <= MAX_BATCH or not 32 <= min(shape[2:]) <= max(shape[2:]) <= 16384:
        raise _Refused(f"takes input of shape {short(dims)} (allowed: batch 1 to {MAX_BATCH} x 3 x 32..16384 x "
                       "32..16384)")
    if dims[0] is not None and "batch" in meta and meta["batch"] != dims[0]:
        raise _Refused(f"takes batches of {dims[0]} but its metadata says {meta['batch']} (Ultralytics pads every "
                       "batch to the metadata's)")
    if imgsz is not None and dims[2] is not None and (dims[2], dims[3]) != (imgsz, imgsz):
        raise _Refused(f"takes {dims[2]}x{dims[3]} images (exported at that size), not {imgsz}x{imgsz}: pass "
                       f"--imgsz {dims[2]}, or export again with --imgsz {imgsz}")

    info, values = _shapes(model, fed[0], shape)
    sizes: dict[str, int] = {fed[0].name: math.prod(shape) * (4 if tt.elem_type == 1 else 2)}
    for k, node in enumerate(model.graph.node):
        for o in node.output:
            if not o:
                continue
            if o in values:
                sizes[o] = values[o].nbytes
                continue
            s, elem = info.get(o, (None, 0))
            if s is None:
                raise _Refused(f"node {k} ({node.op_type}) makes {short(o)}, whose size depends on the data (refused: "
                               "in an Ultralytics export every size follows from the input's)")
            item = _np_dtype(elem).itemsize if elem else 8
            sizes[o] = math.prod(s) * item
    pixels = shape[0] * shape[2] * shape[3]
    largest = max(sizes.values(), default=0)
    tensor_bound = FLOOR_BYTES + TENSOR_BYTES_PER_PIXEL * pixels
    if largest > tensor_bound:
        name = max(sizes, key=sizes.get)
        raise _Refused(f"makes a tensor {short(name)} of {largest:,} bytes for a {shape[0]}x3x{shape[2]}x{shape[3]} "
                       f"input (allowed: {tensor_bound:,}, {TENSOR_BYTES_PER_PIXEL} bytes a pixel)")
    peak = _peak(model, sizes, {o.name for o in model.graph.output}, fed[0].name)
    peak_bound = FLOOR_BYTES + PEAK_BYTES_PER_PIXEL * pixels
    if peak > peak_bound:
        raise _Refused(f"needs {peak:,} bytes of live tensors for a {shape[0]}x3x{shape[2]}x{shape[3]} input (allowed: "
                       f"{peak_bound:,}, {PEAK_BYTES_PER_PIXEL} bytes a pixel)")
    outs = [info.get(o.name, (None, 0))[0] for o in model.graph.output]
    if n_classes is not None and not meta.get("end2end") and outs and outs[0] is not None and len(outs[0]) == 3 \
            and outs[0][1] != 4 + n_classes:
        raise _Refused(f"outputs {outs[0]}: {outs[0][1] - 4} classes, but its sidecar lists {n_classes}")
    return OnnxCheck(meta["names"], shape, dynamic, largest, peak, len(model.graph.node))
