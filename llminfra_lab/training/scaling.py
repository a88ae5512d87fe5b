"""Scaling laws: fit L(N, D) = E + A/N^alpha + B/D^beta and derive the compute-optimal N and D.

    ChinchillaLaw      the law (Hoffmann et al. 2022, eq. 2), with the published fits
    compute_optimal    N_opt and D_opt under C = 6 N D, in closed form
    compute_optimal_bruteforce   the same by a plain search, to check it
    fit_chinchilla     Huber loss on log L, L-BFGS from a grid of starts (Hoffmann et al., eq. 3)
    sweep_run, sweep_data, load_scaling_sweep   the sweep of tiny runs chapter 5 fits a law to
"""
from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from llminfra_lab.checks import positive_int
from llminfra_lab.model import GPT, tiny_config
from llminfra_lab.shipped import load_json
from llminfra_lab.training.checkpoints import PRESETS, build_corpus
from llminfra_lab.training.loop import TrainConfig, evaluate_loss, train

__all__ = [
    "ChinchillaLaw", "HOFFMANN_APPROACH3", "HOFFMANN_APPROACH3_UNROUNDED", "BESIROGLU_REFIT", "GOPHER_FLOPS",
    "compute_optimal", "compute_optimal_bruteforce", "fit_chinchilla", "load_scaling_sweep", "sweep_run",
    "sweep_data", "SWEEP_WIDTHS", "SWEEP_STEPS", "SWEEP_LR_TIMES_WIDTH",
]


@dataclass(frozen=True)
class ChinchillaLaw:
    """L(N, D) = E + A / N^alpha + B / D^beta  (loss in nats; N parameters, D tokens).

    E is the loss of a perfect model (the entropy of the text), A / N^alpha the penalty of
    a finite model, B / D^beta that of finite data (Hoffmann et al. 2022, eq. 2).
    """
    E: float
    A: float
    B: float
    alpha: float
    beta: float

    def __post_init__(self):
        for name in ("E", "A", "B", "alpha", "beta"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"ChinchillaLaw.{name} must be a finite number > 0, got {value!r}")

    def loss(self, n_params, n_tokens):
        """Predicted loss; works on floats and on numpy arrays or torch tensors alike."""
        return self.E + self.A / n_params ** self.alpha + self.B / n_tokens ** self.beta

    @property
    def a(self) -> float:
        """Exponent of N_opt proportional to C^a: beta / (alpha + beta)."""
        return self.beta / (self.alpha + self.beta)

    @property
    def b(self) -> float:
        """Exponent of D_opt proportional to C^b: alpha / (alpha + beta)."""
        return self.alpha / (self.alpha + self.beta)

    @property
    def G(self) -> float:
        """G = (alpha A / (beta B))^(1 / (alpha + beta)), so that N_opt = G (C/6)^a."""
        return (self.alpha * self.A / (self.beta * self.B)) ** (1.0 / (self.alpha + self.beta))


# Hoffmann et al. (2022), eq. 10: the rounded values printed in the paper.
HOFFMANN_APPROACH3 = ChinchillaLaw(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28)
# The same fit with the unrounded E, alpha, beta of the paper's LaTeX source, as read by
# Besiroglu et al. (2024); these give the paper's own a = 0.46 and 40B at Gopher's budget.
HOFFMANN_APPROACH3_UNROUNDED = ChinchillaLaw(E=1.6934, A=406.4, B=410.7, alpha=0.3392, beta=0.2849)
# Besiroglu et al. (2024): refit to the data they reconstructed from the paper's Figure 4.
BESIROGLU_REFIT = ChinchillaLaw(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658)
# Gopher's training compute, the budget Chinchilla was given (Hoffmann et al. 2022, Table 3).
GOPHER_FLOPS = 5.76e23


def compute_optimal(law: ChinchillaLaw, flops: float) -> tuple[float, float]:
    """(N_opt, D_opt) minimising law.loss(N, D) subject to 6 N D = flops, in closed form.

    Substitute D = C / (6N) and set dL/dN = 0:
        alpha A N^(-alpha-1) = beta B (C/6)^(-beta) N^(beta-1)
        N^(alpha+beta) = (alpha A / (beta B)) (C/6)^beta
    so N_opt = G (C/6)^(beta/(alpha+beta)) and D_opt = (C/6) / N_opt = G^-1 (C/6)^(alpha/(alpha+beta)).
    """
    if not isinstance(law, ChinchillaLaw):
        raise ValueError(f"law must be a ChinchillaLaw, got {type(law).__name__}")
    if isinstance(flops, bool) or not isinstance(flops, (int, float)) or not flops > 0:
        raise ValueError(f"flops must be a number > 0, got {flops!r}")
    n_opt = law.G * (flops / 6.0) ** law.a
    return n_opt, (flops / 6.0) / n_opt


def compute_optimal_bruteforce(law: ChinchillaLaw, flops: float, points: int = 200_001) -> tuple[float, float]:
    """(N, D) on a fine log grid of N from 1e3 to C/6 that minimises the loss at 6 N D = C.

    A plain search with no calculus, to check `compute_optimal` against.
    """
    if not isinstance(law, ChinchillaLaw):
        raise ValueError(f"law must be a ChinchillaLaw, got {type(law).__name__}")
    if isinstance(flops, bool) or not isinstance(flops, (int, float)) or not flops > 6e3:
        raise ValueError(f"flops must be a number > 6e3, got {flops!r}")
    if isinstance(points, bool) or not isinstance(points, int) or points < 3:
        raise ValueError(f"points must be an int >= 3, got {points!r}")
    n = torch.logspace(3.0, math.log10(flops / 6.0), points, dtype=torch.float64)
    d = flops / 6.0 / n
    best = int(torch.argmin(law.loss(n, d)))
    return float(n[best]), float(d[best])


def fit_chinchilla(n_params: Sequence[float] | torch.Tensor, n_tokens: Sequence[float] | torch.Tensor,
                   losses: Sequence[float] | torch.Tensor, *, delta: float = 1e-3, grid: str = "coarse",
                   max_iter: int = 200) -> ChinchillaLaw:
    """Fit L(N, D) = E + A/N^alpha + B/D^beta to runs, as in Hoffmann et al. (2022), eq. 3.

    Minimises the *sum* over runs of Huber_delta(log L_hat(N_i, D_i) - log L_i) with L-BFGS,
    where log L_hat = logsumexp(a - alpha log N, b - beta log D, e) and A, B, E = exp(a, b, e).
    It starts from every point of a grid of initialisations and keeps the best fit
    (the paper's grid: alpha, beta in {0, .5, ..., 2}, e in {-1, -.5, ..., 1}, a, b in
    {0, 5, ..., 25}; grid="coarse" uses 2 values of each, 32 starts; "full" the paper's).
    """
    x = [torch.as_tensor(v, dtype=torch.float64).flatten() for v in (n_params, n_tokens, losses)]
    if not (x[0].numel() == x[1].numel() == x[2].numel()) or x[0].numel() < 5:
        raise ValueError("n_params, n_tokens and losses must have the same length, at least 5 runs")
    if not all(bool((v > 0).all()) and bool(torch.isfinite(v).all()) for v in x):
        raise ValueError("n_params, n_tokens and losses must all be finite and > 0")
    if not delta > 0:
        raise ValueError(f"delta must be > 0, got {delta!r}")
    grids = {
        "coarse": ([0.0, 10.0], [0.0, 10.0], [-1.0, 0.5], [0.2, 0.8], [0.2, 0.8]),
        "full": ([0.0, 5, 10, 15, 20, 25], [0.0, 5, 10, 15, 20, 25], [-1.0, -0.5, 0, 0.5, 1],
                 [0.0, 0.5, 1, 1.5, 2], [0.0, 0.5, 1, 1.5, 2]),
    }
    if grid not in grids:
        raise KeyError(f"unknown grid {grid!r}; valid: {sorted(grids)}")
    log_n, log_d, log_l = x[0].log(), x[1].log(), x[2].log()

    def objective(theta):
        a, b, e, alpha, beta = theta
        pred = torch.logsumexp(torch.stack([a - alpha * log_n, b - beta * log_d, e.expand_as(log_n)]), dim=0)
        return torch.nn.functional.huber_loss(pred, log_l, delta=delta, reduction="sum")

    best_val, best_theta = math.inf, None
    for a0 in grids[grid][0]:
        for b0 in grids[grid][1]:
            for e0 in grids[grid][2]:
                for al0 in grids[grid][3]:
                    for be0 in grids[grid][4]:
                        theta = torch.tensor([a0, b0, e0, al0, be0], dtype=torch.float64, requires_grad=True)
                        opt = torch.optim.LBFGS([theta], lr=1.0, max_iter=max_iter, tolerance_grad=1e-12,
                                                tolerance_change=1e-14, line_search_fn="strong_wolfe")

                        def closure(opt=opt, theta=theta):
                            opt.zero_grad()
                            val = objective(theta)
                            val.backward()
                            return val
                        opt.step(closure)
                        with torch.no_grad():
                            val = float(objective(theta))
                        if math.isfinite(val) and val < best_val and bool((theta[3:] > 0).all()):
                            best_val, best_theta = val, theta.detach().clone()
    if best_theta is None:
        raise ValueError("no initialisation converged to a fit with positive exponents")
    a, b, e, alpha, beta = (float(v) for v in best_theta)
    return ChinchillaLaw(E=math.exp(e), A=math.exp(a), B=math.exp(b), alpha=alpha, beta=beta)


# The sweep of tiny runs that chapter 5 fits a law to: widths x token budgets, each run a
# fresh model trained with its own cosine schedule ending at its budget (as Hoffmann et al.
# do: a schedule longer than the run would overstate the loss at the budget).
SWEEP_WIDTHS = (16, 32, 48, 64, 96)
SWEEP_STEPS = (150, 300, 600, 1200)
# The peak learning rate falls as 1/width, a common rule of thumb for Adam: wider layers
# sum more terms, so each weight must move less. One rate for every width starves the
# narrow models (width 16 at 3e-3 ends 300 steps at 2.28 nats, at 1.8e-2 at 1.13), and the
# misfit then shows up as a failure of the scaling law.
SWEEP_LR_TIMES_WIDTH = 0.288


def sweep_run(d_model: int, steps: int, *, n_layer: int = 2, batch_size: int = 8, seq_len: int = 64,
              seed: int = 0, data: dict | None = None, max_lr: float | None = None) -> dict:
    """Train one tiny GPT of width d_model for `steps` steps on the checkpoints' mixture; return its record.

    The record: {"d_model", "n_layer", "steps", "n_params", "n_tokens", "val_loss", "flops"},
    n_params counting every weight (embeddings included, as Hoffmann et al. count them) and
    n_tokens = steps x batch_size x seq_len. `data` may pass a prepared
    {"tokenizer", "train_ids", "val_ids"} to skip re-encoding the corpus. `max_lr` overrides
    the sweep's width-scaled peak learning rate SWEEP_LR_TIMES_WIDTH / d_model.
    """
    for name, value in (("d_model", d_model), ("steps", steps), ("n_layer", n_layer)):
        positive_int(f"{name}", value)
    if d_model % 8:
        raise ValueError(f"d_model must be a multiple of 8 (4 heads of even size), got {d_model}")
    if data is None:
        data = sweep_data(seed)
    tok = data["tokenizer"]
    cfg = tiny_config("draft", vocab_size=tok.vocab_size, n_layer=n_layer, d_model=d_model,   # the draft's heads
                      d_ff=8 * ((8 * d_model // 3 + 7) // 8), max_seq_len=max(seq_len, 64))
    model = GPT(cfg, seed=seed)
    lr = SWEEP_LR_TIMES_WIDTH / d_model if max_lr is None else max_lr   # 3e-3 at width 96, 1.8e-2 at 16
    if not lr > 0:
        raise ValueError(f"max_lr must be > 0, got {max_lr!r}")
    tcfg = TrainConfig(steps=steps, batch_size=batch_size, seq_len=seq_len, max_lr=lr, min_lr=lr / 10,
                       warmup_steps=max(1, steps // 10), weight_decay=0.1, seed=seed)
    train(model, data["train_ids"], tcfg)
    n_tokens = steps * batch_size * seq_len
    return {"d_model": d_model, "n_layer": n_layer, "steps": steps, "n_params": model.num_params(),
            "n_tokens": n_tokens, "val_loss": evaluate_loss(model, data["val_ids"], seq_len, max_windows=512),
            "flops": 6.0 * model.num_params() * n_tokens}


def sweep_data(seed: int = 0) -> dict:
    """Tokenizer, training ids and held-out ids of the sweep: the draft checkpoint's corpus.

    Training text is the shuffled mixture of arithmetic and stories that the shipped
    checkpoints learn from; the held-out text mixes the 500 held-out problems with held-out
    stories in the same way, so a model's held-out loss rewards both fluent stories and
    correct sums (which only a large enough model learns).
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, got {seed!r}")
    corpus = build_corpus(PRESETS["draft"])
    tok = corpus["tokenizer"]
    val_stories = tok.decode(corpus["val_story_ids"].tolist())
    docs = [p + "\n" for p in corpus["heldout_problems"]]
    docs += [s.strip() + "\n\n" for s in val_stories.split("\n\n") if s.strip()]
    random.Random(seed).shuffle(docs)
    return {"tokenizer": tok, "train_ids": corpus["train_ids"],
            "val_ids": torch.tensor(tok.encode("".join(docs)), dtype=torch.long)}


def load_scaling_sweep(path: str | Path | None = None) -> dict:
    """The precomputed sweep of tiny runs (benchmarks/scaling_sweep.py wrote it).

    Returns {"runs": [{"n_params", "n_tokens", "val_loss", ...}, ...], "settings": {...}}.
    """
    sweep = load_json("scaling_sweep.json", path, made_by="benchmarks/scaling_sweep.py")
    if not isinstance(sweep, dict) or not sweep.get("runs"):
        raise ValueError("a scaling sweep is a dict with a non-empty 'runs' list")
    return sweep
