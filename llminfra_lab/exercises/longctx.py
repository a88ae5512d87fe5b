"""Lab 16 (long context): implement-it tasks and exercises."""
from __future__ import annotations

import math
import random

import torch

from llminfra_lab import memory
from llminfra_lab.attention import merge_partials
from llminfra_lab.catalog import model_spec
from llminfra_lab.labkit import exercise, task
from llminfra_lab.longctx import inverse_frequencies, partial_attention, selective_scan_sequential

# ----------------------------------------------------------------------------- implement-it tasks


def _llama3_reference(head_dim, theta, factor, original_len, low_freq_factor, high_freq_factor):
    return inverse_frequencies("llama3", head_dim, theta=theta, factor=factor, original_len=original_len,
                               low_freq_factor=low_freq_factor, high_freq_factor=high_freq_factor)[0]


def _llama3_hard_cut(head_dim, theta, factor, original_len, low_freq_factor, high_freq_factor):
    base = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    wavelen = 2 * math.pi / base                      # no smooth band: everything past L/4 divided by s
    return torch.where(wavelen > original_len / high_freq_factor, base / factor, base).float()


def _llama3_cases(rng: random.Random) -> list[tuple]:
    cases = [(128, 500000.0, 8.0, 8192, 1.0, 4.0)]            # Llama 3.1's own setting
    for _ in range(15):
        cases.append((rng.choice([32, 64, 128]), rng.choice([10000.0, 500000.0]), rng.choice([2.0, 4.0, 8.0, 32.0]),
                      rng.choice([128, 2048, 8192]), rng.choice([1.0, 2.0]), rng.choice([4.0, 8.0])))
    return cases


task(
    "longctx.llama3_frequencies",
    "Return the Llama 3.1 inverse frequencies (head_dim/2,) for RoPE base theta: w_i = theta^(-2i/d); "
    "with wavelength 2 pi / w_i, keep w_i where the wavelength is below original_len / high_freq_factor, "
    "divide it by factor where it is above original_len / low_freq_factor, and in between blend "
    "(1 - g) w_i / factor + g w_i with g = (original_len / wavelength - low) / (high - low).",
    reference=_llama3_reference,
    cases=_llama3_cases,
    mistake=_llama3_hard_cut,
)


def _ring_reference(q, blocks, q_pos):
    out = torch.zeros_like(q)
    lse = torch.full(q.shape[:-1], float("-inf"))
    for k, v, k_pos in blocks:
        part, part_lse = partial_attention(q, k, v, q_pos, k_pos)
        out, lse = merge_partials(out, lse, part, part_lse)
    return out


def _ring_average(q, blocks, q_pos):
    parts = [partial_attention(q, k, v, q_pos, k_pos) for k, v, k_pos in blocks]
    seen = [torch.isfinite(lse).float().unsqueeze(-1) for _, lse in parts]
    return sum(o * s for (o, _), s in zip(parts, seen)) / sum(seen).clamp(min=1)   # ignores the log-sum-exps


def _ring_cases(rng: random.Random) -> list[tuple]:
    cases = []
    for _ in range(10):
        g = torch.Generator().manual_seed(rng.randrange(2**31))
        n_blocks, size, d = rng.choice([2, 3, 4]), rng.choice([2, 4, 8]), rng.choice([4, 8])
        t = n_blocks * size
        k, v = torch.randn(t, d, generator=g), torch.randn(t, d, generator=g)
        perm = torch.randperm(t, generator=g)
        blocks = [(k[perm[i * size:(i + 1) * size]], v[perm[i * size:(i + 1) * size]], perm[i * size:(i + 1) * size])
                  for i in range(n_blocks)]
        q_pos = torch.arange(t)[-size:]
        cases.append((torch.randn(size, d, generator=g), blocks, q_pos))
    return cases


task(
    "longctx.ring_accumulate",
    "Ring attention on one rank: q (Tq, d) at positions q_pos meets the key/value blocks one by one "
    "(blocks = [(k, v, k_pos), ...]). For each block call partial_attention(q, k, v, q_pos, k_pos) -> "
    "(out, lse) and fold it into a running (out, lse), starting from zeros and -inf, with "
    "merge_partials. Return the final out (Tq, d): causal attention over all blocks.",
    reference=_ring_reference,
    cases=_ring_cases,
    mistake=_ring_average,
)


def _scan_late_output(x, delta, a, b, c, d):
    decay = torch.exp(delta.unsqueeze(-1) * a)
    drive = delta.unsqueeze(-1) * b.unsqueeze(2) * x.unsqueeze(-1)
    h = torch.zeros_like(drive[:, 0])
    ys = []
    for t in range(x.shape[1]):
        ys.append((h * c[:, t].unsqueeze(1)).sum(-1))          # reads the state before this token's update
        h = decay[:, t] * h + drive[:, t]
    return torch.stack(ys, dim=1) + d * x


def _scan_cases(rng: random.Random) -> list[tuple]:
    cases = []
    for _ in range(8):
        g = torch.Generator().manual_seed(rng.randrange(2**31))
        b, t, ch, n = rng.choice([1, 2]), rng.choice([1, 5, 17]), rng.choice([1, 3]), rng.choice([2, 4])
        cases.append((torch.randn(b, t, ch, generator=g), torch.rand(b, t, ch, generator=g),
                      -torch.rand(ch, n, generator=g), torch.randn(b, t, n, generator=g),
                      torch.randn(b, t, n, generator=g), torch.randn(ch, generator=g)))
    return cases


task(
    "longctx.selective_scan",
    "The selective scan, one token at a time. x, delta (batch, T, channels); A (channels, N); B, C "
    "(batch, T, N); D (channels,). With h = 0 (batch, channels, N): for each t, "
    "h = exp(delta_t A) h + delta_t B_t x_t, then y_t = sum_n C_t h + D x_t. Return y (batch, T, channels).",
    reference=selective_scan_sequential,
    cases=_scan_cases,
    mistake=_scan_late_output,
)

# ----------------------------------------------------------------------------- exercises

_KV_MODELS = ["llama-2-7b", "llama-3-8b", "llama-3-70b", "qwen2.5-7b", "qwen2.5-72b", "deepseek-v3"]


def _kv_params(seed: int) -> dict:
    if seed == 0:
        return {"model": "llama-3-70b", "tokens": 131072}
    rng = random.Random(seed)
    return {"model": rng.choice(_KV_MODELS), "tokens": rng.choice([32768, 131072, 1048576])}


exercise(
    "longctx.kv_cache_gib",
    text=lambda model, tokens: (
        f"How many GiB (2^30 bytes) of BF16 KV cache does one sequence of {tokens:,} tokens occupy in "
        f"{model} (the catalog's configuration)?"),
    params=_kv_params,
    solve=lambda model, tokens: memory.kv_cache_bytes_per_token(model_spec(model)) * tokens / 2**30,
    mistake=lambda model, tokens: memory.kv_cache_bytes_per_token(model_spec(model)) * tokens / 2**31,  # K only
    rtol=0.02,
    hint="MHA/GQA: 2 (K and V) x layers x KV heads x head_dim x 2 bytes per token; MLA: layers x (512 + 64) x 2.",
)


def _yarn_params(seed: int) -> dict:
    return {"factor": 32.0} if seed == 0 else {"factor": random.Random(seed).choice([2.0, 4.0, 8.0, 16.0, 40.0, 64.0])}


exercise(
    "longctx.yarn_logit_scale",
    text=lambda factor: (
        f"YaRN extends a model by s = {factor:g}. By what factor are the attention logits q.k multiplied "
        "(the square of the factor on cos and sin, i.e. 1/t)?"),
    params=_yarn_params,
    solve=lambda factor: (0.1 * math.log(factor) + 1) ** 2,
    mistake=lambda factor: 0.1 * math.log(factor) + 1,          # forgets that q and k are both scaled
    rtol=0.005,
    hint="sqrt(1/t) = 0.1 ln(s) + 1 multiplies both rotated q and rotated k.",
)


def _ring_params(seed: int) -> dict:
    if seed == 0:
        return {"tokens": 131072, "ranks": 8}
    rng = random.Random(seed)
    return {"tokens": rng.choice([32768, 131072, 1048576]), "ranks": rng.choice([2, 4, 8, 16, 32])}


exercise(
    "longctx.ring_pairs_per_rank",
    text=lambda tokens, ranks: (
        f"Causal ring attention over {tokens:,} tokens on {ranks} ranks with zigzag load balancing: how many "
        "query-key score pairs (the diagonal included) does each rank compute in total?"),
    params=_ring_params,
    solve=lambda tokens, ranks: tokens * (tokens + 1) / 2 / ranks,
    mistake=lambda tokens, ranks: tokens * tokens / ranks,       # forgets the causal mask halves the work
    rtol=0.001,
    hint="The causal mask holds T (T + 1) / 2 pairs; zigzag splits them evenly.",
)
