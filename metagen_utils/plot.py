"""Figures: image grids and bar charts, saved to the run's figures folder and shown inline."""
from __future__ import annotations

from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np

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


def finish(fig, name: str) -> None:
    """Save ``fig`` as ``figures/<name>.png`` in the run's output folder, then show it."""
    save_figure(fig, name)
    plt.show()
