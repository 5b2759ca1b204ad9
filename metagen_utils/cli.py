"""``python -m metagen_utils {train,evaluate,sample}``: meta-train, measure and draw from the command line.

    python -m metagen_utils train --model meta_vae --out runs/vae          # checkpoints, metrics/train.json
    python -m metagen_utils evaluate --out runs/vae                        # metrics/evaluate.json
    python -m metagen_utils sample --out runs/vae                          # figures/samples.png

``--model meta_vae`` (the default) is notebook 04's conditional-prior VAE (:mod:`metagen_utils.generation.meta_vae`);
``--model set_vae`` notebook 05's class-code VAE (:mod:`metagen_utils.inference.command`), with ``--method``
gradient, amortised or hybrid; ``--model conv_generator`` a small MAML demo generator.

``--validation`` and ``--evaluation`` choose the held-out classes of a folder (names, comma-separated, or a
count; :func:`metagen_utils.data.hold_out`), as the notebooks' ``VALIDATION`` and ``EVALUATION`` do;
``evaluate`` and ``sample`` reuse the training run's choice.

``evaluate`` and ``sample`` load ``OUT/best/`` (else ``OUT/latest/``, or ``--checkpoint``), rebuild the
model the checkpoint names, and use the *evaluation* split: classes (and scripts) never seen in training.
Every file is written atomically. The work is done by :mod:`metagen_utils.training.loop` and
:mod:`metagen_utils.training.checkpoint`; this module parses options, wires data to them and writes results.
``torchrun --nproc_per_node=N -m metagen_utils train …`` trains on N processes.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist

from .config import DEVICES, resolve, seed_everything
from .data import ImageSet, hold_out, load
from .data.splits import held_out_summary
from .errors import CheckpointError, ConfigError, MetagenError
from .files import write_atomic, write_json
from .kernels import pin_cpu_kernels
from .data.episodes import EpisodeSampler
from .generation.meta_vae import meta_vae
from .inference.command import set_vae
from .inference.set_vae import METHODS
from .profiles import PROFILES
from .stats import mean_ci
from .training.checkpoint import Checkpoint, load_checkpoint, restore
from .training.demo import conv_generator
from .training.loop import MetaModel, TrainResult, episode_fn, fit, init_distributed, run_settings

# A model plugs in by name: a builder (run, image_shape, device, pretrain_on=None) → MetaModel, where
# pretrain_on is the background split when a new run starts (for a model with a pretraining stage).
MODELS: dict[str, Callable[..., MetaModel]] = {"conv_generator": conv_generator, "meta_vae": meta_vae,
                                              "set_vae": set_vae}


def int_at_least(least: int) -> Callable[[str], int]:
    """An argparse ``type`` accepting integers ≥ ``least``, so a bad value is a usage error naming it."""
    def parse(text: str) -> int:
        if not text.lstrip("-").isdigit() or int(text) < least:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer ≥ {least}")
        return int(text)
    return parse


def held_out(text: str) -> int | list[str]:
    """An argparse ``type`` for ``--validation`` / ``--evaluation``: a count, or comma-separated names."""
    if text.strip().isdigit():
        return int(text)
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"{text!r} is neither a count nor comma-separated class or alphabet names")
    return names


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m metagen_utils train``."""
    parser.add_argument("--profile", choices=PROFILES, default="cpu", help="cpu: minutes on 2 cores; full: GPU")
    parser.add_argument("--model", choices=sorted(MODELS), default="meta_vae",
                        help="meta_vae: notebook 04's conditional-prior VAE; set_vae: notebook 05's class-code "
                             "VAE; conv_generator: a small MAML demo")
    parser.add_argument("--method", choices=METHODS,
                        help="set_vae: how c is found from the support (default: the profile's, hybrid)")
    parser.add_argument("--validation", type=held_out,
                        help="held-out validation alphabets or classes: a count or comma-separated names "
                             "(default: the data's own split, else a seeded 10 %%)")
    parser.add_argument("--evaluation", type=held_out,
                        help="held-out evaluation alphabets or classes, as --validation (default: own, else 20 %%)")
    parser.add_argument("--data", default="glyphs", help="'glyphs' or a folder (Omniglot or class-per-folder)")
    parser.add_argument("--device", choices=DEVICES, default="auto")
    parser.add_argument("--out", type=Path, required=True, help="run folder: checkpoints, metrics, figures")
    parser.add_argument("--steps", type=int_at_least(1), help="outer steps (default: the profile's)")
    parser.add_argument("--seed", type=int_at_least(0), default=0)
    parser.add_argument("--tasks-per-step", type=int_at_least(1),
                        help="tasks per outer step, split over the processes (default: the profile's)")
    parser.add_argument("--pretrain-steps", type=int_at_least(0),
                        help="meta_vae: steps of the joint VAE trained before meta-training; set_vae: steps of the "
                             "shared amortised stage before the method's own (default: the profile's)")
    parser.add_argument("--class-steps", type=int_at_least(0),
                        help="meta_vae: steps of per-class contexts after the joint VAE (default: the profile's, 0)")
    parser.add_argument("--resume", action="store_true", help="continue from OUT/latest/")


def train_command(args: argparse.Namespace) -> TrainResult:
    """Train the chosen model on the background split of ``--data``, validating on its validation split;
    under torchrun every process runs this and rank 0 writes the files."""
    resolved = resolve(args.profile, args.seed, args.device, None if args.data == "glyphs" else args.data)
    run, cfg = run_settings(args.profile, args.model, args.data, args.seed, steps=args.steps,
                            tasks_per_step=args.tasks_per_step, pretrain_steps=args.pretrain_steps,
                            class_steps=args.class_steps, method=args.method)
    run["held_out"] = {"validation": args.validation, "evaluation": args.evaluation}
    rank, world, device = init_distributed(resolved.device)
    try:
        images = hold_out(load(args.data, run["image_size"], progress=rank == 0), args.validation,
                          args.evaluation, seed=args.seed)
        if rank == 0:
            print(held_out_summary(images))
        seed_everything(args.seed)   # the initial weights depend on the seed alone, identical on every rank
        resuming = args.resume and (args.out / "latest").is_dir()
        model = MODELS[args.model](run, images.image_shape, device,
                                   pretrain_on=None if resuming else images.split("background"))
        validation = images.split("validation") if "validation" in images.splits else None
        if model.train_fn is None:
            result = fit(model, images.split("background"), validation, run, cfg, args.out, args.resume)
        elif args.resume or world > 1:
            raise ConfigError(f"model {args.model!r} trains in one run on one process (its loss weight is "
                              "annealed over the run): --resume and torchrun are not supported for it")
        elif (args.out / "latest").exists():
            raise ConfigError(f"{args.out / 'latest'} already holds a checkpoint; give another output folder")
        else:
            result = model.train_fn(images.split("background"), validation, run, cfg, args.out)
        if rank == 0:
            write_json(args.out / "metrics" / "train.json", {
                "model": args.model, "steps": result.step, "processes": world,
                "final_train_loss": result.train_losses[-1], "train_losses": result.train_losses,
                "validation": result.validation, "best_step": result.best_step,
                "best_validation": result.best_validation})
        return result
    finally:
        if world > 1:
            dist.destroy_process_group()


def load_trained(args: argparse.Namespace) -> tuple[Checkpoint, dict, MetaModel, ImageSet]:
    """(checkpoint, its run config, the model with its weights, the evaluation split of the data)."""
    candidates = [args.out / name for name in ("best", "latest") if (args.out / name).is_dir()]
    folder = args.checkpoint or (candidates[0] if candidates else args.out / "latest")
    checkpoint = load_checkpoint(folder)
    run = checkpoint.config.get("run", {})
    if run.get("model") not in MODELS:
        raise CheckpointError(f"{folder / 'state.json'}: model {run.get('model')!r} is not one of "
                              f"{sorted(MODELS)}; was this checkpoint written by `python -m metagen_utils train`?")
    data = args.data or run["data"]
    device = resolve(args.profile, args.seed, args.device, None if data == "glyphs" else data).device
    chosen = run.get("held_out", {})     # the training run's held-out classes (runs before the option: none)
    images = hold_out(load(data, run["image_size"], progress=True), chosen.get("validation"),
                      chosen.get("evaluation"), seed=run["seed"])
    # notebook 05's model draws z near the support's latents, measured on the background classes
    options = {"prior_from": images.split("background")} if run["model"] == "set_vae" else {}
    model = MODELS[run["model"]](run, images.image_shape, device, **options)
    restore(checkpoint, model.meta_params, rng=False)   # raises, naming the file, on a model mismatch
    return checkpoint, run, model, images.split("evaluation")


def mean_and_ci95(values: torch.Tensor) -> dict[str, float]:
    """Mean and half-width of the 95 % confidence interval of the mean over tasks (:func:`stats.mean_ci`),
    ``[tasks]``; one task gives no interval (half-width 0)."""
    if len(values) < 2:
        return {"mean": values.double().mean().item(), "ci95": 0.0}
    mean, half = mean_ci(values)
    return {"mean": mean, "ci95": half}


def evaluate(args: argparse.Namespace) -> dict:
    """Query metrics before and after adaptation, mean ± 95 % CI over ``--tasks`` evaluation tasks →
    ``OUT/metrics/evaluate.json``."""
    checkpoint, run, model, evaluation = load_trained(args)
    tasks = args.tasks or run["eval_tasks"]
    episode = episode_fn(evaluation, run["k_shot"], run["n_query"], tasks, args.seed)(0)
    per_task = model.evaluate_fn(model.meta_params, episode)
    metrics = {"checkpoint": str(checkpoint.path), "step": checkpoint.step, "split": "evaluation",
               "tasks": tasks, "k_shot": run["k_shot"], "n_query": run["n_query"], "seed": args.seed,
               **{name: mean_and_ci95(values) for name, values in per_task.items()}}
    path = args.out / "metrics" / "evaluate.json"
    write_json(path, metrics)
    for name, values in per_task.items():
        summary = metrics[name]
        print(f"{name} = {summary['mean']:.4g} ± {summary['ci95']:.2g} (95 % CI, {tasks} tasks)")
    print(f"wrote {path}")
    return metrics


def sample(args: argparse.Namespace) -> Path:
    """One row per unseen class: its K support images, then images generated after adapting to them →
    ``OUT/figures/samples.png``."""
    import matplotlib
    matplotlib.use("Agg")   # a command line has no display; set before pyplot is first used
    import matplotlib.pyplot as plt

    from .plot import image_grid

    checkpoint, run, model, evaluation = load_trained(args)
    k = run["k_shot"]
    # One task of n_way classes: distinct classes, one row each (independent tasks could repeat a class).
    n_way = min(args.classes, evaluation.num_classes)
    episode = EpisodeSampler(evaluation, k, 0, n_way=n_way, seed=args.seed).sample(1)
    supports = episode.support[0].reshape(n_way, k, *episode.support.shape[2:])   # class-major
    rows = [list(support) + list(model.generate_fn(model.meta_params, support).cpu()) for support in supports]
    labels = [evaluation.classes[c][:24] for c in episode.classes[0].tolist()]
    fig = image_grid(rows, labels, title=f"step {checkpoint.step}: {k} support images | generated")
    path = args.out / "figures" / "samples.png"
    # Fixed metadata so the same figure gives the same bytes run after run.
    write_atomic(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100, metadata={"Software": None}))
    plt.close(fig)
    print(f"wrote {path}")
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m metagen_utils", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True, metavar="{train,evaluate,sample}")
    train_parser = commands.add_parser("train", help="meta-train a model; torchrun runs it on several processes")
    add_arguments(train_parser)
    train_parser.set_defaults(run=train_command)
    for name, run, help in (("evaluate", evaluate, "query MSE/PSNR before and after adaptation"),
                            ("sample", sample, "a PNG grid: support images | generated images")):
        sub = commands.add_parser(name, help=help)
        sub.add_argument("--profile", choices=PROFILES, default="cpu")
        sub.add_argument("--data", help="'glyphs' or a folder (default: the data the checkpoint was trained on)")
        sub.add_argument("--device", choices=DEVICES, default="auto")
        sub.add_argument("--out", type=Path, required=True, help="the run folder `train --out` wrote")
        sub.add_argument("--checkpoint", type=Path,
                         help="a checkpoint folder (default: OUT/best, else OUT/latest)")
        sub.add_argument("--seed", type=int_at_least(0), default=0, help="which evaluation tasks are drawn")
        sub.set_defaults(run=run)
    commands.choices["evaluate"].add_argument("--tasks", type=int_at_least(1),
                                              help="evaluation tasks (default: the profile's)")
    commands.choices["sample"].add_argument("--classes", type=int_at_least(1), default=6,
                                            help="unseen classes, one row each")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status (argparse exits with 2 on bad options, errors give 1)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    pin_cpu_kernels()   # before any computation: the kernels the committed numbers were computed with
    try:
        args.run(args)
    except MetagenError as error:
        print(f"{parser.prog} {args.command}: error: {error}", file=sys.stderr)
        return 1
    return 0
