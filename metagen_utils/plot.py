"""Figures: image grids, the series' diagrams, saved to the run's figures folder and shown inline."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from .results import save_figure


def as_display(image) -> np.ndarray:
    """``[C, H, W]`` or ``[H, W]`` (NumPy or torch, in [0, 1]) → something ``imshow`` draws."""
    array = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    if array.ndim == 3 and array.shape[0] in (1, 3):
        array = array[0] if array.shape[0] == 1 else array.transpose(1, 2, 0)
    return np.clip(array, 0.0, 1.0)


def image_grid(rows: Sequence[Sequence], row_labels: Sequence[str] | None = None, cell: float = 0.6,
               title: str | None = None, ink_dark: bool = True, col_labels: Sequence[str] | None = None):
    """A grid of images, one list per row (each image ``[C, H, W]`` or ``[H, W]`` in [0, 1]), with optional
    labels left of the rows and above the columns. Glyphs (ink = 1) are drawn dark on light, like ink on
    paper."""
    n_rows, n_cols = len(rows), max(len(r) for r in rows)
    label_width = 1.8 if row_labels else 0.0
    title_height = 0.4 + (0.25 if col_labels else 0.0)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(label_width + cell * n_cols, cell * n_rows + title_height),
                             squeeze=False)
    for r, row in enumerate(rows):
        for c in range(n_cols):
            ax = axes[r, c]
            ax.set_xticks([]), ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if c < len(row):
                img = as_display(row[c])
                gray = img.ndim == 2
                ax.imshow(1 - img if (gray and ink_dark) else img, cmap="gray" if gray else None,
                          vmin=0, vmax=1, interpolation="nearest")
        if row_labels:
            axes[r, 0].set_ylabel(row_labels[r], rotation=0, ha="right", va="center", fontsize=8)
    for c, label in enumerate(col_labels or []):
        axes[0, c].set_title(label, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(pad=0.2)
    return fig


def maml_diagram():
    """MAML's two loops as a picture: θ → (per task) k inner steps on the support → the adapted θ_i scored on
    the query → the outer step on θ. Returns the figure."""
    fig, ax = plt.subplots(figsize=(8, 3.6))
    ax.set_xlim(0, 10), ax.set_ylim(-0.2, 4.6), ax.axis("off")

    def box(x, y, w, h, text, colour):
        ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.05", fc=colour, ec="0.3"))
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=8.5)

    def arrow(start, end):
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12, color="0.25",
                                     shrinkA=0, shrinkB=0))

    box(0.2, 1.9, 1.6, 1.0, "meta-parameters\nθ", "#dbe9f6")
    box(8.5, 1.9, 1.3, 1.0, "sum over\nthe tasks", "#eeeeee")
    for name, y in (("task 1", 3.1), ("task T", 1.0)):
        box(2.7, y, 2.7, 1.0, f"{name}: inner loop, k steps\nθ_i ← θ_i − α∇L_support(θ_i)\nfrom θ_i = θ", "#fde6cc")
        box(6.1, y, 1.8, 1.0, "query loss\nL_query(θ_i)", "#e2f0d9")
        arrow((1.85, 2.4), (2.65, y + 0.5))
        arrow((5.45, y + 0.5), (6.05, y + 0.5))
        arrow((7.95, y + 0.5), (8.45, 2.4))
    ax.text(4.05, 2.5, "⋮", ha="center", va="center", fontsize=14)
    ax.text(4.05, 4.45, "inner loop: adapt θ to each task on its support", ha="center", fontsize=9, weight="bold")
    ax.plot([9.15, 9.15, 1.0], [1.85, 0.45, 0.45], color="0.25", lw=1.2)
    arrow((1.0, 0.45), (1.0, 1.85))
    ax.text(5.0, 0.1, "outer loop: θ ← θ − β ∇_θ Σ_i L_query(θ_i), differentiating through the inner steps",
            ha="center", fontsize=9, weight="bold")
    fig.tight_layout()
    return fig


def finish(fig, name: str) -> None:
    """Save ``fig`` as ``figures/<name>.png`` in the run's output folder, then show it."""
    save_figure(fig, name)
    plt.show()
