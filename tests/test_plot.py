"""Figures: grids label their rows and columns; the diagrams carry the formulas the notebooks teach."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from metagen_utils import plot  # noqa: E402


def texts(fig) -> str:
    return " ".join(t.get_text() for ax in fig.axes for t in [*ax.texts, ax.title, ax.yaxis.label])


def test_an_image_grid_labels_its_rows_and_columns():
    fig = plot.image_grid([[np.zeros((4, 4))] * 3] * 2, row_labels=["a", "b"], col_labels=["x", "y", "z"])
    assert [ax.get_title() for ax in fig.axes[:3]] == ["x", "y", "z"]
    assert fig.axes[3].get_ylabel() == "b"
    plt.close(fig)


def test_the_maml_diagram_shows_both_loops_and_their_updates():
    fig = plot.maml_diagram()
    shown = texts(fig)
    for part in ("θ_i ← θ_i − α∇L_support(θ_i)", "L_query(θ_i)", "θ ← θ − β ∇_θ Σ_i L_query(θ_i)",
                 "inner loop", "outer loop"):
        assert part in shown, part
    plt.close(fig)
