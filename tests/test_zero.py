"""Tests for llminfra_lab.zero: the ZeRO memory calculator, activation memory, and the ZeRO engine.

References: the ZeRO paper's Figure 1 and its communication analysis (Rajbhandari et al.
2020), the activation-memory breakdown of Korthikanti et al. 2022 counted tensor by
tensor, torch.optim.Adam, the GPT's own loss, and plain data parallel in PyTorch plus
PyTorch's FSDP2 (`fully_shard`) run on the same data.
"""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.multiprocessing.reductions import StorageWeakRef

from llminfra_lab import zero
from llminfra_lab.collectives import launch
from llminfra_lab.model import GPT

# ----------------------------------------------------------------------------- the calculator

def test_zero_paper_figure1():
    """ZeRO (Rajbhandari 2020) Figure 1: 7.5B parameters, K=12, 64 GPUs: 120 GB, 31.4 GB, 16.6 GB, 1.88 GB per GPU."""
    fig = zero.ZERO_FIGURE1
    for stage, published_gb in {0: 120.0, 1: 31.4, 2: 16.6, 3: 1.88}.items():
        got = zero.model_state_bytes(7.5e9, stage, 64, k=12)["total"] / 1e9
        assert got == pytest.approx(published_gb, abs=0.05), (stage, got)
        assert fig["gb_per_gpu"][stage] == published_gb


def test_model_state_parts_follow_the_paper_terms():
    """Rajbhandari 2020, Section 5: stage 1 = 4 Psi + K Psi/Nd, stage 2 = 2 Psi + (2+K) Psi/Nd, stage 3 = (4+K) Psi/Nd."""
    psi, n, k = 1000.0, 8, 12
    totals = [zero.model_state_bytes(psi, s, n, k)["total"] for s in zero.STAGES]
    assert totals == pytest.approx([16 * psi, 4 * psi + k * psi / n, 2 * psi + (2 + k) * psi / n, (4 + k) * psi / n])
    # one rank: every stage holds everything
    assert {zero.model_state_bytes(psi, s, 1, k)["total"] for s in zero.STAGES} == {16 * psi}
    parts = zero.model_state_bytes(psi, 2, n, k=8, param_bytes=4, grad_bytes=4)
    assert parts == {"params": 4 * psi, "grads": 4 * psi / n, "optimizer": 8 * psi / n,
                     "total": 4 * psi + 12 * psi / n}


def _korthikanti_brute_force(s, b, h, a, t=1, sp=False, selective=False, dropout=True):
    """Activation bytes of one layer, listing each stored tensor as in Korthikanti 2022, Section 4.1.

    Each entry: (bytes, split by tensor parallelism, split by sequence parallelism, is an
    attention-score tensor, exists only with dropout). 16-bit values (2 bytes), dropout
    masks 1 byte; a s^2 b entries are attention scores.
    """
    sbh, as2b = s * b * h, a * s * s * b
    tensors = [
        (2 * sbh, False, True, False, False),   # LayerNorm 1 input
        (2 * sbh, False, True, False, False),   # QKV projection input
        (2 * sbh, True, False, False, False),   # Q
        (2 * sbh, True, False, False, False),   # K
        (2 * as2b, True, False, True, False),   # softmax output
        (1 * as2b, True, False, True, True),    # softmax dropout mask
        (2 * as2b, True, False, True, True),    # dropout output, input to probs @ V
        (2 * sbh, True, False, False, False),   # V
        (2 * sbh, True, False, False, False),   # output projection input
        (1 * sbh, False, True, False, True),    # attention dropout mask
        (2 * sbh, False, True, False, False),   # LayerNorm 2 input
        (2 * sbh, False, True, False, False),   # MLP first linear input
        (8 * sbh, True, False, False, False),   # GeLU input (4h wide)
        (8 * sbh, True, False, False, False),   # GeLU output, second linear input
        (1 * sbh, False, True, False, True),    # MLP dropout mask
    ]
    total = 0.0
    for nbytes, tp_split, sp_split, score, needs_dropout in tensors:
        if (selective and score) or (needs_dropout and not dropout):
            continue
        total += nbytes / t if tp_split or (sp and sp_split) else nbytes
    return total


@pytest.mark.parametrize("s,b,h,a", [(2048, 1, 12288, 96), (512, 4, 1024, 16), (7, 3, 40, 8)])
@pytest.mark.parametrize("t,sp,recompute", [(1, False, "none"), (8, False, "none"), (8, True, "none"),
                                            (8, False, "selective"), (8, True, "selective"),
                                            (1, False, "selective")])
@pytest.mark.parametrize("dropout", [True, False])
def test_activation_formula_against_brute_force(s, b, h, a, t, sp, recompute, dropout):
    """Korthikanti 2022, Table 2: s b h (34 + 5 a s / h) without parallelism, and its TP/SP/selective variants."""
    got = zero.activation_bytes_per_layer(s, b, h, a, tensor_parallel=t, sequence_parallel=sp,
                                          recompute=recompute, dropout=dropout)
    assert got == pytest.approx(_korthikanti_brute_force(s, b, h, a, t, sp, recompute == "selective", dropout))


@pytest.mark.parametrize("s,b,h,a", [(16, 2, 64, 4), (32, 1, 128, 8), (24, 3, 96, 12), (40, 2, 48, 2)])
def test_activation_formula_against_autograd(s, b, h, a):
    """Korthikanti 2022 without dropout, s b h (32 + 2 a s / h), equals what PyTorch's autograd saves.

    The measured bytes add LayerNorm's per-token mean and rstd: 2 LayerNorms x 2 values x
    s b tokens x 2 bytes (bf16), which the paper neglects.
    """
    measured = zero.measure_activation_bytes(s, b, h, a)
    assert measured == zero.activation_bytes_per_layer(s, b, h, a, dropout=False) + 2 * 2 * s * b * 2
    assert zero.activation_bytes_per_layer(s, b, h, a, dropout=False) == s * b * h * (32 + 2 * a * s / h)


def test_activation_paper_forms():
    """Korthikanti 2022: sbh(34 + 5as/h) with no parallelism; 2sbh with full recomputation; GPT-3 numbers."""
    s, b, h, a = 2048, 1, 12288, 96            # GPT-3 175B shape used in the paper
    assert zero.activation_bytes_per_layer(s, b, h, a) == pytest.approx(s * b * h * (34 + 5 * a * s / h))
    assert zero.activation_bytes_per_layer(s, b, h, a, recompute="full") == 2 * s * b * h
    assert zero.activation_bytes_per_layer(s, b, h, a, 8, True, "full") == 2 * s * b * h
    # the attention term dominates at this shape: 5as/h = 80 > 34
    assert 5 * a * s / h == 80


# ----------------------------------------------------------------------------- the pieces of the engine

def test_adam_update_matches_torch_adam():
    """adam_update on a flat tensor gives torch.optim.Adam's result, also when applied shard by shard."""
    gen = torch.Generator().manual_seed(0)
    p0 = torch.randn(37, generator=gen)
    grads = [torch.randn(37, generator=gen) for _ in range(4)]
    ref = nn.Parameter(p0.clone())
    opt = torch.optim.Adam([ref], lr=1e-2, foreach=False)
    mine = p0.clone()
    m, v = torch.zeros(37), torch.zeros(37)
    for step, g in enumerate(grads, start=1):
        ref.grad = g.clone()
        opt.step()
        for lo, hi in ((0, 10), (10, 37)):                # shard by shard
            zero.adam_update(mine[lo:hi], g[lo:hi], m[lo:hi], v[lo:hi], step, 1e-2, (0.9, 0.999), 1e-8)
    torch.testing.assert_close(mine, ref.detach(), rtol=0, atol=1e-7)


def test_gpt_units_give_the_models_loss():
    """The GPT cut into units computes GPT.loss exactly."""
    cfg = zero.small_gpt_config()
    model = GPT(cfg, seed=3)
    x = torch.randint(cfg.vocab_size, (2, 12), generator=torch.Generator().manual_seed(1))
    y = torch.roll(x, -1, dims=1)
    h = x
    for unit in zero.gpt_units(model):
        h = unit(h)
    torch.testing.assert_close(zero.sequential_loss(h, y), model.loss(x, y), rtol=0, atol=0)


def test_comm_log_counts_all_reduce_twice():
    """An all-reduce moves 2n, like a reduce-scatter plus an all-gather (Rajbhandari 2020, Section 7)."""
    log = zero.CommLog()
    log.record("all_reduce", 100)
    log.record("reduce_scatter", 100)
    log.record("all_gather", 100)
    assert log.elements() == 400
    assert log.bytes_sent_per_rank(4) == 400 * 3 / 4 * 4


# ----------------------------------------------------------------------------- multi-process runs

@pytest.fixture(scope="module")
def two_rank_run():
    return launch(zero.compare_runs, 2, steps=3)


def test_sharded_losses_equal_data_parallel(two_rank_run):
    """The sharded run's losses equal plain data parallel's (float32, <= 1e-6) and each rank holds 1/N of the optimizer state.

    Reference: plain data parallel written with torch.optim.Adam and all-reduced gradients,
    and PyTorch's FSDP2 (fully_shard), on the same GPT and data (Rajbhandari 2020, ZeRO stages 1-3).
    """
    for rank, result in enumerate(two_rank_run):
        ref = result["torch-ddp"]["losses"]
        assert ref[-1] < ref[0]                                # it trains
        for method in ("zero0", "zero1", "zero2", "zero3", "fsdp2"):
            got = result[method]["losses"]
            assert max(abs(g - r) for g, r in zip(got, ref)) <= 1e-6, (rank, method, got, ref)
            assert result[method]["max_weight_diff"] <= 1e-6, (rank, method)   # final weights too
        psi = result["zero1"]["padded_psi"]
        full_optimizer = 2 * 4 * psi                           # momentum + variance, fp32
        assert result["zero0"]["held_bytes"]["optimizer"] == full_optimizer
        for stage in (1, 2, 3):
            assert result[f"zero{stage}"]["held_bytes"]["optimizer"] == full_optimizer // 2
        assert result["fsdp2"]["optimizer_bytes"] == pytest.approx(2 * 4 * result["zero1"]["psi"] / 2, rel=0.01)


def test_held_bytes_equal_the_formula(two_rank_run):
    """Rajbhandari 2020: parameters, gradients and optimizer state per rank for stages 0-3 (fp32: 4 + 4 + K=8 bytes)."""
    result = two_rank_run[0]
    for stage in zero.STAGES:
        formula = zero.formula_for_run(result, stage, 2)
        held = result[f"zero{stage}"]["held_bytes"]
        assert {k: float(v) for k, v in held.items()} == formula


def test_communication_volume_matches_the_paper(two_rank_run):
    """Rajbhandari 2020, Section 7: DDP, stage 1 and stage 2 move 2 Psi per step; stage 3 moves 3 Psi."""
    result = two_rank_run[1]
    for stage, multiple in {0: 2, 1: 2, 2: 2, 3: 3}.items():
        r = result[f"zero{stage}"]
        assert r["comm_elements"] == multiple * r["padded_psi"], stage
    ops3 = {op for op, _ in result["zero3"]["comm_calls"]}
    assert ops3 == {"all_gather", "reduce_scatter"}
    assert {op for op, _ in result["zero0"]["comm_calls"]} == {"all_reduce"}


def test_three_ranks_with_padding():
    """With 3 ranks the units do not split evenly; padding keeps shards equal and losses still match DDP."""
    results = launch(zero.compare_runs, 3, steps=2, stages=(3,), fsdp2=False,
                     cfg_overrides={"n_layer": 1})
    for result in results:
        r = result["zero3"]
        assert r["padded_psi"] % 3 == 0 and r["padded_psi"] > r["psi"]
        assert r["held_bytes"]["optimizer"] == 8 * r["padded_psi"] // 3
        assert max(abs(a - b) for a, b in zip(r["losses"], result["torch-ddp"]["losses"])) <= 1e-6


# ----------------------------------------------------------------------------- bad input

def test_model_state_bytes_rejects_bad_input():
    with pytest.raises(ValueError, match="psi"):
        zero.model_state_bytes(0, 1, 8)
    with pytest.raises(ValueError, match="stage"):
        zero.model_state_bytes(1e9, 4, 8)
    with pytest.raises(ValueError, match="n_gpus"):
        zero.model_state_bytes(1e9, 1, 0)
    with pytest.raises(ValueError, match="k must"):
        zero.model_state_bytes(1e9, 1, 8, k=-1)
    with pytest.raises(ValueError, match="param_bytes"):
        zero.model_state_bytes(1e9, 1, 8, param_bytes="2")


def test_activation_bytes_rejects_bad_input():
    with pytest.raises(ValueError, match="seq_len"):
        zero.activation_bytes_per_layer(0, 1, 64, 4)
    with pytest.raises(ValueError, match="divisible"):
        zero.activation_bytes_per_layer(16, 1, 64, 3)
    with pytest.raises(ValueError, match="divisible"):
        zero.activation_bytes_per_layer(16, 1, 64, 4, tensor_parallel=3)
    with pytest.raises(ValueError, match="recompute"):
        zero.activation_bytes_per_layer(16, 1, 64, 4, recompute="some")
    with pytest.raises(ValueError, match="bools"):
        zero.activation_bytes_per_layer(16, 1, 64, 4, dropout="no")
    with pytest.raises(ValueError, match="hidden"):
        zero.measure_activation_bytes(16, 1, 0, 4)
    with pytest.raises(ValueError, match="divisible"):
        zero.measure_activation_bytes(16, 1, 64, 5)


def test_engine_and_helpers_reject_bad_input():
    lin = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="stage"):
        zero.ZeroEngine([lin], zero.sequential_loss, stage=5)
    with pytest.raises(ValueError, match="units"):
        zero.ZeroEngine([], zero.sequential_loss, stage=1)
    with pytest.raises(ValueError, match="loss_fn"):
        zero.ZeroEngine([lin], None, stage=1)
    with pytest.raises(ValueError, match="lr"):
        zero.ZeroEngine([lin], zero.sequential_loss, stage=1, lr=0)
    with pytest.raises(ValueError, match="shared by two units"):
        zero.ZeroEngine([lin, nn.Sequential(lin)], zero.sequential_loss, stage=1)
    with pytest.raises(ValueError, match="process group"):
        zero.ZeroEngine([lin], zero.sequential_loss, stage=1)
    with pytest.raises(ValueError, match="share a shape"):
        zero.adam_update(torch.zeros(3), torch.zeros(2), torch.zeros(3), torch.zeros(3), 1, 1e-3, (0.9, 0.999), 1e-8)
    with pytest.raises(ValueError, match="step"):
        zero.adam_update(torch.zeros(3), torch.zeros(3), torch.zeros(3), torch.zeros(3), 0, 1e-3, (0.9, 0.999), 1e-8)
    with pytest.raises(ValueError, match="GPT"):
        zero.gpt_units(lin)
    with pytest.raises(ValueError, match="tie_embeddings"):
        zero.gpt_units(GPT(zero.small_gpt_config(tie_embeddings=True)))
    with pytest.raises(ValueError, match="logits"):
        zero.sequential_loss(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="op must"):
        zero.CommLog().record("broadcast", 3)
    with pytest.raises(ValueError, match="full_numel"):
        zero.CommLog().record("all_gather", -1)
    with pytest.raises(ValueError, match="world_size"):
        zero.CommLog().bytes_sent_per_rank(0)
    with pytest.raises(ValueError, match="steps"):
        zero.compare_runs(0, 2, steps=0)
    with pytest.raises(ValueError, match="stages"):
        zero.compare_runs(0, 2, stages=(4,))
    with pytest.raises(ValueError, match="seq_len"):
        zero.compare_runs(0, 2, seq_len=1000)
    with pytest.raises(KeyError, match="zero2"):
        zero.formula_for_run({"zero1": {}}, 2, 2)
    with pytest.raises(ValueError, match="unknown GPTConfig"):
        zero.small_gpt_config(n_layers=3)
    with pytest.raises(ValueError, match="tensors"):
        zero.ZeroEngine.step(None, [1, 2], torch.zeros(2))
    with pytest.raises(ValueError, match="max_gpus"):
        zero.plot_memory_vs_gpus(max_gpus=1)


def test_plots_draw():
    import matplotlib
    matplotlib.use("Agg")
    ax = zero.plot_memory_vs_gpus(max_gpus=64)
    assert len(ax.lines) == 5                                  # four stages and the 80 GB line
    ax = zero.plot_stage_breakdown()
    assert len(ax.patches) == 12
    fake = {f"zero{s}": {"padded_psi": 100, "held_bytes": zero.model_state_bytes(100, s, 2, 8, 4, 4)}
            for s in zero.STAGES}
    ax = zero.plot_measured_vs_formula(fake, 2)
    assert len(ax.patches) == 8
    assert not math.isnan(ax.get_ylim()[1])


# ----------------------------------------------------------------------------- stage 3 really frees

@pytest.fixture()
def one_rank_group(tmp_path):
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


class _WatchedEngine(zero.ZeroEngine):
    """Records a weak reference to the storage of each gathered buffer freed after a unit's forward."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.freed, self.alive_at_backward = [], None

    def _free(self, u):
        if self.alive_at_backward is None:
            self.freed.append(StorageWeakRef(u.full.untyped_storage()))
        super()._free(u)

    def _gather(self, u):
        if len(self.freed) == len(self.units) and self.alive_at_backward is None:
            self.alive_at_backward = sum(not r.expired() for r in self.freed)
        super()._gather(u)


class _TransposedLinear(nn.Module):
    """x @ W^T written out: autograd saves the view W^T, a tensor that shares W's storage."""

    def __init__(self, d_in, d_out, seed):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(d_out, d_in, generator=torch.Generator().manual_seed(seed)) * 0.3)

    def forward(self, x):
        return torch.tanh(x @ self.weight.t())


def _mse(out, target):
    return ((out - target) ** 2).mean()


def test_stage3_frees_gathered_parameters_between_forward_and_backward(one_rank_group, monkeypatch):
    """ZeRO-3 (Rajbhandari 2020): a unit's gathered parameters are freed after its forward.

    No tensor saved for backward may keep a gathered buffer alive, neither in the GPT nor in
    units that save views of their weights. Without the saved-tensor hooks (the control)
    the saved views keep every buffer alive, so the check can fail.
    """
    cfg = zero.small_gpt_config(n_layer=1)
    x = torch.randint(cfg.vocab_size, (2, 8), generator=torch.Generator().manual_seed(0))
    y = torch.roll(x, -1, dims=1)
    engine = _WatchedEngine(zero.gpt_units(GPT(cfg)), zero.sequential_loss, stage=3)
    engine.step(x, y)
    assert len(engine.freed) == 3 and engine.alive_at_backward == 0

    xs, ys = torch.randn(4, 6), torch.randn(4, 5)

    def make():
        return [_TransposedLinear(6, 7, 1), _TransposedLinear(7, 5, 2)]

    engine = _WatchedEngine(make(), _mse, stage=3)
    losses = [engine.step(xs, ys) for _ in range(3)]
    assert engine.alive_at_backward == 0
    ref_units = make()                                         # the same units trained plainly
    opt = torch.optim.Adam([p for u in ref_units for p in u.parameters()], lr=1e-3, foreach=False)
    for step_loss in losses:
        loss = _mse(ref_units[1](ref_units[0](xs)), ys)
        assert loss.item() == pytest.approx(step_loss, abs=1e-6)
        opt.zero_grad()
        loss.backward()
        opt.step()

    identity = lambda self, u: (lambda t: t, lambda t: t)  # noqa: E731
    monkeypatch.setattr(zero.ZeroEngine, "_hooks", identity)
    control = _WatchedEngine(make(), _mse, stage=3)
    control.step(xs, ys)
    assert control.alive_at_backward == 2
