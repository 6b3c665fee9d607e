"""Freed memory kept by the C heap while a model runs on the CPU, instead of handed back to the system.

glibc's malloc serves every block over its mmap threshold (32 MB at most) with a fresh ``mmap`` and
returns it with ``munmap`` when torch frees it. A YOLO forward pass at 1024 px on a batch of 8 frees and
reallocates activations of 100 MB and more, layer after layer, and the kernel zero-fills every page of
each new mapping on first touch: measured on 2 cores, a YOLOv5n forward pass alone took 480 ms per
image at batch 8 this way and 278 ms with the freed blocks kept, and ``infer.py`` at 1024 px predicts
1.30x as many images a second (``bench/bench_infer.py``, BENCHMARKS.md). Which memory a tensor lives in
changes no arithmetic: the results are byte-identical (the bench and tests/test_heap.py compare).

:func:`heap_kept` switches glibc to its heap for every size (``M_MMAP_MAX`` 0) and stops it trimming the
heap's top (``M_TRIM_THRESHOLD`` at its largest) for the duration of a ``with`` block; on leaving, it
restores glibc's limits as its dynamic threshold leaves them once a large block has been freed (mmap
above 32 MB, trim above 64 MB: what any forward pass at this size reaches) and hands what is free back
(``malloc_trim``). The process's memory stays at its peak during the block, so it stays flat in the
number of images. Elsewhere than glibc (macOS, Windows, musl) it does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import platform
import threading
from collections.abc import Iterator

# glibc's malloc.h
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4
DEFAULT_MMAP_MAX = 65536
MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # DEFAULT_MMAP_THRESHOLD_MAX on 64-bit: the dynamic threshold's ceiling
_INT_MAX = 2**31 - 1


@functools.cache
def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
        libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
    except (OSError, AttributeError):
        return None
    return libc


_lock = threading.Lock()
_depth = 0  # blocks open now: the settings are the process's, set by the first and restored by the last


@contextlib.contextmanager
def heap_kept(enabled: bool = True) -> Iterator[bool]:
    """Within the block, freed memory stays in the process's heap (see the module's text); yields
    whether that is in effect (False off glibc or when ``enabled`` is False). Blocks may nest or overlap
    in threads: glibc's defaults come back when the last one ends."""
    global _depth
    libc = _glibc() if enabled else None
    if libc is None:
        yield False
        return
    with _lock:
        on = _depth > 0 or bool(libc.mallopt(M_MMAP_MAX, 0))
        if on:
            if _depth == 0:
                libc.mallopt(M_TRIM_THRESHOLD, _INT_MAX)
            _depth += 1
    if not on:
        yield False
        return
    try:
        yield True
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                libc.mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX)
                libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)
                libc.mallopt(M_TRIM_THRESHOLD, 2 * MMAP_THRESHOLD_MAX)
                libc.malloc_trim(0)
