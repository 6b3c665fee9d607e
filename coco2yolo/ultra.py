"""The one place that configures Ultralytics: offline, quiet, safe checkpoint loading, every CPU core.

Call :func:`setup` before anything imports ``ultralytics``; every entry point does. It sets
``YOLO_OFFLINE=1`` (Ultralytics' own background network: events, version checks) and
``YOLO_AUTOINSTALL=0``, ``ULTRALYTICS_SAFE_LOAD=1`` (a second line of defence: a user's checkpoint is
read as data by :mod:`coco2yolo.checkpoint` and the model built there, so Ultralytics' loader only ever
opens files this process wrote or checked; :func:`trust_checkpoints` lifts it for files the user vouches
for), points
``YOLO_CONFIG_DIR`` into the run folder (unless the user set it) and carries the user's own
Ultralytics settings into it (integrations such as TensorBoard, W&B, MLflow; ``sync`` stays off
and runs/weights stay the project's), places matplotlib's DejaVuSans there as ``Arial.ttf`` and
``Arial.Unicode.ttf`` (Ultralytics' ``check_font`` would download them on every train/val), and
makes Ultralytics' ``select_device`` use all CPU cores instead of ``cpu_count - 1`` (a train step
on 2 cores ran 1.7x faster with 2 threads than with 1).

Weights named like Ultralytics' hub files (``yolov5lu.pt``) are fetched with Ultralytics' own
download code by :func:`fetch_weights`, unless offline: ``COCO2YOLO_OFFLINE=1`` (tests and the demo
set it) or a command's ``--offline``.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
from pathlib import Path
from types import ModuleType

PACKAGE_ROOT = Path(__file__).resolve().parent.parent


def _project_root() -> Path:
    """The repository checkout this package runs from, else (an installed package) the working folder."""
    if (PACKAGE_ROOT / "pyproject.toml").is_file() and (PACKAGE_ROOT / "train_yolo.py").is_file():
        return PACKAGE_ROOT
    return Path.cwd()


PROJECT_ROOT = _project_root()
WEIGHTS_DIR = PROJECT_ROOT / "weights"
# Ultralytics settings this project decides; every other key of the user's settings file is kept.
MANAGED_SETTINGS = frozenset({"settings_version", "sync", "weights_dir", "runs_dir", "uuid"})
_ready = False


def runs_dir() -> Path:
    """Where runs and Ultralytics' config live: $COCO2YOLO_RUNS, else <project>/runs."""
    return Path(os.environ.get("COCO2YOLO_RUNS", PROJECT_ROOT / "runs")).absolute()


def offline() -> bool:
    """Whether weights may be downloaded: not when COCO2YOLO_OFFLINE is set to a true value."""
    return os.environ.get("COCO2YOLO_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on", "y", "t")


def go_offline() -> None:
    """``--offline``: nothing is downloaded by this process."""
    os.environ["COCO2YOLO_OFFLINE"] = "1"


def user_settings_file() -> Path:
    """The settings file Ultralytics would use for this user without this project (``yolo settings``)."""
    system = platform.system()
    if system == "Windows":
        base = Path.home() / "AppData" / "Roaming"
    elif system == "Darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "Ultralytics" / "settings.json"


def _user_settings() -> dict:
    """The user's own Ultralytics settings that this project does not manage ({} when there are none)."""
    try:
        doc = json.loads(user_settings_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in doc.items() if k not in MANAGED_SETTINGS} if isinstance(doc, dict) else {}


def _install_fonts(config_dir: Path) -> None:
    dst_dir = config_dir / "Ultralytics"
    missing = [name for name in ("Arial.ttf", "Arial.Unicode.ttf") if not (dst_dir / name).exists()]
    if not missing:  # installed by an earlier command: matplotlib's import (0.3 to 0.5 s) spared
        return
    import matplotlib

    src = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    dst_dir.mkdir(parents=True, exist_ok=True)
    for name in missing:
        tmp = dst_dir / f".{name}.{os.getpid()}"
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst_dir / name)


def fiftyone_offline() -> None:
    """FiftyOne without its usage analytics (the one connection it makes beyond its own database), before it is
    imported; a user's own choice in the environment is kept."""
    os.environ.setdefault("FIFTYONE_DO_NOT_TRACK", "true")


def setup(threads: int | None = None) -> ModuleType:
    """Configure and import Ultralytics offline; return the ``ultralytics`` module.

    ``threads``: torch CPU threads Ultralytics' ``select_device`` sets (default: all cores).
    """
    global _ready
    if not _ready:
        check_torch_pair()
        if "ultralytics" in sys.modules:
            raise RuntimeError("ultralytics was imported before coco2yolo.ultra.setup(); call setup() "
                               "first so that it starts offline")
        os.environ["YOLO_OFFLINE"] = "1"
        os.environ["YOLO_AUTOINSTALL"] = "0"
        os.environ["ULTRALYTICS_SAFE_LOAD"] = "1"  # read when ultralytics.utils is first imported
        carried = {} if "YOLO_CONFIG_DIR" in os.environ else _user_settings()
        config_dir = Path(os.environ.setdefault("YOLO_CONFIG_DIR", str(runs_dir() / "ultralytics-config")))
        _install_fonts(config_dir)
    import ultralytics
    from ultralytics.utils import SETTINGS, torch_utils

    if not _ready:
        wanted = {k: v for k, v in carried.items() if k in SETTINGS}
        wanted.update({"sync": False, "weights_dir": str(WEIGHTS_DIR), "runs_dir": str(runs_dir())})
        if any(SETTINGS.get(k) != v for k, v in wanted.items()):
            SETTINGS.update(wanted)
        _ready = True
    torch_utils.NUM_THREADS = threads or os.cpu_count() or 1
    return ultralytics


def check_torch_pair() -> None:
    """A torchvision built for another torch fails deep inside Ultralytics (``operator torchvision::nms does not
    exist``): say which pair to install, in one line, before anything else runs."""
    from importlib import metadata

    from coco2yolo.errors import UserError

    try:
        import torchvision  # noqa: F401 - importing it is the check
    except (RuntimeError, ImportError, OSError) as err:
        try:
            tv = metadata.version("torchvision")
            t = metadata.version("torch")
        except metadata.PackageNotFoundError:
            raise UserError(f"torch and torchvision must both be installed ({' '.join(str(err).split())[:120]})") \
                from None
        base = t.split("+")[0].split(".")
        want = f"0.{int(base[1]) + 15}" if len(base) > 1 and base[0] == "2" and base[1].isdigit() else "the matching one"
        raise UserError(f"torchvision {tv} does not work with torch {t} ({' '.join(str(err).split())[:80]}): install "
                        f"the pair built together, torchvision {want}.x for torch {'.'.join(base[:2])} (requirements.txt "
                        "pins torch 2.14.1 with torchvision 0.29.1)") from None


def trust_checkpoints(trust: bool) -> None:
    """Load checkpoints with Ultralytics' full pickle loader (``trust``) or its safe, allow-listed one.

    For this process; ``--trust-weights`` is the only caller that passes True.
    """
    setup()
    from ultralytics.nn import tasks

    tasks.SAFE_LOAD = not trust


def fetch_weights(name: str, folder: Path) -> Path | None:
    """Download an Ultralytics hub weights file (``yolov5lu.pt``) into ``folder`` with Ultralytics' own
    download code; None when offline or when it cannot be fetched."""
    if offline():
        return None
    setup()
    from ultralytics.utils.downloads import GITHUB_ASSETS_NAMES, attempt_download_asset

    if name not in GITHUB_ASSETS_NAMES:
        return None
    target = Path(folder) / name
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        attempt_download_asset(str(target))
    except Exception:  # noqa: BLE001 - no network, a proxy, a full disk: the caller says what to do instead
        return None
    return target if target.is_file() else None


def check_device(device: str) -> None:
    """Refuse CUDA device ids this machine does not have (one line instead of a traceback)."""
    from coco2yolo.errors import UserError

    d = str(device).strip().lower().replace("cuda:", "")
    if d in ("", "cpu", "mps"):
        return
    parts = d.split(",")
    if not all(p.strip().isdigit() for p in parts):
        raise UserError(f"--device must be cpu, a GPU index like 0, or a list like 0,1,2,3; got {device!r}")
    import torch

    n = torch.cuda.device_count()
    missing = [p for p in parts if int(p) >= n]
    if missing:
        have = "no CUDA device (use --device cpu)" if n == 0 else f"CUDA devices 0..{n - 1}"
        raise UserError(f"--device {device}: CUDA device {missing[0]} does not exist; this machine has {have}")
