"""Parallelism: splitting one training step across many devices (chapter 6).

Three ideas, each small enough to read in one sitting, and one planner that combines them,
one file each:

- `tensor`: tensor parallelism (Shoeybi et al. 2019). Megatron's column and row split of
  a linear layer, its f and g operators, and a tensor-parallel MLP, attention and block
  that give the same outputs and gradients as the model's unsharded Block.
- `data`: data parallelism. Every rank holds the whole model, takes a slice of the batch
  and averages gradients with an all-reduce (`allreduce_gradients`, optionally bucketed).
- `workers`: the functions `launch.launch` runs on each local process (gloo on CPU) to
  take one tensor-parallel or data-parallel training step.
- `pipeline`: pipeline parallelism. `bubble_fraction` is the formula; `pipeline_schedule`
  simulates GPipe, 1F1B, interleaved 1F1B, zero-bubble ZB-H1 and DualPipe and measures
  the bubble off the timeline.
- `planner`: `plan_layouts` enumerates (TP, PP, DP) layouts of a catalog model on a
  cluster and keeps those whose memory per GPU fits (`memory.model_state_bytes` and
  `memory.activation_bytes_per_layer`).
- `plots`: pipeline timelines and the schematic of Megatron's tensor-parallel MLP.

`from llminfra_lab import parallel` gives every public name of these files.
"""
from __future__ import annotations

from .data import allreduce_gradients
from .pipeline import SCHEDULES, PipelineOp, PipelineSchedule, bubble_fraction, pipeline_schedule
from .planner import RECOMPUTE, Layout, layout_memory_bytes, plan_layouts
from .plots import plot_schedule, plot_schedules, plot_tp_mlp_schematic
from .tensor import (
    ColumnParallelLinear,
    RowParallelLinear,
    TensorParallelAttention,
    TensorParallelBlock,
    TensorParallelMLP,
    copy_to_tp,
    record_allreduces,
    reduce_from_tp,
    shard_linear_weight,
    tp_shard_dim,
)
from .workers import dp_step_worker, tp_block_worker

__all__ = [
    # tensor parallelism
    "copy_to_tp", "reduce_from_tp", "shard_linear_weight", "ColumnParallelLinear", "RowParallelLinear",
    "TensorParallelMLP", "TensorParallelAttention", "TensorParallelBlock", "record_allreduces", "tp_shard_dim",
    # data parallelism
    "allreduce_gradients",
    # pipeline schedules
    "PipelineOp", "PipelineSchedule", "pipeline_schedule", "SCHEDULES", "bubble_fraction",
    # layout planning
    "Layout", "plan_layouts", "layout_memory_bytes", "RECOMPUTE",
    # drawings
    "plot_schedule", "plot_schedules", "plot_tp_mlp_schematic",
    # workers run by launch.launch
    "tp_block_worker", "dp_step_worker",
]
