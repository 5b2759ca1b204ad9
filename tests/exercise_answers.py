"""Wrong answers to the notebooks' graded exercises, which their tests must reject.

For each graded exercise: a constant or zero answer, and the most likely mistakes, each the source of a
whole solution cell. The ladder test (tests/test_assignments.py) runs each in place of the solution,
followed by the exercise's test cell with its hidden tests, and expects it to fail.
"""

WRONG_ANSWERS: dict[str, dict[int, dict[str, str]]] = {
    "01_preprocessing": {
        1: {"zeros": "def area_downscale(img, factor):\n"
                     "    return np.zeros((img.shape[0] // factor, img.shape[1] // factor), img.dtype)",
            "every factor-th pixel (aliases)": "def area_downscale(img, factor):\n"
                                               "    return img[::factor, ::factor]",
            "bilinear resize": "def area_downscale(img, factor):\n"
                               "    h, w = img.shape\n"
                               "    return cv2.resize(img, (w // factor, h // factor))"},
        2: {"constant indices": "def sample_task(labels, n_way, k_shot, n_query, rng):\n"
                                "    return np.zeros((n_way, k_shot), int), np.zeros((n_way, n_query), int)",
            "drawn with replacement": "def sample_task(labels, n_way, k_shot, n_query, rng):\n"
                                      "    classes = rng.choice(np.unique(labels), size=n_way)\n"
                                      "    rows = np.stack([rng.choice(np.flatnonzero(labels == c), k_shot + n_query)\n"
                                      "                     for c in classes])\n"
                                      "    return rows[:, :k_shot], rows[:, k_shot:]",
            "support and query drawn apart": "def sample_task(labels, n_way, k_shot, n_query, rng):\n"
                                             "    classes = rng.choice(np.unique(labels), size=n_way, replace=False)\n"
                                             "    pick = lambda c, n: rng.choice(np.flatnonzero(labels == c), n, replace=False)\n"
                                             "    return (np.stack([pick(c, k_shot) for c in classes]),\n"
                                             "            np.stack([pick(c, n_query) for c in classes]))"},
        3: {"unchanged": "def random_shift(img, max_shift, rng):\n    return img.copy()",
            "np.roll wraps around": "def random_shift(img, max_shift, rng):\n"
                                    "    dx, dy = rng.integers(-max_shift, max_shift + 1, size=2)\n"
                                    "    return np.roll(img, (dy, dx), axis=(0, 1))",
            "upper bound excluded": "def random_shift(img, max_shift, rng):\n"
                                    "    dx, dy = rng.integers(-max_shift, max_shift, size=2)\n"
                                    "    matrix = np.float32([[1, 0, dx], [0, 1, dy]])\n"
                                    "    return cv2.warpAffine(img, matrix, (img.shape[1], img.shape[0]))"},
    },
    "02_linear_meta_network": {
        1: {"zeros": "def psnr(pred, truth):\n    return torch.zeros(len(pred), dtype=pred.dtype)",
            "20 log10 of 1 / MSE": "def psnr(pred, truth):\n"
                                   "    return 20 * torch.log10(1 / ((pred - truth) ** 2).mean(-1))",
            "mean over every pixel": "def psnr(pred, truth):\n"
                                     "    return (10 * torch.log10(1 / ((pred - truth) ** 2).mean())).expand(len(pred))"},
        2: {"zeros": "def first_order_meta_gradient(model, theta, batch, alpha, k):\n"
                     "    return {n: torch.zeros_like(p) for n, p in theta.items()}",
            "second order": "def first_order_meta_gradient(model, theta, batch, alpha, k):\n"
                            "    start = {n: p.detach().requires_grad_(True) for n, p in theta.items()}\n"
                            "    total = 0\n"
                            "    for sx, sy, qx, qy in zip(*batch):\n"
                            "        fast = start\n"
                            "        for _ in range(k):\n"
                            "            loss = F.mse_loss(torch.func.functional_call(model, fast, sx), sy)\n"
                            "            g = torch.autograd.grad(loss, list(fast.values()), create_graph=True)\n"
                            "            fast = {n: p - alpha * gi for (n, p), gi in zip(fast.items(), g)}\n"
                            "        total = total + F.mse_loss(torch.func.functional_call(model, fast, qx), qy)\n"
                            "    grads = torch.autograd.grad(total / len(batch.support_x), list(start.values()))\n"
                            "    return dict(zip(start, grads))",
            "summed over tasks, not averaged": "def first_order_meta_gradient(model, theta, batch, alpha, k):\n"
                                               "    total = {n: torch.zeros_like(p) for n, p in theta.items()}\n"
                                               "    for sx, sy, qx, qy in zip(*batch):\n"
                                               "        fast = {n: p.detach() for n, p in theta.items()}\n"
                                               "        for step in range(k + 1):\n"
                                               "            fast = {n: p.requires_grad_(True) for n, p in fast.items()}\n"
                                               "            x, y = (qx, qy) if step == k else (sx, sy)\n"
                                               "            loss = F.mse_loss(torch.func.functional_call(model, fast, x), y)\n"
                                               "            g = dict(zip(fast, torch.autograd.grad(loss, list(fast.values()))))\n"
                                               "            if step < k:\n"
                                               "                fast = {n: (fast[n] - alpha * g[n]).detach() for n in fast}\n"
                                               "        total = {n: total[n] + g[n] for n in total}\n"
                                               "    return total"},
        3: {"zeros": "diagonal_psnr = np.zeros(len(eval_tasks.pixels))",
            "the full covariance": "full_prior = gaussian.with_noise(1e-3)\n"
                                   "diagonal_psnr = completion.psnr_unobserved(\n"
                                   "    completion.conditional_mean(full_prior, eval_tasks), eval_tasks)"},
    },
    "03_gradient_meta_optimizer": {
        1: {"zeros": "def learned_numbers(P, k, rank):\n"
                     "    return dict.fromkeys(['scalar', 'diagonal', 'diagonal per step', 'lowrank', 'full'], 0)",
            "θ₀ left out": "def learned_numbers(P, k, rank):\n"
                           "    return {'scalar': 1, 'diagonal': P, 'diagonal per step': k * P,\n"
                           "            'lowrank': P + P * rank, 'full': P * P}",
            "full M counted as symmetric": "def learned_numbers(P, k, rank):\n"
                                           "    return {'scalar': P + 1, 'diagonal': 2 * P, 'diagonal per step': P + k * P,\n"
                                           "            'lowrank': 2 * P + P * rank, 'full': P + P * (P + 1) // 2}"},
        2: {"unchanged θ": "def sgd_steps(theta0, A, c, rates, k):\n    return theta0",
            "one shared rate": "def sgd_steps(theta0, A, c, rates, k):\n"
                               "    for _ in range(k):\n"
                               "        theta0 = theta0 - rates.mean() * (A @ theta0 - c)\n"
                               "    return theta0",
            "gradient ascent": "def sgd_steps(theta0, A, c, rates, k):\n"
                               "    for _ in range(k):\n"
                               "        theta0 = theta0 + rates * (A @ theta0 - c)\n"
                               "    return theta0"},
        3: {"zeros": "def rate_gradient(theta0, A, c, A_q, c_q, rates):\n    return torch.zeros_like(theta0)",
            "sign flipped": "def rate_gradient(theta0, A, c, A_q, c_q, rates):\n"
                            "    theta1 = theta0 - rates * (A @ theta0 - c)\n"
                            "    return (A_q @ theta1 - c_q) * (A @ theta0 - c)",
            "support gradient taken at θ₁": "def rate_gradient(theta0, A, c, A_q, c_q, rates):\n"
                                            "    theta1 = theta0 - rates * (A @ theta0 - c)\n"
                                            "    return -(A_q @ theta1 - c_q) * (A @ theta1 - c)"},
    },
    "04_meta_generation": {
        1: {"zeros": "def prior_from_context(model, c):\n"
                     "    return torch.zeros(model.latent_dim), torch.zeros(model.latent_dim)",
            "sizes of this notebook's model": "def prior_from_context(model, c):\n"
                                              "    out = model.prior.weight @ c + model.prior.bias\n"
                                              "    return out[:16], out[16:]",
            "halves swapped": "def prior_from_context(model, c):\n"
                              "    out = model.prior.weight @ c + model.prior.bias\n"
                              "    return out[model.latent_dim:], out[:model.latent_dim]"},
        2: {"nothing adapted": "def adapt_by_hand(model, params, support, noise, steps):\n"
                               "    return {n: t for n, t in params.items()\n"
                               "            if n == 'context' or n.startswith('decoder.up.')}",
            "the context only": "def adapt_by_hand(model, params, support, noise, steps):\n"
                                "    fast = {n: t.detach() for n, t in params.items() if not n.startswith('inner_lr.')}\n"
                                "    for _ in range(steps):\n"
                                "        c = fast['context'].requires_grad_(True)\n"
                                "        loss = torch.func.functional_call(model, fast, (support, noise)).mean()\n"
                                "        (g,) = torch.autograd.grad(loss, [c])\n"
                                "        fast['context'] = (c - params['inner_lr.context'] * g).detach()\n"
                                "    return {'context': fast['context']}",
            "one scalar rate": "def adapt_by_hand(model, params, support, noise, steps):\n"
                               "    names = [n for n in params if n == 'context' or n.startswith('decoder.up.')]\n"
                               "    fast = {n: t.detach() for n, t in params.items() if not n.startswith('inner_lr.')}\n"
                               "    for _ in range(steps):\n"
                               "        adapted = {n: fast[n].requires_grad_(True) for n in names}\n"
                               "        loss = torch.func.functional_call(model, fast, (support, noise)).mean()\n"
                               "        grads = torch.autograd.grad(loss, list(adapted.values()))\n"
                               "        for (n, p), g in zip(adapted.items(), grads):\n"
                               "            fast[n] = (p - params['inner_lr.' + n].mean() * g).detach()\n"
                               "    return {n: fast[n] for n in names}"},
        3: {"zeros": "def is_nll(model, images, noise):\n    return torch.zeros(len(images))",
            "the ELBO (mean of log w)": "def is_nll(model, images, noise):\n"
                                        "    return -model.log_weights(images, noise).mean(-1)",
            "log S left out": "def is_nll(model, images, noise):\n"
                              "    return -torch.logsumexp(model.log_weights(images, noise), -1)"},
    },
    "05_class_inference": {
        1: {"constant end": "def beta_at(step, steps, start, end, fraction):\n    return end",
            "falls over the whole run": "def beta_at(step, steps, start, end, fraction):\n"
                                        "    return end + (start - end) * (1 - (step - 1) / max(1, steps - 1))",
            "counted from 0": "def beta_at(step, steps, start, end, fraction):\n"
                              "    span = max(1, round(fraction * steps) - 1)\n"
                              "    return end + (start - end) * max(0.0, 1 - step / span)"},
        2: {"zeros": "def hybrid_loss(model, params, support, query, noise_s, noise_q, steps, beta):\n"
                     "    return (0 * params['decoder.fc.weight']).sum()",
            "no inner steps (the amortised loss)": "def hybrid_loss(model, params, support, query, noise_s, noise_q, steps, beta):\n"
                                                   "    c = sv.call(model, params, 'infer', support)\n"
                                                   "    rec, kl = sv.call(model, {**params, 'context': c}, 'terms', query, noise_q)\n"
                                                   "    return (rec + beta * kl).mean()",
            "graph cut between steps": "def hybrid_loss(model, params, support, query, noise_s, noise_q, steps, beta):\n"
                                       "    c = sv.call(model, params, 'infer', support)\n"
                                       "    for _ in range(steps):\n"
                                       "        nelbo = sv.call(model, {**params, 'context': c}, 'forward', support, noise_s)\n"
                                       "        (g,) = torch.autograd.grad(nelbo.mean(-1).sum(), c)\n"
                                       "        c = c - params['inner_lr.context'] * g\n"
                                       "    rec, kl = sv.call(model, {**params, 'context': c}, 'terms', query, noise_q)\n"
                                       "    return (rec + beta * kl).mean()",
            "β on the reconstruction": "def hybrid_loss(model, params, support, query, noise_s, noise_q, steps, beta):\n"
                                       "    c = sv.call(model, params, 'infer', support)\n"
                                       "    for _ in range(steps):\n"
                                       "        nelbo = sv.call(model, {**params, 'context': c}, 'forward', support, noise_s)\n"
                                       "        (g,) = torch.autograd.grad(nelbo.mean(-1).sum(), c, create_graph=True)\n"
                                       "        c = c - params['inner_lr.context'] * g\n"
                                       "    rec, kl = sv.call(model, {**params, 'context': c}, 'terms', query, noise_q)\n"
                                       "    return (beta * rec + kl).mean()"},
        3: {"zeros": "def leave_one_out_codes(model, support):\n"
                     "    return torch.zeros(len(support), model.context_dim)",
            "image i kept in": "def leave_one_out_codes(model, support):\n"
                               "    return model.infer(support).expand(len(support), -1)",
            "divided by K": "def leave_one_out_codes(model, support):\n"
                            "    e = model.set_encoder.embed(model.set_encoder.trunk(support))\n"
                            "    return model.set_encoder.head((e.sum(0) - e) / len(support))"},
    },
}
