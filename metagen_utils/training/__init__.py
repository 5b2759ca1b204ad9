"""The outer loop (notebook 04 and the command line): ``loop`` (AdamW, warm-up and cosine, clipping,
validation, exact resume, torchrun), ``checkpoint`` (safe atomic checkpoints), ``demo`` (a small MAML
generator for the command line)."""
