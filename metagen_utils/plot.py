"""Figures: image grids, the series' diagrams, saved to the run's figures folder and shown inline."""
from __future__ import annotations

from typing import Mapping, Sequence

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


# The three diagrams below draw on an axes that fills the figure, in inches: a box at (x, y) of size (w, h)
# is where it says on the page, and a square stays square.
def _canvas(width: float, height: float, bottom: float = 0.0):
    fig = plt.figure(figsize=(width, height))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width), ax.set_ylim(bottom, bottom + height), ax.axis("off")
    return fig, ax


def _box(ax, x, y, w, h, colour, text=None, fontsize=8.5, **style):
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.04", fc=colour, ec="0.3", **style))
    if text:
        ax.text(x + w / 2, y + h / 2, text, ha="center", va="center", fontsize=fontsize)


def _arrow(ax, start, end, dashed=False, bend=0.0):
    """An arrow from ``start`` to ``end``; ``bend`` ≠ 0 curves it (negative: bulging up for a rightward arrow)."""
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=12, color="0.25", shrinkA=0,
                                 shrinkB=0, linestyle="--" if dashed else "-",
                                 connectionstyle=f"arc3,rad={bend}"))


def _square(ax, x, y, size, colour, highlight=False):
    """An image placeholder: a tinted square centred at (x, y)."""
    ax.add_patch(plt.Rectangle((x - size / 2, y - size / 2), size, size, fc=colour,
                               ec="0.1" if highlight else "0.45", lw=1.6 if highlight else 0.6))


_CLASS_TINTS = ("#9ecae1", "#fdae6b", "#a1d99b", "#bcbddc", "#d9b38c", "#c7c7c7", "#f4a6b7", "#9edae5")


def episode_diagram():
    """The anatomy of an N-way K-shot episode, as in notebook 01: the classes split, by alphabet, into
    background classes (meta-training episodes), validation classes (choosing settings) and evaluation
    classes (unseen test episodes); one episode draws N classes, each a task with K support images (what
    the learner adapts on) and Q query images (held out, to score the adapted learner). Drawn with N = 3,
    K = 2, Q = 2. Returns the figure."""
    fig, ax = _canvas(10, 4.4)
    n, k, q = 3, 2, 2

    # Left: all classes (a grey square each), split into three disjoint pools; the three the episode
    # draws are tinted and outlined, in the tints of the episode's rows on the right.
    ax.text(1.75, 4.15, "all classes, split three ways", ha="center", fontsize=9, weight="bold")
    task_classes = (1, 3, 6)       # which background squares the episode on the right drew, in row order
    pools = ((2.65, 1.35, "#dbe9f6", "background classes", "→ meta-training episodes"),
             (1.45, 1.05, "#eeeeee", "validation classes", "→ choosing settings"),
             (0.25, 1.05, "#e2f0d9", "evaluation classes", "→ unseen test episodes"))
    for y, height, colour, name, use in pools:
        _box(ax, 0.25, y, 3.0, height, colour)
        ax.text(1.75, y + height - 0.2, name, ha="center", va="center", fontsize=8.5)
        ax.text(1.75, y + 0.18, use, ha="center", va="center", fontsize=8.5)
        for col in range(8):
            drawn = y > 2 and col in task_classes
            tint = _CLASS_TINTS[task_classes.index(col)] if drawn else "#d4d4d4"
            _square(ax, 0.63 + 0.32 * col, y + height / 2 - 0.13, 0.22, tint, highlight=drawn)
    _arrow(ax, (3.35, 3.3), (4.35, 3.3))
    ax.text(3.85, 3.5, "an episode\ndraws N classes", ha="center", va="bottom", fontsize=8.5)

    # Right: one episode, N rows (one task each); K support and Q query images per row.
    _box(ax, 4.45, 0.25, 5.35, 3.8, "#fde6cc")
    ax.text(7.12, 3.8, "episode = N classes, one task each", ha="center", va="center", fontsize=9,
            weight="bold")
    ax.text(7.12, 3.5, f"here N = {n}, K = {k}, Q = {q}", ha="center", va="center", fontsize=8.5)
    groups = ((5.35, "support: K images per class", "the learner adapts\non these"),
              (7.65, "query: Q images per class", "held out, to score\nthe adapted learner"))
    rows_y = (2.55, 1.95, 1.35)
    for x, heading, caption in groups:
        _box(ax, x, 1.0, 2.1, 2.15, "white")
        ax.text(x + 1.05, 2.97, heading, ha="center", va="center", fontsize=8.5)
        ax.text(x + 1.05, 0.62, caption, ha="center", va="center", fontsize=8.5)
        for r, y in enumerate(rows_y):
            for j in range(k if x < 7 else q):
                _square(ax, x + 0.7 + 0.7 * j, y, 0.45, _CLASS_TINTS[r])
    for r, y in enumerate(rows_y):
        ax.text(4.87, y, f"task {r + 1}", ha="center", va="center", fontsize=8.5)
    return fig


def update_rules_diagram():
    """The family of update rules of notebook 03: every rule takes inner steps θ ← θ − M ∇L(θ) and differs in
    what M is — a scalar α (gradient descent, MAML), diag(α) (Meta-SGD), a diag(α_k) per inner step (MAML++'s
    per-step rates) or a full positive semi-definite matrix L Lᵀ (a learned preconditioner) — with a sketch
    of M's shape and how many numbers it learns; a note at the bottom says how first-order MAML and Reptile
    compute the meta-gradient instead. Returns the figure."""
    fig, ax = _canvas(8, 4)
    ax.text(4.0, 3.78, "every rule steps θ ← θ − M ∇L(θ); they differ in M   (θ holds P numbers)", ha="center",
            va="center", fontsize=9, weight="bold")
    for x, heading, align in ((0.2, "rule", "left"), (2.85, "M", "center"), (4.25, "shape of M", "center"),
                              (4.9, "numbers learned in M", "left")):
        ax.text(x, 3.45, heading, ha=align, va="center", fontsize=8.5, color="0.35", style="italic")
    rows = (("gradient descent / MAML", "M = α", "scalar", "1: α, fixed or learned", "#eeeeee"),
            ("Meta-SGD", "M = diag(α)", "diagonal", "P: one rate per parameter", "#dbe9f6"),
            ("per-step rates (MAML++)", "M_k = diag(α_k)\nat inner step k", "per step",
             "k × P: one set of rates per step", "#dbe9f6"),
            ("learned preconditioner", "M = L Lᵀ", "full",
             "P × P: a full matrix,\nkept positive semi-definite", "#fde6cc"))
    for i, (name, formula, shape, count, colour) in enumerate(rows):
        y = 3.02 - 0.56 * i
        _box(ax, 0.15, y - 0.22, 7.7, 0.44, colour)
        ax.text(0.2, y, name, ha="left", va="center", fontsize=8.5, weight="bold")
        ax.text(2.85, y, formula, ha="center", va="center", fontsize=8.5)
        ax.text(4.9, y, count, ha="left", va="center", fontsize=8.5)
        _matrix_icon(ax, 4.25, y, shape)
    _box(ax, 0.15, 0.1, 7.7, 0.85, "#e2f0d9")
    ax.text(0.2, 0.74, "how the meta-gradient is computed (with any rule above):", ha="left", va="center",
            fontsize=8.5, weight="bold")
    ax.text(0.2, 0.47, "first-order MAML: drops the second derivatives (treats the inner gradients as constants)",
            ha="left", va="center", fontsize=8.5)
    ax.text(0.2, 0.22, "Reptile: moves θ toward the adapted θ_i,  θ ← θ + ε (θ_i − θ)", ha="left", va="center",
            fontsize=8.5)
    return fig


def _matrix_icon(ax, x, y, shape, size=0.34):
    """A small sketch of M, centred at (x, y): a dot (scalar), a diagonal, stacked diagonals (one per step) or
    a filled square (full matrix)."""
    def frame(cx, cy):
        ax.add_patch(plt.Rectangle((cx - size / 2, cy - size / 2), size, size, fc="white", ec="0.3", lw=0.8))

    def diagonal(cx, cy):
        cells = 4
        for j in range(cells):
            ax.add_patch(plt.Rectangle((cx - size / 2 + j * size / cells, cy + size / 2 - (j + 1) * size / cells),
                                       size / cells, size / cells, fc="#3b6ea5", lw=0))

    if shape == "scalar":
        ax.add_patch(plt.Circle((x, y), 0.06, fc="#3b6ea5", ec="none"))
    elif shape == "diagonal":
        frame(x, y), diagonal(x, y)
    elif shape == "per step":
        for offset in (0.1, 0.0, -0.1):
            frame(x + offset, y + offset * 0.4), diagonal(x + offset, y + offset * 0.4)
    else:
        ax.add_patch(plt.Rectangle((x - size / 2, y - size / 2), size, size, fc="#c0504d", ec="0.3", lw=0.8))


def conditional_prior_vae_diagram():
    """Notebook 04's generator: K support images of an unseen class → inner loop, a few gradient steps on the
    task context c (from the learned c₀, and on one decoder layer) on the support's negative ELBO → the prior
    p(z | c) = N(m, diag eˢ) with [m; s] = W c + b, the linear meta-parameter network → sample z → decoder →
    new images of the class. Dashed: the encoder q(z | x, c), needed for the ELBO but not to sample. Below:
    the outer loop, whose query loss updates c₀, W, b, the encoder, the decoder and the learned rates.
    Returns the figure."""
    fig, ax = _canvas(10, 4.05, bottom=0.3)
    mid, half = 2.75, 0.7          # centre line and half-height of the main row's boxes

    # Main path, left to right.
    _box(ax, 0.15, mid - half, 1.4, 2 * half, "#eeeeee")
    ax.text(0.85, mid + 0.3, "K support images\nof an unseen class", ha="center", va="center", fontsize=8.5)
    for j in range(3):
        _square(ax, 0.45 + 0.4 * j, mid - 0.35, 0.3, _CLASS_TINTS[0])
    _box(ax, 1.95, mid - half, 2.5, 2 * half, "#fde6cc",
         "inner loop: a few gradient steps\non the context c, from the learned c₀\n(and on one decoder layer),\n"
         "on the support's −ELBO")
    _box(ax, 4.9, mid - half, 2.0, 2 * half, "#dbe9f6",
         "prior p(z | c) = N(m, diag eˢ)\n[m; s] = W c + b\n(mean m, log-variance s)")
    _box(ax, 7.75, mid - 0.35, 0.8, 0.7, "#dbe9f6", "decoder")
    _box(ax, 8.95, mid - half, 0.9, 2 * half, "#e2f0d9")
    ax.text(9.4, mid + 0.3, "new images\nof that class", ha="center", va="center", fontsize=8.5)
    for j in range(3):
        _square(ax, 9.12 + 0.28 * j, mid - 0.35, 0.2, _CLASS_TINTS[0])
    for start, end in (((1.6, mid), (1.9, mid)), ((4.5, mid), (4.85, mid)), ((6.95, mid), (7.7, mid)),
                       ((8.6, mid), (8.9, mid))):
        _arrow(ax, start, end)
    ax.text(4.67, mid + 0.06, "c", ha="center", va="bottom", fontsize=8.5)
    ax.text(7.32, mid + 0.06, "sample z", ha="center", va="bottom", fontsize=8.5)

    # Above: the encoder, dashed — the ELBO needs it, sampling does not.
    _box(ax, 1.95, 3.8, 2.5, 0.42, "white", "encoder q(z | x, c)", linestyle="--")
    _arrow(ax, (0.85, mid + half + 0.05), (1.9, 4.01), dashed=True)
    _arrow(ax, (3.2, 3.75), (3.2, mid + half + 0.05), dashed=True)
    ax.text(4.6, 4.01, "dashed: used for the ELBO, not to sample", ha="left", va="center", fontsize=8.5,
            color="0.3")

    # Below: the outer loop, from the query loss back to every meta-parameter.
    _box(ax, 8.45, 1.15, 1.4, 0.55, "#eeeeee", "query images'\n−ELBO")
    line_y = 1.42
    ax.plot([8.4, 3.2], [line_y, line_y], color="0.25", lw=1.2)
    targets = ((3.2, mid - half, "c₀, rates"), (5.9, mid - half, "W, b"), (8.15, mid - 0.35, None))
    for x, top, label in targets:
        _arrow(ax, (x, line_y), (x, top - 0.05))
        if label:
            ax.text(x + 0.08, (line_y + top) / 2, label, ha="left", va="center", fontsize=8.5)
    ax.text(5.0, 0.87, "outer loop: on background tasks, the query images' −ELBO (after the inner loop)",
            ha="center", va="center", fontsize=9, weight="bold")
    ax.text(5.0, 0.57, "updates c₀, W, b, the encoder, the decoder and the learned rates", ha="center",
            va="center", fontsize=9, weight="bold")
    return fig


def inference_diagram():
    """Notebook 05's three ways to turn K support images into a class code c, in three rows: gradient
    steps from one learned start c₀, the support entering only through the steps; the set encoder h_ω
    in one pass (amortised); the set encoder's c, then gradient steps (hybrid). Every row ends in the
    same decoder, which reads c. Returns the figure."""
    fig, ax = _canvas(8, 3.6)
    ax.text(4.0, 3.42, "three ways to find the class code c from K support images", ha="center", va="center",
            fontsize=9, weight="bold")
    step_text, blue, orange = "c ← c − α ⊙ ∇_c L_support", "#dbe9f6", "#fde6cc"
    for i, name in enumerate(("gradient", "amortised", "hybrid")):
        y = 2.62 - 0.95 * i
        ax.text(0.15, y, name, ha="left", va="center", fontsize=9, weight="bold")
        for j in range(3):   # the K support images
            _square(ax, 1.25 + 0.3 * j, y, 0.26, "#c7c7c7")
        start = {"gradient": ("c₀ (learned)", blue), "amortised": ("c = h_ω(x₁…x_K)", orange),
                 "hybrid": ("c = h_ω(x₁…x_K)", orange)}[name]
        _box(ax, 2.55, y - 0.25, 1.5, 0.5, start[1], start[0], fontsize=8)
        if name == "gradient":   # the support reaches c only through the gradient steps
            _arrow(ax, (1.55, y + 0.16), (5.2, y + 0.27), bend=-0.12)
        else:
            _arrow(ax, (2.05, y), (2.55, y))
        if name == "amortised":
            _arrow(ax, (4.05, y), (6.45, y))
        else:
            _box(ax, 4.4, y - 0.25, 1.65, 0.5, blue, step_text, fontsize=7.5)
            _arrow(ax, (4.05, y), (4.4, y))
            _arrow(ax, (6.05, y), (6.45, y))
        _box(ax, 6.45, y - 0.25, 1.4, 0.5, "#e2f0d9", "decoder p(x | z, c)", fontsize=8)
    ax.text(4.0, 0.12, "blue: gradient steps on the support's loss;  orange: the set encoder h_ω, one pass",
            ha="center", va="center", fontsize=8, color="0.35", style="italic")
    return fig


def interval_grid(panels: Mapping[str, Mapping[str, Mapping[str, tuple[float, float]]]],
                  lines: Mapping[str, Mapping[str, float]] | None = None, width: float = 4.2):
    """Means with their 95 % intervals, as dots and bars: ``panels[row][column][method] = (mean,
    half-width)``, one panel per row and column (e.g. a metric per row, a K per column). Methods are
    listed top to bottom in the order of the first panel; a method missing from a panel (or with a NaN
    mean) is left out of it. ``lines[row] = {label: x}`` draws labelled reference lines (chance, real
    images) in every panel of that row. Returns the figure."""
    rows, columns = list(panels), list(next(iter(panels.values())))
    methods = list(next(iter(next(iter(panels.values())).values())))
    fig, axes = plt.subplots(len(rows), len(columns), figsize=(width * len(columns), 0.3 * len(methods) * len(rows) + 1),
                             squeeze=False, sharey=True)
    for r, row in enumerate(rows):
        for c, column in enumerate(columns):
            ax, shown = axes[r, c], panels[row].get(column, {})
            y = [i for i, m in enumerate(methods) if m in shown and not np.isnan(shown[m][0])]
            means = [shown[methods[i]][0] for i in y]
            ax.errorbar(means, y, xerr=[shown[methods[i]][1] for i in y], fmt="o", color="C0", ms=4, capsize=2)
            for (label, x), style in zip((lines or {}).get(row, {}).items(), ("--", ":", "-.")):
                ax.axvline(x, color="0.4", ls=style, lw=1, label=label)
            ax.set_yticks(range(len(methods)), methods, fontsize=7.5)
            ax.set_ylim(len(methods) - 0.5, -0.5)
            ax.set_title(f"{column}", fontsize=9)
            ax.set_xlabel(row, fontsize=8)
            ax.grid(axis="x", color="0.9")
            if (lines or {}).get(row) and c == len(columns) - 1:
                ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def finish(fig, name: str) -> None:
    """Save ``fig`` as ``figures/<name>.png`` in the run's output folder, then show it."""
    save_figure(fig, name)
    plt.show()
