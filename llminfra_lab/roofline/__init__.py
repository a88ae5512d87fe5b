"""The roofline model: will this kernel be limited by arithmetic or by memory?

A kernel does `flops` floating-point operations and moves `bytes` to and from HBM.
Its arithmetic intensity is I = flops / bytes (FLOP/byte). On a chip with peak
P FLOP/s and memory bandwidth B bytes/s, the kernel can run no faster than

    attainable FLOP/s = min(P, I x B)                (Williams, Waterman, Patterson 2009)

The two lines meet at the ridge point I* = P / B. Left of it a kernel is
memory-bound (more FLOP/s only comes from fewer bytes); right of it, compute-bound.

The package, read in this order:

- `cost`: FLOPs and bytes of the kernels an LLM spends its time in (GEMM, batched
  GEMM, attention with and without FlashAttention's tiling, elementwise ops,
  reductions) and the roofline bound on real accelerators (`llminfra_lab.hardware`);
- `measure`: the reader's own machine (a matmul for P, STREAM for B), medians of
  warmed-up runs;
- `plots`: rooflines with kernels placed on them, and intensity against size;
- `schematics`: an SM and its warps, and the memory ladder from registers to the host.

Bytes per element come from `llminfra_lab.precision`. Used in chapter 2 and by later
chapters that estimate kernel times.
"""
from llminfra_lab.roofline.cost import (
    A100_SRAM_BYTES_PER_SM,
    KernelCost,
    accelerator_rows,
    accelerator_table_markdown,
    arithmetic_intensity,
    attainable_flops,
    attention_cost_flash,
    attention_cost_naive,
    batched_gemm_cost,
    bound_time_s,
    elementwise_cost,
    flash_block_sizes,
    gemm_cost,
    is_memory_bound,
    reduction_cost,
    ridge_point,
    roofline_time_s,
)
from llminfra_lab.roofline.measure import STREAM_ARRAYS, MachineMeasurement, measure_cpu, measure_gpu, measure_machine
from llminfra_lab.roofline.plots import intensity_vs_size_plot, roofline_plot
from llminfra_lab.roofline.schematics import (
    H100_MEMORY_LADDER,
    HOPPER_SM,
    WARP_SIZE,
    MemoryLevel,
    memory_ladder_plot,
    sm_warp_plot,
)

__all__ = [
    "KernelCost", "A100_SRAM_BYTES_PER_SM",
    "gemm_cost", "batched_gemm_cost", "attention_cost_naive", "attention_cost_flash", "flash_block_sizes",
    "elementwise_cost", "reduction_cost",
    "arithmetic_intensity", "attainable_flops", "ridge_point", "bound_time_s", "roofline_time_s", "is_memory_bound",
    "accelerator_rows", "accelerator_table_markdown",
    "STREAM_ARRAYS", "MachineMeasurement", "measure_cpu", "measure_gpu", "measure_machine",
    "roofline_plot", "intensity_vs_size_plot",
    "MemoryLevel", "H100_MEMORY_LADDER", "HOPPER_SM", "WARP_SIZE", "memory_ladder_plot", "sm_warp_plot",
]
