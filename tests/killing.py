"""kill -9 at a random moment, then check what is left: used by the kill test and the reliability bench.

An output must be absent (when there was none before), old and whole, or new and whole; after a
re-run it must be new and whole with no temporary files or folders left beside it.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import time
from pathlib import Path


def tree_digest(path: Path) -> str | None:
    """A digest of a file, or of a folder's every entry (relative path, link target or content)."""
    if not path.exists():
        return None
    h = hashlib.sha256()
    if path.is_file():
        h.update(path.read_bytes())
        return h.hexdigest()
    for p in sorted(path.rglob("*")):
        h.update(str(p.relative_to(path)).encode())
        if p.is_symlink():
            h.update(os.readlink(p).encode())
        elif p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def leftovers(path: Path) -> list[str]:
    """Hidden temporaries beside ``path`` (``.NAME.*``)."""
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}."))


def run_and_kill(cmd: list[str], delay: float, env: dict | None = None, cwd: Path | None = None) -> bool:
    """Start ``cmd``, SIGKILL it after ``delay`` seconds; return whether it was still running then."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=cwd,
                            start_new_session=True)
    time.sleep(delay)
    alive = proc.poll() is None
    if alive:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return alive


def timed(cmd: list[str], env: dict | None = None, cwd: Path | None = None) -> float:
    """Seconds ``cmd`` takes to finish (it must succeed)."""
    t = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=cwd)
    return time.perf_counter() - t
