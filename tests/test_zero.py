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
import torch.distributed as dist
from torch import nn

from llminfra_lab import memory, zero
from llminfra_lab.launch import launch
from llminfra_lab.model import GPT, tiny_config
from llminfra_lab.zero import engine as zero_engine

# ----------------------------------------------------------------------------- the calculator (memory)

def test_zero_paper_figure1():
    """ZeRO (Rajbhandari 2020) Figure 1: 7.5B parameters, K=12, 64 GPUs: 120 GB, 31.4 GB, 16.6 GB, 1.88 GB per GPU."""
    fig = zero.ZERO_FIGURE1
    for stage, published_gb in {0: 120.0, 1: 31.4, 2: 16.6, 3: 1.88}.items():
        got = zero.model_state_bytes(fig["psi"], stage, fig["n_gpus"], k=fig["k"])["total"] / 1e9
        assert got == pytest.approx(published_gb, abs=0.05), (stage, got)
        assert fig["gb_per_gpu"][stage] == published_gb


def test_formulas_are_the_spines():
    """One definition per concept: zero re-exports memory's functions, it does not copy them."""
    assert zero.model_state_bytes is memory.model_state_bytes
    assert zero.activation_bytes_per_layer is memory.activation_bytes_per_layer
    assert zero.STAGES is memory.ZERO_STAGES


@pytest.mark.parametrize("s,b,h,a", [(16, 2, 64, 4), (32, 1, 128, 8), (24, 3, 96, 12), (40, 2, 48, 2)])
def test_activation_formula_against_autograd(s, b, h, a):
    """Korthikanti 2022 without dropout, s b h (32 + 2 a s / h), equals what PyTorch's autograd saves.

    The measured bytes add LayerNorm's per-token mean and rstd: 2 LayerNorms x 2 values x
    s b tokens x 2 bytes (bf16), which the paper neglects.
    """
    measured = zero.measure_activation_bytes(s, b, h, a)
    assert measured == memory.activation_bytes_per_layer(s, b, h, a, dropout=False) + 2 * 2 * s * b * 2
    assert memory.activation_bytes_per_layer(s, b, h, a, dropout=False) == s * b * h * (32 + 2 * a * s / h)


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


@pytest.mark.parametrize("numel", [1, 2, 7, 8, 35, 1000, 90_432])
@pytest.mark.parametrize("world", [1, 2, 3, 4, 8])
def test_shard_range_tiles_the_padded_buffer(numel, world):
    """The ranks' slices are equal, disjoint, in rank order, and together cover numel padded to a multiple of world
    (brute force: torch.chunk of the padded buffer gives the same pieces)."""
    ranges = [zero.shard_range(numel, world, r) for r in range(world)]
    padded = -(-numel // world) * world
    assert ranges[0][0] == 0 and ranges[-1][1] == padded
    assert all(stop - start == padded // world for start, stop in ranges)
    assert all(ranges[r][1] == ranges[r + 1][0] for r in range(world - 1))
    buffer = torch.arange(padded)
    for (start, stop), piece in zip(ranges, torch.chunk(buffer, world)):
        assert torch.equal(buffer[start:stop], piece)


def test_gpt_units_give_the_models_loss():
    """The GPT cut into units computes GPT.loss exactly."""
    cfg = tiny_config("small")
    model = GPT(cfg, seed=3)
    x = torch.randint(cfg.vocab_size, (2, 12), generator=torch.Generator().manual_seed(1))
    y = torch.roll(x, -1, dims=1)
    h = x
    for unit in zero.gpt_units(model):
        h = unit(h)
    torch.testing.assert_close(zero.sequential_loss(h, y), model.loss(x, y), rtol=0, atol=0)


def test_small_gpt_has_the_labs_size():
    """The lab's GPT is model.tiny_config("small"): 90,432 parameters, untied."""
    model = GPT(tiny_config("small"))
    assert sum(p.numel() for p in model.parameters()) == 90_432 and not model.cfg.tie_embeddings


def test_comm_log_counts_all_reduce_twice():
    """An all-reduce moves 2n, like a reduce-scatter plus an all-gather (Rajbhandari 2020, Section 7);
    bytes per rank use the ring factors of nccl-tests: 2(N-1)/N and (N-1)/N."""
    log = zero.CommLog()
    log.record("all_reduce", 100)
    log.record("reduce_scatter", 100)
    log.record("all_gather", 100)
    assert log.elements() == 400
    assert log.bytes_sent_per_rank(4) == pytest.approx((2 * 100 * 3 / 4 + 100 * 3 / 4 + 100 * 3 / 4) * 4)
    assert log.bytes_sent_per_rank(1) == 0


# ----------------------------------------------------------------------------- multi-process runs

@pytest.fixture(scope="module")
def two_rank_run():
    return launch(zero.compare_runs, 2, steps=3)


@pytest.mark.distributed
def test_sharded_losses_equal_data_parallel(two_rank_run):
    """The sharded run's losses equal plain data parallel's (float32, <= 1e-6) and each rank holds 1/N of the optimizer state.

    Reference: plain data parallel written with torch.optim.Adam and all-reduced gradients,
    and PyTorch's FSDP2 (fully_shard), on the same GPT and data (Rajbhandari 2020, ZeRO stages 1-3).
    FSDP2 matches to this tolerance on CPU from torch 2.9 (2.7-2.8 differ by about 1e-4).
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


@pytest.mark.distributed
def test_held_bytes_equal_the_formula(two_rank_run):
    """Rajbhandari 2020: parameters, gradients and optimizer state per rank for stages 0-3 (fp32: 4 + 4 + K=8 bytes)."""
    result = two_rank_run[0]
    for stage in zero.STAGES:
        formula = zero.formula_for_run(result, stage, 2)
        held = result[f"zero{stage}"]["held_bytes"]
        assert {k: float(v) for k, v in held.items()} == formula


@pytest.mark.distributed
def test_communication_volume_matches_the_paper(two_rank_run):
    """Rajbhandari 2020, Section 7: DDP, stage 1 and stage 2 move 2 Psi per step; stage 3 moves 3 Psi."""
    result = two_rank_run[1]
    for stage, multiple in {0: 2, 1: 2, 2: 2, 3: 3}.items():
        r = result[f"zero{stage}"]
        assert r["comm_elements"] == multiple * r["padded_psi"], stage
    ops3 = {op for op, _ in result["zero3"]["comm_calls"]}
    assert ops3 == {"all_gather", "reduce_scatter"}
    assert {op for op, _ in result["zero0"]["comm_calls"]} == {"all_reduce"}


@pytest.mark.distributed
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

def test_measure_activation_bytes_rejects_bad_input():
    with pytest.raises(ValueError, match="hidden must be an int >= 1"):
        zero.measure_activation_bytes(16, 1, 0, 4)
    with pytest.raises(ValueError, match="divisible"):
        zero.measure_activation_bytes(16, 1, 64, 5)


def test_engine_and_helpers_reject_bad_input():
    lin = nn.Linear(2, 2)
    with pytest.raises(ValueError, match="stage must be one of"):
        zero.ZeroEngine([lin], zero.sequential_loss, stage=5)
    with pytest.raises(ValueError, match="units must be a non-empty list"):
        zero.ZeroEngine([], zero.sequential_loss, stage=1)
    with pytest.raises(ValueError, match="loss_fn must be callable"):
        zero.ZeroEngine([lin], None, stage=1)
    with pytest.raises(ValueError, match="lr must be a finite number > 0"):
        zero.ZeroEngine([lin], zero.sequential_loss, stage=1, lr=0)
    with pytest.raises(ValueError, match="shared by two units"):
        zero.ZeroEngine([lin, nn.Sequential(lin)], zero.sequential_loss, stage=1)
    with pytest.raises(ValueError, match="process group"):
        zero.ZeroEngine([lin], zero.sequential_loss, stage=1)
    with pytest.raises(ValueError, match="share a shape"):
        zero.adam_update(torch.zeros(3), torch.zeros(2), torch.zeros(3), torch.zeros(3), 1, 1e-3, (0.9, 0.999), 1e-8)
    with pytest.raises(ValueError, match="step >= 1"):
        zero.adam_update(torch.zeros(3), torch.zeros(3), torch.zeros(3), torch.zeros(3), 0, 1e-3, (0.9, 0.999), 1e-8)
    with pytest.raises(ValueError, match="numel must be an int >= 1"):
        zero.shard_range(0, 2, 0)
    with pytest.raises(ValueError, match="world_size must be an int >= 1"):
        zero.shard_range(10, 0, 0)
    with pytest.raises(ValueError, match="rank must be an int in"):
        zero.shard_range(10, 2, 2)
    with pytest.raises(ValueError, match="GPT"):
        zero.gpt_units(lin)
    with pytest.raises(ValueError, match="tie_embeddings"):
        zero.gpt_units(GPT(tiny_config("small", tie_embeddings=True)))
    with pytest.raises(ValueError, match="logits"):
        zero.sequential_loss(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="op must"):
        zero.CommLog().record("broadcast", 3)
    with pytest.raises(ValueError, match="full_numel"):
        zero.CommLog().record("all_gather", -1)
    with pytest.raises(ValueError, match="world_size must be an int >= 1"):
        zero.CommLog().bytes_sent_per_rank(0)
    with pytest.raises(ValueError, match="element_bytes must be a finite number > 0"):
        zero.CommLog().bytes_sent_per_rank(2, 0)
    with pytest.raises(ValueError, match="steps must be an int >= 1"):
        zero.compare_runs(0, 2, steps=0)
    with pytest.raises(ValueError, match="stages must be drawn"):
        zero.compare_runs(0, 2, stages=(4,))
    with pytest.raises(ValueError, match="seq_len"):
        zero.compare_runs(0, 2, seq_len=1000)
    with pytest.raises(KeyError, match="zero2"):
        zero.formula_for_run({"zero1": {}}, 2, 2)
    with pytest.raises(ValueError, match="unknown GPTConfig"):
        zero.compare_runs(0, 2, cfg_overrides={"n_layers": 3})
    with pytest.raises(ValueError, match="tensors"):
        zero.ZeroEngine.step(None, [1, 2], torch.zeros(2))
    with pytest.raises(ValueError, match="max_gpus"):
        zero.plot_memory_vs_gpus(max_gpus=1)
    with pytest.raises(ValueError, match="n_gpus must be an int >= 1"):
        zero.plot_zero_partition_schematic(n_gpus=0)
    with pytest.raises(ValueError, match="n_gpus must be <= 16"):
        zero.plot_zero_partition_schematic(n_gpus=17)
    with pytest.raises(ValueError, match="k must be a finite number > 0"):
        zero.plot_zero_partition_schematic(k=0)


def test_plots_draw(drawn):
    ax = zero.plot_memory_vs_gpus(max_gpus=64)
    drawn(ax, min_artists=5, title="Psi = 7.5B")
    assert len(ax.lines) == 5                                  # four stages and the 80 GB line
    ax = zero.plot_stage_breakdown()
    drawn(ax, min_artists=12)
    assert len(ax.patches) == 12
    fake = {f"zero{s}": {"padded_psi": 100, "held_bytes": zero.model_state_bytes(100, s, 2, k=8, param_bytes=4,
                                                                                  grad_bytes=4)}
            for s in zero.STAGES}
    ax = zero.plot_measured_vs_formula(fake, 2)
    drawn(ax, min_artists=8, title="2 ranks")
    assert len(ax.patches) == 8
    assert not math.isnan(ax.get_ylim()[1])


def test_partition_schematic_colours_what_each_gpu_keeps(drawn):
    """The schematic's coloured area per GPU is proportional to memory.model_state_bytes (Rajbhandari 2020, Figure 1)."""
    n, k = 4, 12
    ax = zero.plot_zero_partition_schematic(n_gpus=n, k=k)
    drawn(ax, min_artists=4 * n * 6, title="What each of 4 GPUs holds")
    filled = [p for p in ax.patches if p.get_fill() and p.get_width() > 0]
    assert len(filled) == len(zero.STAGES) * n * 3
    for i, stage in enumerate(zero.STAGES):                   # rows are drawn stage by stage, GPU by GPU
        for gpu in range(n):
            area = sum(p.get_width() for p in filled[(i * n + gpu) * 3:(i * n + gpu + 1) * 3])
            assert area == pytest.approx(zero.model_state_bytes(1.0, stage, n, k=k)["total"])


# ----------------------------------------------------------------------------- stage 3 really frees

@pytest.fixture()
def one_rank_group(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


class _WatchedEngine(zero.ZeroEngine):
    """Keeps a reference to every gathered buffer freed after a unit's forward, as a collective
    library may (gloo's worker thread can keep a finished all-gather's output for a while after
    the call returns), and counts at the first gather of the backward the bytes those buffers still hold."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.freed, self.bytes_at_backward = [], None

    def _free(self, u):
        if self.bytes_at_backward is None:
            self.freed.append(u.full)
        super()._free(u)

    def _gather(self, u):
        if len(self.freed) == len(self.units) and self.bytes_at_backward is None:
            self.bytes_at_backward = sum(t.untyped_storage().nbytes() for t in self.freed)
            self.freed = [None] * len(self.freed)
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


def _two_units():
    return [_TransposedLinear(6, 7, 1), _TransposedLinear(7, 5, 2)]


XS, YS = torch.randn(4, 6, generator=torch.Generator().manual_seed(5)), torch.randn(4, 5)


def test_stage3_frees_gathered_parameters_between_forward_and_backward(one_rank_group, monkeypatch):
    """ZeRO-3 (Rajbhandari 2020): a unit's gathered parameters are freed after its forward.

    The bytes go back as soon as the unit's forward is done, whoever still holds the buffer
    (here the test itself, standing in for a collective library that lets go late), and no
    tensor saved for backward needs them: the saved-tensor hooks store a place, not a view.
    Without the hooks (the control) the saved views still point into the freed buffers, and
    the backward fails instead of silently keeping them alive.
    """
    cfg = tiny_config("small", n_layer=1)
    x = torch.randint(cfg.vocab_size, (2, 8), generator=torch.Generator().manual_seed(0))
    y = torch.roll(x, -1, dims=1)
    engine = _WatchedEngine(zero.gpt_units(GPT(cfg)), zero.sequential_loss, stage=3)
    engine.step(x, y)
    assert len(engine.freed) == 3 and engine.bytes_at_backward == 0

    engine = _WatchedEngine(_two_units(), _mse, stage=3)
    losses = [engine.step(XS, YS) for _ in range(3)]
    assert engine.bytes_at_backward == 0
    ref_units = _two_units()                                   # the same units trained plainly
    opt = torch.optim.Adam([p for u in ref_units for p in u.parameters()], lr=1e-3, foreach=False)
    for step_loss in losses:
        loss = _mse(ref_units[1](ref_units[0](XS)), YS)
        assert loss.item() == pytest.approx(step_loss, abs=1e-6)
        opt.zero_grad()
        loss.backward()
        opt.step()

    identity = lambda self, u: (lambda t: t, lambda t: t)  # noqa: E731
    monkeypatch.setattr(zero.ZeroEngine, "_hooks", identity)
    control = _WatchedEngine(_two_units(), _mse, stage=3)
    with pytest.raises(RuntimeError, match="out of bounds for storage of size 0"):
        control.step(XS, YS)


def test_transient_bytes_are_counted_and_returned(one_rank_group):
    """peak_transient_bytes is one unit's gathered parameters plus its full gradient at stage 3, one unit's
    full gradient below; after a step no transient bytes are outstanding."""
    for stage in zero.STAGES:
        engine = zero.ZeroEngine(_two_units(), _mse, stage=stage)
        engine.step(XS, YS)
        biggest = max(u.padded for u in engine.units) * 4
        assert engine.peak_transient_bytes == (2 * biggest if stage == 3 else biggest), stage
        assert engine._transient == 0


@pytest.mark.filterwarnings("ignore:.*is deprecated:FutureWarning")   # torch 2.13 deprecates the old names
@pytest.mark.parametrize("stage", [1, 2, 3])
def test_collectives_before_torch_2_13(one_rank_group, monkeypatch, stage):
    """torch 2.9-2.12 have no reduce_scatter_single/all_gather_single; the engine then calls
    reduce_scatter_tensor/all_gather_into_tensor, with the same result."""
    expected = zero.ZeroEngine(_two_units(), _mse, stage=stage).step(XS, YS)
    monkeypatch.setattr(zero_engine, "_reduce_scatter_flat", dist.reduce_scatter_tensor)
    monkeypatch.setattr(zero_engine, "_all_gather_flat", dist.all_gather_into_tensor)
    engine = zero.ZeroEngine(_two_units(), _mse, stage=stage)
    assert engine.step(XS, YS) == expected
    assert engine.comm.elements() > 0
