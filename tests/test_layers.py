"""The package's imports go one way: no module imports one that imports it back (directly or through others),
and no module imports from a layer above its own (imports inside functions count too).

Layers, bottom up: the shared modules (files, boxes, photos, COCO data, results, the CLI plumbing); the
stages in pipeline order (convert and checkpoints; training; inference and evaluation; fusion, submission
and label issues); what runs stages together (the k-fold experiment, the API, the ``coco2yolo`` command,
the demo).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "coco2yolo"
SHARED = {"errors", "cli", "fileio", "boxes", "images", "cocodata", "results", "sidecar", "ultra", "heap"}
# the stages in pipeline order: a stage may use an earlier one (fusion scores with evaluation), never a later one
STAGES = {"dataset": 1, "checkpoint": 1, "training": 2, "inference": 3, "export": 3, "evaluation": 3, "fusion": 4,
          "submission": 4, "label_issues": 4, "browse": 4, "review": 4}
TOP = {"kfold", "api", "commands", "demo", "sample", "__main__"}


def _modules() -> dict[str, Path]:
    out = {}
    for f in PACKAGE.rglob("*.py"):
        parts = ("coco2yolo", *f.relative_to(PACKAGE).with_suffix("").parts)
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = f
    return out


def _imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    edges: dict[str, set[str]] = defaultdict(set)
    for name, f in mods.items():
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("coco2yolo"):
                for a in node.names:
                    target = f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in mods else node.module
                    if target in mods and target not in (name, "coco2yolo"):
                        edges[name].add(target)
            elif isinstance(node, ast.Import):
                edges[name].update(a.name for a in node.names if a.name in mods and a.name not in (name, "coco2yolo"))
    return edges


def _layer(name: str) -> int:
    first = name.split(".")[1] if "." in name else "__init__"
    if first in SHARED:
        return 0
    if first in STAGES:
        return STAGES[first]
    assert first in TOP or first == "__init__", f"{name}: put it in a layer of tests/test_layers.py"
    return 9


def test_no_import_cycles():
    mods = _modules()
    edges = _imports(mods)
    state: dict[str, int] = {}

    def visit(v: str, path: list[str]) -> None:
        state[v] = 1
        for w in sorted(edges[v]):
            if state.get(w) == 1:
                cycle = path[path.index(w):] + [w] if w in path else [v, w]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if w not in state:
                visit(w, path + [w])
        state[v] = 2

    for m in sorted(mods):
        if m not in state:
            visit(m, [m])


def test_no_import_from_a_layer_above():
    mods = _modules()
    upward = [f"{a} imports {b}" for a, targets in _imports(mods).items() for b in sorted(targets)
              if _layer(b) > _layer(a)]
    assert not upward, upward
