"""Pixel completion with the linear meta-parameter network (notebooks 02 and 03).

``tasks`` (one image a task: observed pixels are the support, the rest the query; the model, its closed
forms, gradient completion and MAML), ``gaussian`` (the Gaussian baselines), ``scoring`` (PSNR on the
unseen pixels, every method on the same tasks), ``update_rules`` (learned update rules: scalar, diagonal,
low-rank and full preconditioners).
"""

from .gaussian import GaussianPrior, conditional_mean, feature_space_prior, fit_gaussian, ridge_prior
from ..stats import choose  # the notebooks' `completion.choose`: one function, in stats
from .scoring import Evaluation, evaluate_methods, psnr_table, psnr_unobserved
from .tasks import (DTYPE, KS, CompletionTasks, as_params, as_vector, complete_by_gd, fit_image, fourier_design,
                    gd_closed_form, make_model, make_tasks, normal_equations, task_batch, three_splits,
                    train_maml, with_bias)

__all__ = ["as_params", "as_vector", "choose", "complete_by_gd", "CompletionTasks", "conditional_mean",
           "DTYPE", "evaluate_methods", "Evaluation", "feature_space_prior", "fit_gaussian", "fit_image",
           "fourier_design", "GaussianPrior", "gd_closed_form", "KS", "make_model", "make_tasks",
           "normal_equations", "psnr_table", "psnr_unobserved", "ridge_prior", "task_batch", "three_splits",
           "train_maml", "with_bias"]
