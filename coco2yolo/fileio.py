"""Reading JSON with clear errors; writing every output atomically, never over an input.

- An output file is written to a temporary file in the same folder and renamed over the target, so
  an interrupted run never leaves a half-written file under the final name (:func:`atomic_path`,
  :func:`atomic_paths` for several files committed together).
- An output folder is built under a temporary name and swapped in with one atomic exchange
  (``renameat2(RENAME_EXCHANGE)`` on Linux), so the folder is always the old whole version or the
  new whole version; a lock refuses a second writer (:func:`atomic_dir`).
- Temporary names carry the host and process id (``.NAME.HOST.PID.XXXX.part``): leftovers of a
  killed run are removed by the next run that writes beside them, once that process is gone.
- Files and folders get the modes the user's umask gives (not tempfile's 0600/0700).
- :func:`guard_outputs` refuses an output that is, or contains, an input.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import re
import shutil
import socket
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import msgspec

from coco2yolo.errors import UserError

MAX_JSON_DEPTH = 64  # a COCO file nests 6 levels (segmentation polygons); results files 3


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


UMASK = _umask()
FILE_MODE = 0o666 & ~UMASK
DIR_MODE = 0o777 & ~UMASK
_HOST = "".join(c if c.isalnum() or c == "-" else "-" for c in socket.gethostname())[:40] or "host"


# --- reading --------------------------------------------------------------------------------------

def _stack_depth() -> int:
    depth, frame = 0, sys._getframe()
    while frame is not None:
        depth, frame = depth + 1, frame.f_back
    return depth


@contextlib.contextmanager
def nesting_limit(levels: int = MAX_JSON_DEPTH) -> Iterator[None]:
    """Let a recursive parser (json, PyYAML) nest at most about ``levels`` deeper than here."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(_stack_depth() + levels + 20)
    try:
        yield
    finally:
        sys.setrecursionlimit(old)


def file_kind(mode: int) -> str:
    import stat

    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a regular file"


def not_regular(path: str | os.PathLike) -> str | None:
    """What ``path`` is when it exists but is not a regular file ('a named pipe', 'a folder', ...), else None.
    Links are followed (a link to a photo is a photo)."""
    import stat

    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    return None if stat.S_ISREG(mode) else file_kind(mode)


def require_file(path: str | os.PathLike, what: str) -> Path:
    """``path`` if it is a regular file (links followed); else one line: not found, or what it is instead."""
    kind = not_regular(path)
    if kind is not None:
        raise UserError(f"{what} {path} is {kind}, not a regular file")
    if not os.path.isfile(path):
        raise UserError(f"{what} not found: {path}")
    return Path(path)


def open_regular(path: str | os.PathLike, what: str = "file", mode: str = "rb", **kwargs: Any) -> Any:
    """Open a regular file for reading. A named pipe, a device, a socket or a folder is refused with one line
    (opening a pipe would wait for a writer for ever, a device could be read for ever); OSError otherwise."""
    import fcntl
    import stat

    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UserError(f"{what} {path} is {file_kind(st.st_mode)}, not a regular file")
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        return os.fdopen(fd, mode, **kwargs)
    except BaseException:
        os.close(fd)
        raise


def read_bytes(path: str | os.PathLike, what: str = "file") -> bytes:
    """A regular file's bytes (see :func:`open_regular`)."""
    with open_regular(path, what) as fh:
        return fh.read()


def read_text(path: str | os.PathLike, what: str = "file") -> str:
    """A regular file's UTF-8 text (see :func:`open_regular`); UnicodeDecodeError on other bytes."""
    return read_bytes(path, what).decode("utf-8")


def load_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """Load ``path``; a missing, unreadable, malformed or absurdly nested file raises UserError naming it."""
    path = Path(path)
    try:
        with open_regular(path, what) as fh, nesting_limit():
            raw = fh.read()
            try:  # msgspec's parser: twice json's speed, the same values (it refuses what json reads otherwise:
                # NaN, numbers beyond 64 bits, UTF-16, a BOM; those, and every error, go to json as before)
                return msgspec.json.decode(raw)
            except (msgspec.DecodeError, RecursionError):
                return json.loads(raw)
    except FileNotFoundError:
        raise UserError(f"{what} not found: {path}") from None
    except IsADirectoryError:
        raise UserError(f"{what} {path} is a folder, expected a .json file") from None
    except PermissionError:
        raise UserError(f"{what} {path} is not readable (permission denied)") from None
    except RecursionError:
        raise UserError(f"{what} {path} nests more than {MAX_JSON_DEPTH} levels deep; a COCO or results file "
                        "nests fewer than 8") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{what} {path} is not valid JSON: {err.msg} at line {err.lineno} "
                        f"column {err.colno}") from None
    except UnicodeDecodeError as err:
        raise UserError(f"{what} {path} is not UTF-8 text: {err.reason} at byte {err.start}") from None
    except OSError as err:
        raise UserError(f"cannot read {what} {path}: {err.strerror or err}") from None


# --- outputs are never inputs ----------------------------------------------------------------------

def _real(p: str | os.PathLike) -> str:
    return os.path.realpath(os.path.abspath(p))


def real_paths(paths: Iterable[str | os.PathLike]) -> list[str]:
    """``os.path.realpath`` of many paths, each folder resolved once (one ``lstat`` a file instead of one a
    path component: 4,883 photos in one folder resolve about 4x faster)."""
    folders: dict[str, str] = {}
    out = []
    for p in paths:
        a = os.path.abspath(p)
        d, name = os.path.split(a)
        if d not in folders:
            folders[d] = os.path.realpath(d)
        out.append(os.path.realpath(a) if not name or name in (".", "..") or os.path.islink(a)
                   else os.path.join(folders[d], name))
    return out


class Resolved(list):
    """Paths given with their :func:`real_paths` already worked out, as (path, real path) pairs: an input of
    :func:`guard_outputs` that its caller resolves anyway (a photo per image) is resolved once."""


def guard_outputs(outputs: Mapping[str, str | os.PathLike | None],
                  inputs: Mapping[str, str | os.PathLike | Iterable[str | os.PathLike] | None],
                  folders: Iterable[str] = ()) -> None:
    """Refuse an output that is an input, a folder that contains one, or two outputs at one path.

    ``outputs``: flag -> path (None: not asked for); those named in ``folders`` are folders, the
    others files (an existing folder at a file output is refused too). ``inputs``: label -> path or
    paths. Symlinks are followed, so a link to an input counts as the input.
    """
    folders = set(folders)
    flat: list[tuple[str, str, str]] = []
    for label, value in inputs.items():
        if value is None:
            continue
        if isinstance(value, Resolved):
            pairs = value
        else:
            paths = [value] if isinstance(value, (str, os.PathLike)) else list(value)
            pairs = zip(paths, real_paths(paths))
        for p, real in pairs:
            flat.append((label, str(p), real))
            flat.append((label, str(p), os.path.abspath(p)))
    seen: dict[str, str] = {}
    for flag, out in outputs.items():
        if out is None:
            continue
        ro = _real(out)
        if flag not in folders and os.path.isdir(out):
            raise UserError(f"{flag} {out} is a folder; give a file path")
        if ro in seen:
            raise UserError(f"{flag} {out} and {seen[ro]} are the same path; give each output its own")
        seen[ro] = flag
        for label, shown, ri in flat:
            if ri == ro:
                raise UserError(f"{flag} {out} is the input {label} {shown}: it would be overwritten; "
                                f"choose another {flag}")
            if flag in folders and ri.startswith(ro.rstrip(os.sep) + os.sep):
                raise UserError(f"{flag} {out} contains the input {label} {shown}; choose a folder that holds "
                                "no input")


def through_link(path: str | os.PathLike) -> Path:
    """``path``, or where it points when it is a symbolic link (an output named by a link is written there)."""
    p = Path(path)
    return Path(os.path.realpath(p)) if p.is_symlink() else p


def check_output_file(path: str | os.PathLike, flag: str = "output") -> Path:
    """A file output's path: not a folder, its parent creatable and writable (checked before any work)."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{flag} {path} is a folder; give a file path")
    return check_writable_parent(path)


def check_writable_parent(path: str | os.PathLike) -> Path:
    """Create the parent folder of ``path`` if needed; raise UserError when it cannot be written."""
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create output folder {parent}: {err.strerror}") from None
    if not os.access(parent, os.W_OK):
        raise UserError(f"output folder {parent} is not writable")
    return path


def check_output_folder(path: str | os.PathLike, flag: str = "output folder") -> Path:
    """A folder output: not an existing file, its parent creatable and writable."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path} exists and is not a folder")
    check_writable_parent(path.absolute())
    return path


# --- temporary names and their leftovers ------------------------------------------------------------

def _prefix(name: str) -> str:
    return f".{name}.{_HOST}.{os.getpid()}."


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_RANDOM = re.compile(r"[a-z0-9_]{8}")  # tempfile's random part


def _stale_owner(entry: str, name: str) -> bool:
    """Whether ``entry`` is a temporary of ``name`` made on this host by a process that is gone.

    The name is the proof: ``.NAME.HOST.PID.<8 tempfile characters>.part`` (or ``.old``), which only
    :func:`atomic_paths` and :func:`atomic_dir` create.
    """
    if not entry.startswith(f".{name}.") or not entry.endswith((".part", ".old")):
        return False
    parts = entry[len(name) + 2:].rsplit(".", 3)  # HOST, PID, random, part|old
    return (len(parts) == 4 and parts[0] == _HOST and parts[1].isdigit() and _RANDOM.fullmatch(parts[2]) is not None
            and int(parts[1]) != os.getpid() and not _alive(int(parts[1])))


_cleaned: set[tuple[str, str]] = set()


def remove_stale(parent: Path, name: str, once: bool = True) -> int:
    """Remove temporaries of ``parent/name`` left by killed runs on this host; return how many.

    ``once``: only the first call per (folder, name) in this process scans (many files written
    into one folder would otherwise rescan it each time).
    """
    key = (str(parent), name)
    if once and key in _cleaned:
        return 0
    _cleaned.add(key)
    removed = 0
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return 0
    for e in entries:
        if not _stale_owner(e.name, name):
            continue
        with contextlib.suppress(OSError):
            if e.is_dir(follow_symlinks=False):
                shutil.rmtree(e.path)
            else:
                os.unlink(e.path)
            removed += 1
    return removed


# --- atomic files ---------------------------------------------------------------------------------

@contextlib.contextmanager
def atomic_paths(paths: Iterable[str | os.PathLike]) -> Iterator[list[Path]]:
    """Yield temporary paths beside ``paths``; on success rename them all into place, else remove them.

    Every target is checked (not a folder, parent writable) before anything is written. A target that is a
    symbolic link is written through: the file it points to is replaced, the link stays.
    """
    targets = [check_output_file(through_link(p)) for p in paths]
    tmps: list[Path] = []
    try:
        for path in targets:
            remove_stale(path.parent, path.name)
            fd, tmp = tempfile.mkstemp(prefix=_prefix(path.name), suffix=".part", dir=path.parent)
            os.close(fd)
            tmps.append(Path(tmp))
        yield tmps
        for tmp, path in zip(tmps, targets):
            os.chmod(tmp, FILE_MODE)
            os.replace(tmp, path)
    finally:
        for tmp in tmps:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only on success."""
    with atomic_paths([path]) as (tmp,):
        yield tmp


def finite_or_null(obj: Any) -> Any:
    """``obj`` with every NaN or infinite float (numpy's too) replaced by None, for JSON."""
    import math

    if isinstance(obj, dict):
        return {k: finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_null(v) for v in obj]
    if isinstance(obj, float) or type(obj).__name__ in ("float32", "float64"):
        v = float(obj)
        return v if math.isfinite(v) else None
    return obj


def dumps_json(obj: Any, indent: int | None = None) -> str:
    """JSON text: full float precision (Python's shortest repr), NaN refused, UTF-8 kept."""
    return json.dumps(obj, indent=indent, ensure_ascii=False, allow_nan=False)


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = None) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically; return the path."""
    text = dumps_json(obj, indent)  # one shot: C encoder, 5x json.dump's speed
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.write("\n")
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` atomically; return the path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


# --- atomic folders -------------------------------------------------------------------------------

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2); False where the system cannot."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


@contextlib.contextmanager
def output_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (a file ``.NAME.lock`` beside it); refuse if another run holds it."""
    import fcntl

    lock = path.with_name(f".{path.name}.lock")
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise UserError(f"{path} is being written by another run ({holder}); wait for it to finish or choose "
                            "another output") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # the holder removed the file as we opened it: lock the current one instead
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {_HOST}\n".encode(), 0)
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)  # while still held, so no one can lock this inode after us
        os.close(fd)


def _recover(path: Path) -> None:
    """A run killed between the two renames of the fallback swap left ``path`` missing and the old
    version as ``.NAME.HOST.PID.X.old``: put it back."""
    if path.exists():
        return
    for e in os.scandir(path.parent):
        if _stale_owner(e.name, path.name) and e.name.endswith(".old") and (Path(e.path) / ".coco2yolo").exists():
            os.replace(e.path, path)
            return


MANIFEST_FORMAT = "coco2yolo-manifest/1"


def _listing(folder: Path) -> list[str]:
    """Every file and link under ``folder`` (not descending into links), relative, sorted."""
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        rel = os.path.relpath(dirpath, folder)
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            out.append(name if rel == "." else f"{rel}/{name}")
    return sorted(out)


def _derived(rel: str, stems: set[str]) -> bool:
    """A file Ultralytics derives from the folder's own files: a label cache (``labels/train.cache``) or an
    image cache (``--cache disk``: ``x.npy`` beside the image ``x.jpg``; ``stems``: written paths less suffix)."""
    return rel.endswith(".cache") or (rel.endswith(".npy") and rel[:-4] in stems)


def foreign_files(path: Path, marker: str) -> list[str]:
    """Files in a folder this project wrote that it did not write (the marker's manifest says which it did);
    a marker without a manifest (an older version) lists nothing, so nothing is called foreign."""
    try:
        doc = json.loads((path / marker).read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        doc = {}
    if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT or not isinstance(doc.get("files"), list):
        return []
    written = set(doc["files"]) | {marker}
    stems = {os.path.splitext(w)[0] for w in written}
    return [f for f in _listing(path) if f not in written and not _derived(f, stems)]


@contextlib.contextmanager
def paused_gc() -> Iterator[None]:
    """Python's cycle collector off for a block that makes hundreds of thousands of dicts without cycles (a
    COCO file's records and their copies): it would walk them all again and again (a fifth of the converter's
    time on the competition's file), while reference counting frees them the same. Restored on exit."""
    import gc

    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, marker: str) -> Iterator[Path]:
    """Build a folder under a temporary name and swap it in place of ``path`` on success.

    ``marker`` is a file that identifies folders this project wrote and lists what it wrote (a manifest):
    an existing ``path`` that is non-empty and lacks it, or holds files the manifest does not list (other
    than Ultralytics' caches), is never replaced (UserError naming them). ``path`` given as a symbolic link
    is replaced where it points (the link stays). Concurrent writers to one ``path`` are refused;
    leftovers of killed runs are recovered or removed.
    """
    path = through_link(Path(path).absolute())
    check_output_folder(path)
    with output_lock(path):
        _recover(path)
        remove_stale(path.parent, path.name, once=False)
        if path.exists():
            if not path.is_dir():
                raise UserError(f"output {path} exists and is not a folder")
            if any(path.iterdir()) and not (path / marker).exists():
                raise UserError(f"refusing to replace {path}: it is not empty and was not written by "
                                f"this tool (no {marker}); choose another --out")
            foreign = foreign_files(path, marker)
            if foreign:
                raise UserError(f"refusing to replace {path}: it holds {len(foreign)} file(s) this tool did not write "
                                f"(first: {', '.join(foreign[:3])}); move them out, or choose another --out")
        tmp = Path(tempfile.mkdtemp(prefix=_prefix(path.name), suffix=".part", dir=path.parent))
        try:
            os.chmod(tmp, DIR_MODE)
            yield tmp
            manifest = {"format": MANIFEST_FORMAT, "files": _listing(tmp)}
            (tmp / marker).write_text(json.dumps(manifest) + "\n", encoding="utf-8")
            if not path.exists():
                os.replace(tmp, path)
            elif not _exchange(tmp, path):  # fallback: two renames; a kill between them is undone by _recover
                old = Path(tempfile.mkdtemp(prefix=_prefix(path.name), suffix=".old", dir=path.parent))
                os.rmdir(old)
                os.replace(path, old)
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)


def write_inside(root: str | os.PathLike, rel: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``root/rel`` atomically, creating folders, following no link below ``root``.

    Each folder is opened relative to the one above it with ``O_NOFOLLOW`` and the file is renamed into
    place inside the last one, so a link planted inside ``root`` (``root/sub -> elsewhere``) cannot send the
    write outside: OSError (ELOOP, ENOTDIR) instead. ``root`` itself may be a link (the user named it).
    """
    parts = Path(rel).parts
    if not parts or any(p in ("", ".", "..") for p in parts) or Path(rel).is_absolute():
        raise ValueError(f"not a relative path inside the folder: {rel}")
    flags = os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0)
    dfd = os.open(root, flags)
    try:
        for part in parts[:-1]:
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o777, dir_fd=dfd)
            nfd = os.open(part, flags | os.O_NOFOLLOW, dir_fd=dfd)
            os.close(dfd)
            dfd = nfd
        name = parts[-1]
        tmp = f"{_prefix(name)}{os.urandom(4).hex()}.part"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE, dir_fd=dfd)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)  # replaces a link at ``name``, never follows it
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dfd)
            raise
    finally:
        os.close(dfd)


def make_dirs(path: str | os.PathLike) -> Path:
    """``mkdir -p`` that raises UserError instead of OSError."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create folder {path}: {err.strerror}") from None
    return Path(path)
