"""Mutations of valid inputs, driven by a seeded ``random.Random``: used by the fuzz test and by
``bench/bench_reliability.py`` (a larger campaign whose counts go into RELIABILITY.md)."""

from __future__ import annotations

import copy
import json
import random
from typing import Any

ODD_VALUES: list[Any] = [
    None, True, False, 0, -1, 1, 2**31, 2**63, -(2**63) - 1, 2**70, 0.5, -0.0, 1e308, -1e308, 1e-320,
    float("nan"), float("inf"), float("-inf"), "", "x", "a\nb.jpg", "../../escape.jpg", "/abs/elsewhere.jpg",
    "train/0000.jpg", "ü𝔘\u202e.jpg", "\x00", [], {}, [[[[[1]]]]], [1, 2, 3], [1, 2, 3, 4, 5], {"a": 1},
    [0, 0, 0, 0], [-5, -5, 10, 10], [1e9, 1e9, 1e9, 1e9], ["1", "2", "3", "4"],
]


def _nodes(obj: Any, path: tuple = ()) -> list[tuple]:
    """Paths to every value inside ``obj`` (the root is the empty path)."""
    out = [path]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _nodes(v, path + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:20]):
            out += _nodes(v, path + (i,))
    return out


def _get(obj: Any, path: tuple) -> Any:
    for p in path:
        obj = obj[p]
    return obj


def _set(obj: Any, path: tuple, value: Any) -> Any:
    if not path:
        return value
    _get(obj, path[:-1])[path[-1]] = value
    return obj


def mutate_doc(doc: Any, rng: random.Random) -> Any:
    """One structural mutation: replace, delete, duplicate, add a key, or swap in another node."""
    doc = copy.deepcopy(doc)
    nodes = _nodes(doc)
    path = rng.choice(nodes)
    kind = rng.randrange(6)
    if kind == 0:
        return _set(doc, path, copy.deepcopy(rng.choice(ODD_VALUES)))
    if kind == 1 and path:
        parent = _get(doc, path[:-1])
        del parent[path[-1]]
        return doc
    if kind == 2:
        target = _get(doc, path)
        if isinstance(target, list) and target:
            target.append(copy.deepcopy(rng.choice(target)))
            return doc
    if kind == 3:
        target = _get(doc, path)
        if isinstance(target, dict):
            target[rng.choice(["extra", "id", "bbox", "score", "file_name", "width", "iscrowd"])] = \
                copy.deepcopy(rng.choice(ODD_VALUES))
            return doc
    if kind == 4:
        return _set(doc, path, copy.deepcopy(_get(doc, rng.choice(nodes))))
    return _set(doc, path, copy.deepcopy(rng.choice(ODD_VALUES)))


def mutate_bytes(text: bytes, rng: random.Random) -> bytes:
    """A textual mutation: truncate, flip a byte, insert garbage, or nest deeply."""
    kind = rng.randrange(4)
    if kind == 0:
        return text[: rng.randrange(len(text) + 1)]
    if kind == 1 and text:
        i = rng.randrange(len(text))
        return text[:i] + bytes([rng.randrange(256)]) + text[i + 1:]
    if kind == 2:
        i = rng.randrange(len(text) + 1)
        return text[:i] + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8))) + text[i:]
    depth = rng.choice([100, 5000, 100000])
    return b"[" * depth + text + b"]" * depth


def mutated(doc: Any, rng: random.Random) -> bytes:
    """1 to 3 mutations of ``doc``, serialised (NaN and Infinity written as Python's json does)."""
    for _ in range(rng.randint(1, 3)):
        doc = mutate_doc(doc, rng)
    text = json.dumps(doc, allow_nan=True).encode()
    if rng.random() < 0.25:
        text = mutate_bytes(text, rng)
    return text
