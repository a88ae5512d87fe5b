"""A selective state-space layer (Mamba, Gu & Dao 2023): its recurrence and its parallel scan.

For each channel c and state n, with input-dependent step delta_t, B_t, C_t:

    h_t = exp(delta_t A) * h_{t-1} + delta_t B_t x_t        (a_t * h_{t-1} + b_t)
    y_t = C_t . h_t + D x_t

The state h has a fixed size (channels x d_state) however long the sequence: that is the
whole appeal against a KV cache that grows with every token. The recurrence looks serial,
but (a, b) pairs compose associatively: (a1, b1) then (a2, b2) = (a1 a2, a2 b1 + b2), so a
parallel prefix scan computes every h_t in log2(T) steps (Hillis-Steele here; Mamba's
kernel fuses a work-efficient scan in on-chip memory).
"""
from __future__ import annotations

import torch

__all__ = ["selective_scan_sequential", "selective_scan_parallel", "scan_steps"]


def _check(x, delta, a, b, c, d):
    if not all(isinstance(t, torch.Tensor) for t in (x, delta, a, b, c, d)):
        raise ValueError("x, delta, A, B, C, D must be torch tensors")
    if x.dim() != 3 or delta.shape != x.shape:
        raise ValueError(f"x and delta must be (batch, T, channels), got {tuple(x.shape)}, {tuple(delta.shape)}")
    bt, t, ch = x.shape
    n = a.shape[-1] if a.dim() == 2 else -1
    if a.shape != (ch, n) or b.shape != (bt, t, n) or c.shape != (bt, t, n) or d.shape != (ch,):
        raise ValueError(f"expected A (channels, N), B and C (batch, T, N), D (channels,); got {tuple(a.shape)}, "
                         f"{tuple(b.shape)}, {tuple(c.shape)}, {tuple(d.shape)}")


def _coefficients(x, delta, a, b):
    decay = torch.exp(delta.unsqueeze(-1) * a)                    # a_t: (batch, T, channels, N)
    drive = delta.unsqueeze(-1) * b.unsqueeze(2) * x.unsqueeze(-1)   # b_t: (batch, T, channels, N)
    return decay, drive


def selective_scan_sequential(x: torch.Tensor, delta: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                              c: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """y (batch, T, channels) by the recurrence, one step per token (how decoding runs)."""
    _check(x, delta, a, b, c, d)
    decay, drive = _coefficients(x, delta, a, b)
    h = torch.zeros_like(drive[:, 0])
    ys = []
    for t in range(x.shape[1]):
        h = decay[:, t] * h + drive[:, t]
        ys.append((h * c[:, t].unsqueeze(1)).sum(-1))
    return torch.stack(ys, dim=1) + d * x


def selective_scan_parallel(x: torch.Tensor, delta: torch.Tensor, a: torch.Tensor, b: torch.Tensor,
                            c: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """The same y by an inclusive parallel prefix scan over (a_t, b_t): ceil(log2 T) steps."""
    _check(x, delta, a, b, c, d)
    acc_a, acc_b = _coefficients(x, delta, a, b)
    offset = 1
    while offset < x.shape[1]:        # element t absorbs the prefix ending at t - offset
        prev_a, prev_b = acc_a[:, :-offset], acc_b[:, :-offset]
        new_b = acc_b.clone()
        new_b[:, offset:] = acc_a[:, offset:] * prev_b + acc_b[:, offset:]
        new_a = acc_a.clone()
        new_a[:, offset:] = acc_a[:, offset:] * prev_a
        acc_a, acc_b, offset = new_a, new_b, offset * 2
    return (acc_b * c.unsqueeze(2)).sum(-1) + d * x


def scan_steps(seq_len: int) -> int:
    """Steps of the doubling scan for seq_len tokens: ceil(log2(seq_len))."""
    if not isinstance(seq_len, int) or isinstance(seq_len, bool) or seq_len < 1:
        raise ValueError(f"seq_len must be a positive int, got {seq_len!r}")
    return (seq_len - 1).bit_length()
