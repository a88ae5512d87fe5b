"""The chapter 3 kernels against PyTorch's operators, run through Triton's CPU interpreter.

On a machine without CUDA, TRITON_INTERPRET=1 must be set before triton is imported; this file
sets it first (as `llminfra_lab.kernels` itself does), then imports the kernels. The Triton
kernel tests are skipped where Triton is not installed (it is optional: CUDA builds of torch
bring it, a CPU-only torch needs `pip install triton`); the counts, the plain-PyTorch tiling
and the figures are tested everywhere. Interpreter sizes are kept small: it runs each block
operation in NumPy.
"""
from __future__ import annotations

import ast
import inspect
import os
import subprocess
import sys
import textwrap

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import torch.nn.functional as F  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from llminfra_lab import kernels as K  # noqa: E402
from llminfra_lab.attention import HBMTraffic, merge_partials  # noqa: E402

needs_triton = pytest.mark.skipif(not K.HAVE_TRITON, reason="Triton is not installed (pip install triton)")
torch.set_num_threads(1)
DEV = "cpu" if K.interpreted() else "cuda"
TOL = 1e-5  # chapters.yml check: float32, max abs error <= 1e-5


def randn(*shape, seed=0, dtype=torch.float32, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g) * scale).to(dtype=dtype, device=DEV)


@needs_triton
def test_kernels_run_in_the_interpreter_without_a_gpu():
    """Without CUDA the module must have switched Triton's interpreter on before importing it."""
    assert K.interpreted() == (not torch.cuda.is_available())


@needs_triton
def test_module_sets_triton_interpret_before_importing_triton():
    """In a fresh process with no GPU visible and no TRITON_INTERPRET, importing the module sets it."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["CUDA_VISIBLE_DEVICES"] = ""
    code = ("import os, sys; import llminfra_lab.kernels as K; "
            "print(os.environ.get('TRITON_INTERPRET'), K.interpreted(), 'triton' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "True", "True"]


@needs_triton
def test_triton_imported_first_without_a_gpu_gives_a_clear_error():
    """If triton was imported before the module on a CPU-only machine, the interpreter is off;
    kernel calls must say to set TRITON_INTERPRET=1 first rather than fail inside Triton."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["CUDA_VISIBLE_DEVICES"] = ""
    code = ("import torch, triton; import llminfra_lab.kernels as K\n"
            "try:\n    K.vector_add(torch.ones(4), torch.ones(4))\nexcept ValueError as e:\n    print(e)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "TRITON_INTERPRET=1" in out.stdout


def test_without_triton_byte_counts_work_and_kernels_say_how_to_install_it():
    """Where Triton has no wheel the module imports; a kernel call raises a clear ImportError."""
    code = ("import sys; sys.modules['triton'] = None; import llminfra_lab.kernels as K; "
            "assert K.softmax_hbm_elements(2, 3, True) == 12\n"
            "try:\n    K.vector_add(None, None)\nexcept ImportError as e:\n    print(e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "needs Triton" in out.stdout and "pip install triton" in out.stdout


def test_without_triton_the_module_says_so_and_the_plain_torch_parts_work():
    """HAVE_TRITON is False and the message names the one command; tiling and counts still run."""
    code = ("import sys; sys.modules['triton'] = None; import torch; import llminfra_lab.kernels as K; "
            "a = torch.ones(3, 5); print(K.HAVE_TRITON, K.triton_version(), "
            "bool((K.blocked_matmul(a, a.T, 2, 2, 2) == 5).all())); print(K.TRITON_MISSING)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    first, message = out.stdout.split("\n", 1)
    assert first.split() == ["False", "None", "True"]
    assert "pip install triton" in message and "does not touch torch" in message


@needs_triton
@pytest.mark.parametrize("n,block", [(1, 16), (1000, 256), (4097, 1024)])
def test_vector_add_equals_torch(n, block):
    """chapters.yml check: each kernel equals its PyTorch reference (float32, max abs error
    <= 1e-5) under TRITON_INTERPRET=1. Reference: torch's `x + y`."""
    x, y = randn(n, seed=1), randn(n, seed=2)
    assert (K.vector_add(x, y, block=block) - (x + y)).abs().max() <= TOL


@needs_triton
@pytest.mark.parametrize("rows,cols,scale", [(1, 1, 1.0), (7, 33, 1.0), (16, 256, 30.0), (3, 1000, 5.0)])
def test_softmax_equals_torch(rows, cols, scale):
    """chapters.yml check: float32, max abs error <= 1e-5 under TRITON_INTERPRET=1.
    Reference: torch.softmax(x, dim=-1); large `scale` checks the max-subtraction."""
    x = randn(rows, cols, seed=3, scale=scale)
    assert (K.softmax(x) - torch.softmax(x, dim=-1)).abs().max() <= TOL


@needs_triton
@settings(max_examples=12, deadline=None)
@given(rows=st.integers(1, 9), cols=st.integers(1, 130), seed=st.integers(0, 99))
def test_softmax_equals_torch_for_any_shape(rows, cols, seed):
    """Property over shapes, including widths that are not powers of two (masked lanes)."""
    x = randn(rows, cols, seed=seed, scale=4.0)
    out = K.softmax(x)
    assert (out - torch.softmax(x, dim=-1)).abs().max() <= TOL
    assert torch.allclose(out.sum(-1), torch.ones(rows, device=DEV), atol=1e-5)


@needs_triton
@pytest.mark.parametrize("m,k,n,bm,bn,bk", [(16, 16, 16, 16, 16, 16), (40, 50, 36, 32, 16, 32), (33, 17, 65, 16, 64, 16)])
def test_matmul_equals_torch(m, k, n, bm, bn, bk):
    """chapters.yml check: float32, max abs error <= 1e-5 under TRITON_INTERPRET=1.
    Reference: torch's `a @ b`; shapes that do not divide the block sizes test the masks."""
    a, b = randn(m, k, seed=4, scale=0.5), randn(k, n, seed=5, scale=0.5)
    assert (K.matmul(a, b, bm, bn, bk) - a @ b).abs().max() <= TOL


@needs_triton
def test_matmul_float16_accumulates_in_float32():
    """fp16 inputs (not bf16: tl.dot on bf16 is wrong in the interpreter), fp32 accumulation."""
    a, b = randn(32, 64, seed=6, dtype=torch.float16), randn(64, 48, seed=7, dtype=torch.float16)
    ref = a.float() @ b.float()
    out = K.matmul(a, b)
    assert out.dtype == torch.float16 and (out.float() - ref).abs().max() <= 0.02


@needs_triton
@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("b,h,n,d,bm,bn", [(1, 1, 16, 16, 16, 16), (1, 2, 45, 16, 16, 32), (2, 1, 40, 32, 32, 16)])
def test_flash_attention_equals_sdpa(b, h, n, d, bm, bn, causal):
    """chapters.yml check: float32, max abs error <= 1e-5 under TRITON_INTERPRET=1.
    Reference: torch.nn.functional.scaled_dot_product_attention(is_causal=causal)."""
    q, k, v = (randn(b, h, n, d, seed=s) for s in (8, 9, 10))
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    assert (K.flash_attention(q, k, v, causal=causal, block_m=bm, block_n=bn) - ref).abs().max() <= TOL


@needs_triton
def test_flash_attention_lse_merges_across_key_splits():
    """The kernel's log-sum-exp lets two halves of the keys be merged (flash-decoding's step):
    equals SDPA over all keys. Also lse equals torch.logsumexp of the scaled scores."""
    q, k, v = (randn(1, 2, 48, 16, seed=s) for s in (11, 12, 13))
    out, lse = K.flash_attention(q, k, v, return_lse=True, block_m=16, block_n=16)
    assert (lse - torch.logsumexp(q @ k.transpose(-2, -1) / 4.0, dim=-1)).abs().max() <= TOL
    # Queries 0..23 attend to keys 0..23 and 24..47 in two kernel calls; merge equals all 48 keys.
    qa = q[:, :, :24]
    oa, la = K.flash_attention(qa, k[:, :, :24].contiguous(), v[:, :, :24].contiguous(), return_lse=True, block_m=16, block_n=16)
    ob, lb = K.flash_attention(qa, k[:, :, 24:].contiguous(), v[:, :, 24:].contiguous(), return_lse=True, block_m=16, block_n=16)
    merged, _ = merge_partials(oa, la, ob, lb)
    assert (merged - F.scaled_dot_product_attention(qa, k, v)).abs().max() <= TOL


@needs_triton
def test_flash_attention_float16():
    """fp16 in, fp32 statistics; the P tile is cast to fp16 before P @ V, as on tensor cores."""
    q, k, v = (randn(1, 2, 40, 32, seed=s, dtype=torch.float16) for s in (14, 15, 16))
    ref = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=True)
    out = K.flash_attention(q, k, v, causal=True)
    assert out.dtype == torch.float16 and (out.float() - ref).abs().max() <= 2e-3


@pytest.mark.parametrize("rows,cols", [(1, 1), (3, 7), (64, 100)])
def test_softmax_byte_counts_match_the_five_kernels_and_a_brute_force(rows, cols):
    """Unfused: the five eager kernels (max, sub, exp, sum, div) read 5RC + 2R and write 3RC + 2R
    elements (Triton fused-softmax tutorial); counted here by running them and by brute force."""
    x = randn(rows, cols, seed=17)
    t = HBMTraffic()
    out = K.unfused_softmax(x, traffic=t)
    assert (out - torch.softmax(x, dim=-1)).abs().max() <= TOL
    n, r = rows * cols, rows
    reads = n + (n + r) + n + n + (n + r)       # max | sub | exp | sum | div
    writes = r + n + n + r + n
    assert (t.read_elements, t.write_elements) == (reads, writes) == (5 * n + 2 * r, 3 * n + 2 * r)
    assert K.softmax_hbm_elements(rows, cols, fused=False) == t.elements
    assert K.softmax_hbm_elements(rows, cols, fused=True) == 2 * n   # the kernel: one load, one store
    assert K.softmax_hbm_bytes(rows, cols, fused=True, dtype_bytes=4) == 8 * n


def test_fusion_saves_about_four_times_the_traffic(drawn):
    """(8RC + 4R) / 2RC -> 4 as rows get long: the ~4x the Triton tutorial predicts for softmax."""
    ratio = K.softmax_hbm_elements(4096, 4096, False) / K.softmax_hbm_elements(4096, 4096, True)
    assert ratio == pytest.approx(4.0, rel=1e-3)
    ax = K.plot_fusion_bytes(rows=128, cols_list=[64, 128])
    assert len(ax.patches) == 4
    drawn(ax, min_artists=4, title="Row softmax")


BAD_CALLS = [
    ("vector_add", lambda: K.vector_add([1.0], randn(1)), "torch.Tensor"),
    ("vector_add", lambda: K.vector_add(randn(4), randn(5)), "same length"),
    ("vector_add", lambda: K.vector_add(randn(2, 2), randn(2, 2)), "1-D"),
    ("vector_add", lambda: K.vector_add(randn(4), randn(4, dtype=torch.float16)), "same dtype"),
    ("vector_add", lambda: K.vector_add(randn(4), randn(4), block=100), "power of two"),
    ("vector_add", lambda: K.vector_add(torch.arange(4), torch.arange(4)), "floating"),
    ("softmax", lambda: K.softmax(randn(5)), "2-D"),
    ("softmax", lambda: K.softmax(randn(1, K.MAX_SOFTMAX_COLS + 1)), "do not fit"),
    ("matmul", lambda: K.matmul(randn(4, 5), randn(6, 4)), "same K"),
    ("matmul", lambda: K.matmul(randn(4, 5), randn(5, 4, dtype=torch.float16)), "same dtype"),
    ("matmul", lambda: K.matmul(randn(4, 5), randn(5, 4), block_m=8), "block_m"),
    ("matmul", lambda: K.matmul(randn(4, 5), randn(5, 4), allow_tf32=1), "allow_tf32"),
    ("flash_attention", lambda: K.flash_attention(randn(2, 16, 16), randn(2, 16, 16), randn(2, 16, 16)), "batch, heads"),
    ("flash_attention", lambda: K.flash_attention(randn(1, 1, 8, 24), randn(1, 1, 8, 24), randn(1, 1, 8, 24)), "head_dim"),
    ("flash_attention", lambda: K.flash_attention(randn(1, 1, 8, 16), randn(1, 1, 8, 16), randn(1, 1, 8, 16, dtype=torch.half)),
     "dtype"),
    ("flash_attention", lambda: K.flash_attention(*(randn(1, 1, 8, 16),) * 3, causal="yes"), "causal"),
    ("flash_attention", lambda: K.flash_attention(*(randn(1, 1, 8, 16),) * 3, block_n=24), "block_n"),
    ("flash_attention", lambda: K.flash_attention(*(randn(1, 1, 8, 16),) * 3, scale=-1.0), "scale"),
]
BAD_PLAIN_CALLS = [
    ("unfused_softmax", lambda: K.unfused_softmax(randn(3)), "2-D"),
    ("unfused_softmax", lambda: K.unfused_softmax([[1.0]]), "floating-point torch.Tensor"),
    ("softmax_hbm_elements", lambda: K.softmax_hbm_elements(0, 4, True), "rows"),
    ("softmax_hbm_elements", lambda: K.softmax_hbm_elements(4, 4, 1), "fused"),
    ("softmax_hbm_bytes", lambda: K.softmax_hbm_bytes(4, 4, True, dtype_bytes=0), "dtype_bytes"),
    ("blocked_matmul", lambda: K.blocked_matmul([[1.0]], randn(1, 1)), "torch tensors"),
    ("blocked_matmul", lambda: K.blocked_matmul(randn(4, 5), randn(6, 4)), "same K"),
    ("blocked_matmul", lambda: K.blocked_matmul(randn(4, 5), randn(5, 4), block_k=0), "block_k"),
    ("program_tiles", lambda: K.program_tiles(8, 8, 0, 4), "block_m"),
    ("matmul_tile_intensity", lambda: K.matmul_tile_intensity(128, -1), "block_n"),
    ("matmul_tile_intensity", lambda: K.matmul_tile_intensity(128, 128, "fp13"), "unknown dtype"),
    ("plot_matmul_tiling_schematic", lambda: K.plot_matmul_tiling_schematic(program=(9, 0)), "inside the"),
    ("plot_matmul_tiling_schematic", lambda: K.plot_matmul_tiling_schematic(k_step=4), "k_step"),
    ("plot_matmul_tiling_schematic", lambda: K.plot_matmul_tiling_schematic(num_warps=0), "num_warps"),
]


@needs_triton
@pytest.mark.parametrize("name,call,match", BAD_CALLS, ids=[f"{b[0]}-{b[2]}" for b in BAD_CALLS])
def test_bad_input_raises_value_error(name, call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.parametrize("name,call,match", BAD_PLAIN_CALLS, ids=[f"{b[0]}-{b[2]}" for b in BAD_PLAIN_CALLS])
def test_bad_input_to_the_plain_torch_parts_raises_value_error(name, call, match):
    with pytest.raises(ValueError, match=match):
        call()


# --------------------------------------------------------------------------- tiling in plain PyTorch


@settings(max_examples=25, deadline=None)
@given(m=st.integers(1, 40), k=st.integers(1, 40), n=st.integers(1, 40), bm=st.integers(1, 17),
       bn=st.integers(1, 17), bk=st.integers(1, 17), seed=st.integers(0, 99))
def test_blocked_matmul_equals_torch_for_any_shape_and_blocks(m, k, n, bm, bn, bk, seed):
    """Reference: torch's `a @ b` (float64); blocks that do not divide the shapes test the edges."""
    g = torch.Generator().manual_seed(seed)
    a, b = torch.randn(m, k, generator=g, dtype=torch.float64), torch.randn(k, n, generator=g, dtype=torch.float64)
    assert torch.allclose(K.blocked_matmul(a, b, bm, bn, bk), a @ b, atol=1e-12)


def test_blocked_matmul_accumulates_half_precision_in_float32():
    """fp16 in and out, fp32 accumulation, as the Triton kernel's float32 `acc`."""
    g = torch.Generator().manual_seed(3)
    a, b = torch.randn(20, 300, generator=g).half(), torch.randn(300, 9, generator=g).half()
    out = K.blocked_matmul(a, b, 8, 8, 16)
    assert out.dtype == torch.float16
    assert (out.float() - a.float() @ b.float()).abs().max() <= 0.05


@pytest.mark.parametrize("m,n,bm,bn", [(1, 1, 1, 1), (256, 384, 64, 64), (45, 38, 16, 16), (7, 100, 8, 32)])
def test_program_tiles_cover_every_element_of_c_exactly_once(m, n, bm, bn):
    """Brute force: paint each program's tile; every element is painted once, the grid is cdiv x cdiv."""
    tiles = K.program_tiles(m, n, bm, bn)
    assert len(tiles) == -(-m // bm) * -(-n // bn)
    painted = torch.zeros(m, n, dtype=torch.int64)
    for t in tiles:
        (r0, r1), (c0, c1) = t["rows"], t["cols"]
        assert (r0, c0) == (t["pid_m"] * bm, t["pid_n"] * bn)
        painted[r0:r1, c0:c1] += 1
    assert bool((painted == 1).all())


@pytest.mark.parametrize("bm,bn,bk,dtype", [(128, 128, 32, "fp16"), (64, 256, 64, "bf16"), (1, 1, 8, "fp16"),
                                            (128, 128, 64, "fp32"), (32, 64, 16, "fp8")])
def test_tile_intensity_equals_a_count_of_one_programs_loop(bm, bn, bk, dtype):
    """Count FLOPs and loaded bytes of one program's walk along K (K = 4 steps) by brute force.
    128 x 128 in fp16 is 64 FLOP/B; a 1 x 1 tile (one thread per element of C) is 0.5 in fp16."""
    width = {"fp16": 2, "bf16": 2, "fp32": 4, "fp8": 1}[dtype]
    flops = loaded = 0
    for _ in range(4):
        flops += 2 * bm * bn * bk
        loaded += (bm * bk + bk * bn) * width
    assert K.matmul_tile_intensity(bm, bn, dtype) == pytest.approx(flops / loaded)
    assert K.matmul_tile_intensity(128, 128, "fp16") == 64 and K.matmul_tile_intensity(1, 1, "fp16") == 0.5


def test_tiling_schematic_draws_the_grid_and_one_programs_warps(drawn):
    """4 x 6 programs labelled in C, the A and B panels, and 4 warps of 32 threads."""
    fig = K.plot_matmul_tiling_schematic(m=256, n=384, k=256, block_m=64, block_n=64, block_k=64, program=(1, 2))
    drawn(fig, min_artists=24 + 4 + 32, title="which program computes which tile")
    labels = [t.get_text() for t in fig.axes[0].texts]
    assert "(1,2)" in labels and "(3,5)" in labels


# --------------------------------------------------------------------------- Triton compatibility


@needs_triton
@pytest.mark.parametrize("kernel", ["matmul_kernel", "flash_attn_kernel"])
def test_kernel_loops_run_a_host_computed_trip_count(kernel):
    """Every `range(...)` in the kernels is bounded by a tl.constexpr argument, never a runtime
    scalar: Triton's interpreter up to 3.6 converts a runtime scalar bound with int() on a
    one-element array, which NumPy 2.4 rejects (issue 8)."""
    fn = getattr(K, kernel).fn
    tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    func = tree.body[0]
    constexprs = {a.arg for a in func.args.args if a.annotation is not None and "constexpr" in ast.unparse(a.annotation)}
    loops = [node.iter for node in ast.walk(func) if isinstance(node, ast.For)]
    assert loops
    for call in loops:
        assert isinstance(call, ast.Call) and ast.unparse(call.func) == "range"
        names = {n.id for arg in call.args for n in ast.walk(arg) if isinstance(n, ast.Name)}
        assert names <= constexprs, f"{kernel}: range bound uses runtime values {names - constexprs}"


@needs_triton
@pytest.mark.parametrize("k", [1, 16, 17, 100])
def test_matmul_with_one_or_many_k_tiles(k):
    """K smaller than, equal to and not a multiple of block_k: the host's trip count cdiv(K, block_k)."""
    a, b = randn(17, k, seed=20, scale=0.5), randn(k, 18, seed=21, scale=0.5)
    assert (K.matmul(a, b, 16, 16, 16) - a @ b).abs().max() <= TOL


@needs_triton
@pytest.mark.skipif(not K.interpreted(), reason="interpreter-only guard")
def test_interpreter_rejects_bfloat16():
    """Known trap: tl.dot on bfloat16 gives wrong results in Triton's interpreter."""
    x = torch.randn(16, 16).to(torch.bfloat16)
    with pytest.raises(ValueError, match="bfloat16"):
        K.matmul(x, x)
