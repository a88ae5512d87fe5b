"""Chapter 3's kernels: four Triton kernels that run with or without a GPU, and the counts
that explain them.

Read in this order:

- `triton_kernels`: vector add, fused softmax, tiled matmul and FlashAttention forward in
  Triton. Imported first, because without a GPU it must set TRITON_INTERPRET=1 before
  Triton is imported (Triton's CPU interpreter then runs the same kernels with NumPy).
  Triton is optional: `HAVE_TRITON` says whether it is installed, and `TRITON_MISSING`
  says how to add it on a CPU-only torch;
- `tiling`: the tiled matmul's loop nest in plain PyTorch (`blocked_matmul`), which
  program computes which tile (`program_tiles`), and the FLOP per byte a tile buys;
- `fusion`: the HBM traffic of an unfused (five kernels) and a fused softmax;
- `plots`: the fusion bar chart and the grid / block / thread schematic of a tiled matmul.

The plain-PyTorch attention algorithms these kernels implement (and their HBM counts) are
in `llminfra_lab.attention`.
"""
# triton_kernels first: it sets TRITON_INTERPRET before anything imports Triton.
from llminfra_lab.kernels.triton_kernels import (  # noqa: I001
    HAVE_TRITON,
    MAX_SOFTMAX_COLS,
    TRITON_MISSING,
    add_kernel,
    flash_attention,
    flash_attn_kernel,
    interpreted,
    matmul,
    matmul_kernel,
    softmax,
    softmax_kernel,
    triton_version,
    vector_add,
)
from llminfra_lab.kernels.fusion import softmax_hbm_bytes, softmax_hbm_elements, unfused_softmax
from llminfra_lab.kernels.tiling import blocked_matmul, matmul_tile_intensity, program_tiles
from llminfra_lab.kernels.plots import plot_fusion_bytes, plot_matmul_tiling_schematic

__all__ = [
    "HAVE_TRITON", "MAX_SOFTMAX_COLS", "TRITON_MISSING", "interpreted", "triton_version",
    "add_kernel", "softmax_kernel", "matmul_kernel", "flash_attn_kernel",
    "vector_add", "softmax", "matmul", "flash_attention",
    "blocked_matmul", "program_tiles", "matmul_tile_intensity",
    "unfused_softmax", "softmax_hbm_elements", "softmax_hbm_bytes",
    "plot_fusion_bytes", "plot_matmul_tiling_schematic",
]
