"""Figures: grids label their rows and columns; the diagrams carry the formulas the notebooks teach."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from metagen_utils import plot  # noqa: E402


def texts(fig) -> str:
    return " ".join(t.get_text() for ax in fig.axes for t in [*ax.texts, ax.title, ax.yaxis.label])


def test_an_image_grid_labels_its_rows_and_columns():
    fig = plot.image_grid([[np.zeros((4, 4))] * 3] * 2, row_labels=["a", "b"], col_labels=["x", "y", "z"])
    assert [ax.get_title() for ax in fig.axes[:3]] == ["x", "y", "z"]
    assert fig.axes[3].get_ylabel() == "b"
    plt.close(fig)


# Each concept diagram, with the labels and formulas its notebook teaches from it.
DIAGRAMS = {
    "inference_diagram": ("three ways to find the class code c from K support images", "gradient", "amortised",
                          "hybrid", "c₀ (learned)", "c = h_ω(x₁…x_K)", "c ← c − α ⊙ ∇_c L_support"),
    "maml_diagram": ("θ_i ← θ_i − α∇L_support(θ_i)", "L_query(θ_i)", "θ ← θ − β ∇_θ Σ_i L_query(θ_i)",
                     "inner loop", "outer loop"),
    "episode_diagram": ("episode = N classes, one task each", "N = 3, K = 2, Q = 2", "task 1",
                        "support: K images per class", "query: Q images per class", "background classes",
                        "meta-training episodes", "validation classes", "choosing settings",
                        "evaluation classes", "unseen test episodes"),
    "update_rules_diagram": ("θ ← θ − M ∇L(θ)", "M = α", "Meta-SGD", "M = diag(α)", "M_k = diag(α_k)", "MAML++",
                             "M = L Lᵀ", "one rate per parameter", "k × P", "P × P", "positive semi-definite",
                             "first-order", "second derivatives", "Reptile", "θ ← θ + ε (θ_i − θ)"),
    "conditional_prior_vae_diagram": ("K support images", "inner loop", "context c", "c₀", "one decoder layer",
                                      "support's −ELBO", "p(z | c) = N(m, diag eˢ)", "[m; s] = W c + b",
                                      "sample z", "decoder", "new images", "encoder q(z | x, c)", "outer loop",
                                      "c₀, W, b", "learned rates"),
}


@pytest.mark.parametrize("name", DIAGRAMS)
def test_each_diagram_shows_the_labels_and_formulas_its_notebook_teaches(name):
    fig = getattr(plot, name)()
    shown = texts(fig)
    for part in DIAGRAMS[name]:
        assert part in shown, part
    plt.close(fig)


def test_no_diagram_label_overlaps_another_or_leaves_the_figure():
    for name in DIAGRAMS:
        fig = getattr(plot, name)()
        fig.canvas.draw()
        labels = [(t.get_text(), t.get_window_extent()) for ax in fig.axes for t in ax.texts
                  if t.get_visible() and t.get_text().strip()]
        for i, (text, box) in enumerate(labels):
            assert (fig.bbox.x0 <= box.x0 and box.x1 <= fig.bbox.x1
                    and fig.bbox.y0 <= box.y0 and box.y1 <= fig.bbox.y1), (name, text)
            for other, other_box in labels[i + 1:]:
                assert not box.overlaps(other_box), (name, text, other)
        plt.close(fig)


def test_interval_grid_draws_a_panel_per_row_and_column_and_leaves_out_missing_methods():
    panels = {"fidelity": {"K = 1": {"a": (0.5, 0.1), "b": (0.3, 0.05)}, "K = 5": {"a": (0.6, 0.1)}},
              "IS-NLL": {"K = 1": {"a": (150.0, 2.0), "b": (float("nan"), float("nan"))},
                         "K = 5": {"a": (140.0, 2.0), "b": (145.0, 1.0)}}}
    fig = plot.interval_grid(panels, lines={"fidelity": {"chance": 0.2}})
    axes = fig.axes
    assert len(axes) == 4
    points = [len(ax.lines[0].get_xdata()) for ax in axes]   # the errorbar's markers come first
    assert points == [2, 1, 1, 2], "a missing or NaN method is left out of its panel"
    assert [t.get_text() for t in axes[0].get_yticklabels()] == ["a", "b"]
    assert [t.get_text() for t in axes[1].get_legend().get_texts()] == ["chance"]
    assert axes[0].get_legend() is None and axes[2].get_legend() is None, "one legend per row"
    plt.close(fig)
