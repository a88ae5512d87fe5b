"""Throughput of the chapter 3 Triton kernels as a ratio to PyTorch's own operators.

    .venv/bin/python benchmarks/bench_kernels.py

On a CUDA GPU it times each kernel of `llminfra_lab.kernels` and its PyTorch counterpart
with `triton.testing.do_bench` (median of many runs after warm-up) and prints the
throughput ratio, PyTorch time / Triton time: > 1 means the Triton kernel is faster.
FlashAttention forward is compared with `scaled_dot_product_attention`, which dispatches
to its own fused flash kernel. Without a GPU the kernels would only run in Triton's
interpreter, whose speed means nothing, so the script says so and exits 0; without Triton
it says how to install it.
"""
from __future__ import annotations

import sys
from collections.abc import Callable

import torch
import torch.nn.functional as F

from llminfra_lab import kernels as K


def row(name: str, fn_triton: Callable[[], object], fn_torch: Callable[[], object]) -> None:
    """Time both with do_bench and print the throughput ratio torch / triton."""
    import triton.testing

    t_tri = triton.testing.do_bench(fn_triton)
    t_ref = triton.testing.do_bench(fn_torch)
    print(f"{name:<34} {t_tri:>10.4f} {t_ref:>10.4f} {t_ref / t_tri:>17.2f}")


def bench_attention(causal: bool, dev: str) -> None:
    """FlashAttention forward against SDPA at batch 4, 16 heads, N = 4096, d = 64, fp16."""
    q, k, v = (torch.randn(4, 16, 4096, 64, device=dev, dtype=torch.float16) for _ in range(3))
    row(f"flash attn fwd, N=4096 d=64 causal={causal}",
        lambda: K.flash_attention(q, k, v, causal=causal, block_m=64, block_n=64),
        lambda: F.scaled_dot_product_attention(q, k, v, is_causal=causal))


def main() -> int:
    if not K.HAVE_TRITON:
        print(f"bench_kernels: {K.TRITON_MISSING}")
        return 0
    if not torch.cuda.is_available():
        print("bench_kernels: needs a CUDA GPU (on CPU the kernels run in Triton's interpreter, "
              "whose speed says nothing about the kernels); skipping.")
        return 0
    torch.manual_seed(0)
    dev = "cuda"
    print(f"device: {torch.cuda.get_device_name(0)} | torch {torch.__version__} | triton {K.triton_version()}")
    print(f"{'kernel':<34} {'triton ms':>10} {'torch ms':>10} {'throughput ratio':>17}")

    n = 1 << 24
    x, y = torch.randn(n, device=dev), torch.randn(n, device=dev)
    row("vector add, 16M fp32", lambda: K.vector_add(x, y), lambda: x + y)

    s = torch.randn(4096, 4096, device=dev, dtype=torch.float16)
    row("softmax, 4096x4096 fp16", lambda: K.softmax(s), lambda: torch.softmax(s, dim=-1))

    a = torch.randn(4096, 4096, device=dev, dtype=torch.float16)
    b = torch.randn(4096, 4096, device=dev, dtype=torch.float16)
    row("matmul, 4096^3 fp16", lambda: K.matmul(a, b, 128, 128, 32), lambda: a @ b)

    for causal in (False, True):
        bench_attention(causal, dev)
    return 0


if __name__ == "__main__":
    sys.exit(main())
