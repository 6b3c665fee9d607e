"""PNG charts for evaluate.py: per-class AP50 bars and precision-recall curves at IoU 0.5."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from coco2yolo.fileio import atomic_path


def _figure():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    return path


def plot_ap50(path: Path, names: list[str], runs: dict[str, list[float]]) -> Path:
    """Grouped horizontal bars: AP50 per class for each results file (NaN bars omitted)."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(names) * max(1, len(runs)) + 1.5))
    h = 0.8 / max(1, len(runs))
    y = np.arange(len(names))
    for j, (label, vals) in enumerate(runs.items()):
        ax.barh(y + j * h, np.nan_to_num(vals), height=h, label=label)
    ax.set_yticks(y + h * (len(runs) - 1) / 2, names)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("AP50")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("AP50 per class")
    out = _save(fig, path)
    plt.close(fig)
    return out


def plot_pr(path: Path, names: list[str], precision: np.ndarray | None, title: str) -> Path:
    """PR curves per class from COCOeval's precision array [T, R, K, A, M] at IoU 0.5."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(7, 5))
    rec = np.linspace(0, 1, 101)
    if precision is not None:
        for k, name in enumerate(names):
            p = precision[0, :, k, 0, -1]
            if (p > -1).any():
                ax.plot(rec, np.clip(p, 0, 1), label=f"{name} ({p[p > -1].mean():.3f})")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(f"precision-recall at IoU 0.5: {title}")
    ax.legend(fontsize=7, loc="lower left")
    out = _save(fig, path)
    plt.close(fig)
    return out
