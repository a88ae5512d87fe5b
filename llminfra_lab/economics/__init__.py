"""From FLOPs to dollars: what it costs to train a large language model and to serve it.

The chapter "The LLM Infrastructure Map" uses this package to turn published model
configurations (`llminfra_lab.catalog`) and accelerator specifications
(`llminfra_lab.hardware`) into the three numbers an infrastructure engineer is asked for
first. Read the files in this order:

1. `compute.py`, **training compute**: C = 6 N D (Kaplan et al. 2020); PaLM's
   6 N + 12 L H Q T per token with the attention scores (Chowdhery et al. 2022, app. B)
   and how large that term gets at long context; MFU; GPU-hours and dollars.
2. `serving.py`, **serving cost**: decode is bound by memory bandwidth at small batch,
   prefill by FLOP/s; tokens per second and the hourly price give USD per million tokens.
3. `prices.py`, **what a token costs**: a sourced table of published API list prices
   and the rate at which they fell.
4. `stack.py`, **the map**: the five layers of the stack and the systems at each.
5. `plots.py`: the chapter's figures, including the schematic of the stack.

Every public name is re-exported here: `from llminfra_lab import economics as eco`, then
`eco.training_flops(...)`. Units are in the names: `_flops` are floating-point
operations, `_flops_per_s` FLOP/s, `_usd` US dollars, `_s` seconds, `_bytes` bytes.
"""
from __future__ import annotations

from .compute import (
    PUBLISHED,
    SECONDS_PER_HOUR,
    TrainingEstimate,
    attention_flops_per_token,
    attention_share,
    estimate_training,
    gpu_hours,
    model_flops_per_token,
    model_flops_utilization,
    palm_flops_per_token,
    training_cost_usd,
    training_flops,
)
from .plots import (
    plot_attention_share,
    plot_cost_vs_mfu,
    plot_price_history,
    plot_serving_cost,
    plot_stack_schematic,
    plot_training_costs,
)
from .prices import PRICE_HISTORY, TIERS, PricePoint, blended_price, fit_price_trend, price_history
from .serving import (
    ServingEstimate,
    cost_per_million_tokens,
    decode_tokens_per_second,
    estimate_serving,
    prefill_tokens_per_second,
)
from .stack import STACK, StackLayer, stack_table_markdown

__all__ = [
    # compute.py
    "training_flops", "palm_flops_per_token", "attention_flops_per_token", "model_flops_per_token",
    "attention_share", "model_flops_utilization", "gpu_hours", "training_cost_usd",
    "TrainingEstimate", "estimate_training", "PUBLISHED", "SECONDS_PER_HOUR",
    # serving.py
    "decode_tokens_per_second", "prefill_tokens_per_second", "cost_per_million_tokens",
    "ServingEstimate", "estimate_serving",
    # prices.py
    "PricePoint", "PRICE_HISTORY", "TIERS", "price_history", "blended_price", "fit_price_trend",
    # stack.py
    "StackLayer", "STACK", "stack_table_markdown",
    # plots.py
    "plot_stack_schematic", "plot_attention_share", "plot_price_history", "plot_training_costs",
    "plot_cost_vs_mfu", "plot_serving_cost",
]
