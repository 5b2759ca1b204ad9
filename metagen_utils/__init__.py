"""metagen_utils: the tested library behind the metagen notebooks, in the order they teach it.

    data/         images, OpenCV preprocessing, the embedded glyphs, folder loaders, K-shot episodes  → 01
    models.py     the linear meta-parameter network f_θ(x) = W_θ x + b_θ and the other small networks → 02–04
    meta/         the one inner loop (any model, vmappable), MAML 1st/2nd order, Reptile, Meta-SGD → 02–04
    completion/   pixel completion: its tasks, baselines and learned update rules                     → 02, 03
    generation/   the conditional VAE, its meta-training, baselines, evaluation, fidelity classifier  → 04
    inference/    the class-code VAE: set encoder, gradient, amortised and hybrid ways to find c    → 05
    training/     the outer loop, the one warm-up/cosine schedule, checkpoints, resume, torchrun     → 04, CLI
    profiles.py   the cpu and full profiles: every size, step count and width that differs      → 02–05, CLI
    config.py     a notebook's parameters resolved: seeding, device                                   → all
    kernels.py    the CPU kernels the committed numbers were computed with, pinned by the kit         → kit
    stats.py      PSNR, confidence intervals, paired differences, choosing a setting by validation  → 02–04
    plot.py, results.py   figures and metrics files a notebook writes                                 → all
    cli.py        ``python -m metagen_utils train|evaluate|sample``
    kit/          the machinery around the notebooks: harness, results, site, assignments, readability

Words used throughout (one word, one thing):

* *task* — one problem to adapt to: a class of images (04), or one image to complete (02, 03);
* *support* / *query* — a task's examples the model adapts on / is scored on; ``k_shot`` support
  examples per task, ``n_way`` classes per episode;
* *inner loop* — the few gradient steps that adapt to one task; *outer loop* — the updates of what
  every task starts from; ``inner_steps``, ``inner_lr``, ``outer_lr``;
* *meta-parameters* (``meta_params``) — what the outer loop learns: the model's parameters and any
  learned inner rates; *adapted parameters* (``adapted_params``) — one task's parameters after the
  inner loop;
* *profile* — ``cpu`` (the default, 2 cores) or ``full`` (:mod:`metagen_utils.profiles`).
"""
__version__ = "0.1.0"
