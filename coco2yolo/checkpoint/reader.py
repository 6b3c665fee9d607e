"""Read a ``.pt`` checkpoint as data: tensors, numbers, strings and plain containers; nothing is built.

A torch checkpoint is a pickle, and unpickling calls whatever the file names. This reader unpickles
both torch file formats (the zip archive of torch >= 1.6 and the older sequence of pickles) with
:class:`_Unpickler`, whose ``find_class`` resolves no name to the file's choice of code:

- a model class (``torch.nn.modules.*``, ``ultralytics.nn.*``, ``ultralytics.utils.*``, the old yolov5
  repository's ``models.*``/``utils.*``) becomes an inert :class:`Obj`: a record of the class's name and
  of the state the file gives it; its constructor is never called, and if the file asks to call it with
  arguments, the record says so (:attr:`Obj.called`) and the arguments are kept as data;
- torch's tensor rebuilders become this module's functions, which return :class:`TensorRef` records;
  a storage is read only after every reference to it was checked: its declared size against the bytes
  the file holds, each tensor's offset, sizes and strides against its storage;
- containers (``OrderedDict``, ``set``), ``torch.Size``, dtypes, and numpy's scalar (decoded here from
  its bytes for a few plain dtypes, never by numpy) are the only other globals;
- every other global is refused (:class:`RefusedGlobal`, naming it).

Memory is bounded by the file: a storage larger than the bytes the file holds for it is refused before
anything is allocated, the pickle is read from memory (a length field cannot make a reader allocate
more than the file), and the number of objects walked afterwards is capped.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import torch

from coco2yolo.errors import UserError

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C  # torch's legacy (non-zip) format
PROTOCOL_VERSION = 1001
MAX_DIMS = 16
MAX_STORAGES = 100_000

# Module prefixes whose classes become inert records (never constructed).
RECORD_PREFIXES = ("torch.nn.modules.", "ultralytics.nn.", "ultralytics.utils.", "ultralytics.yolo.",
                   "models.", "utils.")
RECORD_MODULES = frozenset({"models", "utils", "ultralytics.utils"})
# Globals that are values: harmless, not callable with file-chosen effects.
_DTYPES = {name: getattr(torch, name) for name in (
    "float16", "float32", "float64", "bfloat16", "half", "float", "double", "int8", "int16", "int32", "int64",
    "uint8", "bool", "long", "int", "short")}
_STORAGE_DTYPES = {
    "HalfStorage": torch.float16, "FloatStorage": torch.float32, "DoubleStorage": torch.float64,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8, "BoolStorage": torch.bool,
    "UntypedStorage": torch.uint8}


class RefusedGlobal(UserError):
    """A checkpoint's pickle names a global that no model file needs (loading it could run code)."""


class Malformed(Exception):
    """The file is not a checkpoint this reader can take (the message says why, in a few words)."""


class Obj:
    """An inert stand-in for an object of a model class: its class name and the state the file gave it."""

    qualname = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> Obj:  # noqa: ARG003 - NEWOBJ's arguments are never used
        self = object.__new__(cls)
        self.__dict__["_state"] = None
        self.__dict__["_called"] = None
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Only reached when the pickle calls the class (REDUCE/INST/OBJ): a constructor run with the file's
        # arguments, which a genuine model file never asks for. Recorded, not obeyed.
        self.__dict__["_called"] = (args, kwargs)

    def __setstate__(self, state: Any) -> None:
        self.__dict__["_state"] = state

    @property
    def called(self) -> bool:
        """Whether the file asks for the class to be constructed with arguments."""
        return self._called is not None and bool(self._called[0] or self._called[1])

    @property
    def state(self) -> dict[str, Any]:
        """The instance dict the file gives (a (dict, slots) pair's dict), or {}."""
        s = self._state
        if isinstance(s, tuple) and len(s) == 2 and isinstance(s[0], dict):
            s = s[0]
        return s if isinstance(s, dict) else {}

    def __repr__(self) -> str:
        return f"<record {self.qualname}>"


_record_classes: dict[tuple[str, str], type] = {}


def record_class(module: str, name: str) -> type:
    key = (module, name)
    if key not in _record_classes:
        _record_classes[key] = type(name, (Obj,), {"qualname": f"{module}.{name}", "__module__": "coco2yolo.records"})
    return _record_classes[key]


@dataclass(frozen=True)
class StorageRef:
    key: str
    dtype: torch.dtype
    numel: int

    @property
    def nbytes(self) -> int:
        return self.numel * _itemsize(self.dtype)


@dataclass(frozen=True)
class TensorRef:
    storage: StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    @property
    def numel(self) -> int:
        n = 1
        for s in self.size:
            n *= s
        return n


@dataclass
class Raw:
    """What the pickle held (with records and tensor references), and the storages' bytes."""

    obj: Any
    storages: dict[str, torch.Tensor] = field(default_factory=dict)
    globals: set[str] = field(default_factory=set)
    file_bytes: int = 0
    format: str = "zip"

    def tensor(self, ref: TensorRef) -> torch.Tensor:
        base = self.storages[ref.storage.key]
        return torch.as_strided(base, ref.size, ref.stride, ref.offset)


def _itemsize(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


class _StorageType:
    """What ``torch.FloatStorage`` stands for in a persistent id: a dtype; not callable."""

    def __init__(self, dtype: torch.dtype):
        self.dtype = dtype


class _NpDtype:
    """numpy's dtype as data (its spec string and byte order); numpy is never called."""

    def __init__(self, spec: Any = None, align: Any = None, copy: Any = None):  # noqa: ARG002
        self.spec = spec if isinstance(spec, str) else None
        self.order = None

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) > 1 and isinstance(state[1], str):
            self.order = state[1]


_NP_SCALARS = {"f8": "d", "f4": "f", "i8": "q", "i4": "i", "i2": "h", "u1": "B", "b1": "?"}


def _np_scalar(dtype: Any, data: Any = None) -> Any:
    """numpy.core.multiarray.scalar(dtype, bytes): a Python number for a few plain dtypes, else None."""
    if not isinstance(dtype, _NpDtype) or not isinstance(data, bytes) or dtype.spec not in _NP_SCALARS:
        return None
    fmt = ("<" if dtype.order in (None, "<", "|", "=") else ">") + _NP_SCALARS[dtype.spec]
    if len(data) != struct.calcsize(fmt):
        return None
    return struct.unpack(fmt, data)[0]


def _codecs_encode(text: Any, encoding: Any = "utf-8") -> bytes:
    """``_codecs.encode(str, 'latin1')``: how protocol 2 pickles bytes."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise Malformed("unexpected _codecs.encode arguments")
    return text.encode("latin1")


def _bytes(*args: Any) -> bytes:
    """``bytes()`` as protocol 2 pickles an empty bytes object (``bytes(n)`` would allocate n bytes)."""
    if args:
        raise Malformed("unexpected bytes() arguments")
    return b""


def _size(*args: Any) -> tuple:
    if len(args) != 1 or not isinstance(args[0], (list, tuple)):
        raise Malformed("unexpected torch.Size arguments")
    return tuple(args[0])


def _device(*args: Any) -> str:
    return str(args[0]) if args and isinstance(args[0], str) else "cpu"


def _ints(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or len(value) > MAX_DIMS or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value):
        raise Malformed(f"tensor {what} must be at most {MAX_DIMS} non-negative integers")
    return tuple(value)


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *rest: Any) -> TensorRef:
    if not isinstance(storage, StorageRef):
        raise Malformed("a tensor without a storage")
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise Malformed("a tensor with a negative or non-integer offset")
    size, stride = _ints(size, "sizes"), _ints(stride, "strides")
    if len(size) != len(stride):
        raise Malformed("a tensor whose sizes and strides differ in length")
    ref = TensorRef(storage, offset, size, stride)
    if ref.numel and offset + sum((s - 1) * st for s, st in zip(size, stride)) >= storage.numel:
        raise Malformed(f"a tensor of shape {list(size)} reaches past the end of its storage "
                        f"({storage.numel} elements)")
    return ref


def _rebuild_parameter(data: Any, *rest: Any) -> TensorRef:
    if not isinstance(data, TensorRef):
        raise Malformed("a parameter without tensor data")
    return data  # requires_grad, hooks and state are not kept: a model built here has its own


class _Unpickler(pickle.Unpickler):
    """The restricted unpickler (see the module docstring)."""

    def __init__(self, fh: io.BytesIO, storages: dict[str, StorageRef] | None, seen: set[str]):
        super().__init__(fh, encoding="utf-8")
        self._storages = storages
        self._seen = seen

    def find_class(self, module: str, name: str) -> Any:
        module = "builtins" if module == "__builtin__" else module
        full = f"{module}.{name}"
        self._seen.add(full)
        if full == "collections.OrderedDict":
            return OrderedDict
        if full in ("builtins.set", "builtins.frozenset"):
            return set if name == "set" else frozenset
        if full in ("_codecs.encode",):
            return _codecs_encode
        if full == "builtins.bytes":
            return _bytes
        if full == "torch.Size":
            return _size
        if full == "torch.device":
            return _device
        if module == "torch" and name in _DTYPES:
            return _DTYPES[name]
        if module in ("torch", "torch.storage") and name in _STORAGE_DTYPES:
            return _StorageType(_STORAGE_DTYPES[name])
        if full in ("torch._utils._rebuild_tensor", "torch._utils._rebuild_tensor_v2"):
            return _rebuild_tensor
        if full in ("torch._utils._rebuild_parameter", "torch._utils._rebuild_parameter_with_state"):
            return _rebuild_parameter
        if full in ("numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar"):
            return _np_scalar
        if full == "numpy.dtype":
            return _NpDtype
        if full == "builtins.getattr":  # Ultralytics pickles bound methods such as Detect.forward this way
            return record_class(module, name)
        if module in RECORD_MODULES or module.startswith(RECORD_PREFIXES):
            return record_class(module, name)
        raise RefusedGlobal(full)

    def persistent_load(self, pid: Any) -> StorageRef:
        if isinstance(pid, tuple) and len(pid) == 4 and pid[0] == "module":
            # the legacy format names each module class with its source code (for a warning): the class only
            if not (isinstance(pid[1], type) and issubclass(pid[1], Obj)):
                raise Malformed("a module reference that is not a module class")
            return pid[1]
        if self._storages is None:
            raise Malformed("a tensor storage where none may be")
        if not isinstance(pid, tuple) or len(pid) not in (5, 6) or pid[0] != "storage":
            raise Malformed("an unknown kind of persistent reference")
        stype, key, _location, numel = pid[1:5]
        if not isinstance(stype, _StorageType) or not isinstance(key, str) or not isinstance(numel, int) \
                or isinstance(numel, bool) or numel < 0:
            raise Malformed("a malformed storage reference")
        if len(pid) == 6 and pid[5] is not None:
            raise Malformed("storage views of torch < 1.0 are not supported")
        ref = self._storages.get(key)
        if ref is None:
            if len(self._storages) >= MAX_STORAGES:
                raise Malformed(f"more than {MAX_STORAGES} storages")
            ref = self._storages[key] = StorageRef(key, stype.dtype, numel)
        elif ref.dtype != stype.dtype or ref.numel != numel:
            raise Malformed(f"storage {key} is declared twice, differently")
        return ref


def _unpickle(data: io.BytesIO, storages: dict[str, StorageRef] | None, seen: set[str]) -> Any:
    try:
        return _Unpickler(data, storages, seen).load()
    except (RefusedGlobal, Malformed):
        raise
    except RecursionError:
        raise Malformed("the pickle nests too deeply") from None
    except MemoryError:
        raise Malformed("the pickle asks for more memory than it holds") from None
    except Exception as err:  # noqa: BLE001 - any damage in the pickle stream is reported the same way
        raise Malformed(f"damaged pickle ({type(err).__name__}: {' '.join(str(err).split())[:120]})") from None


def _read_zip(path: str, size: int) -> Raw:
    seen: set[str] = set()
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        pkls = [i for i in infos if i.filename.endswith("/data.pkl") and i.filename.count("/") == 1]
        if len(pkls) != 1:
            raise Malformed("a zip archive without exactly one <name>/data.pkl (not a torch checkpoint)")
        prefix = pkls[0].filename[:-len("data.pkl")]
        by_name = {i.filename: i for i in infos}
        for info in infos:
            if info.compress_type != zipfile.ZIP_STORED or info.file_size > size:
                raise Malformed(f"record {info.filename} is compressed or larger than the file")
        order = by_name.get(prefix + "byteorder")
        if order is not None and zf.read(order).strip() not in (b"little",):
            raise Malformed("a big-endian checkpoint")
        storages: dict[str, StorageRef] = {}
        obj = _unpickle(io.BytesIO(zf.read(pkls[0])), storages, seen)
        raw = Raw(obj, globals=seen, file_bytes=size, format="zip")
        total = 0
        for key, ref in storages.items():
            info = by_name.get(f"{prefix}data/{key}")
            if info is None:
                raise Malformed(f"storage {key} has no data record")
            if info.file_size < ref.nbytes:
                raise Malformed(f"storage {key} declares {ref.nbytes} bytes but its record holds {info.file_size}")
            total += ref.nbytes
            if total > size:
                raise Malformed("the storages declare more bytes than the file holds")
        for key, ref in storages.items():
            buf = bytearray(zf.read(by_name[f"{prefix}data/{key}"]))[:ref.nbytes]
            raw.storages[key] = torch.frombuffer(buf, dtype=ref.dtype) if ref.numel else torch.empty(0, dtype=ref.dtype)
    return raw


def _read_legacy(path: str, size: int) -> Raw:
    with open(path, "rb") as fh:
        data = io.BytesIO(fh.read(size))
    seen: set[str] = set()
    if _unpickle(data, None, seen) != MAGIC_NUMBER:
        raise Malformed("not a torch checkpoint (no zip archive, no legacy magic number)")
    if _unpickle(data, None, seen) != PROTOCOL_VERSION:
        raise Malformed("an unknown torch protocol version")
    _unpickle(data, None, seen)  # sys_info
    storages: dict[str, StorageRef] = {}
    obj = _unpickle(data, storages, seen)
    keys = _unpickle(data, None, seen)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys) or set(keys) != set(storages):
        raise Malformed("the storage list does not match the tensors")
    raw = Raw(obj, globals=seen, file_bytes=size, format="legacy")
    for key in keys:
        ref = storages[key]
        head = data.read(8)
        left = size - data.tell()
        if len(head) != 8 or struct.unpack("<q", head)[0] != ref.numel or ref.nbytes > left:
            raise Malformed(f"storage {key} is truncated or its size disagrees with its reference")
        buf = bytearray(data.read(ref.nbytes))
        raw.storages[key] = torch.frombuffer(buf, dtype=ref.dtype) if ref.numel else torch.empty(0, dtype=ref.dtype)
    return raw


def read_raw(path: str | os.PathLike) -> Raw:
    """The checkpoint's pickled object (records and tensor references) and its storages.

    Raises RefusedGlobal (naming the global), Malformed (why), or OSError.
    """
    from coco2yolo.fileio import open_regular

    path = str(path)
    with open_regular(path, "weights file") as fh:
        size = os.fstat(fh.fileno()).st_size
        head = fh.read(4)
    if head[:2] == b"PK":
        try:
            return _read_zip(path, size)
        except zipfile.BadZipFile as err:
            raise Malformed(f"a damaged zip archive ({err})") from None
    if head[:1] == b"\x80":
        return _read_legacy(path, size)
    raise Malformed("not a torch checkpoint (neither a zip archive nor a pickle)")
