"""Tiling a matrix multiplication: which program computes which tile, and what tiling buys.

The Triton `matmul_kernel` launches a 2-D grid of programs (CUDA thread blocks); program
(pid_m, pid_n) owns one BLOCK_M x BLOCK_N tile of C, keeps it on chip, and walks along K
loading one BLOCK_M x BLOCK_K tile of A and one BLOCK_K x BLOCK_N tile of B per step.
`blocked_matmul` is the same loop nest in plain PyTorch, to be read and stepped through;
`program_tiles` lists the grid; `matmul_tile_intensity` is the FLOP per byte one program
achieves on the bytes it loads, the number that says why tiling matters.
"""
from __future__ import annotations

import torch

from llminfra_lab import precision
from llminfra_lab.checks import positive_int

__all__ = ["blocked_matmul", "program_tiles", "matmul_tile_intensity"]


def blocked_matmul(a: torch.Tensor, b: torch.Tensor, block_m: int = 32, block_n: int = 32,
                   block_k: int = 32) -> torch.Tensor:
    """a (M, K) @ b (K, N) computed tile by tile, as each program of `matmul_kernel` does.

    The two outer loops are the grid (one iteration per program); the inner loop is the
    loop every program runs over K. Ragged edges are handled by slicing (the kernel masks).
    Accumulates in at least float32 and returns a's dtype.
    """
    if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
        raise ValueError("a and b must be torch tensors")
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0] or a.numel() == 0 or b.numel() == 0:
        raise ValueError(f"a must be (M, K) and b (K, N) with the same K, got {tuple(a.shape)} and {tuple(b.shape)}")
    for name, value in (("block_m", block_m), ("block_n", block_n), ("block_k", block_k)):
        positive_int(name, value)
    return _blocked_matmul(a, b, block_m, block_n, block_k)


def _blocked_matmul(a, b, block_m, block_n, block_k):
    (m, k), n = a.shape, b.shape[1]
    acc_dtype = torch.promote_types(a.dtype, torch.float32)
    c = torch.empty(m, n, dtype=a.dtype, device=a.device)
    for i0 in range(0, m, block_m):                      # grid axis 0: pid_m = i0 // block_m
        for j0 in range(0, n, block_n):                  # grid axis 1: pid_n = j0 // block_n
            acc = torch.zeros(min(block_m, m - i0), min(block_n, n - j0), dtype=acc_dtype, device=a.device)
            for k0 in range(0, k, block_k):              # each program's loop along K
                a_tile = a[i0:i0 + block_m, k0:k0 + block_k].to(acc_dtype)
                b_tile = b[k0:k0 + block_k, j0:j0 + block_n].to(acc_dtype)
                acc += a_tile @ b_tile                   # the C tile never leaves the chip
            c[i0:i0 + block_m, j0:j0 + block_n] = acc.to(a.dtype)
    return c


def program_tiles(m: int, n: int, block_m: int, block_n: int) -> list[dict]:
    """The launch grid of a tiled (m x n) output: one dict per program, in launch order.

    Each has pid_m, pid_n (the program's coordinates, CUDA's blockIdx.y and blockIdx.x
    in the usual layout) and the half-open row and column ranges of C it computes.
    """
    for name, value in (("m", m), ("n", n), ("block_m", block_m), ("block_n", block_n)):
        positive_int(name, value)
    return [{"pid_m": i, "pid_n": j, "rows": (i * block_m, min((i + 1) * block_m, m)),
             "cols": (j * block_n, min((j + 1) * block_n, n))}
            for i in range(-(-m // block_m)) for j in range(-(-n // block_n))]


def matmul_tile_intensity(block_m: int, block_n: int, dtype: str = "fp16") -> float:
    """FLOP per byte loaded by one program of a tiled matmul, C tile kept on chip.

    Per step along K it does 2 * block_m * block_n * block_k FLOPs and loads
    (block_m + block_n) * block_k elements, so the intensity is
    2 * block_m * block_n / (bytes_per_element * (block_m + block_n)), whatever block_k.
    128 x 128 in fp16 gives 64. A 1 x 1 tile is the naive one-thread-per-element loop:
    1 / bytes_per_element (0.5 FLOP/B in fp16). The bytes are loads from the memory
    system (L2 or HBM); tiles that neighbouring programs share can hit in L2.
    """
    positive_int("block_m", block_m)
    positive_int("block_n", block_n)
    return 2 * block_m * block_n / (precision.bytes_per_element(dtype) * (block_m + block_n))
