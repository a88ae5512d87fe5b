"""Tests for llminfra_lab.parallel.

Pipeline schedules are checked against a brute-force validator and against the bubble
formulas of Narayanan et al. 2021, Qi et al. 2024 and the DualPipe README (DeepSeek-AI
2025), measured from the simulated timelines. Tensor-parallel layers are checked against the unsharded model (in one
process by summing the ranks' partial outputs, and on 2 real processes with gloo).
The data-parallel step is checked against a plainly written one-process step on the
whole batch. The planner is checked against the ZeRO paper's memory figures and a
brute-force enumeration. Every validation has a test.
"""
from __future__ import annotations

import itertools
import math

import matplotlib.pyplot as plt
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from llminfra_lab import memory
from llminfra_lab import parallel as par
from llminfra_lab.catalog import model_spec
from llminfra_lab.hardware import accelerator
from llminfra_lab.launch import launch
from llminfra_lab.model import GPT, tiny_config

TINY = tiny_config("test")


# ----------------------------------------------------------------------------- brute force

def expected_rank(s: par.PipelineSchedule, microbatch: int, stage: int) -> int:
    """Where (microbatch, stage) must run: stage % p, except DualPipe's second half of the
    micro-batches, which enter at the last rank (stage s on rank p-1-s)."""
    if s.name == "dualpipe" and microbatch >= s.m // 2:
        return s.p - 1 - stage
    return stage % s.p


def check_schedule(s: par.PipelineSchedule, split_w: bool) -> None:
    """Brute-force validator: each op exactly once, on the right rank, no overlap on a
    rank, and every data dependency met (with the hand-off delay)."""
    p, m, v = s.p, s.m, s.v
    n_stages = p * v
    kinds = ("F", "B", "W") if split_w else ("F", "B")
    ops = {(o.kind, o.microbatch, o.stage): o for o in s.ops}
    assert len(ops) == len(s.ops), "an op appears twice"
    assert set(ops) == {(k, i, st_) for k in kinds for i in range(m) for st_ in range(n_stages)}
    c = s.costs["t_comm"]
    eps = 1e-9
    for (kind, i, stage), o in ops.items():
        assert o.rank == expected_rank(s, i, stage)
        assert o.end > o.start >= 0
        if kind == "F" and stage > 0:
            assert o.start >= ops[("F", i, stage - 1)].end + c - eps
        if kind == "B":
            assert o.start >= ops[("F", i, stage)].end - eps
            if stage < n_stages - 1:
                assert o.start >= ops[("B", i, stage + 1)].end + c - eps
        if kind == "W":
            assert o.start >= ops[("B", i, stage)].end - eps
    for r in range(p):
        mine = sorted((o for o in s.ops if o.rank == r), key=lambda o: o.start)
        for a, b in zip(mine, mine[1:]):
            assert b.start >= a.end - eps, f"rank {r} runs two ops at once"


def measured_bubble(s: par.PipelineSchedule) -> float:
    """Idle time / busy time per rank, averaged, computed from the ops alone."""
    makespan = max(o.end for o in s.ops)
    fractions = []
    for r in range(s.p):
        busy = sum(o.end - o.start for o in s.ops if o.rank == r)
        fractions.append((makespan - busy) / busy)
    return sum(fractions) / s.p


def measured_peak(s: par.PipelineSchedule, rank: int) -> float:
    """Most micro-batch activations alive at once on `rank`, by scanning every instant."""
    ops = [o for o in s.ops if o.rank == rank]
    instants = sorted({o.start for o in ops})
    best = 0
    for t in instants:
        alive = sum(1 for o in ops if o.kind == "F" and o.start <= t
                    and not any(b.kind == "B" and b.microbatch == o.microbatch and b.stage == o.stage
                                and b.end <= t for b in ops))
        best = max(best, alive)
    return best / s.v


# ----------------------------------------------------------------------------- pipeline schedules

@pytest.mark.parametrize("name", ["gpipe", "1f1b"])
@pytest.mark.parametrize("p,m", [(2, 4), (4, 8), (4, 16), (8, 8), (8, 32)])
def test_bubble_fraction_gpipe_1f1b(name, p, m):
    """Pipeline bubble fraction (p-1)/m for GPipe/1F1B (Narayanan et al. 2021, Sec. 2.2),
    measured from the simulated timeline, not computed from the formula."""
    s = par.pipeline_schedule(name, p, m, t_f=1.0, t_b=2.0)
    check_schedule(s, split_w=False)
    assert measured_bubble(s) == pytest.approx((p - 1) / m, abs=1e-9)
    assert s.bubble_fraction == pytest.approx(measured_bubble(s), abs=1e-12)


@pytest.mark.parametrize("p,m,v", [(2, 4, 2), (4, 8, 2), (4, 16, 4), (8, 16, 2), (8, 16, 4)])
def test_bubble_fraction_interleaved(p, m, v):
    """Interleaved 1F1B bubble fraction (p-1)/(v*m) (Narayanan et al. 2021, Sec. 2.2.2),
    measured from the simulated timeline."""
    s = par.pipeline_schedule("interleaved", p, m, v, t_f=1.0, t_b=2.0)
    check_schedule(s, split_w=False)
    assert measured_bubble(s) == pytest.approx((p - 1) / (v * m), abs=1e-9)


@pytest.mark.parametrize("p,m", [(2, 4), (4, 8), (4, 12), (8, 16)])
def test_zero_bubble_h1_bubble(p, m):
    """ZB-H1 bubble (p-1)(F+B-2W) with B the full backward (Qi et al. 2024; the DualPipe
    README's table lists it as ZB1P), i.e. a third of 1F1B's when F = B_input = W."""
    t_f, t_b, t_w = 1.0, 2.0, 1.0
    s = par.pipeline_schedule("zb-h1", p, m, t_f=t_f, t_b=t_b, t_w=t_w)
    check_schedule(s, split_w=True)
    idle = (p - 1) * (t_f + t_b - 2 * t_w)
    assert measured_bubble(s) == pytest.approx(idle / (m * (t_f + t_b)), abs=1e-9)
    one_f_one_b = par.pipeline_schedule("1f1b", p, m, t_f=t_f, t_b=t_b)
    assert measured_bubble(s) == pytest.approx(measured_bubble(one_f_one_b) / 3, abs=1e-9)
    cheap_w = par.pipeline_schedule("zb-h1", p, m, t_f=1.0, t_b=2.0, t_w=0.5)   # W cheaper than B
    check_schedule(cheap_w, split_w=True)
    assert measured_bubble(cheap_w) == pytest.approx((p - 1) * (1 + 2 - 1) / (m * 3), abs=1e-9)
    for sched in (s, cheap_w):               # deferred weight gradients stay bounded
        for r in range(p):
            mine = [o for o in sched.ops if o.rank == r]
            waiting = max(sum(1 for b in mine if b.kind == "B" and b.end <= w.start)
                          - sum(1 for x in mine if x.kind == "W" and x.start < w.start) for w in mine if w.kind == "W")
            assert waiting <= p


@pytest.mark.parametrize("p,m", [(4, 8), (4, 16), (8, 24)])
def test_peak_inflight_1f1b_vs_gpipe(p, m):
    """1F1B keeps at most p micro-batches in flight per rank; GPipe keeps all m
    (Narayanan et al. 2021); ZB-H1 keeps 1F1B's limit (Qi et al. 2024)."""
    gpipe = par.pipeline_schedule("gpipe", p, m)
    ofob = par.pipeline_schedule("1f1b", p, m)
    zb = par.pipeline_schedule("zb-h1", p, m)
    assert [measured_peak(gpipe, r) for r in range(p)] == [m] * p == gpipe.peak_inflight
    assert [measured_peak(ofob, r) for r in range(p)] == [p - r for r in range(p)] == ofob.peak_inflight
    assert max(measured_peak(zb, r) for r in range(p)) <= p
    assert zb.peak_inflight == [measured_peak(zb, r) for r in range(p)]


@pytest.mark.parametrize("p,m", [(2, 4), (4, 8), (4, 12), (8, 16), (8, 20), (8, 40), (16, 32)])
@pytest.mark.parametrize("t_fb", [3.0, 2.5, 2.0])
def test_dualpipe_matches_readme_when_f_b_w_are_equal(p, m, t_fb):
    """DualPipe README / DeepSeek-V3 report Table 2: bubble (PP/2-1)(F&B+B-3W), 2x
    parameters, PP+1 activations per device. With F = B_input = W = 1 (B = 2 the full
    backward) the simulated idle time of the busiest-waiting rank is exactly the formula,
    for any cost of the overlapped F&B unit; with F&B = F+B every rank idles that long."""
    s = par.pipeline_schedule("dualpipe", p, m, t_f=1.0, t_b=2.0, t_w=1.0, t_fb=t_fb)
    check_schedule(s, split_w=True)
    assert s.bubble_fraction == pytest.approx(measured_bubble(s), abs=1e-12)
    makespan = max(o.end for o in s.ops)
    idle = [makespan - sum(o.end - o.start for o in s.ops if o.rank == r) for r in range(p)]
    assert max(idle) == pytest.approx((p / 2 - 1) * (t_fb + 2.0 - 3 * 1.0), abs=1e-9)
    if t_fb == 3.0:
        assert idle == pytest.approx([(p / 2 - 1) * 2.0] * p, abs=1e-9)
    # activations: PP + 1 (micro-batch, stage) pairs at the peak, on every rank
    assert [measured_peak(s, r) for r in range(p)] == [p + 1] * p == s.peak_inflight
    # parameters: every rank runs exactly two stages, r and p-1-r (2x a 1F1B rank's share)
    for r in range(p):
        assert {o.stage for o in s.ops if o.rank == r} == {r, p - 1 - r}
    assert s.params_per_rank == [2.0] * p
    assert par.pipeline_schedule("1f1b", p, m).params_per_rank == [1.0] * p
    assert par.pipeline_schedule("interleaved", p, 2 * p, 2).params_per_rank == [1.0] * p
    # below 1F1B and ZB-H1 (ZB1P) for the same p and the same total number of micro-batches
    assert s.bubble_fraction < par.pipeline_schedule("1f1b", p, m, t_f=1.0, t_b=2.0).bubble_fraction
    assert s.bubble_fraction <= par.pipeline_schedule("zb-h1", p, m, t_f=1.0, t_b=2.0, t_w=1.0).bubble_fraction


def test_dualpipe_bubble_and_memory_do_not_grow_with_m():
    """DeepSeek-V3 report, Sec. 3.2.1: "neither the bubbles nor activation memory will
    increase as the number of micro-batches grows" (idle time and peak are flat in m).
    Holds with free hand-offs (t_comm = 0); an exposed t_comm > 0 makes the idle time grow
    with m here, as it does for this simulator's 1F1B."""
    for costs in (dict(t_f=1.0, t_b=2.0, t_w=1.0), dict(t_f=1.0, t_b=2.0, t_w=0.5, t_fb=2.5),
                  dict(t_f=1.0, t_b=1.0, t_w=0.5, t_fb=1.5)):
        idles, peaks = set(), set()
        for m in (16, 18, 24, 40):
            s = par.pipeline_schedule("dualpipe", 8, m, **costs)
            check_schedule(s, split_w=True)
            idles.add(tuple(round(s.makespan - b, 9) for b in s.busy))
            peaks.add(tuple(s.peak_inflight))
        assert len(idles) == 1 and peaks == {(9.0,) * 8}


def test_dualpipe_two_directions_and_overlapped_units():
    """The structure DeepSeek describes: half the micro-batches enter at rank 0 and half at
    rank p-1, and in the steady state a forward of one direction runs as one F&B unit
    with a whole backward (B and W) of the other."""
    p, m = 4, 12
    s = par.pipeline_schedule("dualpipe", p, m, t_fb=2.5)
    firsts = {o.microbatch: o.rank for o in s.ops if o.kind == "F" and o.stage == 0}
    assert firsts == {i: 0 if i < m // 2 else p - 1 for i in range(m)}
    for r in range(p):
        mine = s.rank_ops(r)
        units = [mine[k:k + 3] for k in range(len(mine) - 2) if mine[k].overlapped and mine[k].kind == "F"]
        assert units, "no overlapped F&B unit"
        for f, b, w in units:
            assert (b.kind, w.kind) == ("B", "W") and b.overlapped and w.overlapped
            assert (f.microbatch < m // 2) != (b.microbatch < m // 2)          # opposite directions
            assert (w.microbatch, w.stage) == (b.microbatch, b.stage)
            assert w.end - f.start == pytest.approx(2.5)                       # one unit of cost t_fb


@settings(max_examples=40, deadline=None)
@given(p=st.integers(1, 6), groups=st.integers(1, 4), v=st.integers(2, 3),
       t_f=st.sampled_from([0.5, 1.0, 1.5]), t_b=st.sampled_from([1.0, 2.0, 3.0]),
       t_comm=st.sampled_from([0.0, 0.25]))
def test_every_schedule_respects_dependencies(p, groups, v, t_f, t_b, t_comm):
    """Property: for any sizes and costs, every schedule passes the brute-force validator,
    its bubble is >= 0, and the recorded bubble equals the one measured from the ops."""
    m = p * groups
    for name in par.SCHEDULES:
        vv = v if name == "interleaved" else 1
        pp, mm = (p + p % 2, 2 * (p + p % 2) * groups) if name == "dualpipe" else (p, m)   # even p, m >= 2p
        s = par.pipeline_schedule(name, pp, mm, vv, t_f=t_f, t_b=t_b, t_comm=t_comm)
        check_schedule(s, split_w=name in ("zb-h1", "dualpipe"))
        assert s.bubble_fraction == pytest.approx(measured_bubble(s), abs=1e-9)
        assert s.bubble_fraction >= -1e-12
        if name == "dualpipe" and pp > 2:
            # bubble below 1F1B's for the same p and total micro-batches, for any costs
            assert s.bubble_fraction < par.pipeline_schedule("1f1b", pp, mm, t_f=t_f, t_b=t_b,
                                                             t_comm=t_comm).bubble_fraction


def test_communication_delay_lengthens_the_pipeline():
    """GPipe with hand-off delay c: the last forward ends at (m + p - 1) t_f + (p - 1) c
    (one chain of p forwards with p - 1 hand-offs after m - 1 earlier forwards)."""
    p, m, c = 4, 6, 0.3
    s = par.pipeline_schedule("gpipe", p, m, t_f=1.0, t_b=2.0, t_comm=c)
    last_f = max(o.end for o in s.ops if o.kind == "F")
    assert last_f == pytest.approx((m + p - 1) * 1.0 + (p - 1) * c)


def test_schedule_bad_input():
    with pytest.raises(KeyError, match="gpipe"):
        par.pipeline_schedule("pipedream", 4, 8)
    for kwargs in (dict(p=0, m=4), dict(p=4, m=0), dict(p=2.5, m=4), dict(p=True, m=4)):
        with pytest.raises(ValueError, match="int >= 1"):
            par.pipeline_schedule("1f1b", **kwargs)
    with pytest.raises(ValueError, match="interleaved"):
        par.pipeline_schedule("1f1b", 4, 8, v=2)
    with pytest.raises(ValueError, match="v >= 2"):
        par.pipeline_schedule("interleaved", 4, 8, v=1)
    with pytest.raises(ValueError, match="divisible by p"):
        par.pipeline_schedule("interleaved", 4, 6, v=2)
    with pytest.raises(ValueError, match="t_f"):
        par.pipeline_schedule("gpipe", 2, 2, t_f=0)
    with pytest.raises(ValueError, match="t_b"):
        par.pipeline_schedule("gpipe", 2, 2, t_b=-1)
    with pytest.raises(ValueError, match="t_w"):
        par.pipeline_schedule("zb-h1", 2, 2, t_b=2.0, t_w=2.0)
    with pytest.raises(ValueError, match="t_comm"):
        par.pipeline_schedule("gpipe", 2, 2, t_comm=-0.1)
    for p, m in ((3, 12), (4, 9), (4, 6)):                       # odd p, odd m, m < 2p
        with pytest.raises(ValueError, match="dualpipe needs"):
            par.pipeline_schedule("dualpipe", p, m)
    with pytest.raises(ValueError, match="interleaved"):
        par.pipeline_schedule("dualpipe", 4, 8, v=2)
    for t_fb in (0.5, 3.5, "3"):                                  # outside [max(t_f, t_b), t_f + t_b]
        with pytest.raises(ValueError, match="t_fb"):
            par.pipeline_schedule("dualpipe", 4, 8, t_f=1.0, t_b=2.0, t_fb=t_fb)
    with pytest.raises(ValueError, match="dualpipe"):
        par.pipeline_schedule("zb-h1", 4, 8, t_fb=2.5)
    with pytest.raises(ValueError, match="names"):
        par.plot_schedules(4, 8, names="dualpipe")
    s = par.pipeline_schedule("gpipe", 2, 2)
    with pytest.raises(ValueError, match="rank"):
        s.rank_ops(2)
    with pytest.raises(ValueError, match="PipelineSchedule"):
        par.plot_schedule("gpipe")


def test_plots_draw_every_op():
    s = par.pipeline_schedule("interleaved", 4, 8, 2)
    ax = par.plot_schedule(s)
    assert len(ax.patches) == len(s.ops) == 2 * 4 * 8 * 2
    fig = par.plot_schedules(4, 8, 2)
    assert len(fig.axes) == 4
    d = par.pipeline_schedule("dualpipe", 4, 8)
    ax = par.plot_schedule(d)
    units = sum(1 for o in d.ops if o.overlapped and o.kind == "F")
    assert units > 0 and len(ax.patches) == len(d.ops) + units          # a box per op, a border per F&B
    fig = par.plot_schedules(4, 8, names=("1f1b", "zb-h1", "dualpipe"), t_fb=2.5)
    assert len(fig.axes) == 3
    plt.close("all")


@pytest.mark.parametrize("world_size", [1, 2, 4])
def test_tp_mlp_schematic_draws_one_lane_per_rank(drawn, world_size):
    """The schematic shows, per rank, A cut into N column strips and B into N row strips with
    exactly this rank's strip coloured, plus the f and g operators."""
    ax = par.plot_tp_mlp_schematic(world_size)
    drawn(ax, min_artists=2 * world_size * world_size + world_size + 2, title="Megatron MLP")
    texts = [t.get_text() for t in ax.texts]
    assert sum(t.startswith("rank ") for t in texts) == world_size
    assert "f" in texts and "g" in texts
    with pytest.raises(ValueError, match="int >= 1"):
        par.plot_tp_mlp_schematic(0)
    with pytest.raises(ValueError, match="at most 8"):
        par.plot_tp_mlp_schematic(9)


@pytest.mark.parametrize("p", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("m", [1, 4, 8, 16, 24])
def test_bubble_fraction_formula_equals_the_simulated_timeline(p, m):
    """parallel.bubble_fraction, the formula of Narayanan et al. 2021 ((p-1)/m for GPipe and
    1F1B, (p-1)/(vm) interleaved), equals the bubble measured on the simulated timeline."""
    for name in ("gpipe", "1f1b"):
        assert par.bubble_fraction(name, p, m) == pytest.approx(par.pipeline_schedule(name, p, m).bubble_fraction,
                                                                 abs=1e-12)
    if m % p == 0:
        for v in (2, 3):
            assert par.bubble_fraction("interleaved", p, m, v) == pytest.approx(
                par.pipeline_schedule("interleaved", p, m, v).bubble_fraction, abs=1e-12)


def test_bubble_fraction_bad_input():
    with pytest.raises(KeyError, match="unknown schedule"):
        par.bubble_fraction("dualpipe", 4, 8)
    with pytest.raises(ValueError, match="int >= 1"):
        par.bubble_fraction("1f1b", 0, 8)
    with pytest.raises(ValueError, match="applies to .interleaved. only"):
        par.bubble_fraction("1f1b", 4, 8, v=2)


# ----------------------------------------------------------------------------- tensor parallelism, one process

def _simulated_tp(module_factory, world_size, x, run):
    """Run each rank's shard in one process (no group: all-reduces do nothing) and sum the
    partial outputs and input gradients, which is exactly what the all-reduces compute."""
    outs, x_grads, shards = [], [], []
    for r in range(world_size):
        shard = module_factory(r)
        xr = x.clone().requires_grad_(True)
        out = run(shard, xr)
        outs.append(out)
        shards.append(shard)
        x_grads.append(xr)
    total = sum(outs)
    (total.pow(2).sum() / 2).backward()
    return total, sum(xr.grad for xr in x_grads), shards


@pytest.mark.parametrize("world_size", [1, 2, 4])
def test_tp_mlp_matches_unsharded_in_one_process(world_size):
    """Tensor-parallel MLP output equals the unsharded MLP (float32, <= 1e-5), and so do the
    gradients (Shoeybi et al. 2019): shards simulated in one process and summed."""
    model = GPT(TINY, seed=3)
    mlp = model.blocks[0].mlp
    x = torch.randn(2, 5, 32, generator=torch.Generator().manual_seed(0))
    out, x_grad, shards = _simulated_tp(lambda r: par.TensorParallelMLP(mlp, r, world_size), world_size, x,
                                        lambda m, xr: m(xr))
    xr = x.clone().requires_grad_(True)
    ref = mlp(xr)
    (ref.pow(2).sum() / 2).backward()
    assert (out - ref).abs().max() <= 1e-5
    assert (x_grad - xr.grad).abs().max() <= 1e-5
    for name, dim in (("w_gate", 0), ("w_up", 0), ("w_down", 1)):
        g = torch.cat([getattr(s, name).weight.grad for s in shards], dim)
        assert (g - getattr(mlp, name).weight.grad).abs().max() <= 1e-5


def test_tp_attention_matches_unsharded_in_one_process():
    """Heads split across 2 ranks, GQA groups kept on one rank: summed outputs equal the
    model's Attention (float32, <= 1e-5)."""
    model = GPT(TINY, seed=4)
    attn = model.blocks[1].attn
    x = torch.randn(2, 6, 32, generator=torch.Generator().manual_seed(1))
    cos, sin = model.rope_cos[:6], model.rope_sin[:6]
    out, x_grad, shards = _simulated_tp(lambda r: par.TensorParallelAttention(attn, r, 2), 2, x,
                                        lambda m, xr: m(xr, cos, sin))
    xr = x.clone().requires_grad_(True)
    ref = attn(xr, cos, sin)
    (ref.pow(2).sum() / 2).backward()
    assert (out - ref).abs().max() <= 1e-5
    assert (x_grad - xr.grad).abs().max() <= 1e-5
    for name, dim in (("wq", 0), ("wk", 0), ("wv", 0), ("wo", 1)):
        g = torch.cat([getattr(s, name).weight.grad for s in shards], dim)
        assert (g - getattr(attn, name).weight.grad).abs().max() <= 1e-5


def test_f_and_g_are_conjugate_and_logged():
    """f is identity forward and g identity backward; each logs exactly one all-reduce."""
    x = torch.randn(3, 4, requires_grad=True)
    with par.record_allreduces() as log:
        y = par.reduce_from_tp(par.copy_to_tp(x) * 2)
        y.sum().backward()
    assert torch.equal(y, x.detach() * 2)
    assert torch.equal(x.grad, torch.full_like(x, 2.0))
    assert [w for w, _ in log] == ["g-forward", "f-backward"]
    assert [n for _, n in log] == [12, 12]


@pytest.mark.parametrize("world_size", [1, 2, 3, 4])
def test_shard_linear_weight_pieces_rebuild_the_weight_and_the_output(world_size):
    """Column shards stacked along the output features, and row shards along the input
    features, rebuild the weight; column outputs concatenate and row partial outputs sum
    to x W^T (torch.nn.functional.linear on the whole weight)."""
    g = torch.Generator().manual_seed(world_size)
    w = torch.randn(12, 24, generator=g)
    x = torch.randn(5, 24, generator=g)
    cols = [par.shard_linear_weight(w, r, world_size, "column") for r in range(world_size)]
    rows = [par.shard_linear_weight(w, r, world_size, "row") for r in range(world_size)]
    assert all(c.shape == (12 // world_size, 24) for c in cols) and all(r.shape == (12, 24 // world_size) for r in rows)
    assert torch.equal(torch.cat(cols, 0), w) and torch.equal(torch.cat(rows, 1), w)
    full = F.linear(x, w)
    assert torch.allclose(torch.cat([F.linear(x, c) for c in cols], -1), full, atol=1e-5)
    xs = x.chunk(world_size, dim=-1)
    assert torch.allclose(sum(F.linear(xi, ri) for xi, ri in zip(xs, rows)), full, atol=1e-5)
    cols[0].add_(1.0)                                    # a copy: the layer's weight is untouched
    assert torch.equal(torch.cat(rows, 1), w)


def test_shard_linear_weight_bad_input():
    w = torch.zeros(6, 4)
    with pytest.raises(ValueError, match="2-D"):
        par.shard_linear_weight(torch.zeros(3), 0, 1, "row")
    with pytest.raises(ValueError, match="style"):
        par.shard_linear_weight(w, 0, 2, "diagonal")
    with pytest.raises(ValueError, match="not divisible"):
        par.shard_linear_weight(w, 0, 4, "column")
    with pytest.raises(ValueError, match="rank"):
        par.shard_linear_weight(w, 2, 2, "row")


def test_tp_bad_input():
    model = GPT(TINY, seed=0)
    with pytest.raises(ValueError, match="torch.Tensor"):
        par.copy_to_tp([1.0])
    with pytest.raises(ValueError, match="torch.Tensor"):
        par.reduce_from_tp(3.0)
    with pytest.raises(ValueError, match="bias-free"):
        par.ColumnParallelLinear.from_linear(torch.nn.Linear(4, 4), 0, 2)
    with pytest.raises(ValueError, match="not divisible"):
        par.ColumnParallelLinear.from_linear(torch.nn.Linear(4, 6, bias=False), 0, 4)
    with pytest.raises(ValueError, match="not divisible"):
        par.RowParallelLinear.from_linear(torch.nn.Linear(6, 4, bias=False), 0, 4)
    with pytest.raises(ValueError, match="rank"):
        par.RowParallelLinear.from_linear(torch.nn.Linear(4, 4, bias=False), 2, 2)
    with pytest.raises(ValueError, match="int"):
        par.TensorParallelMLP(model.blocks[0].mlp, 0, 2.0)
    with pytest.raises(ValueError, match="2-D"):
        par.ColumnParallelLinear(torch.zeros(3))
    with pytest.raises(ValueError, match="2-D"):
        par.RowParallelLinear(torch.zeros(3))
    with pytest.raises(ValueError, match="model.MLP"):
        par.TensorParallelMLP(model.blocks[0].attn, 0, 2)
    with pytest.raises(ValueError, match="model.Attention"):
        par.TensorParallelAttention(model.blocks[0].mlp, 0, 2)
    with pytest.raises(ValueError, match="divisible by the tensor-parallel size"):
        par.TensorParallelAttention(model.blocks[0].attn, 0, 4)   # 2 KV heads on 4 ranks
    with pytest.raises(ValueError, match="model.Block"):
        par.TensorParallelBlock.from_block(model.blocks[0].mlp, 0, 2)
    with pytest.raises(ValueError, match="part"):
        par.tp_block_worker(0, 1, TINY, torch.zeros(1, 2, 32), part="attention")
    with pytest.raises(ValueError, match="GPTConfig"):
        par.tp_block_worker(0, 1, "test", torch.zeros(1, 2, 32))


# ----------------------------------------------------------------------------- real processes (gloo)

@pytest.mark.distributed
@pytest.mark.slow
def test_tp_mlp_two_processes_equals_unsharded():
    """Tensor-parallel MLP output equals the unsharded MLP (float32, <= 1e-5) on 2 gloo
    processes (Shoeybi et al. 2019): outputs, input and weight gradients, updated weights;
    one all-reduce forward (g) and one backward (f)."""
    x = torch.randn(2, 6, 32, generator=torch.Generator().manual_seed(5))
    ranks = launch(par.tp_block_worker, 2, TINY, x, part="mlp", lr=0.1, seed=7)
    mlp = GPT(TINY, seed=7).blocks[0].mlp
    xr = x.clone().requires_grad_(True)
    ref = mlp(xr)
    (ref.pow(2).sum() / 2).backward()
    for res in ranks:
        assert (res["out"] - ref).abs().max() <= 1e-5
        assert (res["x_grad"] - xr.grad).abs().max() <= 1e-5
        assert [w for w, _ in res["log"]] == ["g-forward", "f-backward"]
    for name, dim in (("w_gate", 0), ("w_up", 0), ("w_down", 1)):
        key = f"{name}.weight"
        w = getattr(mlp, name).weight
        g = torch.cat([r["grads"][key] for r in ranks], dim)
        new = torch.cat([r["params"][key] for r in ranks], dim)
        assert (g - w.grad).abs().max() <= 1e-5
        assert (new - (w - 0.1 * w.grad)).abs().max() <= 1e-5


@pytest.mark.distributed
@pytest.mark.slow
def test_tp_block_two_processes_four_allreduces():
    """A tensor-parallel transformer block equals the model's Block and costs 2 all-reduces
    forward and 2 backward (Shoeybi et al. 2019, Sec. 3)."""
    x = torch.randn(2, 6, 32, generator=torch.Generator().manual_seed(6))
    ranks = launch(par.tp_block_worker, 2, TINY, x, part="block", seed=2)
    model = GPT(TINY, seed=2)
    block = model.blocks[0]
    xr = x.clone().requires_grad_(True)
    ref = block(xr, model.rope_cos[:6], model.rope_sin[:6])
    (ref.pow(2).sum() / 2).backward()
    for res in ranks:
        assert (res["out"] - ref).abs().max() <= 1e-5
        assert (res["x_grad"] - xr.grad).abs().max() <= 1e-5
        kinds = [w for w, _ in res["log"]]
        assert kinds.count("g-forward") == 2 and kinds.count("f-backward") == 2 and len(kinds) == 4
        assert all(n == 2 * 6 * 32 for _, n in res["log"])     # each moves one (b, s, h) activation
    for name, p in block.named_parameters():
        if "norm" in name:      # replicated: every rank has the full gradient
            for res in ranks:
                assert (res["grads"][name] - p.grad).abs().max() <= 1e-5
        else:
            dim = 1 if name.endswith(("wo.weight", "w_down.weight")) else 0
            g = torch.cat([r["grads"][name] for r in ranks], dim)
            assert (g - p.grad).abs().max() <= 1e-5


@pytest.mark.distributed
@pytest.mark.slow
def test_dp_step_equals_single_process_large_batch():
    """A 2-process data-parallel SGD step (bucketed gradient all-reduce) gives the same loss,
    gradients and updated weights as one process on the whole batch (float32, <= 1e-6)."""
    gen = torch.Generator().manual_seed(11)
    x = torch.randint(0, 64, (4, 8), generator=gen)
    y = torch.randint(0, 64, (4, 8), generator=gen)
    ranks = launch(par.dp_step_worker, 2, TINY, x, y, lr=0.5, seed=1, bucket_bytes=8192)
    model = GPT(TINY, seed=1)                      # the plain one-process step
    logits = model(x)
    loss = F.cross_entropy(logits.reshape(-1, 64), y.reshape(-1))
    loss.backward()
    for res in ranks:
        assert res["loss"] == pytest.approx(loss.item(), abs=1e-6)
        assert res["allreduces"] > 1                             # several buckets of <= 8 KiB
        for name, p in model.named_parameters():
            assert (res["grads"][name] - p.grad).abs().max() <= 1e-6
            assert (res["params"][name] - (p - 0.5 * p.grad)).abs().max() <= 1e-6


def test_tp_shard_dim_rebuilds_every_block_parameter():
    """Concatenating two ranks' shards along tp_shard_dim gives back each full parameter of
    the model's Block (norms are replicated), and unknown names are refused."""
    block = GPT(TINY, seed=3).blocks[0]
    shards = [dict(par.TensorParallelBlock.from_block(block, r, 2).named_parameters()) for r in range(2)]
    for name, full in block.named_parameters():
        dim = par.tp_shard_dim(name)
        if dim is None:
            assert all(torch.equal(s[name], full) for s in shards)
        else:
            assert torch.equal(torch.cat([s[name] for s in shards], dim), full)
    for bad in ("tok_emb.weight", "attn.wq.bias", 3):
        with pytest.raises(ValueError, match="parameter of a transformer Block|must be a str"):
            par.tp_shard_dim(bad)


def test_allreduce_gradients_without_group_and_bad_input():
    model = torch.nn.Linear(3, 2)
    model(torch.ones(1, 3)).sum().backward()
    before = model.weight.grad.clone()
    assert par.allreduce_gradients(model) == 0                  # one process: nothing to average
    assert torch.equal(model.weight.grad, before)
    with pytest.raises(ValueError, match="nn.Module"):
        par.allreduce_gradients([model])
    with pytest.raises(ValueError, match="bucket_bytes"):
        par.allreduce_gradients(model, bucket_bytes=0)
    with pytest.raises(ValueError, match="divisible"):
        par.dp_step_worker(0, 3, TINY, torch.zeros(4, 8, dtype=torch.long), torch.zeros(4, 8, dtype=torch.long))


# ----------------------------------------------------------------------------- planner

def test_zero_memory_matches_paper_figure_1():
    """ZeRO (Rajbhandari et al. 2020) Figure 1: 7.5B parameters, K = 12, 64 GPUs:
    120 GB (DDP), 31.4 GB (P_os), 16.6 GB (P_os+g), 1.88 GB (P_os+g+p) of model states."""
    expected = {0: 120.0, 1: 31.4, 2: 16.6, 3: 1.88}
    for stage, gb in expected.items():
        mem = par.layout_memory_bytes(7.5e9, 32, 4096, tp=1, pp=1, dp=64, seq_len=1, micro_batch=1,
                                      microbatches=1, zero_stage=stage)
        states = mem["weights"] + mem["grads"] + mem["optimizer"]
        assert states / 1e9 == pytest.approx(gb, rel=0.01)


def test_activation_memory_follows_korthikanti():
    """Korthikanti et al. 2022: per layer, sbh(34 + 5as/h)/t without recomputation,
    34sbh/t with selective recomputation; the first 1F1B stage holds min(p, m) micro-batches."""
    s, b, h, a, t, L = 2048, 1, 12288, 96, 8, 96
    kw = dict(tp=t, pp=1, dp=1, seq_len=s, micro_batch=b, microbatches=1, n_heads=a)
    none = par.layout_memory_bytes(1e9, L, h, recompute="none", **kw)["activations"]
    sel = par.layout_memory_bytes(1e9, L, h, recompute="selective", **kw)["activations"]
    full = par.layout_memory_bytes(1e9, L, h, recompute="full", **kw)["activations"]
    assert none == pytest.approx(L * s * b * h * (34 + 5 * a * s / h) / t)
    assert sel == pytest.approx(L * 34 * s * b * h / t)
    assert full == pytest.approx(L * 2 * s * b * h / t)
    staged = par.layout_memory_bytes(1e9, L, h, recompute="selective", **{**kw, "pp": 8, "microbatches": 32})
    assert staged["activations"] == pytest.approx(sel / 8 * 8)  # 12 layers x 8 micro-batches = 96 layers


def test_layout_memory_calls_the_one_memory_definition():
    """parallel.layout_memory_bytes uses the book's one definition of training memory: its
    model states equal memory.model_state_bytes of the params / (TP x PP) slice, and its
    activations equal memory.activation_bytes_per_layer with sequence parallelism
    (Korthikanti et al. 2022, Table 2) times layers and in-flight micro-batches."""
    for stage, (tp, pp, dp) in itertools.product(range(4), [(1, 1, 64), (8, 4, 32), (2, 16, 8)]):
        mem = par.layout_memory_bytes(70e9, 80, 8192, tp=tp, pp=pp, dp=dp, seq_len=4096, micro_batch=1,
                                      microbatches=16, n_heads=64, zero_stage=stage)
        ref = memory.model_state_bytes(70e9 / (tp * pp), stage, dp)
        assert (mem["weights"], mem["grads"], mem["optimizer"]) == pytest.approx(
            (ref["params"], ref["grads"], ref["optimizer"]))
        for recompute in ("none", "selective", "full"):
            acts = par.layout_memory_bytes(70e9, 80, 8192, tp=tp, pp=pp, dp=dp, seq_len=4096, micro_batch=1,
                                           microbatches=16, n_heads=64, recompute=recompute)["activations"]
            per_layer = memory.activation_bytes_per_layer(4096, 1, 8192, 64, tensor_parallel=tp,
                                                          sequence_parallel=True, recompute=recompute)
            assert acts == pytest.approx(per_layer * math.ceil(80 / pp) * min(pp, 16))


def test_planner_excludes_layouts_that_do_not_fit():
    """Brute force over every (TP, PP, DP) for Llama-3-70B on 1,024 H100s: the planner returns
    exactly the layouts whose memory fits in 90% of 80 GB, and TP stays inside a node."""
    spec, gpu, n = model_spec("llama-3-70b"), accelerator("H100-SXM"), 1024
    got = par.plan_layouts(spec, gpu, n, seq_len=4096, global_batch=1024)
    P = spec.total_params()
    fitting = set()
    for tp, pp in itertools.product([1, 2, 4, 8], range(1, spec.n_layers + 1)):
        if n % (tp * pp) or 1024 % (n // (tp * pp)):
            continue
        dp = n // (tp * pp)
        m = 1024 // dp
        states = P / (tp * pp) * (2 + 2 + 12 / dp)
        acts = 34 * 4096 * spec.d_model / tp * math.ceil(spec.n_layers / pp) * min(pp, m)
        if states + acts <= 0.9 * 80e9:
            fitting.add((tp, pp, dp))
    assert {(L.tp, L.pp, L.dp) for L in got} == fitting
    assert (1, 1, 1024) not in fitting and (8, 1, 128) in fitting
    for L in got:
        assert L.tp * L.pp * L.dp == n and L.tp <= 8
        assert L.memory_bytes <= 0.9 * 80e9
        assert L.bubble_fraction == pytest.approx((L.pp - 1) / L.microbatches)
    assert [L.step_time_s for L in got] == sorted(L.step_time_s for L in got)


def test_planner_llama3_405b_layout_needs_full_recompute():
    """Llama 3 (Grattafiori et al. 2024, Table 4): 405B on 16,384 H100s used TP8, PP16, DP128
    with 8,192-token sequences and a 16M-token batch. The planner finds it with full
    recomputation; with selective recomputation its activations do not fit in 80 GB."""
    kw = dict(seq_len=8192, global_batch=2048)
    full = par.plan_layouts("llama-3-405b", "H100-SXM", 16384, recompute="full", **kw)
    assert (8, 16, 128) in {(L.tp, L.pp, L.dp) for L in full}
    selective = par.plan_layouts("llama-3-405b", "H100-SXM", 16384, recompute="selective", **kw)
    assert (8, 16, 128) not in {(L.tp, L.pp, L.dp) for L in selective}


def test_planner_bad_input():
    with pytest.raises(KeyError, match="unknown model 'gpt-5'"):
        par.plan_layouts("gpt-5", "H100-SXM", 8)
    with pytest.raises(KeyError, match="unknown accelerator 'H900'"):
        par.plan_layouts("llama-3-8b", "H900", 8)
    with pytest.raises(ValueError, match="ModelSpec"):
        par.plan_layouts(42, "H100-SXM", 8)
    with pytest.raises(ValueError, match="Accelerator"):
        par.plan_layouts("llama-3-8b", 3.0, 8)
    for kwargs in (dict(n_gpus=0), dict(n_gpus=8, gpus_per_node=0), dict(n_gpus=8, seq_len=-1),
                   dict(n_gpus=8, virtual_stages=0)):
        with pytest.raises(ValueError, match="int >= 1"):
            par.plan_layouts("llama-3-8b", "H100-SXM", **kwargs)
    with pytest.raises(ValueError, match="usable_memory_fraction"):
        par.plan_layouts("llama-3-8b", "H100-SXM", 8, usable_memory_fraction=1.5)
    with pytest.raises(ValueError, match="zero_stage"):
        par.plan_layouts("llama-3-8b", "H100-SXM", 8, zero_stage=4)
    with pytest.raises(ValueError, match="recompute"):
        par.plan_layouts("llama-3-8b", "H100-SXM", 8, recompute="some")
    with pytest.raises(ValueError, match="params"):
        par.layout_memory_bytes(0, 1, 1, tp=1, pp=1, dp=1, seq_len=1, micro_batch=1, microbatches=1)
    with pytest.raises(ValueError, match="params"):
        par.layout_memory_bytes(True, 1, 1, tp=1, pp=1, dp=1, seq_len=1, micro_batch=1, microbatches=1)
    with pytest.raises(ValueError, match="tp"):
        par.layout_memory_bytes(1e9, 1, 1, tp=0, pp=1, dp=1, seq_len=1, micro_batch=1, microbatches=1)
    with pytest.raises(ValueError, match="zero_stage"):
        par.layout_memory_bytes(1e9, 1, 1, tp=1, pp=1, dp=1, seq_len=1, micro_batch=1, microbatches=1,
                                zero_stage=5)
    with pytest.raises(ValueError, match="recompute"):
        par.layout_memory_bytes(1e9, 1, 1, tp=1, pp=1, dp=1, seq_len=1, micro_batch=1, microbatches=1,
                                recompute="all")


def test_interleaving_in_the_planner_divides_the_bubble():
    base = {(L.tp, L.pp, L.dp): L for L in par.plan_layouts("llama-3-70b", "H100-SXM", 1024)}
    inter = {(L.tp, L.pp, L.dp): L for L in par.plan_layouts("llama-3-70b", "H100-SXM", 1024, virtual_stages=4)}
    for key, L in base.items():
        if L.pp > 1:
            assert inter[key].bubble_fraction == pytest.approx(L.bubble_fraction / 4)
            assert inter[key].pp_comm_bytes == pytest.approx(4 * L.pp_comm_bytes)
