"""Few-shot image generation: K images of an unseen class in, new images of that class out.

A convolutional VAE whose prior is conditioned on a task context c through the text's linear
meta-parameter network, and whose encoder and decoder also read c through FiLM:

    p(z | c) = N(m, diag eˢ),  [m; s] = W_θ c + b_θ     the linear meta-parameter network (``prior``)
    q(z | x, c) = N(μ_φ(x; c), diag σ²_φ(x; c))          encoder
    p(x | z, c) = Bernoulli(σ(g_ψ(z; c)))                decoder;  FiLM: h ← h ⊙ (1 + γ(c)) + β(c)

For a new class, c (and optionally some decoder layers, MAML-style) takes a few gradient steps on the
support images' negative ELBO with the kit's meta-optimizer (:mod:`metagen_utils.meta`, learned
rates); z ~ p(z | c_adapted), decoded, gives new images of the class.

Parameter names suit ``MetaConfig.adapt`` prefixes: ``context``, ``prior.*``, ``encoder.{conv1,conv2,
film,fc}.*``, ``decoder.{fc,film,up,out}.*`` and ``decoder.refine.<i>.*`` for the decoder's optional
residual blocks; ``adapt=("context", "decoder.up")`` adapts c and one decoder layer. At c = 0 the prior
is N(0, I) and both FiLMs are the identity, so the module with c held at 0 is the jointly trained,
class-agnostic VAE (:func:`train_joint`), which the baselines start from and meta-training
(:func:`metagen_utils.generation.meta_vae.meta_model`, trained by :func:`metagen_utils.training.loop.fit`) continues from;
optionally after giving every background class a context of its own (:func:`train_class_contexts`).

Randomness is an input, never drawn inside the model: the reparameterisation noise is an argument beside
the images (``model(images, noise)``), so a task's loss is a pure function of its tensors, which
``torch.func.vmap`` over tasks needs, and one seed gives one set of numbers.

Likelihood: Bernoulli on [0, 1] pixels summed over the 28×28 image, in nats per image (the form of the
conditional-NLL table in Generative Matching Networks, Bartunov & Vetrov, 2018). Grey pixels make it a
cross-entropy rather than a normalised density: compare these numbers with each other only.

One module of about 400 lines: the model, its adaptation and sampling and its joint training all read
the same inputs (images and noise) and the same parameter names; split, each part would import the
others' internals.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, vmap

from ..data.images import ImageSet
from ..errors import ConfigError, DataError
from ..meta.maml import LR_PREFIX, MetaConfig, Params, TaskBatch, inner_loop, inner_rates, select_adapted
from ..models import LinearMetaNet
from ..training.schedule import warmup_cosine_scheduler
from ..data.episodes import EpisodeSampler

IMAGE_SHAPE = (1, 28, 28)
PIXELS = 28 * 28


class Encoder(nn.Module):
    """images ``[n, 1, 28, 28]``, c ``[context_dim]`` → (μ, log σ²) of q(z | x, c), ``[n, 2 · latent_dim]``.

    Two stride-2 convolutions → FiLM(c) → Linear. Reading c lets z code what sets an image apart from its
    class rather than the class again (the Neural Statistician's q(z | x, c)).
    """

    def __init__(self, latent_dim: int, context_dim: int, width: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 4, stride=2, padding=1)             # 28 → 14
        self.conv2 = nn.Conv2d(width, 2 * width, 4, stride=2, padding=1)     # 14 → 7
        self.film = _identity_film(context_dim, 2 * width)
        self.fc = nn.Linear(2 * width * 7 * 7, 2 * latent_dim)

    def forward(self, x: Tensor, c: Tensor) -> Tensor:
        return self.fc(_modulate(F.silu(self.conv2(F.silu(self.conv1(x)))), self.film, c).flatten(1))


def _identity_film(context_dim: int, channels: int) -> LinearMetaNet:
    """[γ; β] = W c + b with W = b = 0: FiLM is the identity for every c, and the context's first
    gradients come from the prior alone (through FiLM the pixel-sum likelihood gives c gradients hundreds
    of times larger, and the inner loop diverged). Meta-training grows W where reading c pays."""
    film = LinearMetaNet(context_dim, 2 * channels)
    nn.init.zeros_(film.weight)
    nn.init.zeros_(film.bias)
    return film


def _modulate(h: Tensor, film: LinearMetaNet, c: Tensor) -> Tensor:
    """FiLM: h ``[n, channels, H, W]`` ← h ⊙ (1 + γ(c)) + β(c)."""
    gamma, beta = film(c).view(2, -1, 1, 1)
    return h * (1 + gamma) + beta


class ResidualBlocks(nn.ModuleList):
    """``blocks`` residual blocks on ``[n, width, H, W]`` feature maps: h ← h + SiLU(3×3 convolution of h),
    each convolution starting at zero, so that the blocks start as the identity. Notebook 04's and
    notebook 05's decoders use them at 14×14."""

    def __init__(self, width: int, blocks: int) -> None:
        super().__init__(nn.Conv2d(width, width, 3, padding=1) for _ in range(blocks))
        for conv in self:
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)

    def forward(self, h: Tensor) -> Tensor:
        for conv in self:
            h = h + F.silu(conv(h))
        return h


class Decoder(nn.Module):
    """z ``[n, latent_dim]``, c ``[context_dim]`` → Bernoulli logits ``[n, 1, 28, 28]``.

    Linear → FiLM(c) → stride-2 transposed convolution (7 → 14) → ``blocks`` residual 3×3 convolutions
    at 14×14 → stride-2 transposed convolution (14 → 28). No normalisation: its statistics would couple
    the images of a task, and the adapted layers must stay plain functions of their weights. Each
    residual block h ← h + silu(conv(h)) starts at zero, so it adds nothing until training finds a use
    for it (the full profile's one block sharpens strokes that two transposed convolutions blur).
    """

    def __init__(self, latent_dim: int, context_dim: int, width: int, blocks: int = 0) -> None:
        super().__init__()
        self.width = width
        self.fc = nn.Linear(latent_dim, 2 * width * 7 * 7)
        self.film = _identity_film(context_dim, 2 * width)
        self.up = nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1)     # 7 → 14
        self.refine = ResidualBlocks(width, blocks)
        self.out = nn.ConvTranspose2d(width, 1, 4, stride=2, padding=1)            # 14 → 28

    def forward(self, z: Tensor, c: Tensor) -> Tensor:
        h = _modulate(F.silu(self.fc(z)).view(-1, 2 * self.width, 7, 7), self.film, c)
        h = F.silu(self.up(h))
        return self.out(self.refine(h))


class ConditionalVAE(nn.Module):
    """The conditional-prior VAE for 1×28×28 images in [0, 1] (ink = 1).

    ``model(images, noise)`` is the loss the inner loop adapts on: the negative ELBO per image. The other
    computations are methods; :func:`call` and :func:`per_task` run any of them with another parameter
    dict (a task's adapted one):

    * ``forward(images, noise)`` — images ``[n, 1, 28, 28]``, noise ``[n, S, latent_dim]`` → −ELBO per
      image ``[n]`` in nats: S-sample reconstruction term + analytic KL(q(z|x, c) ‖ p(z|c)).
    * ``log_weights(images, noise)`` → log p(x, z_s | c) − log q(z_s | x, c), ``[n, S]``.
    * ``decode(noise)`` — standard-normal noise ``[n, latent_dim]`` → z = m + e^{s/2} ε ~ p(z | c) →
      Bernoulli means ``[n, 1, 28, 28]``.
    * ``posterior(images)`` → (μ, log σ²) of q(z | x, c), ``[n, 2 · latent_dim]``.
    * ``prior_params()`` → (m, s) of p(z | c), ``[latent_dim]`` each.
    """

    def __init__(self, latent_dim: int = 16, context_dim: int = 16, width: int = 16, blocks: int = 0) -> None:
        super().__init__()
        for name, value in (("latent_dim", latent_dim), ("context_dim", context_dim), ("width", width)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"ConditionalVAE: {name}={value!r}; expected a positive integer")
        if not isinstance(blocks, int) or blocks < 0:
            raise ConfigError(f"ConditionalVAE: blocks={blocks!r}; expected a whole number ≥ 0 of residual "
                              "decoder blocks")
        self.latent_dim, self.context_dim = latent_dim, context_dim
        self.encoder = Encoder(latent_dim, context_dim, width)
        self.context = nn.Parameter(torch.zeros(context_dim))
        self.prior = LinearMetaNet(context_dim, 2 * latent_dim)
        # W = [I; 0], b = 0: p(z | c) = N(c, I) (for context_dim = latent_dim), so p(z | 0) = N(0, I) is
        # the joint VAE's prior, and one inner step of rate 1 moves the prior mean onto the mean of the
        # support's posterior means — a well-conditioned start for the learned rates.
        with torch.no_grad():
            self.prior.weight.zero_()
            self.prior.weight[:latent_dim].copy_(torch.eye(latent_dim, context_dim))
            self.prior.bias.zero_()
        self.decoder = Decoder(latent_dim, context_dim, width, blocks)

    def prior_params(self) -> tuple[Tensor, Tensor]:
        """(mean, log-variance) of p(z | c), each ``[latent_dim]``: [m; s] = W c + b."""
        return self.prior(self.context).chunk(2)

    def posterior(self, images: Tensor) -> Tensor:
        """images ``[n, 1, 28, 28]`` → (μ, log σ²) of q(z | x, c), concatenated: ``[n, 2 · latent_dim]``."""
        return self.encoder(images, self.context)

    def decode(self, noise: Tensor) -> Tensor:
        """noise ε ``[n, latent_dim]`` → z = m + e^{s/2} ε ~ p(z | c) → Bernoulli means ``[n, 1, 28, 28]``."""
        mean, logvar = self.prior_params()
        return torch.sigmoid(self.decoder(mean + (0.5 * logvar).exp() * noise, self.context))

    def forward(self, images: Tensor, noise: Tensor) -> Tensor:
        """−ELBO per image ``[n]`` (nats) of images ``[n, 1, 28, 28]`` with reparameterisation noise
        ``[n, S, latent_dim]``: the S-sample reconstruction term plus the analytic KL to p(z | c)."""
        mu, logvar, _, log_px = self._reconstruct(images, noise)
        prior_mean, prior_logvar = self.prior_params()
        kl = 0.5 * (prior_logvar - logvar - 1 + (logvar.exp() + (mu - prior_mean) ** 2)
                    / prior_logvar.exp()).sum(-1)
        return -log_px.mean(1) + kl

    def log_weights(self, images: Tensor, noise: Tensor) -> Tensor:
        """log p(x, z_s | c) − log q(z_s | x, c), ``[n, S]``: the importance weights of the IS-NLL."""
        mu, logvar, z, log_px = self._reconstruct(images, noise)
        prior_mean, prior_logvar = self.prior_params()
        return log_px + _log_normal(z, prior_mean, prior_logvar) - _log_normal(z, mu[:, None], logvar[:, None])

    def _reconstruct(self, images: Tensor, noise: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(μ, log σ² ``[n, L]``, z = μ + σ ε ``[n, S, L]``, log p(x | z, c) ``[n, S]``)."""
        if images.shape[1:] != IMAGE_SHAPE or noise.shape[::2] != (len(images), self.latent_dim):
            raise DataError(f"ConditionalVAE: expected images [n, 1, 28, 28] and noise [n, S, {self.latent_dim}]; "
                            f"found {tuple(images.shape)} and {tuple(noise.shape)}")
        mu, logvar = self.encoder(images, self.context).chunk(2, dim=-1)
        z = mu[:, None] + (0.5 * logvar).exp()[:, None] * noise
        logits = self.decoder(z.flatten(0, 1), self.context)
        target = images[:, None].expand(-1, noise.shape[1], -1, -1, -1).flatten(0, 1)
        log_px = -F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum((1, 2, 3))
        return mu, logvar, z, log_px.view(noise.shape[:2])


def _log_normal(z: Tensor, mean: Tensor, logvar: Tensor) -> Tensor:
    """log N(z; mean, diag e^logvar), summed over the last dimension."""
    return -0.5 * (math.log(2 * math.pi) + logvar + (z - mean) ** 2 / logvar.exp()).sum(-1)


def mean_loss(nelbo: Tensor, target: object = None) -> Tensor:
    """The ``loss_fn`` for :mod:`metagen_utils.meta`: the mean of the model's −ELBO per image (the model
    scores its own input images, so ``target`` is not read)."""
    return nelbo.mean()


def task_batch(support: Tensor, query: Tensor, latent_dim: int, generator: torch.Generator,
               samples: int = 1) -> TaskBatch:
    """A :class:`TaskBatch` for meta.py from support ``[T, K, 1, 28, 28]`` and query ``[T, Q, 1, 28, 28]``:
    each side's model input is (images, fresh noise ``[T, n, samples, latent_dim]``)."""
    def noisy(images: Tensor) -> tuple[Tensor, Tensor]:
        # Noise from a CPU generator, moved to the images' device: the same numbers on every device.
        noise = torch.randn(*images.shape[:2], samples, latent_dim, generator=generator)
        return images, noise.to(images.device)
    return TaskBatch(noisy(support), support, noisy(query), query)


class _Method(nn.Module):
    """``module.<name>`` as a module's ``forward``: ``torch.func.functional_call`` runs only ``forward``,
    and this wrapper lets it run the model's other methods with a task's parameters."""

    def __init__(self, module: nn.Module, name: str) -> None:
        super().__init__()
        self.module, self.name = module, name

    def forward(self, *inputs: Tensor) -> Tensor | tuple[Tensor, ...]:
        return getattr(self.module, self.name)(*inputs)


def call(model: nn.Module, params: Params, method: str, *inputs: Tensor) -> Tensor | tuple[Tensor, ...]:
    """``model.<method>(*inputs)`` run with ``params`` (a full dict name → tensor; learned rates are
    ignored), for this module's model and notebook 05's alike. ``call(model, params, "forward", images,
    noise)`` is ``model(images, noise)`` under ``params``; ``"posterior"``, ``"decode"``, ``"log_weights"``,
    ``"prior_params"`` (and notebook 05's ``"infer"``, ``"encode"``, ``"terms"``) run those methods."""
    if method != "forward" and not callable(getattr(model, method, None)):
        raise ConfigError(f"call: {type(model).__name__} has no method {method!r}")
    own = {n: t for n, t in params.items() if not n.startswith(LR_PREFIX)}
    if method == "forward":
        return functional_call(model, own, inputs)
    return functional_call(_Method(model, method), {f"module.{n}": t for n, t in own.items()}, inputs)


def per_task(model: ConditionalVAE, params: Params, adapted_params: Params, method: str, *inputs: Tensor,
             chunk: int = 16) -> Tensor | tuple[Tensor, ...]:
    """:func:`call` for every task: ``adapted_params`` ``{name: [T, *shape]}`` override ``params`` per
    task; each of ``inputs`` is ``[T, ...]``. Tasks run vmapped, ``chunk`` at a time to bound memory.
    Returns the method's output with a leading task dimension (a tuple of them for ``"prior_params"``)."""
    if inputs:
        tasks = len(inputs[0])
    elif adapted_params:
        tasks = len(next(iter(adapted_params.values())))
    else:
        raise ConfigError(f"per_task: {method!r} has no inputs and adapted_params is empty, so the number "
                          "of tasks is unknown")

    def one(adapted: Params, *xs: Tensor) -> Tensor | tuple[Tensor, ...]:
        return call(model, {**params, **adapted}, method, *xs)
    outs = [vmap(one)({n: t[i:i + chunk] for n, t in adapted_params.items()}, *(x[i:i + chunk] for x in inputs))
            for i in range(0, tasks, chunk)]
    if isinstance(outs[0], tuple):
        return tuple(torch.cat(parts) for parts in zip(*outs))
    return torch.cat(outs)


def adapt(model: ConditionalVAE, params: Params, support: Tensor, cfg: MetaConfig,
          generator: torch.Generator, samples: int = 1, steps: int | None = None) -> Params:
    """Adapt the ``cfg.adapt`` parameters to each task: ``steps`` (default ``cfg.inner_steps``) gradient
    steps of :func:`metagen_utils.meta.inner_loop` on the support −ELBO with ``params``' learned rates.
    support: ``[T, K, 1, 28, 28]``. Returns ``{name: [T, *shape]}`` (detached), to pass to
    :func:`per_task` / :func:`sample`."""
    model_params = {n: t.detach() for n, t in params.items() if not n.startswith(LR_PREFIX)}
    names = select_adapted(list(model_params), cfg.adapt)
    rates = inner_rates(cfg, {n: t.detach() for n, t in params.items()}, names, steps)
    noise = torch.randn(*support.shape[:2], samples, model.latent_dim, generator=generator)

    def one_task(images: Tensor, eps: Tensor) -> Params:
        adapted = inner_loop(model, model_params, (images, eps), None, mean_loss, len(rates), rates,
                             adapt=cfg.adapt)
        return {n: adapted[n] for n in names}
    with torch.no_grad():       # torch.func.grad ignores an enclosing no_grad; nothing else keeps a graph
        return vmap(one_task)(support, noise.to(support.device))


def sample(model: ConditionalVAE, params: Params, adapted_params: Params, n_samples: int,
           generator: torch.Generator, tasks: int | None = None, temperature: float = 1.0) -> Tensor:
    """``n_samples`` images per task from z ~ p(z | c) → Bernoulli means: ``[T, n_samples, 1, 28, 28]``.
    T is the tasks of ``adapted_params``, or ``tasks`` when it is empty (a model shared by every task).
    ``temperature`` τ scales the prior's standard deviation (z = m + τ e^{s/2} ε): τ < 1 trades diversity
    for samples nearer the class's typical image; τ = 1 samples the model as trained."""
    count = next(iter(adapted_params.values())).shape[0] if adapted_params else tasks
    if count is None:
        raise ConfigError("sample: adapted_params is empty, so pass tasks= to say how many tasks to sample for")
    if not temperature >= 0:
        raise ConfigError(f"sample: temperature={temperature!r}; expected a number ≥ 0")
    noise = torch.randn(count, n_samples, model.latent_dim, generator=generator).to(model.context.device)
    noise = temperature * noise
    with torch.no_grad():
        return per_task(model, params, adapted_params, "decode", noise)


def adapt_and_sample(model: ConditionalVAE, params: Params, support: Tensor, cfg: MetaConfig, n_samples: int,
                     generator: torch.Generator, steps: int | None = None) -> tuple[Tensor, Params]:
    """K images of a class in, new images out: (samples ``[T, n_samples, 1, 28, 28]``, adapted params)
    for support ``[T, K, 1, 28, 28]``, one task per class.

    Example (an untrained model, so the images are noise; notebook 04 trains it first):

    >>> from metagen_utils.meta import init_meta_params
    >>> model = ConditionalVAE()
    >>> cfg = MetaConfig("metasgd", inner_steps=3, inner_lr=0.5, adapt=("context",))
    >>> meta_params = init_meta_params(model, cfg)           # the weights and the learned rates
    >>> support = torch.rand(3, 5, 1, 28, 28)                # 3 classes, K = 5 images each
    >>> samples, adapted = adapt_and_sample(model, meta_params, support, cfg, 6, torch.Generator().manual_seed(0))
    >>> tuple(samples.shape), tuple(adapted["context"].shape)
    ((3, 6, 1, 28, 28), (3, 16))
    """
    adapted = adapt(model, params, support, cfg, generator, steps=steps)
    return sample(model, params, adapted, n_samples, generator), adapted


def query_scores(model: ConditionalVAE, params: Params, adapted_params: Params, query: Tensor, samples: int,
                 generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """(−ELBO, importance-sampled NLL), each ``[T, Q]`` nats per image, for query ``[T, Q, 1, 28, 28]``.

    Both come from the same ``samples`` draws z_s ~ q(z | x): −ELBO ≈ −mean_s log w_s (Monte-Carlo KL),
    NLL ≈ −log mean_s w_s with w_s = p(x, z_s | c) / q(z_s | x) (Burda et al., 2016); the second is a
    tighter bound, never above the first.
    """
    noise = torch.randn(*query.shape[:2], samples, model.latent_dim, generator=generator)
    with torch.no_grad():
        log_w = per_task(model, params, adapted_params, "log_weights", query, noise.to(query.device))  # [T, Q, S]
    return -log_w.mean(-1), -(torch.logsumexp(log_w, -1) - math.log(samples))


# --- Training -------------------------------------------------------------------------------------

# c and the layers that read it: held at their identity values (prior N(0, I), FiLM = identity) while the
# class-agnostic VAE trains everything else.
CONTEXT_PREFIXES = ("context", "prior", "encoder.film", "decoder.film")


def joint_names(names: Sequence[str]) -> tuple[str, ...]:
    """The parameters the joint (class-agnostic) VAE trains, and its fine-tuning baseline adapts: all of
    ``names`` except c and the layers that read it."""
    conditional = select_adapted(names, CONTEXT_PREFIXES)
    return tuple(n for n in names if n not in conditional)


def train_joint(model: ConditionalVAE, images: ImageSet, steps: int, batch_size: int = 64, lr: float = 2e-3,
                seed: int = 0, amp_dtype: torch.dtype | None = None) -> Params:
    """Train the class-agnostic VAE in place: encoder and decoder on the −ELBO of single images with c
    fixed at 0, so p(z | c) = N(0, I). Returns a detached copy of every parameter (the joint VAE).
    Runs on the model's device (batches and noise are drawn on the CPU and moved there); ``amp_dtype``
    (bfloat16 on CUDA) runs each step under ``torch.autocast``."""
    generator = torch.Generator().manual_seed(seed)
    pixels = torch.from_numpy(images.images)
    names = joint_names([n for n, _ in model.named_parameters()])
    trained = [t for n, t in model.named_parameters() if n in names]
    optimizer = torch.optim.Adam(trained, lr=lr, fused=True)   # fused: see kernels.sqrt
    schedule = warmup_cosine_scheduler(optimizer, steps, warmup=max(1, steps // 10))
    with torch.no_grad():
        model.context.zero_()
    device = model.context.device
    for _ in range(steps):
        batch = pixels[torch.randint(len(pixels), (batch_size,), generator=generator)]
        noise = torch.randn(batch_size, 1, model.latent_dim, generator=generator)
        with torch.autocast(torch.device(device).type, dtype=amp_dtype, enabled=amp_dtype is not None):
            loss = model(batch.to(device), noise.to(device)).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    return {n: t.detach().clone() for n, t in model.named_parameters()}


def train_class_contexts(model: ConditionalVAE, images: ImageSet, steps: int, classes_per_step: int = 16,
                         images_per_class: int = 4, lr: float = 2e-3, context_lr: float = 3e-2, seed: int = 0,
                         amp_dtype: torch.dtype | None = None) -> Tensor:
    """Continue training in place with one context per class of ``images`` (CAVIA's context parameters,
    one per background class and trained to convergence instead of for a few steps): each step draws
    ``classes_per_step`` classes and ``images_per_class`` images of each, and descends their −ELBO under
    p(z | c_class) plus a N(0, I) prior on every c, with the encoder, decoder and prior map. The prior
    map thus learns where classes lie and how far their images scatter, before meta-training learns to
    find c from K images. The FiLMs stay the identity, so c's gradients keep the scale the inner loop's
    rates start from. Leaves ``model.context`` at the contexts' mean (meta-training's first c) and
    returns the contexts ``[num_classes, context_dim]``."""
    if not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"train_class_contexts: steps={steps!r}; expected a positive integer")
    sampler = EpisodeSampler(images, k_shot=images_per_class, n_query=0, n_way=classes_per_step, seed=seed)
    generator = torch.Generator().manual_seed(seed)
    device = model.context.device
    contexts = torch.zeros(images.num_classes, model.context_dim, device=device, requires_grad=True)
    params = dict(model.named_parameters())
    trained = [params[n] for n in joint_names(list(params)) + select_adapted(list(params), ("prior",))]
    # The contexts' rate is higher: each is updated only on the steps that draw its class.
    optimizer = torch.optim.Adam([{"params": trained}, {"params": [contexts], "lr": context_lr}], lr=lr, fused=True)
    schedule = warmup_cosine_scheduler(optimizer, steps, warmup=max(1, steps // 10))
    images_per_class_mean = float(images.class_counts().mean())
    for _ in range(steps):
        episode = sampler.sample(1)
        classes = episode.classes[0].to(device)
        support = episode.support.view(classes_per_step, images_per_class, *IMAGE_SHAPE)
        noise = torch.randn(classes_per_step, images_per_class, 1, model.latent_dim, generator=generator)
        drawn = contexts[classes]
        with torch.autocast(torch.device(device).type, dtype=amp_dtype, enabled=amp_dtype is not None):
            nelbo = per_task(model, params, {"context": drawn}, "forward", support.to(device), noise.to(device))
            # The prior's −log N(c; 0, I) is counted once per class: per image, divided by images per class.
            penalty = 0.5 * (drawn ** 2).sum(-1).mean() / images_per_class_mean
            loss = nelbo.mean() + penalty
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    with torch.no_grad():
        model.context.copy_(contexts.mean(0))
    return contexts.detach()


def set_initial_rates(meta_params: Params, initial_rates: dict[str, float]) -> Params:
    """Start the learned inner rates of the adapted parameters under each prefix at its own value
    (``{prefix: rate}``), in place; returns ``meta_params``."""
    learned = [n[len(LR_PREFIX):] for n in meta_params if n.startswith(LR_PREFIX)]
    with torch.no_grad():
        for prefix, rate in initial_rates.items():
            for name in select_adapted(learned, (prefix,)):
                meta_params[LR_PREFIX + name].fill_(rate)
    return meta_params

