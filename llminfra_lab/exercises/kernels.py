"""Lab 3 (the CUDA software stack): implement-it tasks and exercises.

Tasks: the tiled matmul's loop nest in plain PyTorch; the online-softmax step at the heart of
FlashAttention; the merge of two partial attention results; the HBM elements the tiled
attention loop moves. Exercises: fusion's element count, causal tile skipping, the FLOP per
byte of a matmul tile, and the tile a program would need to reach a chip's ridge point.
"""
from __future__ import annotations

import random

import torch

from llminfra_lab import attention, hardware, kernels, precision
from llminfra_lab.labkit import exercise, task


def _randn(rng: random.Random, *shape: int, scale: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(rng.randrange(2**31))
    return torch.randn(*shape, generator=g, dtype=torch.float64) * scale


# --------------------------------------------------------------------------- tasks


def _matmul_cases(rng):
    cases = []
    for _ in range(12):
        m, k, n = rng.randint(1, 40), rng.randint(1, 40), rng.randint(1, 40)
        cases.append({"a": _randn(rng, m, k), "b": _randn(rng, k, n), "block_m": rng.choice([4, 8, 16]),
                      "block_n": rng.choice([4, 8, 16]), "block_k": rng.choice([4, 8, 16])})
    return cases


def _matmul_mistake(a, b, block_m, block_n, block_k):
    """Counts tiles with floor division, so a ragged last row, column or K step is dropped."""
    (m, k), n = a.shape, b.shape[1]
    c = torch.zeros(m, n, dtype=a.dtype)
    for i in range(m // block_m):
        for j in range(n // block_n):
            i0, j0 = i * block_m, j * block_n
            for kk in range(k // block_k):
                k0 = kk * block_k
                a_tile, b_tile = a[i0:i0 + block_m, k0:k0 + block_k], b[k0:k0 + block_k, j0:j0 + block_n]
                c[i0:i0 + block_m, j0:j0 + block_n] += a_tile @ b_tile
    return c


task(
    "kernels.blocked_matmul",
    "Write blocked_matmul(a, b, block_m, block_n, block_k) -> a @ b, computed one (block_m x block_n) "
    "tile of C at a time (the two outer loops are the grid of programs), each tile accumulated over K "
    "in steps of block_k (the loop each program runs). Shapes need not be multiples of the blocks.",
    reference=kernels.blocked_matmul,
    cases=_matmul_cases,
    mistake=_matmul_mistake,
)


def _step_cases(rng):
    cases = []
    for i in range(12):
        lead = (rng.randint(1, 3),) if i % 3 == 0 else ()
        rows, dim = rng.randint(1, 5), rng.randint(1, 4)
        scale = rng.choice([1.0, 3.0, 6.0])
        m = torch.full((*lead, rows), float("-inf"), dtype=torch.float64)
        l = torch.zeros(*lead, rows, dtype=torch.float64)
        acc = torch.zeros(*lead, rows, dim, dtype=torch.float64)
        if i % 4:                                  # a running state left by an earlier tile
            c0 = rng.randint(1, 6)
            m, l, acc = attention.online_softmax_step(m, l, acc, _randn(rng, *lead, rows, c0, scale=scale),
                                                      _randn(rng, *lead, c0, dim))
        cols = rng.randint(1, 6)
        cases.append({"m": m, "l": l, "acc": acc, "s": _randn(rng, *lead, rows, cols, scale=scale),
                      "v": _randn(rng, *lead, cols, dim)})
    return cases


def _step_mistake(m, l, acc, s, v):
    """Rescales the running sum when the maximum grows, but forgets the running output."""
    m_new = torch.maximum(m, s.amax(dim=-1))
    p = torch.exp(s - m_new.unsqueeze(-1))
    alpha = torch.exp(m - m_new)
    return m_new, alpha * l + p.sum(dim=-1), acc + p @ v


task(
    "kernels.online_softmax_step",
    "Write online_softmax_step(m, l, acc, s, v) -> (m_new, l_new, acc_new): fold a tile of scores "
    "s (rows, cols) with values v (cols, dim) into the running max m (rows), running sum "
    "l = sum exp(score - m) (rows) and running output acc = sum exp(score - m) * v (rows, dim). "
    "m starts at -inf; scores are finite. Leading (batch) dimensions may be present.",
    reference=attention.online_softmax_step,
    cases=_step_cases,
    mistake=_step_mistake,
)


def _merge_cases(rng):
    cases = []
    for i in range(12):
        lead = (rng.randint(1, 3),) if i % 2 else ()
        seq, dim = rng.randint(1, 6), rng.randint(1, 5)
        cases.append({"out_a": _randn(rng, *lead, seq, dim), "lse_a": _randn(rng, *lead, seq, scale=3.0),
                      "out_b": _randn(rng, *lead, seq, dim), "lse_b": _randn(rng, *lead, seq, scale=3.0)})
    return cases


def _merge_mistake(out_a, lse_a, out_b, lse_b):
    """Takes the larger log-sum-exp as the total: the weights no longer add up to one."""
    lse = torch.maximum(lse_a, lse_b)
    w_a, w_b = torch.exp(lse_a - lse), torch.exp(lse_b - lse)
    return w_a.unsqueeze(-1) * out_a + w_b.unsqueeze(-1) * out_b, lse


task(
    "kernels.merge_partials",
    "Write merge_partials(out_a, lse_a, out_b, lse_b) -> (out, lse): out_a, out_b (seq, dim) are "
    "attention outputs over two disjoint sets of keys and lse_a, lse_b (seq) their log-sum-exps; "
    "return attention over both sets and its log-sum-exp. Leading dimensions may be present.",
    reference=attention.merge_partials,
    cases=_merge_cases,
    mistake=_merge_mistake,
)


def _io_cases(rng):
    return [{"seq_len": rng.randint(1, 5000), "head_dim": rng.choice([16, 32, 64, 128]),
             "block_q": rng.choice([16, 64, 100, 128, 384])} for _ in range(20)]


task(
    "kernels.tiled_attention_hbm_elements",
    "Write tiled_attention_hbm_elements(seq_len, head_dim, block_q) -> the elements non-causal tiled "
    "attention moves to and from HBM for one head: Q read once, O written once, the log-sum-exp "
    "(one per row) written once, and all of K and V read again for every block of block_q query rows.",
    reference=lambda seq_len, head_dim, block_q: attention.tiled_attention_hbm_elements(
        seq_len, head_dim, block_q, block_q, causal=False),
    cases=_io_cases,
    # N / block_q query blocks, not rounded up: the last, partial block is not counted
    mistake=lambda seq_len, head_dim, block_q: 2 * seq_len * head_dim + seq_len
    + 2 * head_dim * seq_len * (seq_len / block_q),
)


# --------------------------------------------------------------------------- exercises


def _softmax_params(seed: int) -> dict:
    if seed == 0:
        return {"rows": 3, "cols": 5}
    rng = random.Random(seed)
    return {"rows": rng.randint(2, 64), "cols": rng.choice([5, 17, 100, 128, 1000, 4096])}


exercise(
    "kernels.unfused_softmax_elements",
    text=lambda rows, cols: (f"How many elements in all (reads plus writes) do the five eager kernels of an "
                             f"unfused row softmax (max, subtract, exp, sum, divide) move for a {rows} x {cols} matrix?"),
    params=_softmax_params,
    solve=lambda rows, cols: kernels.softmax_hbm_elements(rows, cols, fused=False),
    mistake=lambda rows, cols: 8 * rows * cols,          # forgets the row max and row sum vectors
    rtol=1e-9,
    hint="count each kernel's inputs and output; the max and the sum are vectors of one value per row.",
)


def _causal_params(seed: int) -> dict:
    if seed == 0:
        return {"seq_len": 1024, "head_dim": 64, "block": 128}
    rng = random.Random(seed)
    block = rng.choice([64, 128])
    return {"seq_len": block * rng.choice([4, 6, 8, 12, 16]), "head_dim": rng.choice([64, 128]), "block": block}


def _causal_ratio(seq_len: int, head_dim: int, block: int) -> float:
    causal = attention.tiled_attention_hbm_elements(seq_len, head_dim, block, block, causal=True)
    full = attention.tiled_attention_hbm_elements(seq_len, head_dim, block, block, causal=False)
    return causal / full


exercise(
    "kernels.causal_traffic_ratio",
    text=lambda seq_len, head_dim, block: (
        f"Tiled attention with N = {seq_len}, d = {head_dim} and {block}-row query and key tiles: the causal "
        f"loop skips key blocks above the diagonal. What is the ratio of causal to non-causal HBM traffic "
        f"(elements, one head)?"),
    params=_causal_params,
    solve=_causal_ratio,
    mistake=lambda seq_len, head_dim, block: 0.5,       # "causal halves it": forgets the diagonal blocks and Q, O
    rtol=0.01,
    hint="query block i reads i + 1 key blocks; Q, O and the log-sum-exp are moved once either way.",
)


def _tile_params(seed: int) -> dict:
    if seed == 0:
        return {"block_m": 128, "block_n": 128, "dtype": "fp16"}
    rng = random.Random(seed)
    return {"block_m": rng.choice([32, 64, 128, 256]), "block_n": rng.choice([32, 64, 128, 256]),
            "dtype": rng.choice(["fp16", "bf16", "fp8", "fp32"])}


exercise(
    "kernels.tile_intensity",
    text=lambda block_m, block_n, dtype: (
        f"One program of a tiled matmul keeps a {block_m} x {block_n} tile of C on chip and, per step along K, "
        f"loads a {block_m} x BLOCK_K tile of A and a BLOCK_K x {block_n} tile of B in {dtype}. What is its "
        f"arithmetic intensity in FLOP per byte loaded (ignore C)?"),
    params=_tile_params,
    solve=lambda block_m, block_n, dtype: kernels.matmul_tile_intensity(block_m, block_n, dtype),
    mistake=lambda block_m, block_n, dtype: kernels.matmul_tile_intensity(block_m, block_n, dtype) / 2,  # MACs, not FLOPs
    rtol=0.01,
    hint="a multiply-add is 2 FLOPs; BLOCK_K cancels.",
)


_CHIPS = [name for name in hardware.accelerator_names() if "bf16" in hardware.accelerator(name).dense_tflops]


def _ridge_tile_params(seed: int) -> dict:
    return {"chip": "H100-SXM" if seed == 0 else random.Random(seed).choice(_CHIPS)}


def _ridge_tile(chip: str) -> float:
    # square B x B tile in bf16: intensity 2 B^2 / (bytes * 2B) = B / bytes; solve B / bytes = ridge
    return hardware.accelerator(chip).ridge_point("bf16") * precision.bytes_per_element("bf16")


exercise(
    "kernels.tile_for_ridge",
    text=lambda chip: (
        f"How large a square tile (side B, in elements) would one program of a bf16 matmul need so that the "
        f"intensity of its own loads reaches the {chip}'s dense bf16 ridge point? (Give B as a number; "
        f"it need not be a power of two.)"),
    params=_ridge_tile_params,
    solve=_ridge_tile,
    mistake=lambda chip: hardware.accelerator(chip).ridge_point("bf16"),   # forgets the 2 bytes per element
    rtol=0.02,
    hint="a B x B tile in bf16 does 2 B^2 FLOPs per step for 2 x B x B_K elements of 2 bytes each.",
)
