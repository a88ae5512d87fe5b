"""Tests for llminfra_lab.moe: routing, balancing, dropless experts, expert parallelism, configs.

References: the Switch Transformer loss (Fedus et al. 2022, eq. 4), DeepSeek-V3's gating,
bias update and sequence-wise loss (DeepSeek-AI 2024, eqs. 12-20), a plain per-token loop
written in the tests, torch.topk/softmax, Mixtral's and Qwen3's published parameter counts,
and the single-process layer for expert parallelism over gloo.
"""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from llminfra_lab import catalog, moe
from llminfra_lab.launch import launch
from llminfra_lab.moe import balance, plots

# ----------------------------------------------------------------------------- routing


def _per_token_moe(x, gates, experts, w_gate, w_up, w_down):
    """The definition, one token and one choice at a time."""
    rows = []
    for t in range(x.shape[0]):
        acc = torch.zeros(x.shape[1], dtype=x.dtype)
        for j in range(experts.shape[1]):
            e = int(experts[t, j])
            h = torch.nn.functional.silu(x[t] @ w_gate[e]) * (x[t] @ w_up[e])
            acc = acc + gates[t, j] * (h @ w_down[e])
        rows.append(acc)
    return torch.stack(rows)


def test_softmax_routing_matches_mixtral_definition():
    """Mixtral (Jiang et al. 2024): softmax over the top-k logits = top-k probabilities renormalised."""
    logits = torch.randn(50, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    gates, experts, scores = moe.route(logits, 2)
    top = torch.topk(logits, 2, dim=-1)
    assert torch.equal(experts, top.indices)
    assert torch.allclose(gates, torch.softmax(top.values, dim=-1))
    assert torch.allclose(scores, torch.softmax(logits, -1))


def test_sigmoid_routing_with_bias_chooses_by_biased_score_but_gates_by_the_plain_one():
    """DeepSeek-V3 eqs. 13-16: s = sigmoid(u.e); top-k of s + b; gates = s of the chosen, normalised."""
    logits = torch.tensor([[0.0, 0.1, 0.2, 0.3]], dtype=torch.float64)
    bias = torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64)
    gates, experts, scores = moe.route(logits, 2, "sigmoid", bias=bias)
    assert experts.tolist() == [[0, 3]]
    s = torch.sigmoid(logits[0])
    assert torch.allclose(gates[0], torch.stack([s[0], s[3]]) / (s[0] + s[3]))


def test_capacity_and_dropping():
    """Switch eq. 3: C = ceil(cf * k * T / E); slots fill in token order, first choices first."""
    assert moe.expert_capacity(4096, 64, 2, 1.25) == 160
    assert moe.expert_capacity(10, 4, 1, 1.0) == 3
    experts = torch.tensor([[0, 1], [0, 2], [0, 1], [3, 0]])
    keep = moe.capacity_mask(experts, 4, 2)
    # expert 0: first choices of tokens 0, 1 fit, token 2's does not; token 3's second choice comes later: dropped
    assert keep.tolist() == [[True, True], [True, True], [False, True], [True, False]]


@settings(max_examples=40, deadline=None)
@given(tokens=st.integers(1, 30), n_experts=st.integers(1, 6), k=st.integers(1, 3), capacity=st.integers(1, 12),
       seed=st.integers(0, 10_000))
def test_capacity_mask_equals_a_plain_slot_count(tokens, n_experts, k, capacity, seed):
    """Brute force: walk first choices of all tokens, then second choices..., keeping a counter per expert."""
    k = min(k, n_experts)
    gen = torch.Generator().manual_seed(seed)
    experts = torch.stack([torch.randperm(n_experts, generator=gen)[:k] for _ in range(tokens)])
    used = [0] * n_experts
    want = [[False] * k for _ in range(tokens)]
    for j in range(k):
        for t in range(tokens):
            e = int(experts[t, j])
            if used[e] < capacity:
                used[e] += 1
                want[t][j] = True
    assert moe.capacity_mask(experts, n_experts, capacity).tolist() == want


@settings(max_examples=30, deadline=None)
@given(tokens=st.integers(1, 12), n_experts=st.integers(2, 10), k=st.integers(1, 4),
       gating=st.sampled_from(["softmax", "sigmoid"]), seed=st.integers(0, 10_000))
def test_route_equals_a_per_token_sort(tokens, n_experts, k, gating, seed):
    """Each token's experts are its k best scores, gates their scores renormalised (float64, no ties)."""
    k = min(k, n_experts)
    logits = torch.randn(tokens, n_experts, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    gates, experts, _ = moe.route(logits, k, gating)
    for t in range(tokens):
        row = [float(v) for v in (torch.softmax(logits[t], 0) if gating == "softmax" else torch.sigmoid(logits[t]))]
        best = sorted(range(n_experts), key=lambda e: -row[e])[:k]
        assert experts[t].tolist() == best
        assert gates[t].tolist() == pytest.approx([row[e] / sum(row[b] for b in best) for e in best])


def test_capacity_layer_counts_drops():
    """With a capacity factor, the layer zeroes the overflowing assignments and reports them."""
    layer = moe.MoELayer(moe.MoEConfig(d_model=8, d_expert=4, n_experts=4, k=1, capacity_factor=0.5))
    layer(torch.randn(1, 32, 8, generator=torch.Generator().manual_seed(0)))
    assert layer.last_dropped >= 32 - 4 * moe.expert_capacity(32, 4, 1, 0.5)


def test_switch_aux_loss_formula_and_perfect_balance():
    """Switch Transformer (Fedus et al. 2022): aux loss = alpha * N * sum_i f_i * P_i, alpha = 0.01;
    equals 1*alpha at perfect balance."""
    n = 8
    scores = torch.full((16, n), 1 / n)
    experts = torch.arange(16).remainder(n)[:, None]
    assert float(moe.switch_aux_loss(scores, experts, 0.01)) == pytest.approx(0.01)
    gen = torch.Generator().manual_seed(1)
    scores = torch.softmax(torch.randn(40, n, generator=gen), -1)
    experts = torch.topk(scores, 2, -1).indices
    f = torch.tensor([(experts == i).sum().item() / experts.numel() for i in range(n)])
    p = scores.mean(0)
    assert float(moe.switch_aux_loss(scores, experts, 0.01)) == pytest.approx(0.01 * n * float((f * p).sum()), rel=1e-6)
    collapsed = torch.zeros(16, dtype=torch.long)[:, None]
    one_hot = torch.nn.functional.one_hot(collapsed[:, 0], n).float()
    assert float(moe.switch_aux_loss(one_hot, collapsed, 0.01)) == pytest.approx(0.01 * n)


def test_sequence_aux_loss_is_alpha_when_each_sequence_is_balanced():
    """DeepSeek-V3 eqs. 17-20: f_i = N_r/(K_r T) * count, P_i = mean normalised score; balanced -> alpha."""
    experts = torch.arange(8).reshape(1, 4, 2)                   # 4 tokens x 2 = each of 8 experts once
    scores = torch.full((1, 4, 8), 0.3)
    assert float(moe.sequence_aux_loss(scores, experts, 1e-4)) == pytest.approx(1e-4)
    skewed = torch.zeros(1, 4, 2, dtype=torch.long)
    skewed[..., 1] = 1
    assert float(moe.sequence_aux_loss(scores, skewed, 1e-4)) == pytest.approx(1e-4)  # P uniform: f sums to E
    scores2 = torch.zeros(1, 4, 8) + 0.01
    scores2[..., :2] = 0.9
    assert float(moe.sequence_aux_loss(scores2, skewed, 1e-4)) > 1e-4


def test_bias_update_moves_against_the_load():
    """DeepSeek-V3: decrease b_i by gamma if expert i is overloaded, increase it if underloaded."""
    new = moe.update_bias(torch.zeros(4), torch.tensor([10.0, 2.0, 4.0, 4.0]), gamma=0.5)
    assert new.tolist() == [-0.5, 0.5, 0.5, 0.5]
    assert moe.update_bias(torch.zeros(2), torch.tensor([3.0, 3.0])).tolist() == [0.0, 0.0]


def test_max_violation():
    """MaxVio (Wang et al. 2024) = (max - mean) / mean."""
    assert moe.max_violation(torch.tensor([1.0, 1.0, 1.0, 1.0])) == 0.0
    assert moe.max_violation(torch.tensor([4.0, 0.0, 0.0, 0.0])) == pytest.approx(3.0)


# ----------------------------------------------------------------------------- the layer


@settings(max_examples=25, deadline=None)
@given(tokens=st.integers(1, 40), n_experts=st.sampled_from([1, 2, 4, 8]), k=st.integers(1, 3),
       block=st.sampled_from([1, 4, 16]), seed=st.integers(0, 10_000))
def test_dropless_grouped_equals_loop_and_definition(tokens, n_experts, k, block, seed):
    """MegaBlocks' idea: sorted, padded, block-batched experts = the per-expert loop = the definition."""
    k = min(k, n_experts)
    gen = torch.Generator().manual_seed(seed)
    d, f = 6, 5
    x = torch.randn(tokens, d, generator=gen, dtype=torch.float64)
    experts = torch.stack([torch.randperm(n_experts, generator=gen)[:k] for _ in range(tokens)])
    gates = torch.rand(tokens, k, generator=gen, dtype=torch.float64)
    w = [torch.randn(n_experts, *s, generator=gen, dtype=torch.float64) for s in ((d, f), (d, f), (f, d))]
    want = _per_token_moe(x, gates, experts, *w)
    assert torch.allclose(moe.expert_loop(x, gates, experts, *w), want)
    assert torch.allclose(moe.dropless_grouped(x, gates, experts, *w, block=block), want)


def test_dropless_grouped_backward_equals_loop():
    """Forward and backward: gradients of x, gates and all expert weights agree."""
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(30, 8, generator=gen, dtype=torch.float64)
    experts = torch.stack([torch.randperm(6, generator=gen)[:2] for _ in range(30)])
    gates = torch.rand(30, 2, generator=gen, dtype=torch.float64)
    w = [torch.randn(6, *s, generator=gen, dtype=torch.float64) for s in ((8, 4), (8, 4), (4, 8))]
    grads = []
    for fn in (moe.expert_loop, moe.dropless_grouped):
        leaves = [t.clone().requires_grad_(True) for t in (x, gates, *w)]
        fn(leaves[0], leaves[1], experts, *leaves[2:]).pow(2).sum().backward()
        grads.append([t.grad for t in leaves])
    for a, b in zip(*grads):
        assert torch.allclose(a, b)


def test_layer_shared_experts_and_grouped_flag():
    """Shared experts are always added (DeepSeekMoE); grouped and loop give the same layer output."""
    cfg = moe.MoEConfig(d_model=16, d_expert=8, n_experts=4, k=2, n_shared=2)
    layer = moe.MoELayer(cfg, seed=1)
    x = torch.randn(2, 5, 16, generator=torch.Generator().manual_seed(0))
    y = layer(x)
    assert torch.allclose(y, layer(x, grouped=False), atol=1e-6)
    flat = x.reshape(-1, 16)
    gates, experts, _ = moe.route(flat @ layer.router, 2)
    shared = sum(moe.swiglu(flat, layer.shared_gate[s], layer.shared_up[s], layer.shared_down[s]) for s in range(2))
    want = moe.expert_loop(flat, gates, experts, layer.w_gate, layer.w_up, layer.w_down) + shared
    assert torch.allclose(y.reshape(-1, 16), want, atol=1e-6)
    assert int(layer.last_load.sum()) == 10 * 2


def test_layer_balancing_modes():
    """aux: the Switch loss is set; bias: update_bias lowers the busiest expert's bias."""
    x = torch.randn(2, 16, 16, generator=torch.Generator().manual_seed(0))
    aux = moe.MoELayer(moe.MoEConfig(d_model=16, d_expert=8, balancing="aux"))
    aux(x)
    assert float(aux.aux_loss.detach()) >= 0.01 * 0.99
    biased = moe.MoELayer(moe.MoEConfig(d_model=16, d_expert=8, gating="sigmoid", balancing="bias", seq_alpha=1e-4))
    biased(x)
    assert float(biased.aux_loss.detach()) > 0
    busiest = int(biased.last_load.argmax())
    biased.update_bias()
    assert float(biased.bias[busiest]) < 0


# ----------------------------------------------------------------------------- expert parallelism


@pytest.mark.distributed
@pytest.mark.slow
@pytest.mark.parametrize("world", [2, 4])
def test_expert_parallel_equals_single_process(world):
    """all_to_all_single dispatch/combine on gloo = the single-process layer, outputs and gradients."""
    for cfg in (moe.MoEConfig(d_model=16, d_expert=8, n_experts=8, k=2),
                moe.MoEConfig(d_model=16, d_expert=8, n_experts=8, k=3, gating="sigmoid")):
        for result in launch(moe.ep_equivalence_check, world, cfg, 12):
            assert max(result.values()) < 1e-5, result


def test_dispatch_volume_and_node_limit():
    """Dispatch bytes = k * d * bytes * (N-1)/N; DeepSeek-V3 (256 experts, top-8, 8 nodes) reaches
    about 5.3 nodes per token without a limit, at most 4 with node-limited routing (M = 4)."""
    assert moe.dispatch_bytes_per_token(7168, 8, 64, 1) == pytest.approx(8 * 7168 * 63 / 64)
    assert moe.dispatch_bytes_per_token(4096, 2, 1) == 0
    e = moe.expected_nodes_per_token(256, 8, 8)
    brute = 8 * (1 - math.comb(224, 8) / math.comb(256, 8))
    assert e == pytest.approx(brute)
    assert 5.2 < e < 5.4
    limited = moe.expected_nodes_per_token(256, 8, 8, max_nodes=4)
    assert 3.9 < limited <= 4.0
    assert moe.expected_nodes_per_token(8, 2, 1) == pytest.approx(1.0)


# ----------------------------------------------------------------------------- real configurations


def test_mixtral_total_and_active_parameters():
    """Mixtral 8x7B (Mistral AI 2023; Jiang et al. 2024): 46.7B total, 12.9B active parameters (top-2 of 8)."""
    spec = catalog.model_spec("mixtral-8x7b")
    assert (spec.n_experts, spec.experts_per_token) == (8, 2)
    assert spec.total_params() / 1e9 == pytest.approx(46.7, abs=0.05)
    assert spec.active_params() / 1e9 == pytest.approx(12.9, abs=0.05)


@pytest.mark.parametrize("name,total,active", [("qwen3-30b-a3b", 30.5, 3.3), ("qwen3-235b-a22b", 235, 22),
                                               ("deepseek-v3", 671, 37)])
def test_published_moe_counts(name, total, active):
    """Qwen3 model cards (30.5B/3.3B, 235B/22B) and the DeepSeek-V3 report (671B/37B)."""
    spec = catalog.model_spec(name)
    assert spec.total_params() / 1e9 == pytest.approx(total, rel=0.005)
    assert spec.active_params() / 1e9 == pytest.approx(active, rel=0.02)


# ----------------------------------------------------------------------------- balancing over time


def test_moe_gpt_trains_and_records_load():
    """A few steps of each method run and record a distribution per layer and step."""
    for method in ("bias",):
        hist = moe.train_balance(method, steps=2, batch_size=2, seq_len=8)
        assert len(hist["loss"]) == 2 and len(hist["load"][0]) == 2
        assert sum(hist["load"][0][0]) == pytest.approx(1.0, abs=1e-3)


def test_shipped_balance_result_shows_the_three_regimes():
    """The shipped run (benchmarks/moe_balance.py): no balancing ends far from even; the Switch loss and
    the bias update end close to even, at a language-model loss within 10% of the unbalanced run."""
    result = moe.load_balance_result()
    late = {m: sum(h["maxvio"][-50:]) / 50 for m, h in result["runs"].items()}
    loss = {m: sum(h["loss"][-50:]) / 50 for m, h in result["runs"].items()}
    assert late["none"] > 1.0
    assert late["aux"] < 0.5 and late["bias"] < 0.5
    assert all(abs(loss[m] - loss["none"]) / loss["none"] < 0.1 for m in ("aux", "bias"))


def test_moe_gpt_replaces_each_mlp():
    """The spine's GPT, with MoE layers where the MLPs were."""
    model = moe.moe_gpt(moe.MoEConfig(d_model=64, d_expert=32))
    assert all(isinstance(b.mlp, moe.MoELayer) for b in model.blocks)


# ----------------------------------------------------------------------------- plots


def test_plots_draw(drawn):
    """Schematics and data figures draw."""
    drawn(moe.draw_moe_layer(), 10, "MoE layer")
    drawn(moe.draw_expert_parallel(4), 10, "Expert parallelism")
    drawn(moe.plot_catalog_moe(), 4)
    axes = moe.plot_load_over_time(moe.load_balance_result())
    drawn(axes[0][0].figure, 10, "bias")


# ----------------------------------------------------------------------------- bad input


def test_bad_input():
    logits = torch.randn(4, 8)
    with pytest.raises(ValueError, match="tokens, n_experts"):
        moe.route(torch.randn(8), 2)
    with pytest.raises(ValueError, match="k must be"):
        moe.route(logits, 0)
    with pytest.raises(ValueError, match="must be <= n_experts"):
        moe.route(logits, 9)
    with pytest.raises(ValueError, match="gating must be one of"):
        moe.route(logits, 2, "relu")
    with pytest.raises(ValueError, match="bias must be a tensor"):
        moe.route(logits, 2, bias=torch.zeros(3))
    with pytest.raises(ValueError, match="capacity_factor must be"):
        moe.expert_capacity(10, 4, 1, 0)
    with pytest.raises(ValueError, match="experts must be"):
        moe.capacity_mask(torch.zeros(3, dtype=torch.long), 4, 2)
    with pytest.raises(ValueError, match="capacity must be"):
        moe.capacity_mask(torch.zeros(3, 1, dtype=torch.long), 4, 0)
    with pytest.raises(ValueError, match="n_experts must be"):
        moe.expert_load(torch.zeros(3, 1, dtype=torch.long), 0)
    with pytest.raises(ValueError, match="for the same tokens"):
        moe.switch_aux_loss(torch.rand(4, 8), torch.zeros(3, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="alpha must be"):
        moe.switch_aux_loss(torch.rand(4, 8), torch.zeros(4, 1, dtype=torch.long), alpha=-1)
    with pytest.raises(ValueError, match="batch, seq, n_experts"):
        moe.sequence_aux_loss(torch.rand(4, 8), torch.zeros(4, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="same shape"):
        moe.update_bias(torch.zeros(4), torch.zeros(3))
    with pytest.raises(ValueError, match="gamma must be"):
        moe.update_bias(torch.zeros(4), torch.zeros(4), gamma=0)
    with pytest.raises(ValueError, match="positive sum"):
        moe.max_violation(torch.zeros(4))


def test_bad_config_and_layer_input():
    with pytest.raises(ValueError, match="n_experts must be"):
        moe.MoEConfig(n_experts=0)
    with pytest.raises(ValueError, match="must be <= n_experts"):
        moe.MoEConfig(n_experts=2, k=3)
    with pytest.raises(ValueError, match="n_shared must be"):
        moe.MoEConfig(n_shared=-1)
    with pytest.raises(ValueError, match="gating must be one of"):
        moe.MoEConfig(gating="tanh")
    with pytest.raises(ValueError, match="balancing must be one of"):
        moe.MoEConfig(balancing="magic")
    with pytest.raises(ValueError, match="capacity_factor must be"):
        moe.MoEConfig(capacity_factor=-1.0)
    with pytest.raises(ValueError, match="aux_alpha must be"):
        moe.MoEConfig(aux_alpha=0)
    with pytest.raises(ValueError, match="bias_gamma must be"):
        moe.MoEConfig(bias_gamma=0)
    with pytest.raises(ValueError, match="seq_alpha must be"):
        moe.MoEConfig(seq_alpha=-1)
    with pytest.raises(ValueError, match="cfg must be an MoEConfig"):
        moe.MoELayer({"d_model": 8})
    layer = moe.MoELayer(moe.MoEConfig(d_model=8, d_expert=4))
    with pytest.raises(ValueError, match="x must be"):
        layer(torch.randn(3, 8))
    with pytest.raises(ValueError, match="moe.d_model"):
        moe.moe_gpt(moe.MoEConfig(d_model=32))
    with pytest.raises(KeyError, match="unknown balancing method"):
        moe.train_balance("switch")
    with pytest.raises(ValueError, match="steps must be"):
        moe.train_balance("none", steps=0)
    with pytest.raises(FileNotFoundError, match="no result file"):
        moe.load_balance_result("/nonexistent/moe.json")


def test_bad_expert_arguments():
    x, gates, experts = torch.randn(4, 6), torch.rand(4, 2), torch.zeros(4, 2, dtype=torch.long)
    w = [torch.randn(3, 6, 5), torch.randn(3, 6, 5), torch.randn(3, 5, 6)]
    with pytest.raises(ValueError, match="gates and experts"):
        moe.expert_loop(x, gates[:3], experts, *w)
    with pytest.raises(ValueError, match="expected w_gate"):
        moe.dropless_grouped(x, gates, experts, w[0], w[1], w[1])
    with pytest.raises(ValueError, match="expert indices must be"):
        moe.expert_loop(x, gates, experts + 3, *w)
    with pytest.raises(ValueError, match="block must be"):
        moe.dropless_grouped(x, gates, experts, *w, block=0)
    with pytest.raises(ValueError, match="d_model must be"):
        moe.dispatch_bytes_per_token(0, 2, 4)
    with pytest.raises(ValueError, match="bytes_per_element must be"):
        moe.dispatch_bytes_per_token(8, 2, 4, 0)
    with pytest.raises(ValueError, match="divisible by n_nodes"):
        moe.expected_nodes_per_token(10, 2, 3)
    with pytest.raises(ValueError, match="max_nodes must be"):
        moe.expected_nodes_per_token(8, 2, 2, max_nodes=0)
    with pytest.raises(ValueError, match="k must be"):
        moe.expected_nodes_per_token(8, 0, 2)


def test_bad_plot_input(tmp_path):
    with pytest.raises(ValueError, match="need ints"):
        plots.draw_moe_layer(4, 5)
    with pytest.raises(ValueError, match="world must be"):
        plots.draw_expert_parallel(1)
    with pytest.raises(ValueError, match="runs"):
        plots.plot_load_over_time({})
    bad = tmp_path / "moe.json"
    bad.write_text('{"runs": {}}', encoding="utf-8")
    with pytest.raises(ValueError, match="not a moe_balance result"):
        balance.load_balance_result(bad)
