"""Helpers shared by the benchmark scripts: paths, machine description, result recording."""

from __future__ import annotations

import json
import os
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
OUT = ROOT / "bench" / "out"
sys.path.insert(0, str(ROOT))


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = ""
    try:
        import torch

        if torch.cuda.is_available():
            gpu = f", GPU {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return f"{os.cpu_count()} cores, {cpu}{gpu}, Python {platform.python_version()}"


def need(path: Path) -> Path:
    if not path.exists():
        sys.exit(f"skipped: {path} is absent (../shared not mounted)")
    return path


def record(name: str, result: dict) -> None:
    """Print the result and save it as bench/out/<name>.json."""
    OUT.mkdir(parents=True, exist_ok=True)
    result = {"machine": machine(), **result}
    (OUT / f"{name}.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
