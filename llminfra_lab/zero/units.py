"""The book's GPT as a chain of units, the granularity at which `ZeroEngine` shards and communicates.

A unit is ZeRO's bucket and FSDP's wrapped module: one flat buffer, one collective, one
piece of transient memory. For the GPT of `llminfra_lab.model` the units are the token
embedding, each transformer block, and the final norm with the output head.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from llminfra_lab.model import GPT

__all__ = ["gpt_units", "sequential_loss"]


class _Embed(nn.Module):
    def __init__(self, tok_emb: nn.Embedding):
        super().__init__()
        self.tok_emb = tok_emb

    def forward(self, idx):
        return self.tok_emb(idx)


class _Layer(nn.Module):
    def __init__(self, block: nn.Module, cos: torch.Tensor, sin: torch.Tensor):
        super().__init__()
        self.block, self.cos, self.sin = block, cos, sin

    def forward(self, x):
        t = x.shape[1]
        return self.block(x, self.cos[:t], self.sin[:t])


class _Head(nn.Module):
    def __init__(self, norm: nn.Module, lm_head: nn.Linear):
        super().__init__()
        self.norm, self.lm_head = norm, lm_head

    def forward(self, x):
        return self.lm_head(self.norm(x))


def gpt_units(model: GPT) -> list[nn.Module]:
    """The book's GPT (`llminfra_lab.model.GPT`) cut into units: embedding, each block, norm + head.

    The units share the model's parameters (no copy). The embedding and the head must be
    untied: a tied weight would belong to two units.
    """
    if not isinstance(model, GPT):
        raise ValueError(f"model must be an llminfra_lab.model.GPT, got {type(model).__name__}")
    if model.cfg.tie_embeddings:
        raise ValueError("gpt_units needs GPTConfig(tie_embeddings=False): a tied weight would sit in two units")
    return ([_Embed(model.tok_emb)] + [_Layer(b, model.rope_cos, model.rope_sin) for b in model.blocks]
            + [_Head(model.norm, model.lm_head)])


def sequential_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy: logits (batch, seq, vocab), targets (batch, seq)."""
    if logits.dim() != 3 or targets.shape != logits.shape[:2]:
        raise ValueError(f"expected logits (batch, seq, vocab) and targets (batch, seq), got "
                         f"{tuple(logits.shape)} and {tuple(targets.shape)}")
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
