"""Inferring the class from its images (notebook 05): ``set_vae`` (the class-code VAE, its set encoder,
the gradient, amortised and hybrid ways to find c, and their training), ``scoring`` (notebook 04's
evaluation for them, and where each way's fidelity goes), ``pretrained`` (the committed full-profile
hybrid), ``command`` (the model for the command line)."""
from .set_vae import METHODS, ClassVAE, contexts, infer_context, init_params, query_scores, sample, train

__all__ = ["METHODS", "ClassVAE", "contexts", "infer_context", "init_params", "query_scores", "sample", "train"]
