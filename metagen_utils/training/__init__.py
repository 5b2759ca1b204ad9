"""The outer loop (notebook 04 and the command line): ``loop`` (AdamW, clipping, validation, exact
resume, torchrun), ``schedule`` (the kit's one learning-rate schedule: warm-up, then a cosine),
``checkpoint`` (safe atomic checkpoints), ``demo`` (a small MAML generator for the command line)."""
