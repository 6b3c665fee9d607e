"""What a checkpoint holds, as plain data: the model's tensors by name, its yaml, its class names.

:func:`read_checkpoint` takes the records :mod:`coco2yolo.checkpoint.reader` made and walks the model
record (``ema``, else ``model``) the way ``nn.Module.state_dict`` walks a module: ``_parameters`` and
persistent ``_buffers`` under ``_modules``' names. The walk visits each record once and stops after
:data:`MAX_TENSORS` tensors, so a file cannot make it loop or blow up (a module shared a million times,
a cycle). Only plain values come out: bound methods, optimizer objects and any other record are left
behind. A file holding what a genuine checkpoint never holds is refused in one line: a class the file
asks to construct with arguments (anywhere in it), a non-empty hook table on the model.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from typing import Any

import torch

from coco2yolo.checkpoint.reader import Malformed, Obj, Raw, RefusedGlobal, TensorRef, read_raw
from coco2yolo.errors import UserError

MAX_TENSORS = 100_000
MAX_PLAIN = 1_000_000       # values in a plain (yaml, names, train_args) structure
_NAME = re.compile(r"[A-Za-z0-9_]{1,128}")
_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks", "_state_dict_hooks",
          "_state_dict_pre_hooks", "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks",
          "_forward_hooks_with_kwargs", "_forward_pre_hooks_with_kwargs", "_forward_hooks_always_called")


@dataclass
class Checkpoint:
    """A checkpoint's content as data."""

    path: str
    kind: str                                   # "ultralytics" or "yolov5" (the old yolov5 repository)
    model_class: str                            # e.g. ultralytics.nn.tasks.DetectionModel
    tensors: dict[str, torch.Tensor]            # state-dict names -> tensors (views of the file's storages)
    yaml: dict[str, Any] | None
    names: list[str] | None
    train_args: dict[str, Any] = field(default_factory=dict)
    epoch: int | None = None
    file_bytes: int = 0
    globals: set[str] = field(default_factory=set)

    @property
    def tensor_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.tensors.values())


def plain(value: Any, what: str, budget: list[int] | None = None, depth: int = 0) -> Any:
    """``value`` if it is plain data (None, bool, int, finite float, str, bytes, list/tuple, dict with str
    or int keys), at most 32 levels deep and :data:`MAX_PLAIN` values in all; raises Malformed otherwise."""
    budget = budget if budget is not None else [MAX_PLAIN]
    budget[0] -= 1
    if budget[0] < 0 or depth > 32:
        raise Malformed(f"{what} is too large or nests too deeply")
    if value is None or isinstance(value, (bool, int, str, bytes)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (list, tuple)):
        return [plain(v, what, budget, depth + 1) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, (str, int)) and not isinstance(k, bool) for k in value):
            raise Malformed(f"{what} has a key that is not a name or a number")
        return {k: plain(v, what, budget, depth + 1) for k, v in value.items()}
    raise Malformed(f"{what} holds a {type(value).__name__}, not plain data")


def _plain_or_none(value: Any, what: str) -> Any:
    try:
        return plain(value, what)
    except Malformed:
        return None


def _walk(raw: Raw, root: Obj, oddities: list[str]) -> dict[str, torch.Tensor]:
    """``state_dict()`` of a module record, iteratively, each record once."""
    out: dict[str, torch.Tensor] = {}
    stack: list[tuple[str, Any]] = [("", root)]
    visited: set[int] = set()
    while stack:
        prefix, mod = stack.pop()
        if not isinstance(mod, Obj):
            if mod is not None:
                raise Malformed(f"module {prefix.rstrip('.') or 'model'} is a {type(mod).__name__}, not a module")
            continue
        if id(mod) in visited:
            continue  # a shared module: its tensors are already named once
        visited.add(id(mod))
        state = mod.state
        for hook in _HOOKS:
            if state.get(hook):
                oddities.append(f"a hook ({hook}) on {prefix.rstrip('.') or 'the model'}")
        skip = state.get("_non_persistent_buffers_set") or set()
        for table in ("_parameters", "_buffers"):
            entries = state.get(table) or {}
            if not isinstance(entries, dict):
                raise Malformed(f"{prefix or 'model'}{table} is not a mapping")
            for name, t in entries.items():
                if t is None or (table == "_buffers" and name in skip):
                    continue
                if not isinstance(name, str) or not _NAME.fullmatch(name):
                    raise Malformed(f"a tensor name that is not a plain name: {str(name)[:40]!r}")
                if not isinstance(t, TensorRef):
                    raise Malformed(f"{prefix}{name} is a {type(t).__name__}, not a tensor")
                out[prefix + name] = raw.tensor(t)
                if len(out) > MAX_TENSORS:
                    raise Malformed(f"more than {MAX_TENSORS} tensors")
        children = state.get("_modules") or {}
        if not isinstance(children, dict):
            raise Malformed(f"{prefix or 'model'}_modules is not a mapping")
        for name, child in reversed(list(children.items())):
            if not isinstance(name, str) or not _NAME.fullmatch(name):
                raise Malformed(f"a module name that is not a plain name: {str(name)[:40]!r}")
            stack.append((f"{prefix}{name}.", child))
    return out


MAX_OBJECTS = 10_000_000


def _constructed(root: Any) -> list[str]:
    """Records anywhere in the pickled object whose class the file asks to construct with arguments."""
    found: list[str] = []
    stack, visited, budget = [root], set(), MAX_OBJECTS
    while stack:
        obj = stack.pop()
        if id(obj) in visited:
            continue
        visited.add(id(obj))
        budget -= 1
        if budget < 0:
            raise Malformed(f"more than {MAX_OBJECTS} objects")
        if isinstance(obj, Obj):
            if obj.called and len(found) < 10:
                found.append(f"a {obj.qualname} to construct with the file's arguments")
            stack.append(obj._state)
            stack.append(obj._called)
        elif isinstance(obj, dict):
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            stack.extend(obj)
    return found


def _names(value: Any) -> list[str] | None:
    if isinstance(value, dict) and value and all(isinstance(k, int) for k in value) \
            and sorted(value) == list(range(len(value))):
        return [str(value[i]) for i in range(len(value))]
    if isinstance(value, (list, tuple)) and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """Read a ``.pt`` file as data (see the module docstring); one-line UserError for anything else."""
    try:
        raw = read_raw(path)
        ckpt = raw.obj
        if not isinstance(ckpt, dict):
            raise Malformed("its content is not a checkpoint mapping (model, ema, ...)")
        model = ckpt.get("ema") if isinstance(ckpt.get("ema"), Obj) else ckpt.get("model")
        if not isinstance(model, Obj):
            raise Malformed("it holds no model (neither 'ema' nor 'model' is a model object)")
        kind = "yolov5" if model.qualname.split(".")[0] in ("models", "utils") else "ultralytics"
        oddities = _constructed(ckpt)
        tensors = _walk(raw, model, oddities)
        state = model.state
        yaml = state.get("yaml")
        yaml = plain(yaml, "the model's yaml") if yaml is not None else None
        if yaml is not None and not isinstance(yaml, dict):
            raise Malformed("the model's yaml is not a mapping")
        train_args = _plain_or_none(ckpt.get("train_args"), "train_args")
        epoch = ckpt.get("epoch")
        if oddities:
            raise UserError(f"{path}: refused to load: it holds {oddities[0]}, which a genuine checkpoint never does "
                            "(loading it the usual way would run that code); if you trust this file, pass --trust-weights")
        return Checkpoint(path=str(path), kind=kind, model_class=model.qualname, tensors=tensors, yaml=yaml,
                          names=_names(_plain_or_none(state.get("names"), "names")),
                          train_args=train_args if isinstance(train_args, dict) else {},
                          epoch=epoch if isinstance(epoch, int) and not isinstance(epoch, bool) else None,
                          file_bytes=raw.file_bytes, globals=raw.globals)
    except RefusedGlobal as err:
        raise UserError(refused_message(path, str(err))) from None
    except Malformed as err:
        raise UserError(f"cannot read weights {path}: {err}") from None
    except UserError:
        raise
    except OSError as err:
        raise UserError(f"cannot read weights {path}: {err.strerror or err}") from None


def refused_message(path: str | os.PathLike, global_name: str) -> str:
    """The one line for a checkpoint refused because its pickle names ``global_name``."""
    return (f"{path}: refused to load: the checkpoint's pickle references {global_name}, which no model file "
            "needs (a .pt file is a pickle and loading it could run code); if you trust this file, pass "
            "--trust-weights")
