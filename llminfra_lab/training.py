"""The training stack of the tiny GPT: optimizer, schedule, loop, accounting, scaling laws.

Read it top to bottom; each part is what a large-model training run does, at toy size:

    1. AdamW written out step by step (it equals torch.optim.AdamW, bit for bit in float32)
    2. the learning-rate schedule: linear warm-up, then cosine decay to a floor
    3. gradient clipping by global norm
    4. the loop: micro-batches with gradient accumulation, optional bf16 autocast,
       clipping, a schedule, and a history of the loss
    5. the shipped checkpoints: a BPE tokenizer and a "target" and a "draft" GPT trained on
       a mixture of synthetic arithmetic and stories; `python -m llminfra_lab.training
       --preset target` rebuilds one deterministically on a CPU
    5b. deduplication: exact (SHA-256 of normalised text) and near-duplicate (MinHash + LSH)
    6. accounting: training FLOPs = 6 N D, and bytes per parameter of precision recipes
    7. scaling laws: fit L(N, D) = E + A/N^alpha + B/D^beta (Hoffmann et al. 2022) and
       derive the compute-optimal N and D in closed form under C = 6 N D

The figures of chapter 5 are drawn by the `plot_*` functions at the end.
"""
from __future__ import annotations

import argparse
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .checks import positive_int
from .economics import training_flops

__all__ = [
    # optimizer, schedule, clipping
    "AdamW", "lr_at", "clip_grad_norm",
    # the loop
    "TrainConfig", "train_step", "train", "evaluate_loss",
    # shipped checkpoints
    "CheckpointRecipe", "PRESETS", "build_corpus", "compare_bpe_with_hf", "train_preset", "arithmetic_prompt",
    "answer_arithmetic", "arithmetic_accuracy", "story_perplexity", "CHECKPOINT_DIR",
    # deduplication
    "exact_dedup", "shingles", "minhash_signature", "lsh_candidate_probability", "minhash_dedup",
    # accounting
    "training_flops", "PRECISION_RECIPES", "bytes_per_param", "model_state_bytes",
    # scaling laws
    "ChinchillaLaw", "HOFFMANN_APPROACH3", "HOFFMANN_APPROACH3_UNROUNDED", "BESIROGLU_REFIT",
    "GOPHER_FLOPS", "compute_optimal", "compute_optimal_bruteforce", "fit_chinchilla",
    "load_scaling_sweep", "sweep_run", "sweep_data", "SWEEP_WIDTHS", "SWEEP_STEPS", "SWEEP_LR_TIMES_WIDTH",
    # figures
    "plot_loss_curves", "plot_scaling_fit", "plot_compute_frontier", "plot_schedule", "plot_lsh_curve",
    "checkpoint_history",
]

# ============================================================================ 1. AdamW


class AdamW(torch.optim.Optimizer):
    """AdamW (Loshchilov & Hutter 2019) written out, in the order torch.optim.AdamW does it.

    For each parameter p with gradient g, at step t (starting at 1):

        p   <- p * (1 - lr * weight_decay)                 decoupled weight decay
        m   <- beta1 * m + (1 - beta1) * g                 first moment (lerp towards g)
        v   <- beta2 * v + (1 - beta2) * g * g             second moment
        m^  =  m / (1 - beta1^t),  v^ = v / (1 - beta2^t)  bias corrections
        p   <- p - lr * m^ / (sqrt(v^) + eps)

    State per parameter: m and v, each the size of p (the "12 bytes" of a mixed-precision
    recipe are these two plus an fp32 master copy of p).
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2):
        if not (isinstance(lr, (int, float)) and lr >= 0):
            raise ValueError(f"lr must be a number >= 0, got {lr!r}")
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2 and all(0 <= b < 1 for b in betas)):
            raise ValueError(f"betas must be two numbers in [0, 1), got {betas!r}")
        if not (isinstance(eps, (int, float)) and eps > 0):
            raise ValueError(f"eps must be > 0, got {eps!r}")
        if not (isinstance(weight_decay, (int, float)) and weight_decay >= 0):
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay!r}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (beta1, beta2) = group["lr"], group["betas"]
            eps, wd = group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p)
                    state["exp_avg_sq"] = torch.zeros_like(p)
                state["step"] += 1
                t, g = state["step"], p.grad
                m, v = state["exp_avg"], state["exp_avg_sq"]
                p.mul_(1 - lr * wd)
                m.lerp_(g, 1 - beta1)
                v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                step_size = lr / (1 - beta1 ** t)
                denom = (v.sqrt() / (1 - beta2 ** t) ** 0.5).add_(eps)
                p.addcdiv_(m, denom, value=-step_size)
        return loss


# ============================================================================ 2. schedule


def lr_at(step: int, *, max_lr: float, warmup_steps: int, total_steps: int, min_lr: float = 0.0) -> float:
    """Learning rate at optimizer step `step` (0-based): linear warm-up, then cosine decay.

    Steps 0 .. warmup_steps-1 rise linearly to max_lr (step s gets max_lr * (s+1)/warmup_steps);
    from warmup_steps to total_steps the rate follows half a cosine from max_lr down to
    min_lr, and it stays at min_lr after that.
    """
    for name, value in (("step", step), ("warmup_steps", warmup_steps), ("total_steps", total_steps)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be an int >= 0, got {value!r}")
    if warmup_steps > total_steps or total_steps == 0:
        raise ValueError(f"need 0 <= warmup_steps <= total_steps and total_steps > 0, "
                         f"got warmup_steps={warmup_steps}, total_steps={total_steps}")
    if not (0 <= min_lr <= max_lr):
        raise ValueError(f"need 0 <= min_lr <= max_lr, got min_lr={min_lr}, max_lr={max_lr}")
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step >= total_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_lr + 0.5 * (max_lr - min_lr) * (1 + math.cos(math.pi * progress))


# ============================================================================ 3. clipping


@torch.no_grad()
def clip_grad_norm(parameters, max_norm: float) -> torch.Tensor:
    """Scale all gradients by min(1, max_norm / ||g||), ||g|| the L2 norm over every parameter.

    Returns the norm before clipping, as torch.nn.utils.clip_grad_norm_ does.
    """
    if not (isinstance(max_norm, (int, float)) and not isinstance(max_norm, bool) and max_norm > 0):
        raise ValueError(f"max_norm must be a number > 0, got {max_norm!r}")
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.tensor(0.0)
    total = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g, 2.0) for g in grads]), 2.0)
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for g in grads:
        g.mul_(coef)
    return total


# ============================================================================ 4. the loop


@dataclass
class TrainConfig:
    """Hyperparameters of one training run (all sizes in tokens or steps)."""
    steps: int = 200
    batch_size: int = 16            # sequences per optimizer step (= micro_batch * accum_steps)
    accum_steps: int = 1            # micro-batches whose gradients are summed before a step
    seq_len: int = 64
    max_lr: float = 3e-3
    min_lr: float = 3e-4
    warmup_steps: int = 20
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    precision: str = "fp32"         # "fp32" or "bf16" (autocast of forward and loss)
    seed: int = 0                   # the batch sampler's seed
    eval_every: int = 0             # 0 = never; else record a held-out loss every this many steps

    def __post_init__(self):
        for name in ("steps", "batch_size", "accum_steps", "seq_len"):
            value = getattr(self, name)
            positive_int(f"TrainConfig.{name}", value)
        for name in ("warmup_steps", "eval_every", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"TrainConfig.{name} must be an int >= 0, got {value!r}")
        if self.batch_size % self.accum_steps:
            raise ValueError(f"batch_size ({self.batch_size}) must be a multiple of accum_steps ({self.accum_steps})")
        if self.warmup_steps > self.steps:
            raise ValueError(f"warmup_steps ({self.warmup_steps}) must be <= steps ({self.steps})")
        if not (0 <= self.min_lr <= self.max_lr):
            raise ValueError(f"need 0 <= min_lr <= max_lr, got {self.min_lr}, {self.max_lr}")
        if not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0, got {self.grad_clip}")
        if self.precision not in ("fp32", "bf16"):
            raise ValueError(f"precision must be 'fp32' or 'bf16', got {self.precision!r}")
        self.betas = tuple(self.betas)


def train_step(model, optimizer, micro_batches, *, grad_clip: float | None = 1.0,
               precision: str = "fp32") -> tuple[float, float]:
    """One optimizer step over a list of (x, y) micro-batches; returns (mean loss, grad norm).

    Each micro-batch loss is divided by the number of micro-batches before backward, so
    the summed gradient equals that of one batch holding all of them (equal sizes).
    """
    if not isinstance(micro_batches, (list, tuple)) or not micro_batches:
        raise ValueError("micro_batches must be a non-empty list of (x, y) tensor pairs")
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")
    model.train()
    optimizer.zero_grad(set_to_none=True)
    total = 0.0
    n = len(micro_batches)
    for x, y in micro_batches:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = model.loss(x, y)
        (loss / n).backward()
        total += loss.item()
    params = [p for p in model.parameters() if p.grad is not None]
    if grad_clip is not None:
        norm = clip_grad_norm(params, grad_clip)
    else:
        norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))
    optimizer.step()
    return total / n, float(norm)


def train(model, train_ids: torch.Tensor, cfg: TrainConfig, *, val_ids: torch.Tensor | None = None,
          optimizer: torch.optim.Optimizer | None = None) -> dict:
    """Train `model` (a GPT) in place on a 1-D tensor of token ids; return the history.

    Batches are random windows of cfg.seq_len + 1 tokens drawn by `data.batches` with a
    generator seeded by cfg.seed, so a run is reproducible bit for bit on one machine.
    The history holds, per step: "step", "loss", "lr", "grad_norm", "tokens" (seen so
    far), and when cfg.eval_every > 0: "eval_step", "val_loss".
    """
    from .data import batches

    if not isinstance(cfg, TrainConfig):
        raise ValueError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    _check_ids(train_ids, "train_ids", cfg.seq_len)
    if val_ids is not None:
        _check_ids(val_ids, "val_ids", cfg.seq_len)
    if cfg.eval_every and val_ids is None:
        raise ValueError("cfg.eval_every > 0 needs val_ids")
    if optimizer is None:
        optimizer = AdamW(model.parameters(), lr=cfg.max_lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    micro = cfg.batch_size // cfg.accum_steps
    hist: dict[str, list] = {"step": [], "loss": [], "lr": [], "grad_norm": [], "tokens": [],
                             "eval_step": [], "val_loss": []}
    for step in range(cfg.steps):
        lr = lr_at(step, max_lr=cfg.max_lr, warmup_steps=cfg.warmup_steps, total_steps=cfg.steps,
                   min_lr=cfg.min_lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        mbs = [batches(train_ids, micro, cfg.seq_len, gen) for _ in range(cfg.accum_steps)]
        loss, norm = train_step(model, optimizer, mbs, grad_clip=cfg.grad_clip, precision=cfg.precision)
        hist["step"].append(step)
        hist["loss"].append(loss)
        hist["lr"].append(lr)
        hist["grad_norm"].append(norm)
        hist["tokens"].append((step + 1) * cfg.batch_size * cfg.seq_len)
        if cfg.eval_every and ((step + 1) % cfg.eval_every == 0 or step + 1 == cfg.steps):
            hist["eval_step"].append(step)
            hist["val_loss"].append(evaluate_loss(model, val_ids, cfg.seq_len))
    model.eval()
    return hist


@torch.no_grad()
def evaluate_loss(model, ids: torch.Tensor, seq_len: int, max_windows: int = 64) -> float:
    """Mean next-token loss (nats) over consecutive, non-overlapping windows of `ids`.

    Deterministic: windows start at 0, seq_len, 2*seq_len, ... (at most max_windows).
    """
    _check_ids(ids, "ids", seq_len)
    positive_int("max_windows", max_windows)
    n = min(max_windows, (ids.numel() - 1) // seq_len)
    x = torch.stack([ids[i * seq_len:(i + 1) * seq_len] for i in range(n)])
    y = torch.stack([ids[i * seq_len + 1:(i + 1) * seq_len + 1] for i in range(n)])
    was = model.training
    model.eval()
    losses = [model.loss(x[i:i + 16], y[i:i + 16]).item() * len(x[i:i + 16]) for i in range(0, n, 16)]
    model.train(was)
    return sum(losses) / n


def _check_ids(ids, name: str, seq_len: int):
    if not isinstance(ids, torch.Tensor) or ids.dtype != torch.long or ids.dim() != 1:
        raise ValueError(f"{name} must be a 1-D torch.long tensor of token ids")
    if ids.numel() < seq_len + 2:
        raise ValueError(f"{name} holds {ids.numel()} tokens; need at least seq_len + 2 = {seq_len + 2}")


# ============================================================================ 5. shipped checkpoints

CHECKPOINT_DIR = Path(__file__).resolve().parent / "assets" / "checkpoints"


@dataclass
class CheckpointRecipe:
    """Everything that makes a shipped checkpoint: data, tokenizer, model and optimizer settings.

    The corpus is a shuffled mixture of documents: each training arithmetic problem
    ("37+58=95", two-digit addition) `arith_repeats` times, and the stories of
    `story_chars` characters of the grammar. The BPE tokenizer is trained on the first
    `tokenizer_chars` characters of the stories only, so no merge ever joins two digits:
    numbers are spelled digit by digit (LLaMA gets the same by splitting digits before BPE).
    Held-out problems and held-out stories (another seed) are never trained on.
    """
    name: str
    model: dict                         # GPTConfig fields except vocab_size (set by the tokenizer)
    train: dict                         # TrainConfig fields
    vocab_size: int = 512
    tokenizer_chars: int = 200_000
    story_chars: int = 1_000_000
    arith_train: int = 8_000
    arith_heldout: int = 500
    arith_repeats: int = 3
    data_seed: int = 0
    model_seed: int = 0
    heldout_story_chars: int = 40_000

    def to_dict(self) -> dict:
        return asdict(self)


_SHARED = dict(vocab_size=512, tokenizer_chars=200_000, story_chars=1_000_000, arith_train=8_000,
               arith_heldout=500, arith_repeats=3, data_seed=0)
PRESETS: dict[str, CheckpointRecipe] = {
    # ~1.2M parameters: six layers of d_model 128, GQA 4 query heads over 2 KV heads.
    "target": CheckpointRecipe(
        name="target",
        model=dict(n_layer=6, n_head=4, n_kv_head=2, d_model=128, d_ff=344, max_seq_len=256),
        train=dict(steps=2500, batch_size=16, accum_steps=1, seq_len=128, max_lr=3e-3, min_lr=3e-4,
                   warmup_steps=100, weight_decay=0.1, betas=(0.9, 0.95), grad_clip=1.0,
                   precision="fp32", seed=0, eval_every=100),
        model_seed=0, **_SHARED),
    # ~0.25M parameters, same tokenizer and data: the draft model of speculative decoding.
    "draft": CheckpointRecipe(
        name="draft",
        model=dict(n_layer=2, n_head=4, n_kv_head=2, d_model=96, d_ff=256, max_seq_len=256),
        train=dict(steps=1500, batch_size=16, accum_steps=1, seq_len=128, max_lr=3e-3, min_lr=3e-4,
                   warmup_steps=100, weight_decay=0.1, betas=(0.9, 0.95), grad_clip=1.0,
                   precision="fp32", seed=1, eval_every=100),
        model_seed=1, **_SHARED),
}


def build_corpus(recipe: CheckpointRecipe) -> dict:
    """Tokenizer, token ids and held-out sets of a recipe, all from its seeds.

    Returns {"tokenizer", "train_ids" (1-D long), "val_story_ids" (1-D long),
    "heldout_problems" (list of "a+b=c"), "train_problems", "text_chars"}.
    """
    import random

    from .data import arithmetic_split, stories
    from .tokenizer import BPETokenizer

    if not isinstance(recipe, CheckpointRecipe):
        raise ValueError(f"recipe must be a CheckpointRecipe, got {type(recipe).__name__}")
    train_problems, heldout = arithmetic_split(recipe.arith_train, recipe.arith_heldout, digits=2,
                                               seed=recipe.data_seed, ops="+")
    story_text = stories(recipe.story_chars, seed=recipe.data_seed + 1)
    tokenizer = BPETokenizer.train(story_text[:recipe.tokenizer_chars], recipe.vocab_size)
    docs = [p + "\n" for _ in range(recipe.arith_repeats) for p in train_problems]
    docs += [s.strip() + "\n\n" for s in story_text.split("\n\n") if s.strip()]
    random.Random(recipe.data_seed).shuffle(docs)
    text = "".join(docs)
    val_text = stories(recipe.heldout_story_chars, seed=recipe.data_seed + 2)
    return {
        "tokenizer": tokenizer,
        "train_ids": torch.tensor(tokenizer.encode(text), dtype=torch.long),
        "val_story_ids": torch.tensor(tokenizer.encode(val_text), dtype=torch.long),
        "heldout_problems": heldout,
        "train_problems": train_problems,
        "text_chars": len(text),
    }


def compare_bpe_with_hf(text: str, vocab_size: int) -> dict:
    """Train our BPE and the Hugging Face `tokenizers` BPE trainer on the same text and settings.

    Returns {"ours": [merge strings], "hf": [merge strings], "n_merges", "n_equal",
    "first_difference" (index or None)}; merges are written as GPT-2 byte-level strings
    ("Ġt" is a space then "t"). Needs the `tokenizers` package (the `peers` extra).
    """
    import json

    import tokenizers as hf_tok

    from .tokenizer import BPETokenizer, byte_order

    if not isinstance(text, str) or not text:
        raise ValueError("text must be a non-empty str")
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 257:
        raise ValueError(f"vocab_size must be an int > 256, got {vocab_size!r}")
    ours = BPETokenizer.train(text, vocab_size)
    hf = hf_tok.Tokenizer(hf_tok.models.BPE())
    hf.pre_tokenizer = hf_tok.pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.train_from_iterator([text], hf_tok.trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[], min_frequency=0, show_progress=False,
        initial_alphabet=hf_tok.pre_tokenizers.ByteLevel.alphabet()))
    hf_merges = [" ".join(m) if isinstance(m, list) else m for m in json.loads(hf.to_str())["model"]["merges"]]
    # GPT-2's byte-to-unicode table: printable bytes stand for themselves, the rest from U+0100
    printable = set(byte_order()[:188])
    extra = iter(range(256, 512))
    char_of = {b: chr(b) if b in printable else chr(next(extra)) for b in range(256)}
    spell = lambda i: "".join(char_of[b] for b in ours.token_bytes(i))  # noqa: E731
    our_merges = [f"{spell(a)} {spell(b)}" for a, b in ours.merges]
    diff = next((i for i, (x, y) in enumerate(zip(our_merges, hf_merges)) if x != y), None)
    if diff is None and len(our_merges) != len(hf_merges):
        diff = min(len(our_merges), len(hf_merges))
    return {"ours": our_merges, "hf": hf_merges, "n_merges": len(our_merges),
            "n_equal": sum(x == y for x, y in zip(our_merges, hf_merges)), "first_difference": diff}


def arithmetic_prompt(problem: str) -> str:
    """The prompt the checkpoints answer: a newline, then the problem up to "=": "\\n37+58="."""
    if not isinstance(problem, str) or "=" not in problem:
        raise ValueError(f"problem must be a string like '37+58=' or '37+58=95', got {problem!r}")
    return "\n" + problem[:problem.index("=") + 1]


@torch.no_grad()
def answer_arithmetic(model, tokenizer, problems, max_new_tokens: int = 5) -> list[str]:
    """Greedy answers (the text before the first newline) to problems like "37+58=" or "37+58=95".

    Prompts of equal token length are decoded together, as one batch.
    """
    from .model import generate

    if isinstance(problems, str) or not isinstance(problems, (list, tuple)) or not problems:
        raise ValueError("problems must be a non-empty list of strings like '37+58='")
    prompts = [arithmetic_prompt(p) for p in problems]
    encoded = [tokenizer.encode(p) for p in prompts]
    answers: list[str] = [""] * len(prompts)
    by_len: dict[int, list[int]] = {}
    for i, ids in enumerate(encoded):
        by_len.setdefault(len(ids), []).append(i)
    for length, idx in by_len.items():
        x = torch.tensor([encoded[i] for i in idx], dtype=torch.long)
        out = generate(model, x, max_new_tokens, temperature=0.0)
        for row, i in enumerate(idx):
            answers[i] = tokenizer.decode(out[row, length:].tolist()).split("\n")[0].strip()
    return answers


def arithmetic_accuracy(model, tokenizer, problems) -> float:
    """Exact-match accuracy of greedy answers on problems "a+b=c" (the part after "=" is the key)."""
    if isinstance(problems, str) or not isinstance(problems, (list, tuple)) or not problems:
        raise ValueError("problems must be a non-empty list of solved problems like '37+58=95'")
    if any(not isinstance(p, str) or "=" not in p or not p.split("=", 1)[1] for p in problems):
        raise ValueError("each problem must carry its answer after '=', like '37+58=95'")
    got = answer_arithmetic(model, tokenizer, list(problems))
    return sum(g == p.split("=", 1)[1] for g, p in zip(got, problems)) / len(problems)


def story_perplexity(model, ids: torch.Tensor, seq_len: int = 128, max_windows: int = 64) -> float:
    """exp(mean next-token loss) over held-out story token ids (per token of this tokenizer)."""
    return math.exp(evaluate_loss(model, ids, seq_len, max_windows))


def train_preset(name: str, out: str | Path | None = None, steps: int | None = None) -> tuple:
    """Train the preset `name` ("target" or "draft") from scratch; save it when `out` is given.

    Deterministic on one machine with torch.set_num_threads(1). `steps` overrides the
    recipe's step count (for quick tests). Returns (model, tokenizer, history, results),
    results = {"heldout_accuracy", "story_perplexity", "final_val_loss", "n_params", ...}.
    """
    from .model import GPT, GPTConfig, save_pretrained

    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; valid: {sorted(PRESETS)}")
    recipe = PRESETS[name]
    if steps is not None:
        positive_int("steps", steps)
        recipe = CheckpointRecipe(**{**recipe.to_dict(),
                                     "train": {**recipe.train, "steps": steps,
                                               "warmup_steps": min(recipe.train["warmup_steps"], steps),
                                               "eval_every": 0}})
    data = build_corpus(recipe)
    tok = data["tokenizer"]
    cfg = GPTConfig(vocab_size=tok.vocab_size, **recipe.model)
    model = GPT(cfg, seed=recipe.model_seed)
    tcfg = TrainConfig(**recipe.train)
    hist = train(model, data["train_ids"], tcfg, val_ids=data["val_story_ids"] if tcfg.eval_every else None)
    results = {
        "n_params": model.num_params(),
        "train_tokens_seen": tcfg.steps * tcfg.batch_size * tcfg.seq_len,
        "corpus_tokens": int(data["train_ids"].numel()),
        "corpus_chars": data["text_chars"],
        "final_train_loss": sum(hist["loss"][-20:]) / len(hist["loss"][-20:]),
        "final_val_loss": evaluate_loss(model, data["val_story_ids"], tcfg.seq_len),
        "story_perplexity": story_perplexity(model, data["val_story_ids"], tcfg.seq_len),
        "heldout_accuracy": arithmetic_accuracy(model, tok, data["heldout_problems"]),
        "train_accuracy_first500": arithmetic_accuracy(model, tok, data["train_problems"][:500]),
        "training_flops_6ND": 6.0 * model.num_params() * tcfg.steps * tcfg.batch_size * tcfg.seq_len,
    }
    if out is not None:
        recipe_dict = {**recipe.to_dict(), "train": {**recipe.train, "betas": list(tcfg.betas)},
                       "results": results,
                       "history": {"step": hist["step"][::10], "loss": hist["loss"][::10],
                                   "eval_step": hist["eval_step"], "val_loss": hist["val_loss"]},
                       "command": f"python -m llminfra_lab.training --preset {name}",
                       "torch_version": str(torch.__version__)}
        save_pretrained(model, tok, out, recipe_dict)
    return model, tok, hist, results


# ============================================================================ 5b. deduplication
# A pre-training corpus is cleaned before it is tokenized; removing repeated documents is
# the step with the clearest payoff (Lee et al. 2022). Exact duplicates fall to a hash of
# the normalised text; near duplicates (the same page with a different footer) to MinHash
# (Broder 1997): the chance that two documents share the minimum of a random hash over
# their shingles equals the Jaccard similarity of the shingle sets, and LSH banding turns
# k such minima into a cheap candidate test.

_MERSENNE = (1 << 61) - 1


def exact_dedup(docs: list[str]) -> list[int]:
    """Indices of the documents kept when exact duplicates (after normalising whitespace
    and case) are dropped; the first copy is kept."""
    import hashlib

    if isinstance(docs, str) or not isinstance(docs, (list, tuple)) or not all(isinstance(d, str) for d in docs):
        raise ValueError("docs must be a list of strings")
    seen, keep = set(), []
    for i, doc in enumerate(docs):
        key = hashlib.sha256(" ".join(doc.lower().split()).encode("utf-8")).digest()
        if key not in seen:
            seen.add(key)
            keep.append(i)
    return keep


def shingles(text: str, n: int = 5) -> set[str]:
    """The set of word n-grams of text (lower-cased); a text shorter than n words is one shingle."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a str, got {type(text).__name__}")
    positive_int("n", n)
    words = text.lower().split()
    if len(words) <= n:
        return {" ".join(words)}
    return {" ".join(words[i:i + n]) for i in range(len(words) - n + 1)}


def minhash_signature(text: str, num_perm: int = 128, n: int = 5, seed: int = 0) -> list[int]:
    """MinHash signature: for each of num_perm hash functions h_i(x) = (a_i x + b_i) mod (2^61 - 1),
    the minimum of h_i over the 64-bit hashes x of the text's word n-gram shingles."""
    import hashlib
    import random

    positive_int("num_perm", num_perm)
    rng = random.Random(seed)
    coeffs = [(rng.randrange(1, _MERSENNE), rng.randrange(0, _MERSENNE)) for _ in range(num_perm)]
    xs = [int.from_bytes(hashlib.blake2b(s.encode("utf-8"), digest_size=8).digest(), "little")
          for s in shingles(text, n)]
    return [min((a * x + b) % _MERSENNE for x in xs) for a, b in coeffs]


def lsh_candidate_probability(similarity: float, bands: int, rows: int) -> float:
    """P(two documents of Jaccard similarity s become candidates) with `bands` bands of `rows`
    rows each: 1 - (1 - s^rows)^bands. The S-curve's midpoint is near (1/bands)^(1/rows)."""
    if not (isinstance(similarity, (int, float)) and 0 <= similarity <= 1):
        raise ValueError(f"similarity must be in [0, 1], got {similarity!r}")
    for name, value in (("bands", bands), ("rows", rows)):
        positive_int(f"{name}", value)
    return 1.0 - (1.0 - similarity ** rows) ** bands


def minhash_dedup(docs: list[str], threshold: float = 0.8, bands: int = 16, rows: int = 8,
                  n: int = 5, seed: int = 0) -> list[int]:
    """Indices kept after near-duplicate removal: documents whose signatures collide in any
    LSH band are compared by estimated Jaccard, and a document is dropped when it is at
    least `threshold` similar to an earlier kept one."""
    if isinstance(docs, str) or not isinstance(docs, (list, tuple)) or not all(isinstance(d, str) for d in docs):
        raise ValueError("docs must be a list of strings")
    if not (isinstance(threshold, (int, float)) and 0 < threshold <= 1):
        raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
    lsh_candidate_probability(threshold, bands, rows)            # validates bands and rows
    sigs = [minhash_signature(d, bands * rows, n, seed) for d in docs]
    buckets: dict[tuple, list[int]] = {}
    keep = []
    for i, sig in enumerate(sigs):
        keys = [(band, tuple(sig[band * rows:(band + 1) * rows])) for band in range(bands)]
        candidates = {j for key in keys for j in buckets.get(key, [])}
        if any(sum(a == b for a, b in zip(sig, sigs[j])) / len(sig) >= threshold for j in candidates):
            continue
        keep.append(i)
        for key in keys:
            buckets.setdefault(key, []).append(i)
    return keep


# ============================================================================ 6. accounting


# Training FLOPs C ~= 6 N D live in `economics.training_flops` (chapter 1) and are reused
# here: per token, the forward pass does a multiply and an add per weight (2N), the
# backward pass twice that (4N). For a mixture-of-experts model N is the *active* weights.


# Bytes each parameter costs in GPU memory under a precision recipe, not counting
# activations: the copy the matmuls read, the gradient, the fp32 master copy, Adam's m and v.
PRECISION_RECIPES: dict[str, dict[str, int]] = {
    # Everything in fp32: the weights are their own master copy.
    "fp32": {"weights": 4, "grads": 4, "master": 0, "adam_m": 4, "adam_v": 4},
    # Mixed precision (Micikevicius et al. 2018) as counted by ZeRO (Rajbhandari et al. 2020):
    # 16-bit weights and gradients (2 + 2) and an fp32 optimizer state of K = 12 bytes
    # (master weights, m, v) = 16 bytes.
    "bf16-mixed": {"weights": 2, "grads": 2, "master": 4, "adam_m": 4, "adam_v": 4},
    # DeepSeek-V3 (DeepSeek-AI 2024, section 3.3): GEMMs run in FP8 on weights quantized
    # on the fly in 128x128 blocks; master weights and weight gradients stay fp32, and
    # AdamW's two moments are stored in BF16. The FP8 copies are transient, so 12 bytes.
    "fp8-deepseek-v3": {"weights": 0, "grads": 4, "master": 4, "adam_m": 2, "adam_v": 2},
}


def bytes_per_param(recipe: str) -> int:
    """Persistent bytes per parameter of a precision recipe (weights + grads + optimizer)."""
    if recipe not in PRECISION_RECIPES:
        raise KeyError(f"unknown precision recipe {recipe!r}; valid: {sorted(PRECISION_RECIPES)}")
    return sum(PRECISION_RECIPES[recipe].values())


def model_state_bytes(n_params: float, recipe: str = "bf16-mixed", shards: int = 1) -> float:
    """Bytes of weights, gradients and optimizer state for `n_params` parameters.

    `shards` divides everything evenly, as ZeRO stage 3 / FSDP does across data-parallel
    ranks (chapter 6); shards=1 is one device holding it all.
    """
    if isinstance(n_params, bool) or not isinstance(n_params, (int, float)) or not n_params > 0:
        raise ValueError(f"n_params must be a number > 0, got {n_params!r}")
    positive_int("shards", shards)
    return float(n_params) * bytes_per_param(recipe) / shards


# ============================================================================ 7. scaling laws


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


def fit_chinchilla(n_params, n_tokens, losses, *, delta: float = 1e-3, grid: str = "coarse",
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

                        def closure():
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
    from .model import GPT, GPTConfig

    for name, value in (("d_model", d_model), ("steps", steps), ("n_layer", n_layer)):
        positive_int(f"{name}", value)
    if d_model % 8:
        raise ValueError(f"d_model must be a multiple of 8 (4 heads of even size), got {d_model}")
    if data is None:
        data = sweep_data(seed)
    tok = data["tokenizer"]
    cfg = GPTConfig(vocab_size=tok.vocab_size, n_layer=n_layer, n_head=4, n_kv_head=2, d_model=d_model,
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
    import random

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
    import json
    from importlib import resources

    if path is None:
        text = resources.files("llminfra_lab").joinpath("assets", "scaling_sweep.json").read_text(encoding="utf-8")
    else:
        path = Path(path)
        if not path.is_file():
            raise ValueError(f"expected a scaling-sweep JSON file at {path}, found none")
        text = path.read_text(encoding="utf-8")
    sweep = json.loads(text)
    if not isinstance(sweep, dict) or not sweep.get("runs"):
        raise ValueError("a scaling sweep is a dict with a non-empty 'runs' list")
    return sweep


# ============================================================================ figures


def plot_schedule(cfg: TrainConfig | None = None, ax=None):
    """The learning rate of every step of a TrainConfig: warm-up, then cosine decay."""
    import matplotlib.pyplot as plt

    cfg = cfg or TrainConfig()
    if not isinstance(cfg, TrainConfig):
        raise ValueError(f"cfg must be a TrainConfig, got {type(cfg).__name__}")
    ax = ax or plt.subplots(figsize=(6, 3))[1]
    steps = list(range(cfg.steps))
    ax.plot(steps, [lr_at(s, max_lr=cfg.max_lr, warmup_steps=cfg.warmup_steps, total_steps=cfg.steps,
                          min_lr=cfg.min_lr) for s in steps])
    ax.axvline(cfg.warmup_steps, color="grey", lw=0.8, ls="--")
    ax.set(xlabel="optimizer step", ylabel="learning rate", title="Linear warm-up, then cosine decay")
    return ax


def plot_loss_curves(histories: dict, ax=None, smooth: int = 10):
    """Training loss (a moving average over `smooth` steps) against tokens, one line per run."""
    import matplotlib.pyplot as plt

    if not isinstance(histories, dict) or not histories:
        raise ValueError("histories must be a non-empty dict {label: history from train()}")
    positive_int("smooth", smooth)
    ax = ax or plt.subplots(figsize=(6, 3.5))[1]
    for label, hist in histories.items():
        loss = torch.tensor(hist["loss"], dtype=torch.float64)
        k = min(smooth, len(loss))
        avg = torch.nn.functional.avg_pool1d(loss[None, None], k, stride=1)[0, 0]
        ax.plot(hist["tokens"][k - 1:], avg.tolist(), label=f"{label} (train)")
        if hist.get("val_loss"):
            toks = hist.get("eval_tokens") or [hist["tokens"][s] for s in hist["eval_step"]]
            ax.plot(toks, hist["val_loss"], "o--", ms=3, label=f"{label} (held out)")
    ax.set(xlabel="training tokens", ylabel="loss (nats/token)", title="Loss curves")
    ax.legend(fontsize=8)
    return ax


def plot_scaling_fit(sweep: dict, law: ChinchillaLaw, ax=None):
    """Held-out loss of each sweep run against its parameters, with the fitted law's curves."""
    import matplotlib.pyplot as plt

    if not isinstance(law, ChinchillaLaw):
        raise ValueError(f"law must be a ChinchillaLaw, got {type(law).__name__}")
    runs = sweep["runs"] if isinstance(sweep, dict) else None
    if not runs:
        raise ValueError("sweep must be a dict with a non-empty 'runs' list (see load_scaling_sweep)")
    ax = ax or plt.subplots(figsize=(6, 4))[1]
    budgets = sorted({r["n_tokens"] for r in runs})
    colors = plt.cm.viridis([i / max(1, len(budgets) - 1) for i in range(len(budgets))])
    n_lo, n_hi = min(r["n_params"] for r in runs), max(r["n_params"] for r in runs)
    grid = torch.logspace(math.log10(n_lo / 1.5), math.log10(n_hi * 1.5), 100, dtype=torch.float64)
    for d, c in zip(budgets, colors):
        pts = sorted((r["n_params"], r["val_loss"]) for r in runs if r["n_tokens"] == d)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o", color=c, label=f"D = {d:.2g} tokens")
        ax.plot(grid.tolist(), law.loss(grid, float(d)).tolist(), "-", color=c, lw=1)
    ax.set_xscale("log")
    ax.set(xlabel="parameters N", ylabel="held-out loss (nats/token)",
           title=f"Fit: E={law.E:.2f}, A={law.A:.3g}, B={law.B:.3g}, alpha={law.alpha:.2f}, beta={law.beta:.2f}")
    ax.legend(fontsize=8)
    return ax


def plot_compute_frontier(laws: dict | None = None, flops_range=(1e18, 1e26), ax=None, models: bool = True):
    """Compute-optimal parameters N_opt(C) of each law, with real training runs marked.

    The marked runs (N, C = 6 N D) are Gopher and Chinchilla (Hoffmann et al. 2022), Llama 3
    405B (Grattafiori et al. 2024) and DeepSeek-V3 with its 37B active parameters (DeepSeek-AI 2024).
    """
    import matplotlib.pyplot as plt

    laws = laws if laws is not None else {
        "Hoffmann approach 3 (rounded)": HOFFMANN_APPROACH3,
        "Hoffmann approach 3 (unrounded)": HOFFMANN_APPROACH3_UNROUNDED,
        "Besiroglu et al. refit": BESIROGLU_REFIT,
    }
    if not isinstance(laws, dict) or not laws or not all(isinstance(v, ChinchillaLaw) for v in laws.values()):
        raise ValueError("laws must be a non-empty dict {label: ChinchillaLaw}")
    lo, hi = flops_range
    if not (0 < lo < hi):
        raise ValueError(f"flops_range must be (low, high) with 0 < low < high, got {flops_range!r}")
    ax = ax or plt.subplots(figsize=(6, 4))[1]
    cs = torch.logspace(math.log10(lo), math.log10(hi), 60, dtype=torch.float64).tolist()
    for label, law in laws.items():
        ax.plot(cs, [compute_optimal(law, c)[0] for c in cs], label=f"{label}: N ~ C^{law.a:.2f}")
    if models:
        for name, n, d in (("Gopher", 280e9, 300e9), ("Chinchilla", 70e9, 1.4e12),
                           ("Llama 3 405B", 405e9, 15.6e12), ("DeepSeek-V3 (active)", 37e9, 14.8e12)):
            ax.plot(6 * n * d, n, "k*", ms=8)
            ax.annotate(name, (6 * n * d, n), textcoords="offset points", xytext=(4, -10), fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set(xlabel="training compute C (FLOPs)", ylabel="compute-optimal parameters N_opt",
           title="Compute-optimal model size under C = 6ND")
    ax.legend(fontsize=7, loc="upper left")
    return ax



# ============================================================================ command line


def main(argv=None) -> int:
    """python -m llminfra_lab.training --preset target  (rebuilds the shipped checkpoint)."""
    parser = argparse.ArgumentParser(description="Train a shipped tiny-GPT checkpoint from scratch, on CPU.")
    parser.add_argument("--preset", choices=sorted(PRESETS), required=True)
    parser.add_argument("--out", default=None, help="output .pt path (default: the shipped checkpoint's path)")
    parser.add_argument("--steps", type=int, default=None, help="override the recipe's steps (quick checks)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out) if args.out else CHECKPOINT_DIR / f"{args.preset}.pt"
    start = time.perf_counter()
    _, _, _, results = train_preset(args.preset, out, steps=args.steps)
    for key, value in results.items():
        print(f"{key:>26}: {value}")
    print(f"{'wall_seconds':>26}: {time.perf_counter() - start:.1f}")
    print(f"{'saved':>26}: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def checkpoint_history(model) -> dict:
    """The training history stored in a shipped checkpoint's recipe, ready for plot_loss_curves.

    `model` is what `model.load_pretrained(name)` returns first (it carries `.recipe`).
    """
    recipe = getattr(model, "recipe", None)
    if not isinstance(recipe, dict) or "history" not in recipe:
        raise ValueError("model must come from load_pretrained() of a checkpoint saved by train_preset")
    tokens_per_step = recipe["train"]["batch_size"] * recipe["train"]["seq_len"]
    hist = dict(recipe["history"])
    # the stored training loss is every 10th step, the held-out loss every eval_every steps
    hist["tokens"] = [(s + 1) * tokens_per_step for s in hist["step"]]
    hist["eval_tokens"] = [(s + 1) * tokens_per_step for s in hist["eval_step"]]
    return hist


def plot_lsh_curve(bands_rows=((16, 8), (32, 4), (8, 16)), ax=None):
    """Probability that two documents become dedup candidates, against their Jaccard similarity."""
    import matplotlib.pyplot as plt

    if not bands_rows or not all(isinstance(br, (tuple, list)) and len(br) == 2 for br in bands_rows):
        raise ValueError("bands_rows must be a non-empty list of (bands, rows) pairs")
    ax = ax or plt.subplots(figsize=(6, 3.5))[1]
    s = [i / 200 for i in range(201)]
    for b, r in bands_rows:
        ax.plot(s, [lsh_candidate_probability(x, b, r) for x in s], label=f"{b} bands x {r} rows ({b * r} hashes)")
    ax.set(xlabel="Jaccard similarity of the two documents' shingles", ylabel="P(candidate pair)",
           title="MinHash LSH: the banding S-curve")
    ax.legend(fontsize=8)
    return ax
