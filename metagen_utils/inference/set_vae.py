"""Inferring the class from its images (notebook 05): a VAE whose decoder reads a class code c, and
three ways to find c from K support images.

    c = h_ω(x_1, …, x_K)                           set encoder: mean of per-image features, then an MLP
    q(z | x, c) = N(μ_φ(x, c), diag σ²_φ(x, c))     encoder (z: what sets one image apart in its class)
    p(z) = N(0, I)
    p(x | z, c) = Bernoulli(σ(g_ψ([z; c]; c)))     decoder: c concatenated with z, and FiLM at 7×7 and 14×14

The three ways (:data:`METHODS`), each meta-trained end to end by :func:`train`:

* ``"gradient"`` — c starts at one learned vector c₀ (the ``context`` parameter) and takes a few
  gradient steps on the support's −ELBO (notebook 04's inner loop on the context);
* ``"amortised"`` — c = h_ω(support) in one pass, no steps (the Neural Statistician's idea);
* ``"hybrid"`` — c starts at h_ω(support) and takes the gradient steps (LEO's recipe).

The inner steps use learned rates, one per dimension of c (Meta-SGD), stored as ``inner_lr.context``.
New images are drawn with z near the support's own latents rather than from N(0, I): :func:`fit_latent_prior`
measures, on background classes, how a class's latents spread around their centre and how the centres
spread, and :class:`LatentPrior` turns K support images into a Gaussian for a new image's z.
Randomness is an input, as in :mod:`metagen_utils.generation.vae`: ``model(images, noise)`` is a pure
function of its tensors. Tasks run batched rather than vmapped: only c differs between tasks, so one
forward pass serves them all.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tqdm.auto import tqdm

from ..config import progress_disabled
from ..data.images import ImageSet
from ..errors import ConfigError, DataError, MetaLearningError
from ..kernels import clip_grad_norm
# notebook 04's residual blocks; log N(z; m, diag e^v); model.<method> run with a parameter dict
from ..generation.vae import ResidualBlocks, _log_normal, call
from ..meta.maml import LR_PREFIX, Params, inner_loop
from ..training.loop import episode_fn
from ..training.schedule import warmup_cosine

IMAGE_SHAPE = (1, 28, 28)
METHODS = ("gradient", "amortised", "hybrid")
RATE = LR_PREFIX + "context"


def _trunk(width: int) -> nn.Sequential:
    """images ``[n, 1, 28, 28]`` → features ``[n, 2 · width · 49]``: two stride-2 convolutions."""
    return nn.Sequential(nn.Conv2d(1, width, 4, stride=2, padding=1), nn.SiLU(),             # 28 → 14
                         nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), nn.SiLU(),     # 14 → 7
                         nn.Flatten())


class SetEncoder(nn.Module):
    """A set of images ``[K, 1, 28, 28]`` → class code c ``[context_dim]``.

    Each image is embedded alone, the embeddings are averaged, and an MLP maps the mean to c. The mean
    makes c the same for any order of the images (permutation-invariant) and for any K.
    """

    def __init__(self, context_dim: int, width: int, hidden: int) -> None:
        super().__init__()
        self.trunk = _trunk(width)
        self.embed = nn.Linear(2 * width * 49, hidden)
        self.head = nn.Sequential(nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, context_dim))

    def forward(self, images: Tensor) -> Tensor:
        """images ``[..., K, 1, 28, 28]`` → c ``[..., context_dim]``, over any leading (task) dimensions."""
        each = self.embed(self.trunk(images.flatten(0, -4)))
        return self.head(each.view(*images.shape[:-3], -1).mean(-2))


class Encoder(nn.Module):
    """images ``[n, 1, 28, 28]``, c ``[context_dim]`` → (μ, log σ²) of q(z | x, c), ``[n, 2 · latent_dim]``."""

    def __init__(self, latent_dim: int, context_dim: int, width: int) -> None:
        super().__init__()
        self.trunk = _trunk(width)
        self.fc = nn.Linear(2 * width * 49 + context_dim, 2 * latent_dim)

    def forward(self, x: Tensor, c: Tensor, features: Tensor | None = None) -> Tensor:
        """x ``[n, 1, 28, 28]``, c ``[n, context_dim]`` (each image's class code); ``features``: x's
        trunk features ``[n, 2 · width · 49]`` when already computed (they do not depend on c)."""
        return self.fc(torch.cat([self.trunk(x) if features is None else features, c], 1))


class Film(nn.Linear):
    """c ``[context_dim]`` → FiLM of ``channels`` feature maps: h ← h ⊙ (1 + γ(c)) + β(c), with
    [γ; β] = W c + b starting at zero (the identity), so c first acts through the concatenation."""

    def __init__(self, context_dim: int, channels: int) -> None:
        super().__init__(context_dim, 2 * channels)
        nn.init.zeros_(self.weight)
        nn.init.zeros_(self.bias)

    def modulate(self, h: Tensor, c: Tensor) -> Tensor:
        """h ``[n, channels, H, W]``, c ``[n, context_dim]``."""
        gamma, beta = self(c)[..., None, None].chunk(2, dim=1)
        return h * (1 + gamma) + beta


class Decoder(nn.Module):
    """z ``[n, latent_dim]``, c ``[context_dim]`` → Bernoulli logits ``[n, 1, 28, 28]``.

    Linear on [z; c] → FiLM(c) at 7×7 → transposed convolution to 14×14 → ``blocks`` residual blocks
    → FiLM(c) → transposed convolution to 28×28. c enters twice: concatenated, so the decoder can draw
    the class from the first step, and by FiLM, so it can change how every feature map is used. The
    residual blocks (:class:`~metagen_utils.generation.vae.ResidualBlocks`, as in notebook 04's decoder)
    start as the identity: more layers at 14×14 to draw each stroke with.
    """

    def __init__(self, latent_dim: int, context_dim: int, width: int, blocks: int = 0) -> None:
        super().__init__()
        self.width = width
        self.fc = nn.Linear(latent_dim + context_dim, 2 * width * 49)
        self.film7 = Film(context_dim, 2 * width)
        self.up = nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1)     # 7 → 14
        self.film14 = Film(context_dim, width)
        self.out = nn.ConvTranspose2d(width, 1, 4, stride=2, padding=1)            # 14 → 28
        self.refine = ResidualBlocks(width, blocks)

    def forward(self, z: Tensor, c: Tensor) -> Tensor:
        """z ``[n, latent_dim]``, c ``[n, context_dim]``."""
        h = F.silu(self.fc(torch.cat([z, c], 1))).view(-1, 2 * self.width, 7, 7)
        h = F.silu(self.up(self.film7.modulate(h, c)))
        return self.out(self.film14.modulate(self.refine(h), c))


class ClassVAE(nn.Module):
    """The class-code VAE for 1×28×28 images in [0, 1] (ink = 1).

    Every method runs on one task or on a batch of T tasks at once: images ``[n, 1, 28, 28]`` under
    c = ``context`` ``[context_dim]``, or images ``[T, n, 1, 28, 28]`` under ``context`` ``[T, context_dim]``
    (one c per task). Batched, the tasks share one forward pass, and the gradient of the summed loss
    with respect to ``context`` ``[T, C]`` holds each task's own gradient in its row: tasks never mix.

    * ``model(images, noise)`` — −ELBO per image ``[(T,) n]`` in nats: the loss the inner loop adapts c on;
    * ``infer(support)`` — support ``[(T,) K, 1, 28, 28]`` → c ``[(T,) context_dim]`` (the set encoder);
    * ``terms(images, noise)`` → (−log p(x | z, c), KL(q(z | x, c) ‖ N(0, I))), ``[(T,) n]`` each;
    * ``log_weights(images, noise)`` → log p(x, z_s | c) − log q(z_s | x, c), ``[(T,) n, S]``;
    * ``decode(noise)`` — ε ``[(T,) n, latent_dim]`` → Bernoulli means ``[(T,) n, 1, 28, 28]`` of z = ε;
    * ``encode(images)`` — the means of q(z | x, c), ``[(T,) n, latent_dim]``.

    noise: ``[(T,) n, S, latent_dim]`` standard-normal draws, S per image. :func:`call` runs any method
    with another parameter dict, e.g. ``{**params, "context": codes}``.
    """

    def __init__(self, latent_dim: int = 16, context_dim: int = 32, width: int = 16, hidden: int = 128,
                 blocks: int = 0) -> None:
        super().__init__()
        for name, value in (("latent_dim", latent_dim), ("context_dim", context_dim), ("width", width),
                            ("hidden", hidden)):
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"ClassVAE: {name}={value!r}; expected a positive integer")
        if not isinstance(blocks, int) or blocks < 0:
            raise ConfigError(f"ClassVAE: blocks={blocks!r}; expected an integer ≥ 0")
        self.latent_dim, self.context_dim = latent_dim, context_dim
        self.context = nn.Parameter(torch.zeros(context_dim))
        self.set_encoder = SetEncoder(context_dim, width, hidden)
        self.encoder = Encoder(latent_dim, context_dim, width)
        self.decoder = Decoder(latent_dim, context_dim, width, blocks)

    @classmethod
    def from_settings(cls, settings: Mapping) -> ClassVAE:
        """The model a profile's settings (:data:`metagen_utils.profiles.SET_VAE`) or a checkpoint's
        describe: latent_dim, context_dim, width, hidden, and blocks (0 when absent)."""
        return cls(settings["latent_dim"], settings["context_dim"], settings["width"], settings["hidden"],
                   settings.get("blocks", 0))

    def infer(self, support: Tensor) -> Tensor:
        """support ``[(T,) K, 1, 28, 28]`` → c ``[(T,) context_dim]``."""
        return self.set_encoder(support)

    def _codes(self, lead: torch.Size) -> Tensor:
        """Each image's c, ``[prod(lead), context_dim]``, for images with leading dimensions ``lead``
        (``(n,)`` under c ``[C]``, ``(T, n)`` under c ``[T, C]``)."""
        c = self.context
        if c.dim() != len(lead) or c.shape[:-1] != lead[:-1]:
            raise DataError(f"ClassVAE: images with leading dimensions {tuple(lead)} need context of shape "
                            f"{(*lead[:-1], self.context_dim)}; found {tuple(c.shape)}")
        return c.unsqueeze(-2).expand(*lead, -1).reshape(-1, self.context_dim)

    def decode(self, noise: Tensor) -> Tensor:
        """ε ``[(T,) n, latent_dim]`` → Bernoulli means ``[(T,) n, 1, 28, 28]`` of p(x | z = ε, c)."""
        logits = self.decoder(noise.reshape(-1, self.latent_dim), self._codes(noise.shape[:-1]))
        return torch.sigmoid(logits).view(*noise.shape[:-1], *IMAGE_SHAPE)

    def encode(self, images: Tensor) -> Tensor:
        """images ``[(T,) n, 1, 28, 28]`` → the means μ of q(z | x, c), ``[(T,) n, latent_dim]``."""
        return self.posterior(images)[..., :self.latent_dim]

    def posterior(self, images: Tensor) -> Tensor:
        """images ``[(T,) n, 1, 28, 28]`` → (μ, log σ²) of q(z | x, c), concatenated:
        ``[(T,) n, 2 · latent_dim]``."""
        lead = images.shape[:-3]
        return self.encoder(images.reshape(-1, *IMAGE_SHAPE), self._codes(lead)).reshape(*lead, -1)

    def features(self, images: Tensor) -> Tensor:
        """images ``[(T,) n, 1, 28, 28]`` → the encoder's trunk features ``[(T,) n, F]``. They do not depend
        on c, so the inner loop computes them once and passes them to every step."""
        return self.encoder.trunk(images.reshape(-1, *IMAGE_SHAPE)).view(*images.shape[:-3], -1)

    def terms(self, images: Tensor, noise: Tensor, features: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(−log p(x | z, c) averaged over the S draws, KL(q(z | x, c) ‖ N(0, I))), each ``[(T,) n]`` nats;
        ``features``: :meth:`features` of ``images``, when already computed."""
        mu, logvar, _, log_px = self._reconstruct(images, noise, features)
        kl = 0.5 * (logvar.exp() + mu ** 2 - 1 - logvar).sum(-1)
        return -log_px.mean(-1), kl

    def forward(self, images: Tensor, noise: Tensor, features: Tensor | None = None) -> Tensor:
        """−ELBO per image ``[(T,) n]`` (nats): the sum of :meth:`terms`."""
        reconstruction, kl = self.terms(images, noise, features)
        return reconstruction + kl

    def log_weights(self, images: Tensor, noise: Tensor) -> Tensor:
        """log p(x, z_s | c) − log q(z_s | x, c), ``[(T,) n, S]``: the importance weights of the IS-NLL."""
        mu, logvar, z, log_px = self._reconstruct(images, noise)
        return log_px + _log_normal(z, torch.zeros_like(z), torch.zeros_like(z)) \
            - _log_normal(z, mu.unsqueeze(-2), logvar.unsqueeze(-2))

    def _reconstruct(self, images: Tensor, noise: Tensor,
                     features: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(μ, log σ² ``[(T,) n, L]``, z = μ + σ ε ``[(T,) n, S, L]``, log p(x | z, c) ``[(T,) n, S]``)."""
        lead = images.shape[:-3]
        if images.shape[-3:] != IMAGE_SHAPE or noise.shape[:-2] != lead or noise.shape[-1] != self.latent_dim:
            raise DataError(f"ClassVAE: expected images [(T,) n, 1, 28, 28] and noise [(T,) n, S, "
                            f"{self.latent_dim}]; found {tuple(images.shape)} and {tuple(noise.shape)}")
        codes = self._codes(lead)                                          # [N, C], N = prod(lead)
        flat = None if features is None else features.reshape(codes.shape[0], -1)
        mu, logvar = self.encoder(images.reshape(-1, *IMAGE_SHAPE), codes, flat).chunk(2, dim=-1)
        draws = noise.shape[-2]
        z = mu[:, None] + (0.5 * logvar).exp()[:, None] * noise.reshape(-1, draws, self.latent_dim)
        logits = self.decoder(z.flatten(0, 1), codes.repeat_interleave(draws, 0))
        target = images.reshape(-1, 1, *IMAGE_SHAPE).expand(-1, draws, -1, -1, -1).flatten(0, 1)
        log_px = -F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum((1, 2, 3))
        return (mu.view(*lead, -1), logvar.view(*lead, -1), z.view(*lead, draws, -1),
                log_px.view(*lead, draws))


def init_params(model: ClassVAE, initial_rate: float) -> Params:
    """The meta-parameters: every tensor of ``model`` plus the learned inner rates of c,
    ``inner_lr.context`` ``[context_dim]``, started at ``initial_rate``."""
    params = {n: t.detach().clone().requires_grad_() for n, t in model.named_parameters()}
    params[RATE] = torch.full((model.context_dim,), float(initial_rate), device=model.context.device,
                              requires_grad=True)
    return params


def copy_params(params: Params) -> Params:
    """A copy of ``params`` that trains on its own: notebook 05 trains each way from one shared start."""
    return {n: t.detach().clone().requires_grad_() for n, t in params.items()}


def summed_loss(nelbo: Tensor, target: object = None) -> Tensor:
    """The inner loop's loss: each task's mean support −ELBO, summed over tasks (``nelbo`` ``[(T,) K]``).
    Summed, not averaged, so that each task's c gets exactly its own task's gradient."""
    return nelbo.mean(-1).sum()


def infer_context(model: ClassVAE, params: Params, method: str, support: Tensor, noise: Tensor,
                  steps: int, create_graph: bool = False) -> Tensor:
    """The class code c ``[(T,) context_dim]`` of support ``[(T,) K, 1, 28, 28]`` by ``method``
    (:data:`METHODS`): the start (c₀ or the set encoder's c), then ``steps`` gradient steps on each
    task's mean support −ELBO with the learned rates (none for ``"amortised"``), by the kit's one inner
    loop (:func:`metagen_utils.meta.inner_loop`). noise: ``[(T,) K, S, latent_dim]``. ``create_graph``
    keeps the graph through the steps (for training)."""
    if method not in METHODS:
        raise ConfigError(f"method={method!r} is not valid; expected one of {METHODS}")
    if method == "gradient":
        start = params["context"].expand(*support.shape[:-4], -1)
    else:
        start = call(model, params, "infer", support)
    if method == "amortised" or steps == 0:
        return start
    own = {n: t for n, t in params.items() if not n.startswith(LR_PREFIX)}
    features = call(model, own, "features", support)     # once: every step reuses them
    adapted = inner_loop(model, {**own, "context": start}, (support, noise, features), None, summed_loss,
                         steps, {"context": params[RATE]}, create_graph=create_graph, adapt=("context",))
    return adapted["context"]


def contexts(model: ClassVAE, params: Params, method: str, support: Tensor, steps: int,
             generator: torch.Generator, samples: int = 1, chunk: int = 100) -> Tensor:
    """Every task's c, ``[T, context_dim]``, for supports ``[T, K, 1, 28, 28]`` (no graph kept), ``chunk``
    tasks at a time. The inner steps' noise comes from ``generator``."""
    noise = torch.randn(*support.shape[:2], samples, model.latent_dim, generator=generator).to(support.device)
    frozen = {n: t.detach() for n, t in params.items()}
    codes = torch.cat([infer_context(model, frozen, method, support[i:i + chunk], noise[i:i + chunk], steps).detach()
                       for i in range(0, len(support), chunk)])
    # An image unlike any seen in training can start c far out, where the steps overshoot and diverge;
    # every score after that would be NaN, so stop here and say which tasks.
    if not (finite := torch.isfinite(codes).all(-1)).all():
        bad = (~finite).nonzero().flatten().tolist()
        raise MetaLearningError(f"contexts ({method}, {steps} inner steps): the class code of {len(bad)} of "
                                f"{len(codes)} tasks is not finite (tasks {bad[:10]}); take fewer inner steps "
                                "at test time (TEST_STEPS), or use the amortised way, which takes none")
    return codes


@dataclass(frozen=True)
class LatentPrior:
    """Where a class's latents z lie under its code c, as two Gaussians: the class's centre
    m ~ N(0, B), and each image's z ~ N(m, W). ``between`` B and ``within`` W are ``[L, L]`` (float64),
    measured on background classes by :func:`fit_latent_prior`.

    Given the means μ₁ … μ_K of q(z | x_i, c) of K support images, Bayes' rule for Gaussians gives
    the centre's posterior, and a new image's z:

        G = B (B + W / K)⁻¹        how far to trust the support's mean (more, the larger K)
        m̂ = G · mean_i μ_i          the class's centre, pulled towards 0 when K is small
        z ~ N(m̂, B − G B + W)       the centre's remaining doubt plus one image's own spread
    """

    between: Tensor
    within: Tensor

    def given(self, means: Tensor) -> tuple[Tensor, Tensor]:
        """The support's latent means ``[T, K, L]`` → (m̂ ``[T, L]``, S ``[L, L]``) with S Sᵀ the spread of
        a new image's z. Computed in float64 and returned in the means' dtype: the same numbers on any
        processor (a 16 × 16 Cholesky factor in float32 could differ in its last bit)."""
        k, b, w = means.shape[-2], self.between.to(means.device), self.within.to(means.device)
        gain = torch.linalg.solve(b + w / k, b).T          # B (B + W/K)⁻¹: B and W are symmetric
        centre = means.double().mean(-2) @ gain.T
        scale = torch.linalg.cholesky(b - gain @ b + w)
        return centre.to(means.dtype), scale.to(means.dtype)


def fit_latent_prior(model: ClassVAE, params: Params, method: str, images: ImageSet, k_shot: int, steps: int,
                     classes: int = 400, per_class: int = 15, seed: int = 0) -> LatentPrior:
    """Measure :class:`LatentPrior` on ``images`` (background classes): for up to ``classes`` classes, c by
    ``method`` from the class's first ``k_shot`` images (``steps`` inner steps, as at test time), then the
    posterior means and variances of its first ``per_class`` images under that c. W: the spread of the
    means around their class's mean, plus the posteriors' mean variance; B: the spread of the class means.
    Every class needs ``per_class`` images, or as many as the smallest has (at least 2)."""
    counts = images.class_counts()
    per_class = min(per_class, int(counts.min()))
    if per_class < 2 or images.num_classes < 2 or k_shot > per_class:
        raise DataError(f"fit_latent_prior: {images.name} has {images.num_classes} classes with at least "
                        f"{int(counts.min())} images each; it needs 2 classes or more with at least 2 images and "
                        f"k_shot={k_shot} images each")
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(images.num_classes, generator=generator)[:classes].tolist()
    order = np.argsort(images.labels, kind="stable")                  # each class's images, in file order
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    picked = np.stack([order[starts[c]:starts[c] + per_class] for c in chosen])
    device = params["context"].device
    batch = torch.from_numpy(images.images[picked]).to(device)          # [C, n, 1, 28, 28]
    codes = contexts(model, params, method, batch[:, :k_shot], steps, generator)
    with torch.no_grad():
        mu, logvar = call(model, {**params, "context": codes}, "posterior", batch).double().cpu().chunk(2, -1)
    centres = mu.mean(1)                                                # [C, L]
    spread = (mu - centres[:, None]).flatten(0, 1)
    within = spread.T @ spread / (len(spread) - len(centres)) + torch.diag(logvar.exp().mean((0, 1)))
    middle = centres - centres.mean(0)
    return LatentPrior(between=middle.T @ middle / (len(centres) - 1), within=within)


def sample(model: ClassVAE, params: Params, codes: Tensor, n_samples: int, generator: torch.Generator,
           temperature: float = 1.0, prior: LatentPrior | None = None, support: Tensor | None = None) -> Tensor:
    """``n_samples`` images per task under each task's c (codes ``[T, context_dim]``):
    ``[T, n_samples, 1, 28, 28]``. Without ``prior``, z = τ ε, ε ~ N(0, I). With a :class:`LatentPrior` and
    the tasks' ``support`` ``[T, K, 1, 28, 28]``, z = m + τ S ε: the Gaussian N(m, S Sᵀ) that ``prior``
    gives from the support's latents (:meth:`LatentPrior.given`). The same ε either way."""
    if not temperature >= 0:
        raise ConfigError(f"sample: temperature={temperature!r}; expected a number ≥ 0")
    noise = temperature * torch.randn(len(codes), n_samples, model.latent_dim, generator=generator)
    noise = noise.to(codes.device)
    with torch.no_grad():
        coded = {**params, "context": codes}
        if prior is not None:
            if support is None or support.shape[0] != len(codes):
                raise ConfigError(f"sample: a prior needs the support of each of the {len(codes)} tasks "
                                  f"[T, K, 1, 28, 28]; found {None if support is None else tuple(support.shape)}")
            centre, scale = prior.given(call(model, coded, "encode", support))
            noise = centre[:, None] + noise @ scale.T
        return call(model, coded, "decode", noise)


def query_scores(model: ClassVAE, params: Params, codes: Tensor, query: Tensor, samples: int,
                 generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """(−ELBO, importance-sampled NLL), each ``[T, Q]`` nats per image, of query ``[T, Q, 1, 28, 28]``
    under each task's c (Burda et al., 2016, with ``samples`` draws from q(z | x, c))."""
    noise = torch.randn(*query.shape[:2], samples, model.latent_dim, generator=generator).to(query.device)
    with torch.no_grad():
        log_w = call(model, {**params, "context": codes}, "log_weights", query, noise)     # [T, Q, S]
    return -log_w.mean(-1), -(torch.logsumexp(log_w, -1) - math.log(samples))


def kl_weight(step: int, steps: int, start: float, end: float, fraction: float) -> float:
    """β at outer step ``step`` (1-based): from ``start`` down to ``end`` along a straight line over the
    first ``fraction`` of the ``steps``, then ``end``. A large early β makes the per-image z expensive,
    so the class goes into c, which costs nothing; the later, smaller β lets z keep the style.

    >>> [kl_weight(s, 10, 8.0, 2.0, 0.5) for s in (1, 3, 5, 6, 10)]
    [8.0, 5.0, 2.0, 2.0, 2.0]
    """
    span = max(1, round(fraction * steps) - 1)
    return end + (start - end) * max(0.0, 1 - (step - 1) / span)


def task_loss(model: ClassVAE, params: Params, method: str, support: Tensor, query: Tensor, noise_s: Tensor,
              noise_q: Tensor, steps: int, beta: float) -> Tensor:
    """The training loss of T tasks: each task's c from its support ``[T, K, 1, 28, 28]`` (the graph kept
    through the inner steps: second order), then its query's ``[T, Q, 1, 28, 28]`` reconstruction term
    plus β × KL, averaged over query images and tasks (nats per image)."""
    c = infer_context(model, params, method, support, noise_s, steps, create_graph=True)
    reconstruction, kl = call(model, {**params, "context": c}, "terms", query, noise_q)
    return (reconstruction + beta * kl).mean()


def train(model: ClassVAE, params: Params, method: str, images: ImageSet, steps: int,
          k_shots: Sequence[int] = (1, 5), n_query: int = 5, tasks_per_step: int = 16, lr: float = 2e-3,
          inner_steps: int = 2, beta: float | tuple[float, float, float] = (8.0, 2.0, 0.6),
          max_grad_norm: float = 100.0, seed: int = 0, progress: bool = True) -> list[float]:
    """Meta-train ``params`` in place for ``method``: each outer step draws ``tasks_per_step`` classes of
    ``images`` with K support images (the K of ``k_shots`` in turn) and ``n_query`` query images, infers
    each class's c from its support, and descends the query loss (:func:`task_loss`, β from
    :func:`kl_weight` with ``beta = (start, end, fraction)``, or held at ``beta`` when it is a number)
    with Adam, warm-up and cosine, clipping.
    Step s's tasks and noise are a pure function of (seed, s). Returns the per-step losses (at each
    step's β, so they are comparable only within one run)."""
    if method not in METHODS:
        raise ConfigError(f"method={method!r} is not valid; expected one of {METHODS}")
    if not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"train: steps={steps!r}; expected a positive integer")
    adapt_steps = 0 if method == "amortised" else inner_steps
    sample_fn = episode_fn(images, list(k_shots), n_query, tasks_per_step, seed)
    trained = list(params.values())   # what a way does not use (c₀, the rates) gets no gradient: Adam skips it
    # fused: one kernel for the whole step, whose square roots are the same on every processor (kernels.sqrt)
    optimizer = torch.optim.Adam(trained, lr=lr, fused=True)
    device = params["context"].device
    losses = []
    bar = tqdm(range(1, steps + 1), desc=f"training ({method})", disable=not progress or progress_disabled())
    for step in bar:
        episode = sample_fn(step)
        generator = torch.Generator().manual_seed(seed * 100_003 + step)
        support, query = episode.support.to(device), episode.query.to(device)
        noise_s = torch.randn(*support.shape[:2], 1, model.latent_dim, generator=generator).to(device)
        noise_q = torch.randn(*query.shape[:2], 1, model.latent_dim, generator=generator).to(device)
        weight = float(beta) if isinstance(beta, (int, float)) else kl_weight(step, steps, *beta)
        loss = task_loss(model, params, method, support, query, noise_s, noise_q, adapt_steps, weight)
        if not torch.isfinite(loss):
            raise MetaLearningError(f"train ({method}): the loss is {loss.item()} at step {step} of {steps}; "
                                    "nothing of this step was applied (lower lr or the initial rate)")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        clip_grad_norm(trained, max_grad_norm)
        for group in optimizer.param_groups:
            group["lr"] = lr * warmup_cosine(step, steps, max(1, steps // 10))
        optimizer.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{losses[-1]:.1f}", refresh=False)
    return losses
