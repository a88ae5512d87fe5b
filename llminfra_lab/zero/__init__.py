"""ZeRO: sharding the model states of data-parallel training, from the formula to a working engine.

Data parallelism keeps a full copy of the model states on every GPU: parameters,
gradients and optimizer state. ZeRO (Rajbhandari et al. 2020) removes the copies in
three stages. With Psi parameters, mixed-precision Adam (16-bit parameters and gradients,
K = 12 bytes of FP32 master weights, momentum and variance per parameter) and Nd
data-parallel ranks, the model states per rank are

    DDP      (2 + 2 + K) Psi                 16 Psi bytes
    stage 1  2 Psi + 2 Psi + K Psi / Nd      optimizer state sharded
    stage 2  2 Psi + (2 + K) Psi / Nd        ... and gradients
    stage 3  (2 + 2 + K) Psi / Nd            ... and parameters

and the elements each rank communicates per step are 2 Psi for DDP, stage 1 and stage 2
(one reduce-scatter of gradients plus one all-gather of parameters is the same volume
as one all-reduce) and 3 Psi for stage 3 (parameters are all-gathered twice: before
each unit's forward and again before its backward).

The formulas are defined once, in `llminfra_lab.memory` (`model_state_bytes`,
`activation_bytes_per_layer`), and re-exported here for the lab. This package adds:

- `engine`: `ZeroEngine`, a real implementation over torch.distributed of all four
  stages, with `shard_range`, `adam_update` and `CommLog`;
- `units`: `gpt_units` cuts the book's GPT into the units the engine shards;
- `activations`: `measure_activation_bytes`, the activation formula checked with autograd;
- `compare`: `compare_runs`, run on every rank under `launch.launch`: plain data
  parallel, the four stages and PyTorch's FSDP2 on the same GPT and data;
- `plots`: the partitioning schematic and the chapter's figures.
"""
from __future__ import annotations

from llminfra_lab.memory import activation_bytes_per_layer, model_state_bytes

from .activations import measure_activation_bytes
from .compare import ZERO_FIGURE1, compare_runs, formula_for_run
from .engine import STAGES, CommLog, ZeroEngine, adam_update, shard_range
from .plots import plot_measured_vs_formula, plot_memory_vs_gpus, plot_stage_breakdown, plot_zero_partition_schematic
from .units import gpt_units, sequential_loss

__all__ = [
    "STAGES", "ZERO_FIGURE1", "model_state_bytes", "activation_bytes_per_layer", "measure_activation_bytes",
    "ZeroEngine", "CommLog", "shard_range", "adam_update", "gpt_units", "sequential_loss",
    "compare_runs", "formula_for_run",
    "plot_zero_partition_schematic", "plot_memory_vs_gpus", "plot_stage_breakdown", "plot_measured_vs_formula",
]
