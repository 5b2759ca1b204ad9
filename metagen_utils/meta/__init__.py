"""Meta-learning on any ``nn.Module`` (notebooks 02 and 03): the inner loop and the MAML family.

``maml`` holds the algorithms: :class:`MetaConfig` (MAML 2nd/1st order, Reptile, Meta-SGD, per-step rates),
:func:`init_meta_params`, :func:`inner_loop` (the one inner loop: any model, vmappable, SGD with fixed or
learned rates, or Adam), :func:`inner_rates`, :func:`meta_loss`, :func:`meta_gradient`, :func:`meta_step`.
``memory``: what a meta-gradient holds for backward at its peak (:func:`held_for_backward`).
"""
from .maml import (ALGORITHMS, LR_PREFIX, Inputs, LossFn, MetaConfig, Params, TaskBatch, check_vectorisable,
                   init_meta_params, inner_loop, inner_rates, meta_gradient, meta_loss, meta_step, params_of,
                   select_adapted)
from .memory import Memory, held_for_backward

__all__ = ["ALGORITHMS", "LR_PREFIX", "Inputs", "LossFn", "MetaConfig", "Params", "TaskBatch",
           "check_vectorisable", "held_for_backward", "init_meta_params", "inner_loop", "inner_rates", "Memory",
           "meta_gradient", "meta_loss", "meta_step", "params_of", "select_adapted"]
