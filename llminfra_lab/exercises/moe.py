"""Lab 8 (mixture-of-experts): implement-it tasks and exercises."""
from __future__ import annotations

import random

import torch

from llminfra_lab import catalog, moe
from llminfra_lab.labkit import exercise, task

# ----------------------------------------------------------------------------- implement-it tasks


def _route_cases(rng: random.Random) -> list[tuple]:
    cases = []
    for _ in range(12):
        gen = torch.Generator().manual_seed(rng.randrange(2**31))
        n_experts = rng.choice([4, 8, 16])
        logits = torch.randn(rng.choice([1, 5, 32]), n_experts, generator=gen, dtype=torch.float64)
        cases.append((logits, rng.choice([1, 2, 4])))
    return cases


def _route_reference(logits, k):
    gates, experts, _ = moe.route(logits, k, "softmax")
    return gates, experts


def _route_without_renormalising(logits, k):
    gates, experts, _ = moe.route(logits, k, "softmax", normalize=False)
    return gates, experts


task(
    "moe.top_k_route",
    "Top-k softmax routing: given logits (tokens, n_experts) and k, return (gates, experts): experts (tokens, k) "
    "are the indices of the k largest router probabilities in descending order (torch.topk), gates (tokens, k) "
    "those probabilities renormalised to sum to 1 per token (Mixtral's gating).",
    reference=_route_reference,
    cases=_route_cases,
    mistake=_route_without_renormalising,
)


def _aux_cases(rng: random.Random) -> list[tuple]:
    uniform = (torch.full((8, 4), 0.25, dtype=torch.float64), torch.arange(8).remainder(4)[:, None], 0.01)
    cases = [uniform]
    for _ in range(12):
        gen = torch.Generator().manual_seed(rng.randrange(2**31))
        n_experts, k, tokens = rng.choice([4, 8, 16]), rng.choice([1, 2]), rng.choice([6, 20, 64])
        scores = torch.softmax(torch.randn(tokens, n_experts, generator=gen, dtype=torch.float64), -1)
        experts = torch.topk(scores, k, -1).indices
        cases.append((scores, experts, rng.choice([0.01, 0.001])))
    return cases


task(
    "moe.switch_aux_loss",
    "The Switch Transformer load-balancing loss: scores (tokens, E) router probabilities, experts (tokens, k) the "
    "chosen experts, alpha. f_i = share of the tokens*k assignments that went to expert i, P_i = mean of column i "
    "of scores; return alpha * E * sum_i f_i * P_i (a 0-d tensor or a float).",
    reference=lambda scores, experts, alpha: moe.switch_aux_loss(scores, experts, alpha),
    cases=_aux_cases,
    # forgets the factor E: the loss then shrinks as experts are added
    mistake=lambda scores, experts, alpha: moe.switch_aux_loss(scores, experts, alpha) / scores.shape[1],
)


def _grouped_cases(rng: random.Random) -> list[tuple]:
    cases = []
    for _ in range(8):
        gen = torch.Generator().manual_seed(rng.randrange(2**31))
        n_experts, k, tokens, d, f = rng.choice([2, 4, 8]), rng.choice([1, 2]), rng.choice([3, 17, 40]), 8, 6
        x = torch.randn(tokens, d, generator=gen, dtype=torch.float64)
        experts = torch.stack([torch.randperm(n_experts, generator=gen)[:k] for _ in range(tokens)])
        gates = torch.rand(tokens, k, generator=gen, dtype=torch.float64)
        w = [torch.randn(n_experts, *s, generator=gen, dtype=torch.float64) * 0.3 for s in ((d, f), (d, f), (f, d))]
        cases.append((x, gates, experts, *w))
    return cases


def _grouped_ungated(x, gates, experts, w_gate, w_up, w_down):
    return moe.expert_loop(x, torch.ones_like(gates), experts, w_gate, w_up, w_down)


task(
    "moe.sorted_experts",
    "Compute the routed experts by sorting: x (T, d), gates and experts (T, k), stacked SwiGLU weights w_gate, "
    "w_up (E, d, f) and w_down (E, f, d). Sort the T*k assignments by expert, run each expert once on its "
    "contiguous group (moe.swiglu(rows, w_gate[e], w_up[e], w_down[e])), multiply by the gates and add each row "
    "back to its token. Return y (T, d).",
    reference=moe.expert_loop,
    cases=_grouped_cases,
    mistake=_grouped_ungated,
)

# ----------------------------------------------------------------------------- exercises


def _active_params(seed: int) -> dict:
    names = ["mixtral-8x7b", "qwen3-30b-a3b", "qwen3-235b-a22b", "deepseek-v3"]
    return {"name": "mixtral-8x7b"} if seed == 0 else {"name": random.Random(seed).choice(names)}


exercise(
    "moe.active_fraction",
    text=lambda name: (
        f"From the catalog's configuration of {name} (llminfra_lab.catalog.model_spec), what fraction of its "
        "parameters does one token use (active / total, a number between 0 and 1)?"),
    params=_active_params,
    solve=lambda name: catalog.model_spec(name).active_params() / catalog.model_spec(name).total_params(),
    # k / E: forgets that attention, embeddings and shared parts are always active
    mistake=lambda name: catalog.model_spec(name).experts_per_token / catalog.model_spec(name).n_experts,
    rtol=0.02,
    hint="active_params() / total_params(); attention and embeddings count in both.",
)


def _capacity_params(seed: int) -> dict:
    if seed == 0:
        return {"tokens": 4096, "n_experts": 64, "k": 2, "capacity_factor": 1.25}
    rng = random.Random(seed)
    return {"tokens": rng.choice([1024, 2048, 4096, 8192]), "n_experts": rng.choice([8, 16, 64, 128]),
            "k": rng.choice([1, 2, 8]), "capacity_factor": rng.choice([1.0, 1.25, 1.5, 2.0])}


exercise(
    "moe.capacity",
    text=lambda tokens, n_experts, k, capacity_factor: (
        f"A batch of {tokens} tokens is routed top-{k} over {n_experts} experts with capacity factor "
        f"{capacity_factor}. How many token slots does each expert have (round up)?"),
    params=_capacity_params,
    solve=moe.expert_capacity,
    mistake=lambda tokens, n_experts, k, capacity_factor: moe.expert_capacity(tokens, n_experts, 1, capacity_factor),
    rtol=0.0,
    hint="C = ceil(capacity_factor * k * tokens / n_experts).",
)


def _dispatch_params(seed: int) -> dict:
    if seed == 0:
        return {"d_model": 7168, "k": 8, "ep_ranks": 64, "bytes_per_element": 1}
    rng = random.Random(seed)
    return {"d_model": rng.choice([2048, 4096, 7168]), "k": rng.choice([2, 4, 8]),
            "ep_ranks": rng.choice([8, 16, 32, 64]), "bytes_per_element": rng.choice([1, 2])}


exercise(
    "moe.dispatch_bytes",
    text=lambda d_model, k, ep_ranks, bytes_per_element: (
        f"Expert parallelism over {ep_ranks} ranks, d_model = {d_model}, top-{k} routing, uniform routing, "
        f"dispatch in {bytes_per_element}-byte elements. How many bytes does one token send to other ranks in "
        "one dispatch (no deduplication)?"),
    params=_dispatch_params,
    solve=moe.dispatch_bytes_per_token,
    mistake=lambda d_model, k, ep_ranks, bytes_per_element: d_model * bytes_per_element * (ep_ranks - 1) / ep_ranks,
    rtol=0.02,
    hint="k copies of a d_model vector, of which a fraction (N - 1)/N leaves the rank.",
)


def _nodes_params(seed: int) -> dict:
    if seed == 0:
        return {"n_experts": 256, "k": 8, "n_nodes": 8}
    rng = random.Random(seed)
    return {"n_experts": rng.choice([64, 128, 256]), "k": rng.choice([4, 6, 8]), "n_nodes": rng.choice([4, 8, 16])}


exercise(
    "moe.nodes_per_token",
    text=lambda n_experts, k, n_nodes: (
        f"{n_experts} experts are spread evenly over {n_nodes} nodes; a token picks {k} distinct experts uniformly "
        "at random. How many distinct nodes does it reach on average (no node limit)?"),
    params=_nodes_params,
    solve=moe.expected_nodes_per_token,
    mistake=lambda n_experts, k, n_nodes: float(min(k, n_nodes)),
    rtol=0.01,
    hint="n_nodes * (1 - C(E - E/n, k) / C(E, k)): a node is missed when all k experts avoid it.",
)
