"""What kernel fusion saves, counted in elements moved to and from HBM, for a row softmax.

Run eagerly, a numerically stable softmax is five kernels (max, subtract, exp, sum, divide),
each reading its inputs from HBM and writing its output back. A fused kernel (the Triton
`softmax_kernel`) reads the matrix once and writes it once. The Triton fused-softmax
tutorial counts the difference: about four times fewer bytes for long rows.
"""
from __future__ import annotations

import torch

from llminfra_lab.attention import HBMTraffic
from llminfra_lab.checks import positive_int

__all__ = ["unfused_softmax", "softmax_hbm_elements", "softmax_hbm_bytes"]


def unfused_softmax(x: torch.Tensor, traffic: HBMTraffic | None = None) -> torch.Tensor:
    """Softmax over the last axis as five separate eager PyTorch kernels, as a framework runs it.

    x: (rows, cols). max, subtract, exp, sum, divide: each reads its inputs from HBM and
    writes its output back. If `traffic` is given it is charged with every tensor each of
    the five kernels reads and writes.
    """
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ValueError(f"x must be a floating-point torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2 or x.numel() == 0:
        raise ValueError(f"x must be a non-empty 2-D tensor (rows, cols), got shape {tuple(x.shape)}")
    row_max = x.amax(dim=-1, keepdim=True)
    z = x - row_max
    num = torch.exp(z)
    den = num.sum(dim=-1, keepdim=True)
    out = num / den
    if traffic is not None:
        steps = [((x,), row_max), ((x, row_max), z), ((z,), num), ((num,), den), ((num, den), out)]
        for inputs, output in steps:
            for t in inputs:
                traffic.read(t)
            traffic.write(output)
    return out


def softmax_hbm_elements(rows: int, cols: int, fused: bool) -> int:
    """Elements moved to and from HBM by a row softmax of a (rows, cols) matrix.

    Fused (one kernel): read the matrix once, write it once: 2 R C.
    Unfused (`unfused_softmax`, five kernels): reads 5 R C + 2 R, writes 3 R C + 2 R,
    in all 8 R C + 4 R, the count the Triton fused-softmax tutorial gives (Tillet et al.).
    """
    positive_int("rows", rows)
    positive_int("cols", cols)
    if not isinstance(fused, bool):
        raise ValueError(f"fused must be a bool, got {fused!r}")
    n = rows * cols
    return 2 * n if fused else 8 * n + 4 * rows


def softmax_hbm_bytes(rows: int, cols: int, fused: bool, dtype_bytes: int = 2) -> int:
    """`softmax_hbm_elements` in bytes at `dtype_bytes` per element (2 for fp16/bf16)."""
    positive_int("dtype_bytes", dtype_bytes)
    return dtype_bytes * softmax_hbm_elements(rows, cols, fused)
