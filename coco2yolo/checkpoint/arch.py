"""Build a detection model from a model yaml, after checking that the yaml asks for nothing harmful.

Ultralytics' ``parse_model`` turns each yaml row into a constructor call: a module name it looks up
(``nn.Linear``, ``TorchVision`` — which downloads weights —, any global of ``ultralytics.nn.tasks``),
called with the row's arguments. A yaml from a checkpoint or a user's file is checked here first:

- only the detection layers Ultralytics ships (:data:`LAYERS`) and a few ``nn`` layers, at most
  :data:`MAX_LAYERS` rows and :data:`MAX_MODULES` modules after repeats;
- numbers in bounds (classes, channels, repeats, scales, upsampling factors), strings from a short list;
- the activation from a short list (Ultralytics would ``eval`` it unless restricted);
- then the model is built on the ``meta`` device (no memory), its tensors are counted and its
  activations on a 256 px input measured, and both must fit :func:`memory_cap`.

:func:`build` makes the real model only after that; :func:`sanitized` keeps only the keys
``parse_model`` reads.
"""

from __future__ import annotations

import contextlib
import math
import re
from typing import Any

import torch

from coco2yolo.checkpoint.reader import Malformed

LAYERS = frozenset({
    "Conv", "ConvTranspose", "GhostConv", "DWConv", "DWConvTranspose2d", "Focus", "Concat", "Bottleneck",
    "BottleneckCSP", "GhostBottleneck", "C1", "C2", "C2f", "C3", "C3x", "C3TR", "C3Ghost", "C3k2", "C2fCIB",
    "C2PSA", "C2fPSA", "PSA", "A2C2f", "SPP", "SPPF", "SPPELAN", "RepC3", "RepNCSPELAN4", "ELAN1", "ADown",
    "AConv", "SCDown", "CBLinear", "CBFuse", "Detect", "v10Detect",
    "nn.Upsample", "nn.Identity", "nn.MaxPool2d", "nn.ZeroPad2d", "nn.ConvTranspose2d", "nn.BatchNorm2d",
})
YAML_KEYS = ("nc", "scales", "scale", "depth_multiple", "width_multiple", "activation", "backbone", "head",
             "channels", "ch", "end2end", "reg_max", "yaml_file", "inplace")
STRINGS = frozenset({"nearest", "bilinear", "bicubic", "nc", "None", "True", "False"})
ACTIVATION = re.compile(r"(torch\.)?nn\.(SiLU|ReLU|ReLU6|LeakyReLU|Hardswish|Hardsigmoid|GELU|Mish|Identity|"
                        r"Tanh|Sigmoid|ELU)\((\d+(\.\d+)?|inplace=True)?\)")
MAX_LAYERS = 256
MAX_MODULES = 4096
MAX_NUMBER = 16384
MAX_CLASSES = 10000
MAX_UPSAMPLE = 8


def _number(v: Any, lo: float, hi: float, what: str, integer: bool = False) -> None:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and lo <= v <= hi  # no float() of 10**400
    if not ok or (integer and not isinstance(v, int)):
        raise Malformed(f"{what} must be {'an integer' if integer else 'a number'} in [{lo:g}, {hi:g}], got {v!r}"[:160])


def _arg(a: Any, where: str, depth: int = 0) -> None:
    if a is None or isinstance(a, bool):
        return
    if isinstance(a, (int, float)):
        _number(a, -MAX_NUMBER, MAX_NUMBER, f"{where}: an argument")
    elif isinstance(a, str):
        if a not in STRINGS:
            raise Malformed(f"{where}: argument {a[:40]!r} is not one of {', '.join(sorted(STRINGS))}")
    elif isinstance(a, list) and depth < 2 and len(a) <= 64:
        for v in a:
            _arg(v, where, depth + 1)
    else:
        raise Malformed(f"{where}: arguments must be numbers, short lists or a few words")


def check_yaml(d: Any) -> dict[str, Any]:
    """The yaml's keys that ``parse_model`` reads, checked (raises Malformed naming the first problem)."""
    if not isinstance(d, dict):
        raise Malformed("the model yaml is not a mapping")
    out = {k: d[k] for k in YAML_KEYS if k in d}
    _number(out.get("nc"), 1, MAX_CLASSES, "nc", integer=True)
    if "reg_max" in out:
        _number(out["reg_max"], 1, 64, "reg_max", integer=True)
    for key in ("channels", "ch"):
        if key in out:
            _number(out[key], 1, 16, key, integer=True)
    for key in ("depth_multiple", "width_multiple"):
        if key in out:
            _number(out[key], 0.01, 4, key)
    if out.get("end2end") not in (None, True, False) or out.get("inplace", True) not in (True, False):
        raise Malformed("end2end and inplace must be true or false")
    act = out.get("activation")
    if act is not None and (not isinstance(act, str) or not ACTIVATION.fullmatch(act.strip())):
        raise Malformed(f"activation {str(act)[:60]!r} is not one of nn.SiLU(), nn.ReLU(), nn.LeakyReLU(0.1), ...")
    scales = out.get("scales")
    if scales is not None:
        if not isinstance(scales, dict) or not scales or len(scales) > 16:
            raise Malformed("scales must be a mapping of a few scale letters to [depth, width, max_channels]")
        for k, v in scales.items():
            if not isinstance(k, str) or not isinstance(v, list) or len(v) != 3:
                raise Malformed("each scale must be [depth, width, max_channels]")
            _number(v[0], 0.01, 4, f"scale {k} depth")
            _number(v[1], 0.01, 4, f"scale {k} width")
            _number(v[2], 1, MAX_NUMBER, f"scale {k} max_channels")
        if out.get("scale") is not None and out["scale"] not in scales:
            raise Malformed(f"scale {str(out['scale'])[:20]!r} is not among the yaml's scales")
    rows = []
    for part in ("backbone", "head"):
        if not isinstance(out.get(part), list):
            raise Malformed(f"{part} must be a list of [from, repeats, module, args] rows")
        rows += out[part]
    if not rows or len(rows) > MAX_LAYERS:
        raise Malformed(f"the model must have 1 to {MAX_LAYERS} layers, it has {len(rows)}")
    modules = 0
    for i, row in enumerate(rows):
        where = f"layer {i}"
        if not isinstance(row, list) or len(row) != 4:
            raise Malformed(f"{where} is not a [from, repeats, module, args] row")
        f, n, m, args = row
        froms = f if isinstance(f, list) else [f]
        if not froms or len(froms) > 16:
            raise Malformed(f"{where}: 'from' must be a layer index or a short list of them")
        for x in froms:
            _number(x, -max(i, 1), max(i - 1, 0), f"{where}: from", integer=True)
        _number(n, 1, 64, f"{where}: repeats", integer=True)
        if m not in LAYERS:
            raise Malformed(f"{where}: module {str(m)[:40]!r} is not an Ultralytics detection layer "
                            f"({', '.join(sorted(x for x in LAYERS if '.' not in x)[:8])}, ...)")
        if not isinstance(args, list) or len(args) > 16:
            raise Malformed(f"{where}: args must be a short list")
        _arg(args, where)
        if m == "nn.Upsample":
            factor = args[1] if len(args) > 1 else None
            if factor is not None:
                _number(factor, 1, MAX_UPSAMPLE, f"{where}: upsampling factor")
        modules += n
    if modules > MAX_MODULES:
        raise Malformed(f"the model repeats its layers into more than {MAX_MODULES} modules")
    return out


def memory_cap(file_bytes: int) -> int:
    """Bytes a model built from a file of ``file_bytes`` may take: its tensors in float32 (at most 2x an
    fp16 file) and its activations on a 256 px input, together at most 16x the file plus 256 MB."""
    return 16 * file_bytes + (256 << 20)


def _meta_layers(cfg: dict[str, Any], nc: int | None) -> tuple[dict[str, tuple[int, ...]], int]:
    """The state-dict shapes of the model ``cfg`` describes, and the float32 bytes of every layer's output on a
    256 px input: Ultralytics' ``parse_model`` on the meta device (no memory), walked as its forward does."""
    import copy

    from coco2yolo import ultra

    ultra.setup()
    from ultralytics.nn.modules import Detect
    from ultralytics.nn.tasks import parse_model

    d = copy.deepcopy(cfg)
    if nc is not None:
        d["nc"] = nc
    ch = int(d.get("channels", d.get("ch", 3)))
    with torch.device("meta"):
        seq, save = parse_model(d, ch=ch, verbose=False)
    shapes = {f"model.{k}": tuple(v.shape) for k, v in seq.state_dict().items()}
    total, y = 0, []
    x: Any = torch.zeros(1, ch, 256, 256, device="meta")
    with torch.no_grad():
        seq.eval()
        for m in seq:
            if isinstance(m, Detect):
                m.training = True  # the training forward: feature maps only (what the stride probe runs)
            if m.f != -1:
                x = y[m.f] if isinstance(m.f, int) else [x if j == -1 else y[j] for j in m.f]
            x = m(x)
            outs = x.values() if isinstance(x, dict) else x if isinstance(x, (list, tuple)) else [x]
            for t in outs:
                for u in (t if isinstance(t, (list, tuple)) else [t]):
                    if isinstance(u, torch.Tensor):
                        total += u.numel() * 4
            y.append(x if m.i in save else None)
    return shapes, total


def _detection_model(cfg: dict[str, Any] | str, nc: int | None) -> torch.nn.Module:
    """``DetectionModel`` of a checked yaml, or of a yaml Ultralytics ships (by name)."""
    from coco2yolo import ultra

    ultra.setup()
    from ultralytics.nn.tasks import DetectionModel

    ch = int(cfg.get("channels", cfg.get("ch", 3))) if isinstance(cfg, dict) else 3
    return DetectionModel(cfg, ch=ch, nc=nc, verbose=False)


YAML_CAP = 8 << 30  # a model built from a yaml alone (no file to compare with): yolov8x at 256 px needs ~0.4 GB


def plan(cfg: dict[str, Any], nc: int | None, file_bytes: int | None) -> dict[str, tuple[int, ...]]:
    """Check ``cfg`` and build it on the meta device; return its state dict's shapes.

    Raises Malformed when the yaml is refused, does not build, or needs more memory than
    :func:`memory_cap` allows for a file of ``file_bytes`` (None: a yaml alone, :data:`YAML_CAP`).
    """
    cfg = check_yaml(cfg)
    if nc is not None:
        _number(nc, 1, MAX_CLASSES, "the number of classes", integer=True)
    try:
        with _quiet():
            shapes, acts = _meta_layers(cfg, nc)
    except Malformed:
        raise
    except Exception as err:  # noqa: BLE001 - a yaml that does not build is reported in one line
        raise Malformed(f"the model yaml does not build ({type(err).__name__}: {' '.join(str(err).split())[:120]})") \
            from None
    need = sum(math.prod(s) for s in shapes.values()) * 4 + acts
    cap = YAML_CAP if file_bytes is None else memory_cap(file_bytes)
    if need > cap:
        raise Malformed(f"the model would take {need / 2**20:.0f} MB, more than {cap / 2**20:.0f} MB"
                        + ("" if file_bytes is None else f" for a {file_bytes / 2**20:.1f} MB file"))
    return shapes


def build(cfg: dict[str, Any], nc: int | None = None) -> torch.nn.Module:
    """The real model (on the CPU, randomly initialised) of a yaml :func:`plan` accepted."""
    with _quiet():
        return _detection_model(dict(check_yaml(cfg)), nc)


@contextlib.contextmanager
def _quiet():
    """Ultralytics logs the nc override and scale guesses at INFO/WARNING level; keep the command's output clean."""
    import logging

    logger = logging.getLogger("ultralytics")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
