"""Tests for llminfra_lab.roofline: FLOP and byte counts against PyTorch's FLOP counter and
plainly written brute force, the roofline against the published H100 ridge point, the
measurement functions on tiny sizes, and bad input for every public function."""
from __future__ import annotations

import math

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from torch.nn.attention import SDPBackend, sdpa_kernel  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from llminfra_lab import roofline as rl  # noqa: E402
from llminfra_lab.hardware import accelerator  # noqa: E402

TORCH_DTYPE = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "fp64": torch.float64}


def count_flops(fn) -> int:
    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


def nbytes(*tensors: torch.Tensor) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


# --- the chapter's checks ------------------------------------------------------------------

def test_h100_ridge_point_near_295():
    """H100 SXM: 989 dense BF16 TFLOP/s and 3.35 TB/s HBM3 give a ridge point near 295 FLOP/byte
    (NVIDIA H100 datasheet, which prints 1,979 TFLOP/s BF16 with sparsity)."""
    assert rl.ridge_point(989e12, 3.35e12) == pytest.approx(295.2, abs=0.5)
    h100 = accelerator("H100-SXM")
    assert rl.ridge_point(h100.peak_flops("bf16"), h100.hbm_bytes_per_s) == pytest.approx(295, abs=1)


@pytest.mark.parametrize("m, k, n", [(1, 1, 1), (7, 5, 3), (64, 128, 32), (1, 4096, 4096), (512, 512, 512)])
@pytest.mark.parametrize("dtype", ["fp32", "bf16", "fp16"])
def test_gemm_intensity_is_2mkn_over_bytes_of_abc(m, k, n, dtype):
    """Arithmetic intensity of an MxKxN GEMM = 2MKN / (bytes of A+B+C) (Williams et al. 2009's
    operational intensity applied to GEMM); FLOPs from torch's FlopCounterMode, bytes from the
    tensors themselves."""
    a = torch.zeros(m, k, dtype=TORCH_DTYPE[dtype])
    b = torch.zeros(k, n, dtype=TORCH_DTYPE[dtype])
    c = torch.mm(a, b)
    flops = count_flops(lambda: torch.mm(a, b))
    cost = rl.gemm_cost(m, k, n, dtype)
    assert cost.flops == flops == 2 * m * k * n
    assert cost.bytes == nbytes(a, b, c)
    assert cost.intensity == pytest.approx(flops / nbytes(a, b, c))


def test_gemm_flops_by_plain_loop():
    """Count multiply-adds of a triple loop: 2 FLOPs each."""
    m, k, n = 3, 4, 5
    ops = 0
    for _i in range(m):
        for _j in range(n):
            for _p in range(k):
                ops += 2
    assert rl.gemm_cost(m, k, n).flops == ops


@pytest.mark.parametrize("batch, m, k, n", [(1, 8, 8, 8), (6, 16, 32, 8)])
def test_batched_gemm_against_bmm(batch, m, k, n):
    a = torch.zeros(batch, m, k)
    b = torch.zeros(batch, k, n)
    c = torch.bmm(a, b)
    cost = rl.batched_gemm_cost(batch, m, k, n, "fp32")
    assert cost.flops == count_flops(lambda: torch.bmm(a, b))
    assert cost.bytes == nbytes(a, b, c)
    # independent operands: same intensity as one GEMM
    assert cost.intensity == pytest.approx(rl.gemm_cost(m, k, n, "fp32").intensity)


def test_batched_gemm_with_shared_weight_is_one_tall_gemm():
    shared = rl.batched_gemm_cost(32, 1, 4096, 4096, "bf16", shared_b=True)
    tall = rl.gemm_cost(32, 4096, 4096, "bf16")
    assert shared.flops == tall.flops and shared.bytes == tall.bytes
    assert shared.intensity > rl.batched_gemm_cost(32, 1, 4096, 4096, "bf16").intensity


@given(st.integers(1, 4096), st.integers(1, 4096), st.integers(1, 4096))
@settings(max_examples=60, deadline=None)
def test_gemm_intensity_symmetric_and_monotone(m, k, n):
    """2mkn / (mk + kn + mn) is symmetric in (m, k, n) and never falls when a dimension grows."""
    i = rl.gemm_cost(m, k, n).intensity
    assert rl.gemm_cost(n, m, k).intensity == pytest.approx(i)
    assert rl.gemm_cost(k, n, m).intensity == pytest.approx(i)
    assert rl.gemm_cost(m + 1, k, n).intensity >= i - 1e-12


def test_attention_flops_match_torch_sdpa():
    """FLOPs of attention = the two matmuls, 4 * b * h * Nq * Nk * d, as torch's counter reports for SDPA."""
    b, h, nq, nk, d = 2, 3, 16, 24, 8
    q, k, v = torch.zeros(b, h, nq, d), torch.zeros(b, h, nk, d), torch.zeros(b, h, nk, d)
    with sdpa_kernel(SDPBackend.MATH):  # the math backend runs (and is counted as) two batched matmuls
        flops = count_flops(lambda: F.scaled_dot_product_attention(q, k, v))
    assert rl.attention_cost_naive(b, h, nq, nk, d, "fp32").flops == flops
    assert rl.attention_cost_flash(b, h, nq, nk, d, "fp32").flops == flops


def test_naive_attention_bytes_by_ledger():
    """Run standard attention op by op and add up what each op reads and writes (Dao et al. 2022, Alg. 0)."""
    b, h, nq, nk, d = 2, 2, 12, 20, 8
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(b, h, n, d, generator=g) for n in (nq, nk, nk))
    ledger = 0
    s = q @ k.transpose(-1, -2)
    ledger += nbytes(q, k, s)
    p = torch.softmax(s / math.sqrt(d), dim=-1)
    ledger += nbytes(s, p)
    o = p @ v
    ledger += nbytes(p, v, o)
    torch.testing.assert_close(o, F.scaled_dot_product_attention(q, k, v))
    assert rl.attention_cost_naive(b, h, nq, nk, d, "fp32").bytes == ledger


def _flash_attention_counting_io(q, k, v, sram_bytes):
    """FlashAttention Algorithm 1 (Dao et al. 2022), written plainly, counting every HBM load and store."""
    n_q, d = q.shape
    n_k = k.shape[0]
    e = q.element_size()
    m_elems = sram_bytes // e
    b_c = math.ceil(m_elems / (4 * d))
    b_r = min(b_c, d)
    o = torch.zeros_like(q)
    l_stat = torch.zeros(n_q)
    m_stat = torch.full((n_q,), -math.inf)
    io = 0
    for j0 in range(0, n_k, b_c):
        kj, vj = k[j0:j0 + b_c], v[j0:j0 + b_c]
        io += nbytes(kj, vj)                                        # load K_j, V_j
        for i0 in range(0, n_q, b_r):
            qi, oi = q[i0:i0 + b_r], o[i0:i0 + b_r]
            li, mi = l_stat[i0:i0 + b_r], m_stat[i0:i0 + b_r]
            io += nbytes(qi, oi, li, mi)                            # load Q_i, O_i, l_i, m_i
            s = qi @ kj.T / math.sqrt(d)
            m_tilde = s.max(dim=1).values
            p = torch.exp(s - m_tilde[:, None])
            l_tilde = p.sum(dim=1)
            m_new = torch.maximum(mi, m_tilde)
            l_new = torch.exp(mi - m_new) * li + torch.exp(m_tilde - m_new) * l_tilde
            o_new = ((li * torch.exp(mi - m_new))[:, None] * oi
                     + torch.exp(m_tilde - m_new)[:, None] * (p @ vj)) / l_new[:, None]
            o[i0:i0 + b_r], l_stat[i0:i0 + b_r], m_stat[i0:i0 + b_r] = o_new, l_new, m_new
            io += nbytes(o_new, l_new, m_new)                       # store O_i, l_i, m_i
    return o, io


@pytest.mark.parametrize("n_q, n_k, d, sram", [(40, 56, 8, 512), (33, 70, 16, 1024), (64, 64, 4, 4096)])
def test_flash_attention_bytes_by_simulating_algorithm_1(n_q, n_k, d, sram):
    """The IO count of `attention_cost_flash` equals the loads and stores of Algorithm 1 run
    block by block, and the tiled algorithm gives the same output as PyTorch's SDPA."""
    g = torch.Generator().manual_seed(1)
    q, k, v = torch.randn(n_q, d, generator=g), torch.randn(n_k, d, generator=g), torch.randn(n_k, d, generator=g)
    o, io = _flash_attention_counting_io(q, k, v, sram)
    torch.testing.assert_close(o, F.scaled_dot_product_attention(q[None], k[None], v[None])[0], atol=1e-5, rtol=1e-5)
    assert rl.attention_cost_flash(1, 1, n_q, n_k, d, "fp32", sram_bytes=sram).bytes == io


def test_flash_moves_fewer_bytes_than_naive_for_long_sequences():
    """Dao et al. 2022: Theta(N^2 d^2 / M) HBM accesses instead of Theta(N d + N^2)."""
    for n in (1024, 4096, 16384):
        naive = rl.attention_cost_naive(1, 16, n, n, 64)
        flash = rl.attention_cost_flash(1, 16, n, n, 64)
        assert flash.flops == naive.flops
        assert flash.bytes < naive.bytes / 3
    # naive intensity saturates at d / bytes-per-element: the N^2 matrices dominate the traffic
    assert rl.attention_cost_naive(1, 1, 1 << 16, 1 << 16, 128).intensity == pytest.approx(128 / 2, rel=0.01)


def test_flash_block_sizes_follow_the_paper():
    # A100: M = 192 KB of bf16 = 98,304 elements; d = 64 -> B_c = 384, B_r = 64
    assert rl.flash_block_sizes(64, 192 * 1024, "bf16") == (64, 384)


def test_elementwise_and_reduction_against_tensors():
    x = torch.zeros(1000, dtype=torch.bfloat16)
    y = torch.zeros(1000, dtype=torch.bfloat16)
    z = x + y
    cost = rl.elementwise_cost(1000, "bf16", n_inputs=2, n_outputs=1)
    assert cost.bytes == nbytes(x, y, z)
    assert cost.flops == 1000
    rows, cols = 7, 13
    a = torch.zeros(rows, cols)
    s = a.sum(dim=-1)
    adds = 0
    for _r in range(rows):
        for _c in range(cols - 1):
            adds += 1
    red = rl.reduction_cost(rows, cols, "fp32")
    assert red.flops == adds
    assert red.bytes == nbytes(a, s)


def test_elementwise_and_reduction_are_memory_bound_everywhere():
    for name in ["A100-SXM-80GB", "H100-SXM", "B200", "MI300X", "Ascend-910B"]:
        assert rl.is_memory_bound(rl.elementwise_cost(1 << 20, flops_per_element=8), name)
        assert rl.is_memory_bound(rl.reduction_cost(4096, 4096), name)
    assert not rl.is_memory_bound(rl.gemm_cost(8192, 8192, 8192), "H100-SXM")


def test_attainable_flops_is_min_of_roofs():
    peak, bw = 100.0, 10.0
    assert rl.attainable_flops(1.0, peak, bw) == 10.0
    assert rl.attainable_flops(10.0, peak, bw) == 100.0     # at the ridge both roofs meet
    assert rl.attainable_flops(1000.0, peak, bw) == 100.0
    for i in [0.1, 3.0, 9.99, 10.01, 500.0]:
        assert rl.attainable_flops(i, peak, bw) == min(peak, i * bw)


def test_roofline_time_compute_and_memory_bound():
    h100 = accelerator("H100-SXM")
    big = rl.gemm_cost(8192, 8192, 8192, "bf16")
    assert rl.roofline_time_s(big, "H100-SXM") == pytest.approx(big.flops / h100.peak_flops("bf16"))
    vec = rl.elementwise_cost(1 << 24, "bf16")
    assert rl.roofline_time_s(vec, "H100-SXM") == pytest.approx(vec.bytes / h100.hbm_bytes_per_s)
    # fp32 kernels are timed against the chip's fp32 peak
    small = rl.gemm_cost(64, 64, 64, "fp32")
    assert rl.roofline_time_s(small, "A100-SXM-80GB", "tf32") <= rl.roofline_time_s(small, "A100-SXM-80GB")


def test_arithmetic_intensity():
    assert rl.arithmetic_intensity(10.0, 4.0) == 2.5
    # a one-column "reduction" does no additions: zero FLOPs is a valid cost, intensity 0
    assert rl.reduction_cost(5, 1).intensity == 0.0


def test_accelerator_table_rows_and_markdown():
    rows = rl.accelerator_rows()
    assert {r["name"] for r in rows} >= {"A100-SXM-80GB", "H100-SXM", "B200", "MI300X", "Ascend-910C"}
    md = rl.accelerator_table_markdown(["H100-SXM", "Ascend-910C"])
    assert "{cite:p}`nvidia2022h100`" in md and "n/p" in md
    assert len(md.splitlines()) == 4


def test_plots_are_log_log_figures(drawn):
    m = rl.measure_cpu(32, 10_000, 1)
    fig = rl.roofline_plot(kernels=[rl.gemm_cost(4096, 4096, 4096), rl.elementwise_cost(1 << 20)], measured=m)
    ax = fig.axes[0]
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    drawn(fig, min_artists=7, title="Rooflines")
    plt.close(fig)
    fig = rl.intensity_vs_size_plot()
    assert fig.axes[0].get_yscale() == "log"
    drawn(fig, min_artists=6)
    plt.close(fig)


def test_bound_time_is_the_slower_of_compute_and_memory():
    """The roofline time bound, checked against the two times computed plainly."""
    for flops, nbytes_, peak, bw in [(1e12, 1e9, 1e15, 1e12), (1e9, 1e9, 1e15, 1e12), (0.0, 4e6, 1e12, 1e10)]:
        compute, memory = flops / peak, nbytes_ / bw
        assert rl.bound_time_s(flops, nbytes_, peak, bw) == (compute if compute > memory else memory)
    # roofline_time_s is bound_time_s with the chip's datasheet numbers
    k, h100 = rl.gemm_cost(64, 8192, 8192), accelerator("H100-SXM")
    assert rl.roofline_time_s(k, "H100-SXM") == rl.bound_time_s(k.flops, k.bytes, h100.peak_flops("bf16"),
                                                                h100.hbm_bytes_per_s)


def test_attainable_flops_times_bound_time_is_the_work():
    """At the attainable rate, the kernel's FLOPs take exactly the bound time (compute or memory)."""
    for intensity in (0.5, 10.0, 295.0, 3000.0):
        flops = 1e12
        t = rl.bound_time_s(flops, flops / intensity, 989.5e12, 3.35e12)
        assert flops / t == pytest.approx(rl.attainable_flops(intensity, 989.5e12, 3.35e12))


def test_bytes_per_element_come_from_precision():
    """One definition of bytes per element: every dtype precision knows is accepted, with its width."""
    from llminfra_lab import precision

    assert not hasattr(rl, "DTYPE_BYTES")
    for dtype, e in precision.BYTES_PER_ELEMENT.items():
        assert rl.gemm_cost(4, 4, 4, dtype).bytes == e * 48
        assert rl.elementwise_cost(10, dtype).bytes == e * 20


# --- schematics ------------------------------------------------------------------------------

def test_memory_ladder_matches_the_spec_table_and_cites_its_sources(drawn):
    """The ladder's HBM, NVLink and PCIe rungs are the H100 datasheet's figures (the same as
    hardware.py's row); on-chip rungs come from the Hopper whitepaper; every key is in references.bib."""
    import re
    from pathlib import Path

    h100 = accelerator("H100-SXM")
    by_name = {lv.name: lv for lv in rl.H100_MEMORY_LADDER}
    assert by_name["HBM3"].bandwidth_bytes_per_s == h100.hbm_bytes_per_s
    assert by_name["HBM3"].capacity_bytes == h100.hbm_gb * 1e9
    assert by_name["NVLink 4 (7 peer GPUs)"].bandwidth_bytes_per_s == h100.scaleup_gbps * 1e9
    assert by_name["host over PCIe Gen5"].bandwidth_bytes_per_s == 128e9          # H100 datasheet: PCIe Gen5 128 GB/s
    assert by_name["registers"].capacity_bytes == 256 * 1024 * 132                # 64K 32-bit registers per SM
    assert by_name["L2 cache"].capacity_bytes == 50e6
    bandwidths = [lv.bandwidth_bytes_per_s for lv in rl.H100_MEMORY_LADDER if lv.bandwidth_bytes_per_s]
    assert bandwidths == sorted(bandwidths, reverse=True)                          # slower down the ladder
    keys = set(re.findall(r"@\w+\{([^,]+),", (Path(__file__).resolve().parents[1] / "references.bib").read_text()))
    assert {k for lv in rl.H100_MEMORY_LADDER for k in lv.sources} <= keys
    fig = rl.memory_ladder_plot()
    drawn(fig, min_artists=3 * len(rl.H100_MEMORY_LADDER), title="memory ladder")


def test_sm_and_warp_schematic(drawn):
    """Four sub-partitions, each with one Tensor Core (Hopper whitepaper), and a warp of 32 lanes."""
    assert rl.WARP_SIZE == 32 and rl.HOPPER_SM["sub_partitions"] == 4
    fig = rl.sm_warp_plot()
    drawn(fig, min_artists=4 * 32, title="SIMT")
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert sum("Tensor Core" in t for t in texts) == 4


def test_schematics_bad_input():
    with pytest.raises(ValueError, match="at least one MemoryLevel"):
        rl.memory_ladder_plot([])
    with pytest.raises(ValueError, match="MemoryLevel values"):
        rl.memory_ladder_plot(["HBM"])


# --- measurement -----------------------------------------------------------------------------

def test_measure_cpu_tiny_sizes_positive_finite():
    m = rl.measure_cpu(matmul_n=16, stream_elements=1000, repeats=1)
    values = [m.matmul_flops_per_s, *m.stream_bytes_per_s.values(), m.ridge_point, m.matmul_intensity]
    assert set(m.stream_bytes_per_s) == {"copy", "scale", "add", "triad"}
    assert all(math.isfinite(x) and x > 0 for x in values)
    assert m.device == "cpu"


def test_measure_reports_medians_not_best_runs(monkeypatch):
    """With one run 100x slower and one 100x faster than the rest, the median ignores both."""
    from llminfra_lab.roofline import measure

    clock = iter([0.0, 1.0, 1.0, 1.01, 2.0, 2.01, 3.0, 3.0001] * 50)
    monkeypatch.setattr(measure.time, "perf_counter", lambda: next(clock))
    m = rl.measure_cpu(matmul_n=8, stream_elements=1000, repeats=3)
    assert m.matmul_flops_per_s == pytest.approx(2 * 8 ** 3 / 0.01)
    assert m.stream_bytes_per_s["copy"] == pytest.approx(2 * 4 * 1000 / 0.01)
    assert m.stream_spread == pytest.approx(3 / 2)   # same times; add and triad move 3 arrays, copy 2


def test_measure_cpu_default_arrays_exceed_a_last_level_cache():
    """STREAM's rule: each array much larger than the caches (here 128 MiB, beyond any CPU's L3)."""
    import inspect

    default = inspect.signature(rl.measure_cpu).parameters["stream_elements"].default
    assert default * 4 >= 128 * 2 ** 20


def test_measure_cpu_threads_restored():
    before = torch.get_num_threads()
    m = rl.measure_cpu(16, 1000, 1, threads=1)
    assert m.matmul_flops_per_s > 0 and torch.get_num_threads() == before


def test_measure_machine_small():
    ms = rl.measure_machine(small=True)
    assert ms[0].device == "cpu"
    assert len(ms) == (2 if torch.cuda.is_available() else 1)
    assert all(math.isfinite(x.matmul_flops_per_s) and x.matmul_flops_per_s > 0 for x in ms)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without a GPU")
def test_measure_gpu_without_cuda_raises():
    with pytest.raises(RuntimeError, match="CUDA"):
        rl.measure_gpu(64, 1000, 1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_measure_gpu_tiny_sizes_positive_finite():
    m = rl.measure_gpu(128, 100_000, 2)
    assert m.device.startswith("cuda")
    assert all(math.isfinite(x) and x > 0 for x in [m.matmul_flops_per_s, *m.stream_bytes_per_s.values()])


# --- bad input -----------------------------------------------------------------------------

@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: rl.gemm_cost(0, 1, 1), "m must be an int >= 1"),
        (lambda: rl.gemm_cost(1, 2.5, 1), "k must be an int >= 1"),
        (lambda: rl.gemm_cost(1, 1, True), "n must be an int >= 1"),
        (lambda: rl.gemm_cost(1, 1, 1, "fp12"), "unknown dtype"),
        (lambda: rl.batched_gemm_cost(0, 1, 1, 1), "batch"),
        (lambda: rl.batched_gemm_cost(1, 1, 1, 1, "int3"), "unknown dtype"),
        (lambda: rl.attention_cost_naive(1, 0, 8, 8, 8), "heads"),
        (lambda: rl.attention_cost_naive(1, 1, 8, 8, 8, "x"), "unknown dtype"),
        (lambda: rl.attention_cost_flash(1, 1, -8, 8, 8), "seq_q"),
        (lambda: rl.attention_cost_flash(1, 1, 8, 8, 128, sram_bytes=64), "sram_bytes"),
        (lambda: rl.flash_block_sizes(0, 1024), "head_dim"),
        (lambda: rl.flash_block_sizes(64, 0), "sram_bytes"),
        (lambda: rl.elementwise_cost(0), "n_elements"),
        (lambda: rl.elementwise_cost(10, n_inputs=0), "n_inputs"),
        (lambda: rl.elementwise_cost(10, flops_per_element=-1), "flops_per_element"),
        (lambda: rl.elementwise_cost(10, flops_per_element=True), "flops_per_element"),
        (lambda: rl.reduction_cost(4, 0), "cols"),
        (lambda: rl.arithmetic_intensity(0, 1), "flops"),
        (lambda: rl.arithmetic_intensity(1, float("nan")), "bytes_moved"),
        (lambda: rl.attainable_flops(-1, 1, 1), "intensity"),
        (lambda: rl.attainable_flops(1, 0, 1), "peak_flops_per_s"),
        (lambda: rl.attainable_flops(1, 1, float("inf")), "bandwidth_bytes_per_s"),
        (lambda: rl.ridge_point(0, 1), "peak_flops_per_s"),
        (lambda: rl.roofline_time_s("gemm", "H100-SXM"), "KernelCost"),
        (lambda: rl.bound_time_s(-1.0, 1.0, 1.0, 1.0), "flops"),
        (lambda: rl.bound_time_s(1.0, 0.0, 1.0, 1.0), "bytes_moved"),
        (lambda: rl.bound_time_s(1.0, 1.0, float("nan"), 1.0), "peak_flops_per_s"),
        (lambda: rl.bound_time_s(1.0, 1.0, 1.0, True), "bandwidth_bytes_per_s"),
        (lambda: rl.roofline_time_s(rl.gemm_cost(8, 8, 8, "fp8"), "A100-SXM-80GB"), "no 'fp8'"),
        (lambda: rl.is_memory_bound(3.0, "H100-SXM"), "KernelCost"),
        (lambda: rl.accelerator_rows([]), "at least one"),
        (lambda: rl.roofline_plot(accelerators=[]), "at least one"),
        (lambda: rl.roofline_plot(intensity_range=(10.0, 1.0)), "increasing"),
        (lambda: rl.roofline_plot(intensity_range=(0.0, 1.0)), "intensity_lo"),
        (lambda: rl.roofline_plot(kernels=["gemm"]), "KernelCost"),
        (lambda: rl.intensity_vs_size_plot(sizes=[64]), "at least two"),
        (lambda: rl.intensity_vs_size_plot(sizes=[64, 0]), "sizes"),
        (lambda: rl.measure_cpu(matmul_n=0), "matmul_n"),
        (lambda: rl.measure_cpu(stream_elements=-5), "stream_elements"),
        (lambda: rl.measure_cpu(8, 100, repeats=0), "repeats"),
        (lambda: rl.measure_cpu(8, 100, 1, threads=0), "threads"),
        (lambda: rl.measure_gpu(matmul_n=0), "matmul_n"),
        (lambda: rl.measure_machine(small="yes"), "small"),
        (lambda: rl.KernelCost("k", -1.0, 8.0), "flops"),
        (lambda: rl.KernelCost("k", 1.0, 0.0), "bytes"),
        (lambda: rl.KernelCost("k", 1.0, 8.0, "bf17"), "unknown dtype"),
        (lambda: rl.accelerator_table_markdown([]), "at least one"),
        (lambda: rl.MachineMeasurement("cpu", 8, 1e9, 100, {"copy": 1.0}), "missing"),
        (lambda: rl.MachineMeasurement("cpu", 8, -1.0, 100, dict.fromkeys(["copy", "scale", "add", "triad"], 1.0)),
         "matmul_flops_per_s"),
        (lambda: rl.MachineMeasurement("cpu", 8, 1e9, 100, dict(copy=1.0, scale=1.0, add=1.0, triad=0.0)), "triad"),
        (lambda: rl.MachineMeasurement("cpu", 0, 1e9, 100, dict.fromkeys(["copy", "scale", "add", "triad"], 1.0)),
         "matmul_n"),
    ],
)
def test_bad_input_raises_valueerror(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_unknown_accelerator_raises_keyerror():
    with pytest.raises(KeyError, match="known names"):
        rl.roofline_time_s(rl.gemm_cost(8, 8, 8), "H1000")
    with pytest.raises(KeyError, match="known names"):
        rl.roofline_plot(accelerators=["TPU-v99"])
    with pytest.raises(KeyError, match="known names"):
        rl.accelerator_rows(["nope"])
