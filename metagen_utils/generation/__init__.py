"""Few-shot image generation (notebook 04): K images of an unseen class in, new images of it out.

``vae`` (the conditional-prior VAE, its adaptation and sampling), ``meta_vae`` (it, meta-trained by
:mod:`metagen_utils.training`), ``evaluation`` (baselines and the evaluation protocol),
``classifier`` (the glyph classifier behind fidelity, diversity and the Fréchet distance),
``pretrained`` (the committed full-profile weights).
"""
from .vae import (ConditionalVAE, adapt, adapt_and_sample, call, mean_loss, per_task, query_scores, sample,
                  task_batch, train_class_contexts, train_joint)

__all__ = ["ConditionalVAE", "adapt", "adapt_and_sample", "call", "mean_loss", "per_task", "query_scores", "sample",
           "task_batch", "train_class_contexts", "train_joint"]
