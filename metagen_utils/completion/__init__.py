"""Pixel completion with the linear meta-parameter network (notebooks 02 and 03).

``tasks`` (one image a task: observed pixels are the support, the rest the query; its baselines and
MAML), ``update_rules`` (learned update rules: scalar, diagonal, low-rank and full preconditioners).
"""

from .tasks import (as_params, as_vector, choose, complete_by_gd, CompletionTasks, conditional_mean, DTYPE,
                    evaluate_methods, Evaluation, feature_space_prior, fit_gaussian, fit_image,
                    fourier_design, GaussianPrior, gd_closed_form, KS, make_model, make_tasks,
                    normal_equations, psnr_table, psnr_unobserved, ridge_prior, task_batch, three_splits,
                    train_maml, with_bias)

__all__ = ["as_params", "as_vector", "choose", "complete_by_gd", "CompletionTasks", "conditional_mean",
           "DTYPE", "evaluate_methods", "Evaluation", "feature_space_prior", "fit_gaussian", "fit_image",
           "fourier_design", "GaussianPrior", "gd_closed_form", "KS", "make_model", "make_tasks",
           "normal_equations", "psnr_table", "psnr_unobserved", "ridge_prior", "task_batch", "three_splits",
           "train_maml", "with_bias"]
