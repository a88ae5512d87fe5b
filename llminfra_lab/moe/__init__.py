"""Mixture-of-experts (chapter 8): routing, load balancing, dropless experts, expert parallelism.

    routing.py          top-k router (softmax / sigmoid), capacity, Switch and sequence-wise
                        losses, DeepSeek-V3's bias update, MaxVio
    layer.py            MoEConfig, MoELayer (shared + routed experts), the per-expert loop and
                        the dropless grouped (block-sparse) computation
    expert_parallel.py  dispatch and combine with all_to_all_single; communication per token
    balance.py          a small MoE variant of the tiny GPT trained under each balancing method
    plots.py            the schematics and the load-over-time figures
"""
from llminfra_lab.moe.balance import METHODS, load_balance_result, moe_gpt, train_balance
from llminfra_lab.moe.expert_parallel import (
    AllToAll,
    all_to_all,
    dispatch_bytes_per_token,
    ep_equivalence_check,
    ep_moe_forward,
    expected_nodes_per_token,
)
from llminfra_lab.moe.layer import BALANCING, MoEConfig, MoELayer, dropless_grouped, expert_loop, swiglu
from llminfra_lab.moe.plots import draw_expert_parallel, draw_moe_layer, plot_catalog_moe, plot_load_over_time
from llminfra_lab.moe.routing import (
    GATINGS,
    capacity_mask,
    expert_capacity,
    expert_load,
    max_violation,
    route,
    sequence_aux_loss,
    switch_aux_loss,
    update_bias,
)

__all__ = [
    "GATINGS", "route", "expert_capacity", "capacity_mask", "expert_load", "switch_aux_loss",
    "sequence_aux_loss", "update_bias", "max_violation",
    "BALANCING", "MoEConfig", "MoELayer", "expert_loop", "dropless_grouped", "swiglu",
    "AllToAll", "all_to_all", "ep_moe_forward", "ep_equivalence_check", "dispatch_bytes_per_token",
    "expected_nodes_per_token",
    "METHODS", "moe_gpt", "train_balance", "load_balance_result",
    "draw_moe_layer", "draw_expert_parallel", "plot_load_over_time", "plot_catalog_moe",
]
