"""Charts for evaluate.py and its report (matplotlib): per-class AP50 bars, precision-recall curves,
confusion matrices, AP50 by object size, the cost of each error type. Each ``*_figure`` returns a figure;
:func:`save` writes it to a file, :func:`png` to bytes for a page."""

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


def png(fig, dpi: int = 90) -> bytes:
    """The figure as PNG bytes (and closed)."""
    import io

    plt = _figure()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def confusion_figure(matrix: np.ndarray, labels: list[str], title: str, normalised: bool):
    """A confusion matrix, true classes down and predicted classes across, each cell annotated."""
    plt = _figure()
    n = len(labels)
    fig, ax = plt.subplots(figsize=(1.1 + 0.55 * n, 0.9 + 0.5 * n))
    im = ax.imshow(matrix, cmap="Blues", vmin=0, vmax=1 if normalised else max(1.0, float(matrix.max())))
    ax.set_xticks(range(n), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), labels, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    top = matrix.max() if matrix.size else 0
    for i in range(n):
        for j in range(n):
            v = matrix[i, j]
            if v:
                ax.text(j, i, f"{v:.2f}" if normalised else f"{int(v)}", ha="center", va="center", fontsize=7,
                        color="white" if v > 0.6 * top else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    return fig


def bars_figure(groups: list[str], series: dict[str, list[float]], title: str, ylabel: str):
    """Grouped vertical bars (NaN bars omitted): one group per label, one bar per series."""
    plt = _figure()
    fig, ax = plt.subplots(figsize=(max(4.0, 0.7 * len(groups) * max(1, len(series)) + 1.5), 3.2))
    x = np.arange(len(groups))
    w = 0.8 / max(1, len(series))
    for k, (label, vals) in enumerate(series.items()):
        ax.bar(x + k * w - 0.4 + w / 2, np.nan_to_num(np.asarray(vals, float)), width=w, label=label)
    ax.set_xticks(x, groups, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    if len(series) > 1:
        ax.legend(fontsize=7)
    return fig


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
    fig = pr_figure(names, precision, title)
    out = _save(fig, path)
    plt.close(fig)
    return out


def pr_figure(names: list[str], precision: np.ndarray | None, title: str):
    """The figure of :func:`plot_pr`."""
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
    return fig
