"""Tests for llminfra_lab.collectives: ring collectives against torch.distributed, the
alpha-beta model against its closed forms, nccl-tests' bus bandwidth, fat-tree sizes
against a brute-force graph, and input validation.

Multi-process tests are few (each launch spawns processes and costs seconds).
"""
from __future__ import annotations

import math
import os
import socket
from collections import deque
from datetime import timedelta

import numpy as np
import pytest
import torch
import torch.distributed as dist
from hypothesis import given, settings
from hypothesis import strategies as st

from llminfra_lab import collectives as C

# ---------------------------------------------------------------------------------------
# The chapter's checks
# ---------------------------------------------------------------------------------------

@pytest.mark.distributed
@pytest.mark.parametrize("world_size,numel", [(2, 8), (3, 10), (4, 3)])
def test_ring_collectives_equal_torch_and_move_2_p_minus_1_over_p_bytes(world_size, numel):
    """Ring all-reduce moves 2(p-1)/p * S bytes per rank; NCCL busbw = algbw * 2(n-1)/n.

    Source: nccl-tests doc/PERFORMANCE.md (NVIDIA), "AllReduce": 2(n-1) transfers per
    element spread over n ranks. Here the send/recv ring is run on p local gloo
    processes with uneven sizes (10 over 3 ranks: 4, 3, 3; 3 over 4 ranks: one empty
    chunk), checked against torch's own dist.all_reduce / dist.all_gather, and its
    bytes are counted on the wire.
    """
    results = C.launch(C.ring_vs_torch, world_size, numel, seed=11, timeout_s=90)
    S = numel * results[0]["element_size"]
    p = world_size
    for r in results:
        tol = 1e-12 * max(1.0, r["scale"])
        assert r["all_reduce_err"] <= tol
        assert r["reduce_scatter_err"] <= tol
        assert r["all_gather_err"] == 0.0 and r["all_gather_shape_ok"]
        assert r["steps"] == 2 * (p - 1)
    # Every step sends each chunk exactly once around the ring: 2 (p - 1) * S in total.
    assert sum(r["bytes_sent"] for r in results) == 2 * (p - 1) * S
    if numel % p == 0:
        for r in results:
            assert r["bytes_sent"] == C.bytes_sent_per_rank("all_reduce", S, p) == 2 * (p - 1) / p * S


def test_bus_bandwidth_definitions_from_nccl_tests():
    """Ring all-reduce moves 2(p-1)/p * S bytes per rank; NCCL busbw = algbw * 2(n-1)/n.

    Source: nccl-tests doc/PERFORMANCE.md: busbw = algbw * 2(n-1)/n for AllReduce,
    (n-1)/n for ReduceScatter and AllGather, 1 for Broadcast. A bandwidth-optimal ring
    with zero latency then shows busbw equal to the link bandwidth B for every n.
    """
    S, B = 1e9, 50e9
    for n in (2, 3, 8, 72, 1024):
        algbw = C.algorithm_bandwidth(S, 2.0)
        assert C.bus_bandwidth(algbw, "all_reduce", n) == pytest.approx(algbw * 2 * (n - 1) / n)
        assert C.bus_bandwidth(algbw, "reduce_scatter", n) == pytest.approx(algbw * (n - 1) / n)
        assert C.bus_bandwidth(algbw, "all_gather", n) == pytest.approx(algbw * (n - 1) / n)
        assert C.bus_bandwidth(algbw, "broadcast", n) == pytest.approx(algbw)
        t = C.ring_all_reduce_time(S, n, 0.0, B)
        assert C.bus_bandwidth(C.algorithm_bandwidth(S, t), "all_reduce", n) == pytest.approx(B)
        t = C.ring_reduce_scatter_time(S, n, 0.0, B)
        assert C.bus_bandwidth(C.algorithm_bandwidth(S, t), "reduce_scatter", n) == pytest.approx(B)
        assert C.bytes_sent_per_rank("all_reduce", S, n) == pytest.approx(2 * (n - 1) / n * S)
        assert C.bytes_sent_per_rank("all_gather", S, n) == pytest.approx((n - 1) / n * S)


# ---------------------------------------------------------------------------------------
# The ring schedule (one definition, used by the real collectives above)
# ---------------------------------------------------------------------------------------

def _brute_force_ring(world_size: int, schedule) -> list[list[set[int]]]:
    """Run a schedule on plain Python sets, step by step: each rank sends one chunk to its
    right neighbour, which must be expecting exactly that chunk; reduce-scatter adds,
    all-gather copies. Returns, per rank and chunk, the ranks whose inputs it sums."""
    p = world_size
    table = [schedule(r, p) for r in range(p)]
    held = [[{r} for _ in range(p)] for r in range(p)]
    for phase in ("reduce_scatter", "all_gather"):
        assert all(len(table[r][phase]) == p - 1 for r in range(p))
        for step in range(p - 1):
            messages = []
            for r in range(p):
                send, _ = table[r][phase][step]
                messages.append(((r + 1) % p, send, set(held[r][send])))
            for dst, chunk, payload in messages:
                assert table[dst][phase][step][1] == chunk, "the receiver expects another chunk"
                held[dst][chunk] = held[dst][chunk] | payload if phase == "reduce_scatter" else payload
        if phase == "reduce_scatter":
            for r in range(p):          # reduce-scatter's contract: rank r holds all of chunk r
                assert held[r][r] == set(range(p)), "after reduce-scatter rank r holds all of chunk r"
    return held


@pytest.mark.parametrize("p", [1, 2, 3, 4, 5, 8, 13])
def test_ring_schedule_sums_every_chunk_on_every_rank(p):
    """Run independently of ring_contributions: every rank ends with every chunk complete,
    and each step's chunk is the one the neighbour sends."""
    held = _brute_force_ring(p, C.ring_schedule)
    assert all(chunk == set(range(p)) for row in held for chunk in row)
    # ring_contributions agrees with the brute force at the end and after reduce-scatter
    snaps = C.ring_contributions(p)
    assert len(snaps) == 2 * (p - 1) + 1
    assert [[set(c) for c in row] for row in snaps[-1]] == held
    assert all(snaps[p - 1][r][r] == frozenset(range(p)) for r in range(p))


def test_ring_schedule_is_what_the_chapter_says():
    """Rank r sends chunk r - s - 1 and receives r - s - 2 at reduce-scatter step s, sends
    r - s and receives r - s - 1 at all-gather step s (mod p); the registered mistake,
    all-gather's indices in both phases, completes the wrong chunk."""
    assert C.ring_schedule(0, 4) == {"reduce_scatter": [(3, 2), (2, 1), (1, 0)],
                                     "all_gather": [(0, 3), (3, 2), (2, 1)]}
    assert C.ring_schedule(0, 1) == {"reduce_scatter": [], "all_gather": []}
    from llminfra_lab.exercises.collectives import _schedule_mistake

    with pytest.raises(AssertionError, match="rank r holds all of chunk r"):
        _brute_force_ring(4, _schedule_mistake)


def test_ring_schedule_rejects_bad_input():
    with pytest.raises(ValueError, match="rank must be an int in"):
        C.ring_schedule(4, 4)
    with pytest.raises(ValueError, match="rank must be an int in"):
        C.ring_schedule(True, 4)
    with pytest.raises(ValueError, match="world_size"):
        C.ring_schedule(0, 0)
    with pytest.raises(ValueError, match="world_size"):
        C.ring_contributions(0)


def test_ring_factor_has_one_definition():
    """The ring's 2(n-1)/n lives in BUSBW_FACTORS; the time model, the bytes per rank and
    the fit's design matrix all read it from there (patching it changes all three)."""
    n, S = 8, 1e9
    original = C.BUSBW_FACTORS["all_reduce"]
    try:
        C.BUSBW_FACTORS["all_reduce"] = lambda n: 1.0
        assert C.ring_all_reduce_time(S, n, 0.0, 1e9) == pytest.approx(1.0)
        assert C.bytes_sent_per_rank("all_reduce", S, n) == pytest.approx(S)
        assert C.ring_step_counts("all_reduce", n) == (14, 1.0)
    finally:
        C.BUSBW_FACTORS["all_reduce"] = original
    assert C.ring_step_counts("all_reduce", n) == (14, 1.75)
    assert C.ring_step_counts("all_gather", n) == (7, 0.875)
    with pytest.raises(ValueError, match="collective"):
        C.ring_step_counts("gossip", n)


def test_crossover_exercise_makes_ring_and_tree_equal():
    """The crossover exercise's closed form S* makes the two models of cost.py equal."""
    from llminfra_lab import labkit

    for seed in range(5):
        v = labkit.variant("collectives.ring_tree_crossover", seed)
        s_star = labkit.solution("collectives.ring_tree_crossover", seed)
        args = (v["p"], v["alpha_us"] * 1e-6, v["bandwidth_GBps"] * 1e9)
        assert C.ring_all_reduce_time(s_star, *args) == pytest.approx(C.tree_all_reduce_time(s_star, *args))
        assert C.ring_all_reduce_time(2 * s_star, *args) < C.tree_all_reduce_time(2 * s_star, *args)


def _three_level_fat_tree(k: int) -> dict[str, set[str]]:
    """Al-Fares et al. (2008), section 3.3, wired plainly: k pods of k/2 edge and k/2
    aggregation switches, (k/2)^2 core switches, k/2 hosts per edge switch."""
    half = k // 2
    adj: dict[str, set[str]] = {}

    def link(a: str, b: str) -> None:
        adj.setdefault(a, set()).add(b)
        adj.setdefault(b, set()).add(a)

    for pod in range(k):
        for e in range(half):
            for h in range(half):
                link(f"host{pod}.{e}.{h}", f"edge{pod}.{e}")
            for a in range(half):
                link(f"edge{pod}.{e}", f"agg{pod}.{a}")
        for a in range(half):
            for j in range(half):            # aggregation switch a reaches core row a
                link(f"agg{pod}.{a}", f"core{a}.{j}")
    return adj


def _two_level_fat_tree(k: int) -> dict[str, set[str]]:
    adj: dict[str, set[str]] = {}
    for leaf in range(k):
        for h in range(k // 2):
            adj.setdefault(f"host{leaf}.{h}", set()).add(f"leaf{leaf}")
            adj.setdefault(f"leaf{leaf}", set()).add(f"host{leaf}.{h}")
        for s in range(k // 2):
            adj.setdefault(f"leaf{leaf}", set()).add(f"spine{s}")
            adj.setdefault(f"spine{s}", set()).add(f"leaf{leaf}")
    return adj


def _connected(adj: dict[str, set[str]]) -> bool:
    start = next(iter(adj))
    seen, todo = {start}, deque([start])
    while todo:
        for nxt in adj[todo.popleft()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return len(seen) == len(adj)


@pytest.mark.parametrize("k", [2, 4, 6, 8, 12])
def test_fat_tree_hosts_k_cubed_over_4_brute_force(k):
    """A k-ary three-level fat-tree connects k^3/4 hosts.

    Source: Al-Fares, Loukissas and Vahdat, "A Scalable, Commodity Data Center Network
    Architecture", SIGCOMM 2008, section 3.3 (k^3/4 hosts, 5k^2/4 switches; k = 48
    gives 27,648 hosts). The graph is built and counted here, independently of the
    closed form; every switch must use exactly its k ports.
    """
    adj = _three_level_fat_tree(k)
    hosts = [n for n in adj if n.startswith("host")]
    switches = [n for n in adj if not n.startswith("host")]
    ft = C.fat_tree(k, levels=3)
    assert ft.hosts == len(hosts) == k ** 3 // 4
    assert ft.switches == len(switches) == 5 * k * k // 4
    assert all(len(adj[s]) == k for s in switches)
    assert all(len(adj[h]) == 1 for h in hosts)
    switch_links = sum(len([n for n in adj[s] if not n.startswith("host")]) for s in switches) // 2
    assert ft.links == switch_links
    assert _connected(adj)

    adj2 = _two_level_fat_tree(k)
    ft2 = C.fat_tree(k, levels=2)
    assert ft2.hosts == sum(n.startswith("host") for n in adj2) == k * k // 2
    assert ft2.switches == sum(not n.startswith("host") for n in adj2) == 3 * k // 2
    assert all(len(adj2[s]) == k for s in adj2 if not s.startswith("host"))
    assert ft2.links == sum(len(adj2[s]) for s in adj2 if s.startswith("spine"))


def test_fat_tree_published_sizes():
    """A k-ary three-level fat-tree connects k^3/4 hosts: Al-Fares et al. (2008) quote
    27,648 hosts for 48-port switches."""
    assert C.fat_tree(48).hosts == 27_648
    assert C.fat_tree(64).hosts == 65_536 and C.fat_tree(64, 2).hosts == 2_048


# ---------------------------------------------------------------------------------------
# The alpha-beta model
# ---------------------------------------------------------------------------------------

def test_fit_recovers_known_alpha_beta_from_synthetic_data():
    """Least squares recovers the alpha and beta that generated the times (plus 1% noise)."""
    rng = np.random.default_rng(0)
    sizes = np.logspace(3, 8, 12)
    for collective, model in (("all_reduce", C.ring_all_reduce_time),
                              ("reduce_scatter", C.ring_reduce_scatter_time)):
        for p, alpha, bw in ((2, 5e-6, 50e9), (8, 2e-6, 450e9), (4, 3e-4, 1.5e9)):
            clean = np.array([model(float(s), p, alpha, bw) for s in sizes])
            noisy = clean * (1 + 0.01 * rng.standard_normal(len(sizes)))
            exact = C.fit_alpha_beta(sizes, clean, p, collective)
            assert exact.alpha_s == pytest.approx(alpha, rel=1e-6)
            assert exact.bandwidth_Bps == pytest.approx(bw, rel=1e-6)
            assert exact.residual_rms_s == pytest.approx(0.0, abs=1e-12)
            fit = C.fit_alpha_beta(sizes, noisy, p, collective)
            assert fit.alpha_s == pytest.approx(alpha, rel=0.1)
            assert fit.bandwidth_Bps == pytest.approx(bw, rel=0.03)


def test_model_closed_forms_and_limits():
    f_in, f_out = C.fabric("NVLink4"), C.fabric("NDR-IB")
    S = 2e9
    # one node: hierarchical = reduce-scatter + all-gather inside = a ring all-reduce
    assert C.hierarchical_all_reduce_time(S, 8, 1) == pytest.approx(
        C.ring_all_reduce_time(S, 8, f_in.alpha_s, f_in.bandwidth_Bps))
    # one GPU per node: hierarchical = flat ring over the network
    assert C.hierarchical_all_reduce_time(S, 1, 16) == pytest.approx(
        C.ring_all_reduce_time(S, 16, f_out.alpha_s, f_out.bandwidth_Bps))
    # tiny messages on many ranks: the tree's log2(p) latency beats the ring's p
    assert C.all_reduce_time(8, 1024, "NDR-IB", "tree") < C.all_reduce_time(8, 1024, "NDR-IB", "ring") / 10
    # huge messages: both are bandwidth bound within a factor p / (p - 1)
    big_ring = C.all_reduce_time(1e11, 1024, "NDR-IB", "ring")
    big_tree = C.all_reduce_time(1e11, 1024, "NDR-IB", "tree")
    assert big_tree / big_ring == pytest.approx(1024 / 1023, rel=1e-2)
    # the network carries S / g per GPU in the hierarchical scheme
    assert C.hierarchical_all_reduce_time(S, 8, 128) < C.all_reduce_time(S, 1024, "NDR-IB", "ring")
    assert C.ring_all_reduce_time(S, 1, 1e-6, 1e9) == 0.0
    assert C.tree_all_reduce_time(S, 1, 1e-6, 1e9) == 0.0


def test_fabric_table_matches_datasheets():
    """Per-direction bandwidths are half the bidirectional datasheet figures: NVLink 4
    900 GB/s and NVLink 5 1.8 TB/s per GPU (NVIDIA NVLink page); NDR 400 Gb/s and XDR
    800 Gb/s per port (NVIDIA Quantum-2 and Quantum-X800)."""
    assert 2 * C.fabric("nvlink4").bandwidth_Bps == 900e9
    assert 2 * C.fabric("NVLink5").bandwidth_Bps == 1.8e12
    assert C.fabric("NDR-IB").bandwidth_Bps * 8 == 400e9
    assert C.fabric("XDR-IB").bandwidth_Bps * 8 == 800e9
    assert C.fabric("NVLink5").beta_s_per_byte == pytest.approx(1 / 900e9)


def test_fabric_table_cites_bandwidths_and_labels_latencies_as_assumed():
    """Every bandwidth in FABRICS cites a key that exists in references.bib; every alpha is
    labelled an assumption. RoCE-400G has NDR's bandwidth because both are one 400 Gb/s
    port per GPU (Llama 3 paper: 400 Gbps per GPU on RoCE and on InfiniBand), but it is
    its own row: its own source, a larger assumed alpha, and a note saying why."""
    import pathlib
    import re

    bib = (pathlib.Path(__file__).resolve().parents[1] / "references.bib").read_text(encoding="utf-8")
    keys = set(re.findall(r"^@\w+\{([^,]+),", bib, flags=re.M))
    for f in C.FABRICS.values():
        assert f.source in keys, f"{f.name} cites unknown key {f.source}"
        assert f.alpha_basis.startswith("assumed")
        assert 0 < f.alpha_s < 1e-4            # microseconds, not a measured number
    roce, ndr = C.fabric("RoCE-400G"), C.fabric("NDR-IB")
    assert roce.bandwidth_Bps * 8 == ndr.bandwidth_Bps * 8 == 400e9
    assert roce.source == "grattafiori2024llama3" and roce.source != ndr.source
    assert roce.alpha_s > ndr.alpha_s and "same 400 Gb/s line rate" in roce.notes
    table = C.fabric_table_markdown(("NDR-IB", "RoCE-400G"))
    assert "| NDR-IB | scale-out | 50 | {cite:p}`nvidia2021quantum2` | 5 |" in table
    assert "assumed" in table.splitlines()[0] and len(table.splitlines()) == 4
    assert len(C.fabric_table_markdown().splitlines()) == 2 + len(C.FABRICS)
    with pytest.raises(KeyError, match="known"):
        C.fabric_table_markdown(["Myrinet"])


def test_scale_up_fabric_reads_the_hardware_table():
    """Scale-up bandwidths come from llminfra_lab.hardware (datasheet values, both
    directions); the per-direction figure must equal FABRICS' NVLink entries."""
    from llminfra_lab.hardware import accelerator

    assert C.scale_up_fabric("H100-SXM").bandwidth_Bps == C.fabric("NVLink4").bandwidth_Bps
    assert C.scale_up_fabric("b200").bandwidth_Bps == C.fabric("NVLink5").bandwidth_Bps
    assert C.scale_up_fabric("A100-SXM-80GB").bandwidth_Bps == C.fabric("NVLink3").bandwidth_Bps
    for name in ("H800-SXM", "MI300X", "Ascend-910C"):
        f = C.scale_up_fabric(name)
        assert 2 * f.bandwidth_Bps == accelerator(name).scaleup_gbps * 1e9
        assert f.source == accelerator(name).source
    table = C.scale_up_table_markdown(("H100-SXM", "Ascend-910C"))
    assert "| H100-SXM | 900 | 450 | 9.0 |" in table and "{cite:p}`nvidia2022h100`" in table
    with pytest.raises(KeyError, match="TPU-v9"):
        C.scale_up_fabric("TPU-v9")
    with pytest.raises(ValueError, match="alpha_s"):
        C.scale_up_fabric("H100-SXM", alpha_s=-1.0)


@settings(max_examples=60, deadline=None)
@given(numel=st.integers(0, 10_000), world=st.integers(1, 64))
def test_chunk_sizes_match_tensor_split(numel, world):
    sizes = C.chunk_sizes(numel, world)
    assert sum(sizes) == numel and len(sizes) == world
    assert max(sizes) - min(sizes) <= 1
    assert sizes == [t.numel() for t in torch.tensor_split(torch.empty(numel), world)]


# ---------------------------------------------------------------------------------------
# launch: errors, and a small real measurement
# ---------------------------------------------------------------------------------------

@pytest.mark.distributed
def test_measure_collective_runs_and_fits():
    m = C.measure_collective(2, [4096, 262144], repeats=1, timeout_s=90)
    assert m.world_size == 2 and m.sizes_bytes == (4096, 262144)
    assert len(m.seconds) == 2 and all(t > 0 for t in m.seconds)
    fit = C.fit_alpha_beta(m.sizes_bytes, m.seconds, 2)
    assert math.isfinite(fit.alpha_s) and math.isfinite(fit.beta_s_per_byte)


# ---------------------------------------------------------------------------------------
# A one-rank process group in this process, to test validation inside a group cheaply
# ---------------------------------------------------------------------------------------

@pytest.fixture
def one_rank_group():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=0, world_size=1, timeout=timedelta(seconds=30))
    yield
    dist.destroy_process_group()


def test_ring_on_one_rank_and_bad_tensors(one_rank_group):
    x = torch.arange(6.0).reshape(2, 3)
    assert torch.equal(C.ring_all_reduce(x.clone()), x)
    assert torch.equal(C.ring_reduce_scatter(x), x.view(-1))
    assert torch.equal(C.ring_all_gather(torch.arange(4.0)), torch.arange(4.0))
    with pytest.raises(ValueError, match="contiguous"):
        C.ring_all_reduce(x.t())
    with pytest.raises(ValueError, match="torch.Tensor"):
        C.ring_all_reduce([1.0, 2.0])
    with pytest.raises(ValueError, match="numbers"):
        C.ring_all_reduce(torch.zeros(3, dtype=torch.bool))
    with pytest.raises(ValueError, match="sizes must be 1 ints"):
        C.ring_all_gather(torch.arange(4.0), [2, 2])
    with pytest.raises(ValueError, match="sizes\\[0\\]"):
        C.ring_all_gather(torch.arange(4.0), [3])


# ---------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------

def test_ring_functions_need_a_process_group():
    assert not dist.is_initialized()
    with pytest.raises(ValueError, match="launch"):
        C.ring_all_reduce(torch.ones(4))
    with pytest.raises(ValueError, match="launch"):
        C.ring_reduce_scatter(torch.ones(4))
    with pytest.raises(ValueError, match="launch"):
        C.ring_all_gather(torch.ones(4))


def test_chunk_sizes_and_ring_vs_torch_reject_bad_input():
    with pytest.raises(ValueError, match="numel"):
        C.chunk_sizes(-1, 2)
    with pytest.raises(ValueError, match="world_size"):
        C.chunk_sizes(3, 0)
    with pytest.raises(ValueError, match="numel"):
        C.ring_vs_torch(0, 2, -5)


def test_cost_model_rejects_bad_input():
    with pytest.raises(ValueError, match="size_bytes"):
        C.ring_all_reduce_time(-1, 4, 1e-6, 1e9)
    with pytest.raises(ValueError, match="size_bytes"):
        C.tree_all_reduce_time(float("nan"), 4, 1e-6, 1e9)
    with pytest.raises(ValueError, match="world_size"):
        C.ring_reduce_scatter_time(10, 0, 1e-6, 1e9)
    with pytest.raises(ValueError, match="alpha_s"):
        C.ring_all_reduce_time(10, 4, -1e-6, 1e9)
    with pytest.raises(ValueError, match="bandwidth_Bps"):
        C.ring_all_reduce_time(10, 4, 1e-6, 0)
    with pytest.raises(ValueError, match="gpus_per_node"):
        C.hierarchical_all_reduce_time(10, 0, 4)
    with pytest.raises(ValueError, match="nodes"):
        C.hierarchical_all_reduce_time(10, 8, 0)
    with pytest.raises(KeyError, match="known"):
        C.hierarchical_all_reduce_time(10, 8, 2, inter="Myrinet")
    with pytest.raises(ValueError, match="algorithm"):
        C.all_reduce_time(10, 4, "NDR-IB", "butterfly")
    with pytest.raises(KeyError, match="NVLink4"):
        C.fabric("NVLink9")
    with pytest.raises(KeyError, match="known"):
        C.fabric(4)


def test_bandwidth_helpers_reject_bad_input():
    with pytest.raises(ValueError, match="seconds"):
        C.algorithm_bandwidth(10, 0)
    with pytest.raises(ValueError, match="size_bytes"):
        C.algorithm_bandwidth(-10, 1)
    with pytest.raises(KeyError, match="all_reduce"):
        C.bus_bandwidth(1e9, "allreduce", 4)
    with pytest.raises(ValueError, match="world_size"):
        C.bus_bandwidth(1e9, "all_reduce", 0)
    with pytest.raises(ValueError, match="algbw"):
        C.bus_bandwidth(-1.0, "all_reduce", 4)
    with pytest.raises(KeyError, match="known"):
        C.bytes_sent_per_rank("broadcast", 10, 4)
    with pytest.raises(ValueError, match="world_size"):
        C.bytes_sent_per_rank("all_reduce", 10, 0)


def test_measure_and_fit_reject_bad_input():
    with pytest.raises(ValueError, match="world_size"):
        C.measure_collective(1, [4096])
    with pytest.raises(ValueError, match="sizes_bytes"):
        C.measure_collective(2, [])
    with pytest.raises(ValueError, match="sizes_bytes"):
        C.measure_collective(2, [2])
    with pytest.raises(ValueError, match="repeats"):
        C.measure_collective(2, [4096], repeats=0)
    with pytest.raises(ValueError, match="collective"):
        C.measure_collective(2, [4096], collective="gossip")
    with pytest.raises(ValueError, match="impl"):
        C.measure_collective(2, [4096], impl="mpi")
    with pytest.raises(ValueError, match="collective"):
        C.time_collective_on_rank(0, 2, [4096], collective="gossip")
    with pytest.raises(ValueError, match="impl"):
        C.time_collective_on_rank(0, 2, [4096], impl="mpi")
    with pytest.raises(ValueError, match="same length"):
        C.fit_alpha_beta([1, 2, 3], [1.0, 2.0], 2)
    with pytest.raises(ValueError, match="two distinct"):
        C.fit_alpha_beta([8, 8], [1.0, 2.0], 2)
    with pytest.raises(ValueError, match="> 0"):
        C.fit_alpha_beta([8, 16], [1.0, -2.0], 2)
    with pytest.raises(ValueError, match="world_size"):
        C.fit_alpha_beta([8, 16], [1.0, 2.0], 1)
    with pytest.raises(ValueError, match="collective"):
        C.fit_alpha_beta([8, 16], [1.0, 2.0], 2, collective="gossip")


def test_fat_tree_and_plots_reject_bad_input():
    with pytest.raises(ValueError, match="even"):
        C.fat_tree(5)
    with pytest.raises(ValueError, match="even"):
        C.fat_tree(0)
    with pytest.raises(ValueError, match="levels"):
        C.fat_tree(8, levels=4)
    with pytest.raises(ValueError, match="world_size"):
        C.plot_all_reduce_model(world_size=1)


def test_plots_draw(drawn):
    drawn(C.plot_all_reduce_model(), min_artists=6, title="p = 8")
    drawn(C.plot_fat_tree_scaling(), min_artists=8, title="fat-tree")
    drawn(C.plot_hierarchical(), min_artists=3, title="8 GPUs per node")
    m = C.Measurement("all_reduce", "ring", 2, (4096, 65536), (1e-4, 5e-4))
    fig = drawn(C.plot_fit(m, C.fit_alpha_beta(m.sizes_bytes, m.seconds, 2)), min_artists=2, title="all_reduce")
    assert len(fig.axes[0].lines) == 2


def test_ring_schematic_draws_every_chunk_of_every_step(drawn):
    """2(p-1) + 1 panels of p x p chunk boxes, one red-outlined box per rank per step,
    and the colour legend."""
    p = 4
    fig = drawn(C.plot_ring_schematic(p), min_artists=(2 * p - 1) * p * p, title="reduce-scatter step 1")
    boxes = sum(len(ax.patches) for ax in fig.axes)
    arrows = 2 * (p - 1) * (p + 1)                  # p sends per step, the wrap-around drawn twice
    assert boxes == (2 * p - 1) * p * p + arrows + p
    assert "Ring all-reduce on 4 ranks" in fig._suptitle.get_text()
    with pytest.raises(ValueError, match="between 2 and 6"):
        C.plot_ring_schematic(7)
    with pytest.raises(ValueError, match="world_size"):
        C.plot_ring_schematic(0)
