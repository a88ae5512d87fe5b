"""Medusa heads (Cai et al. 2024) and tree attention, on the frozen tiny GPT.

Head k (k = 1..K) reads the target's last hidden state h_t and guesses token t + 1 + k,
one step beyond the token the target's own lm_head predicts:

    logits_k = lm_head(h_t + SiLU(W_k h_t))            (W_k zero-initialised: starts as lm_head)

A step takes the top candidates of each head, arranges them as a tree of paths, and
verifies every path in ONE target pass: the tree tokens go in after the sequence, each
attending to the sequence and to its own ancestors only (the tree attention mask), at
position "sequence length - 1 + depth". The longest path that matches the target's
greedy tokens is kept, plus one token from the target, so the output equals greedy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources

import torch
import torch.nn.functional as F
from torch import nn

from llminfra_lab import data
from llminfra_lab.checks import positive_int, positive_number
from llminfra_lab.model import GPT, apply_rope
from llminfra_lab.tokenizer import BPETokenizer

from .sampling import _check_pair

__all__ = ["MedusaHeads", "MEDUSA_TREE", "tree_attention_mask", "tree_forward", "train_medusa_heads",
           "MedusaStats", "medusa_generate", "load_medusa_heads"]

#: The candidate tree: each path lists, per depth, the rank of the token among head d's top-k.
#: Every prefix of a path is in the tree (a node's parent comes before it). 12 nodes, 3 deep.
MEDUSA_TREE: list[tuple[int, ...]] = [(0,), (1,), (2,), (0, 0), (0, 1), (1, 0), (2, 0), (0, 0, 0), (0, 0, 1),
                                      (0, 1, 0), (1, 0, 0), (0, 0, 0, 0)]


class MedusaHeads(nn.Module):
    """K residual heads on the target's final (normed) hidden state; they share its lm_head."""

    def __init__(self, d_model: int, n_heads: int = 4):
        super().__init__()
        positive_int("d_model", d_model)
        positive_int("n_heads", n_heads)
        self.layers = nn.ModuleList(nn.Linear(d_model, d_model) for _ in range(n_heads))
        for layer in self.layers:                     # zero: each head starts as the lm_head
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, hidden: torch.Tensor, lm_head: nn.Linear) -> torch.Tensor:
        """hidden (..., d_model) -> logits (n_heads, ..., vocab)."""
        return torch.stack([lm_head(hidden + F.silu(layer(hidden))) for layer in self.layers])


def tree_attention_mask(tree: list[tuple[int, ...]]) -> torch.Tensor:
    """(N, N) bool: node i may attend to node j when j's path is a prefix of i's (itself included)."""
    _check_tree(tree)
    return torch.tensor([[tree[i][:len(tree[j])] == tree[j] for j in range(len(tree))] for i in range(len(tree))])


def tree_forward(model: GPT, idx: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's forward pass with any attention mask: (logits (S, vocab), hidden (S, d_model)).

    idx (1, S) tokens, positions (S,) their RoPE positions, mask (S, S) bool, True where
    query i may see key j. A causal mask with positions 0..S-1 gives the model's forward.
    """
    s = idx.shape[1]
    if positions.shape != (s,) or mask.shape != (s, s) or mask.dtype != torch.bool:
        raise ValueError(f"expected positions ({s},) and a bool mask ({s}, {s}), got "
                         f"{tuple(positions.shape)} and {tuple(mask.shape)} {mask.dtype}")
    cos, sin = model.rope_cos[positions], model.rope_sin[positions]
    x = model.tok_emb(idx)
    for block in model.blocks:
        a, h = block.attn, block.attn_norm(x)
        q = a.wq(h).view(1, s, a.n_head, a.head_dim).transpose(1, 2)
        k = a.wk(h).view(1, s, a.n_kv_head, a.head_dim).transpose(1, 2)
        v = a.wv(h).view(1, s, a.n_kv_head, a.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        group = a.n_head // a.n_kv_head
        k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        scores = (q @ k.transpose(-1, -2) / math.sqrt(a.head_dim)).masked_fill(~mask, float("-inf"))
        out = torch.softmax(scores.float(), dim=-1) @ v
        x = x + a.wo(out.transpose(1, 2).reshape(1, s, a.n_head * a.head_dim))
        x = x + block.mlp(block.mlp_norm(x))
    hidden = model.norm(x)[0]
    return model.lm_head(hidden), hidden


@dataclass
class MedusaStats:
    target_passes: int = 0
    new_tokens: int = 0

    @property
    def tokens_per_pass(self) -> float:
        return self.new_tokens / max(self.target_passes, 1)


@torch.no_grad()
def medusa_generate(target: GPT, heads: MedusaHeads, idx: torch.Tensor, max_new_tokens: int,
                    tree: list[tuple[int, ...]] | None = None) -> tuple[torch.Tensor, MedusaStats]:
    """Greedy decoding with Medusa heads and tree verification; equals the target's greedy tokens.

    For clarity each pass recomputes the whole sequence (no KV cache), so count passes,
    not seconds. The tree's depth must not exceed the number of heads.
    """
    _check_pair(target, target, idx, max_new_tokens, 0.0, None)
    tree = MEDUSA_TREE if tree is None else tree
    if not isinstance(heads, MedusaHeads):
        raise ValueError(f"heads must be MedusaHeads, got {type(heads).__name__}")
    _check_tree(tree)
    if max(len(p) for p in tree) > len(heads.layers):
        raise ValueError(f"the tree is {max(len(p) for p in tree)} deep but there are {len(heads.layers)} heads")
    stats, n_end = MedusaStats(), idx.shape[1] + max_new_tokens
    tree_mask = tree_attention_mask(tree)
    depth = torch.tensor([len(p) for p in tree])
    n = idx.shape[1]
    logits, hidden = tree_forward(target, idx, torch.arange(n), _causal(n))
    stats.target_passes += 1
    out = torch.cat([idx, logits[-1].argmax().view(1, 1)], dim=1)          # the root: the target's own token
    head_logits = heads(hidden[-1], target.lm_head)                          # (K, vocab): tokens after the root
    while out.shape[1] < n_end:
        n = out.shape[1]
        top = head_logits.topk(max(max(p) for p in tree) + 1, dim=-1).indices
        nodes = torch.tensor([int(top[len(p) - 1, p[-1]]) for p in tree])
        mask = torch.zeros(n + len(tree), n + len(tree), dtype=torch.bool)
        mask[:n, :n] = _causal(n)
        mask[n:, :n] = True
        mask[n:, n:] = tree_mask
        positions = torch.cat([torch.arange(n), n - 1 + depth])
        logits, hidden = tree_forward(target, torch.cat([out, nodes.view(1, -1)], dim=1), positions, mask)
        stats.target_passes += 1
        cur, path, accepted = n - 1, (), []                                   # walk down the tree greedily
        while True:
            best = int(logits[cur].argmax())
            child = next((i for i, p in enumerate(tree) if p[:-1] == path and int(nodes[i]) == best), None)
            if child is None:
                break
            accepted.append(best)
            cur, path = n + child, tree[child]
        new = (accepted + [int(logits[cur].argmax())])[:n_end - n]
        out = torch.cat([out, torch.tensor([new])], dim=1)
        head_logits = heads(hidden[cur], target.lm_head)
    stats.new_tokens = out.shape[1] - idx.shape[1]
    return out, stats


def train_medusa_heads(target: GPT, tokenizer: BPETokenizer, n_heads: int = 4, steps: int = 300,
                       batch_size: int = 16, seq_len: int = 128, lr: float = 3e-3, seed: int = 0,
                       corpus_chars: int = 400_000) -> tuple[MedusaHeads, list[float]]:
    """Train Medusa-1 heads on the frozen target over the story corpus: (heads, loss per step).

    Head k's loss is cross-entropy against the token k + 1 steps after each position.
    """
    if not isinstance(target, GPT):
        raise ValueError(f"target must be a GPT, got {type(target).__name__}")
    for name, value in (("n_heads", n_heads), ("steps", steps), ("batch_size", batch_size), ("seq_len", seq_len),
                        ("corpus_chars", corpus_chars)):
        positive_int(name, value)
    positive_number("lr", lr)
    torch.manual_seed(seed)
    ids = torch.tensor(tokenizer.encode(data.stories(corpus_chars, seed=seed + 1)), dtype=torch.long)
    heads = MedusaHeads(target.cfg.d_model, n_heads)
    opt = torch.optim.AdamW(heads.parameters(), lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        starts = torch.randint(0, len(ids) - seq_len - 1, (batch_size,), generator=gen)
        x = torch.stack([ids[s:s + seq_len] for s in starts])
        with torch.no_grad():
            hidden = _hidden(target, x)
        logits = heads(hidden, target.lm_head)                               # (K, B, T, V)
        loss = sum(F.cross_entropy(logits[k, :, :seq_len - k - 2].reshape(-1, logits.shape[-1]),
                                   x[:, k + 2:].reshape(-1)) for k in range(n_heads)) / n_heads
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return heads, losses


def _hidden(model: GPT, idx: torch.Tensor) -> torch.Tensor:
    """Final normed hidden states (batch, seq, d_model) through the model's own blocks."""
    t = idx.shape[1]
    cos, sin = model.rope_cos[:t], model.rope_sin[:t]
    x = model.tok_emb(idx)
    for i, block in enumerate(model.blocks):
        x = block(x, cos, sin, None, i)
    return model.norm(x)


def _causal(n: int) -> torch.Tensor:
    return torch.ones(n, n, dtype=torch.bool).tril()


def _check_tree(tree) -> None:
    if not isinstance(tree, list) or not tree or not all(isinstance(p, tuple) and p and all(
            isinstance(r, int) and r >= 0 for r in p) for p in tree):
        raise ValueError("tree must be a non-empty list of non-empty tuples of ranks >= 0")
    seen = set()
    for p in tree:
        if p in seen or (len(p) > 1 and p[:-1] not in seen):
            raise ValueError(f"tree path {p} is repeated or comes before its parent {p[:-1]}")
        seen.add(p)


def load_medusa_heads(path: str | None = None) -> tuple[MedusaHeads, dict]:
    """The shipped heads (assets/speculative_medusa.pt, made by benchmarks/train_medusa_heads.py):
    (heads, recipe)."""
    if path is None:
        ref = resources.files("llminfra_lab").joinpath("assets", "speculative_medusa.pt")
        with resources.as_file(ref) as p:
            blob = torch.load(p, map_location="cpu", weights_only=True)
    else:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    heads = MedusaHeads(blob["d_model"], blob["n_heads"])
    heads.load_state_dict(blob["state_dict"])
    heads.eval()
    return heads, blob["recipe"]
