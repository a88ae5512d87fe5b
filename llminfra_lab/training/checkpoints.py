"""The shipped checkpoints: their recipes, corpus, training, and the measurements they carry.

    CheckpointRecipe, PRESETS   everything that makes the "target" and "draft" checkpoints:
                                data, tokenizer, model shape (model.TINY_CONFIGS), optimizer
    build_corpus                the tokenizer and token ids of a recipe, from its seeds
    train_preset                train a preset from scratch (python -m llminfra_lab.training)
    compare_bpe_with_hf         our BPE trainer beside Hugging Face `tokenizers`
    answer_arithmetic, arithmetic_accuracy, story_perplexity   what the checkpoints can do
    checkpoint_history          a shipped checkpoint's loss history, ready to plot

A retrained checkpoint equals the shipped file bit for bit only on the same machine type
and software (torch version, thread count, CPU kernels); elsewhere floating-point sums run
in another order and the losses agree to about three digits.
"""
from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from llminfra_lab.checks import positive_int
from llminfra_lab.data import arithmetic_split, stories
from llminfra_lab.model import GPT, TINY_CONFIGS, GPTConfig, generate, save_pretrained
from llminfra_lab.tokenizer import BPETokenizer, byte_order
from llminfra_lab.training.loop import TrainConfig, evaluate_loss, train

__all__ = [
    "CHECKPOINT_DIR", "CheckpointRecipe", "PRESETS", "build_corpus", "compare_bpe_with_hf", "arithmetic_prompt",
    "answer_arithmetic", "arithmetic_accuracy", "story_perplexity", "train_preset", "checkpoint_history",
]

CHECKPOINT_DIR = Path(__file__).resolve().parents[1] / "assets" / "checkpoints"


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


def _shape(name: str) -> dict:
    """GPTConfig fields of tiny config `name` except vocab_size (the tokenizer sets it)."""
    return {k: v for k, v in TINY_CONFIGS[name].items() if k != "vocab_size"}


_SHARED = dict(vocab_size=512, tokenizer_chars=200_000, story_chars=1_000_000, arith_train=8_000,
               arith_heldout=500, arith_repeats=3, data_seed=0)
PRESETS: dict[str, CheckpointRecipe] = {
    # ~1.2M parameters: six layers of d_model 128, GQA 4 query heads over 2 KV heads.
    "target": CheckpointRecipe(
        name="target",
        model=_shape("target"),
        train=dict(steps=2500, batch_size=16, accum_steps=1, seq_len=128, max_lr=3e-3, min_lr=3e-4,
                   warmup_steps=100, weight_decay=0.1, betas=(0.9, 0.95), grad_clip=1.0,
                   precision="fp32", seed=0, eval_every=100),
        model_seed=0, **_SHARED),
    # ~0.25M parameters, same tokenizer and data: the draft model of speculative decoding.
    "draft": CheckpointRecipe(
        name="draft",
        model=_shape("draft"),
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
    import tokenizers as hf_tok  # optional: the `peers` extra

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
def answer_arithmetic(model: GPT, tokenizer: BPETokenizer, problems: list[str], max_new_tokens: int = 5) -> list[str]:
    """Greedy answers (the text before the first newline) to problems like "37+58=" or "37+58=95".

    Prompts of equal token length are decoded together, as one batch.
    """
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


def arithmetic_accuracy(model: GPT, tokenizer: BPETokenizer, problems: list[str]) -> float:
    """Exact-match accuracy of greedy answers on problems "a+b=c" (the part after "=" is the key)."""
    if isinstance(problems, str) or not isinstance(problems, (list, tuple)) or not problems:
        raise ValueError("problems must be a non-empty list of solved problems like '37+58=95'")
    if any(not isinstance(p, str) or "=" not in p or not p.split("=", 1)[1] for p in problems):
        raise ValueError("each problem must carry its answer after '=', like '37+58=95'")
    got = answer_arithmetic(model, tokenizer, list(problems))
    return sum(g == p.split("=", 1)[1] for g, p in zip(got, problems)) / len(problems)


def story_perplexity(model: GPT, ids: torch.Tensor, seq_len: int = 128, max_windows: int = 64) -> float:
    """exp(mean next-token loss) over held-out story token ids (per token of this tokenizer)."""
    return math.exp(evaluate_loss(model, ids, seq_len, max_windows))


def train_preset(name: str, out: str | Path | None = None, steps: int | None = None) -> tuple:
    """Train the preset `name` ("target" or "draft") from scratch; save it when `out` is given.

    Deterministic with torch.set_num_threads(1): the same machine type, torch version and
    CPU kernels give the same weights bit for bit; another machine or kernel (for example
    ATEN_CPU_CAPABILITY=default) sums in another order, and the losses differ in the third
    or fourth digit. `steps` overrides the
    recipe's step count (for quick tests). Returns (model, tokenizer, history, results),
    results = {"heldout_accuracy", "story_perplexity", "final_val_loss", "n_params", ...}.
    """
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



def checkpoint_history(model: GPT) -> dict:
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
