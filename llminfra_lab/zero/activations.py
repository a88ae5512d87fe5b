"""Activation memory measured: what autograd really saves for one GPT layer's backward pass.

`memory.activation_bytes_per_layer` is Korthikanti et al.'s (2022) count written down;
`measure_activation_bytes` builds the layer they count and adds up, with saved-tensor
hooks, the distinct storages autograd keeps, so the formula can be checked, not trusted.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from llminfra_lab.checks import positive_int

__all__ = ["measure_activation_bytes"]


class _PaperLayer(nn.Module):
    """The GPT layer Korthikanti et al. count (LayerNorm, fused QKV, softmax attention, 4h GeLU MLP), no dropout.

    Tensors are laid out (seq, batch, hidden) as in Megatron.
    """

    def __init__(self, hidden: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1, self.qkv, self.proj = nn.LayerNorm(hidden), nn.Linear(hidden, 3 * hidden), nn.Linear(hidden, hidden)
        self.ln2, self.fc1, self.fc2 = nn.LayerNorm(hidden), nn.Linear(hidden, 4 * hidden), nn.Linear(4 * hidden, hidden)

    def forward(self, x):
        s, b, h = x.shape
        d = h // self.heads
        q, k, v = (t.reshape(s, b * self.heads, d).transpose(0, 1) for t in self.qkv(self.ln1(x)).chunk(3, dim=-1))
        probs = torch.softmax((q @ k.transpose(1, 2)) / math.sqrt(d), dim=-1)   # (b*a, s, s)
        x = x + self.proj((probs @ v).transpose(0, 1).reshape(s, b, h))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


def measure_activation_bytes(seq_len: int, micro_batch: int, hidden: int, heads: int, seed: int = 0) -> int:
    """Bytes autograd saves for backward in one dropout-free GPT layer in bf16, measured.

    Runs the layer forward under `torch.autograd.graph.saved_tensors_hooks` and adds up the
    distinct storages saved for the backward pass, leaving out the parameters. The result
    is the paper's count without dropout, s b h (32 + 2 a s / h), plus the per-token mean and
    reciprocal standard deviation that each LayerNorm keeps (4 s b values), which the paper
    neglects.
    """
    for name, value in (("seq_len", seq_len), ("micro_batch", micro_batch), ("hidden", hidden), ("heads", heads)):
        positive_int(name, value)
    if hidden % heads:
        raise ValueError(f"hidden ({hidden}) must be divisible by heads ({heads})")
    gen = torch.Generator().manual_seed(seed)
    layer = _PaperLayer(hidden, heads).to(torch.bfloat16)
    params = {p.untyped_storage().data_ptr() for p in layer.parameters()}
    x = torch.randn(seq_len, micro_batch, hidden, generator=gen).to(torch.bfloat16).requires_grad_()
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        layer(x)
    return sum(saved.values())
