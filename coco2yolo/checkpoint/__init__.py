"""Loading checkpoints without running, downloading or allocating anything a file chooses.

A ``.pt`` file is a pickle: loading it the usual way constructs whatever objects it names with the
arguments it gives (Ultralytics' own "safe" loader admits every class of ``ultralytics.nn.modules``,
one of which downloads weights, and ``nn.Linear(25000, 25000)`` turns 1.4 KB into 3 GB). Here:

1. :func:`read_checkpoint` reads the file as data only — tensors, numbers, strings, plain containers
   (:mod:`coco2yolo.checkpoint.reader`, :mod:`coco2yolo.checkpoint.content`); a file naming anything
   else is refused with one line naming it;
2. the model's yaml is checked (known detection layers, bounded numbers) and the model is planned on
   the ``meta`` device, its memory capped by the file's size (:mod:`coco2yolo.checkpoint.arch`);
3. the model is built from that yaml here, and every tensor is copied in with its name and shape
   checked (:func:`full_model`: all of them; :func:`transfer`: those that match, counted);
4. Ultralytics gets a checkpoint this process wrote (:func:`yolo_from_model`).

``--trust-weights`` (``trust=True``) skips all of this and uses Ultralytics' full pickle loader, for
files the user vouches for. Resuming a run hands Ultralytics its own ``last.pt`` after
:func:`check_resumable` found nothing a genuine checkpoint never holds.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from coco2yolo import ultra
from coco2yolo.checkpoint.content import Checkpoint, read_checkpoint, refused_message
from coco2yolo.checkpoint.reader import Malformed, RefusedGlobal
from coco2yolo.errors import UserError

__all__ = ["Checkpoint", "read_checkpoint", "refused_message", "RefusedGlobal", "full_model", "transfer",
           "yolo_from_model", "load_yolo", "check_resumable", "ultralytics_yolo", "save_ultralytics_checkpoint", "plan_yaml"]


def plan_yaml(cfg: Any, nc: int | None, file_bytes: int, source: str) -> dict[str, tuple[int, ...]]:
    """:func:`coco2yolo.checkpoint.arch.plan` with a one-line UserError naming ``source``."""
    from coco2yolo.checkpoint import arch

    try:
        return arch.plan(cfg, nc, file_bytes)
    except Malformed as err:
        raise UserError(f"{source}: {err}") from None


def full_model(ckpt: Checkpoint, nc: int | None = None) -> Any:
    """The detection model a checkpoint holds, built from its checked yaml, every tensor copied in.

    ``nc``: refuse unless the model has this many classes. Every model tensor must be in the file with
    the same shape and every file tensor in the model (one line naming the first that is not).
    """
    from coco2yolo.checkpoint import arch

    path = ckpt.path
    if ckpt.kind == "yolov5":
        raise UserError(f"{path} is a checkpoint of the old yolov5 repository, whose head Ultralytics cannot run: "
                        "train from it with train_yolo.py --weights (its backbone and neck are imported)")
    if not ckpt.model_class.endswith("DetectionModel"):
        raise UserError(f"{path} holds a {ckpt.model_class.rsplit('.', 1)[-1]}; this project trains and predicts "
                        "detection models (DetectionModel)")
    if ckpt.yaml is None:
        raise UserError(f"{path}: the checkpoint has no model yaml to build the model from")
    shapes = plan_yaml(ckpt.yaml, None, ckpt.file_bytes, path)
    have = {k: tuple(v.shape) for k, v in ckpt.tensors.items()}
    missing = [k for k in shapes if k not in have]
    extra = [k for k in have if k not in shapes]
    wrong = [f"{k} {list(have[k])} (model {list(shapes[k])})" for k in shapes if k in have and have[k] != shapes[k]]
    if missing or extra or wrong:
        first = (wrong + [f"{k} missing from the file" for k in missing] + [f"{k} not in the model" for k in extra])[0]
        raise UserError(f"{path}: its tensors do not fit the model its yaml describes ({len(wrong)} of another shape, "
                        f"{len(missing)} missing, {len(extra)} extra; first: {first})")
    model = arch.build(ckpt.yaml)
    import torch

    with torch.no_grad():
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ckpt.tensors.items()},
                              strict=True)
    n = int(ckpt.yaml["nc"])
    if nc is not None and n != nc:
        raise UserError(f"{path} predicts {n} classes, expected {nc}")
    if ckpt.names is not None and len(ckpt.names) == n:
        model.names = dict(enumerate(ckpt.names))
    return model


def transfer(ckpt: Checkpoint, model: Any) -> tuple[int, int]:
    """Copy every tensor of ``ckpt`` whose name and shape match one of ``model``'s; return (matched, model's
    tensors). Nothing is built from the file."""
    import torch

    target = model.state_dict()
    matched = {k: v for k, v in ckpt.tensors.items() if k in target and tuple(v.shape) == tuple(target[k].shape)}
    with torch.no_grad():
        for k, v in matched.items():
            target[k].copy_(v.to(target[k].dtype))
    return len(matched), len(target)


def save_ultralytics_checkpoint(model: Any, path: str | os.PathLike) -> Path:
    """Save ``model`` in the checkpoint format Ultralytics' ``YOLO(path)`` loads (atomically)."""
    import torch

    from coco2yolo.fileio import atomic_path

    with atomic_path(path) as tmp:
        torch.save({"model": model, "train_args": {}, "date": None}, tmp)
    return Path(path)


def yolo_from_model(model: Any, path: str | os.PathLike | None = None) -> Any:
    """An Ultralytics ``YOLO`` object for ``model``: saved to ``path`` (a file this process wrote), then loaded
    by Ultralytics' own (safe) loader; ``path`` None: a temporary file, removed once loaded."""
    ultra.trust_checkpoints(False)
    from ultralytics import YOLO

    if path is not None:
        return YOLO(str(save_ultralytics_checkpoint(model, path)))
    folder = tempfile.mkdtemp(prefix="coco2yolo-model-")
    try:
        return YOLO(str(save_ultralytics_checkpoint(model, Path(folder) / "model.pt")))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def ultralytics_yolo(path: str | os.PathLike, trust: bool = False) -> Any:
    """``ultralytics.YOLO(path)``: Ultralytics' own loader, its safe one unless ``trust``. Only for files
    this process wrote or checked (:func:`check_resumable`), or that the user trusts."""
    ultra.trust_checkpoints(trust)
    from ultralytics import YOLO

    try:
        return YOLO(str(path))
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001 - a damaged file is a user error, reported in one line
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"cannot load weights {path}: {first.replace('ERROR ❌️ ', '')}") from None


def load_yolo(path: str | os.PathLike, trust: bool = False) -> tuple[Any, Checkpoint | None]:
    """Ultralytics' ``YOLO`` for the detection model in ``path``, and the checkpoint as data.

    By default the file is read as data and the model built here (see the module docstring);
    ``trust``: Ultralytics' full pickle loader (it can run code), and no :class:`Checkpoint`.
    """
    if trust:
        return ultralytics_yolo(path, trust=True), None
    ckpt = read_checkpoint(path)
    return yolo_from_model(full_model(ckpt)), ckpt


def check_resumable(path: str | os.PathLike) -> Checkpoint:
    """Check an interrupted run's ``last.pt`` before Ultralytics loads it to resume: readable as data with
    nothing a genuine checkpoint never holds (a constructor called with the file's arguments, hooks), and a
    model yaml that passes the same checks and fits the file's tensors."""
    ckpt = read_checkpoint(path)
    full_model(ckpt)  # raises unless the yaml is sound and every tensor fits it
    return ckpt
