"""The chapter 3 Triton kernels against PyTorch's operators, run through Triton's CPU interpreter.

On a machine without CUDA, TRITON_INTERPRET=1 must be set before triton is imported; this file
sets it first (as `llminfra_lab.kernels` itself does), then imports the kernels. The tests are
skipped only where triton cannot be installed (it has wheels for Linux x86-64 only).
Interpreter sizes are kept small: it runs each block operation in NumPy.
"""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")
pytest.importorskip("triton", reason="Triton has wheels for Linux x86-64 only")

import torch.nn.functional as F  # noqa: E402
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from llminfra_lab import kernels as K  # noqa: E402
from llminfra_lab.attention import HBMTraffic, merge_partials  # noqa: E402

torch.set_num_threads(1)
DEV = "cpu" if K.interpreted() else "cuda"
TOL = 1e-5  # chapters.yml check: float32, max abs error <= 1e-5


def randn(*shape, seed=0, dtype=torch.float32, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g) * scale).to(dtype=dtype, device=DEV)


def test_kernels_run_in_the_interpreter_without_a_gpu():
    """Without CUDA the module must have switched Triton's interpreter on before importing it."""
    assert K.interpreted() == (not torch.cuda.is_available())


def test_module_sets_triton_interpret_before_importing_triton():
    """In a fresh process with no GPU visible and no TRITON_INTERPRET, importing the module sets it."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["CUDA_VISIBLE_DEVICES"] = ""
    code = ("import os, sys; import llminfra_lab.kernels as K; "
            "print(os.environ.get('TRITON_INTERPRET'), K.interpreted(), 'triton' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "True", "True"]


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
    assert "needs Triton" in out.stdout and "pip install" in out.stdout


@pytest.mark.parametrize("n,block", [(1, 16), (1000, 256), (4097, 1024)])
def test_vector_add_equals_torch(n, block):
    """chapters.yml check: each kernel equals its PyTorch reference (float32, max abs error
    <= 1e-5) under TRITON_INTERPRET=1. Reference: torch's `x + y`."""
    x, y = randn(n, seed=1), randn(n, seed=2)
    assert (K.vector_add(x, y, block=block) - (x + y)).abs().max() <= TOL


@pytest.mark.parametrize("rows,cols,scale", [(1, 1, 1.0), (7, 33, 1.0), (16, 256, 30.0), (3, 1000, 5.0)])
def test_softmax_equals_torch(rows, cols, scale):
    """chapters.yml check: float32, max abs error <= 1e-5 under TRITON_INTERPRET=1.
    Reference: torch.softmax(x, dim=-1); large `scale` checks the max-subtraction."""
    x = randn(rows, cols, seed=3, scale=scale)
    assert (K.softmax(x) - torch.softmax(x, dim=-1)).abs().max() <= TOL


@settings(max_examples=12, deadline=None)
@given(rows=st.integers(1, 9), cols=st.integers(1, 130), seed=st.integers(0, 99))
def test_softmax_equals_torch_for_any_shape(rows, cols, seed):
    """Property over shapes, including widths that are not powers of two (masked lanes)."""
    x = randn(rows, cols, seed=seed, scale=4.0)
    out = K.softmax(x)
    assert (out - torch.softmax(x, dim=-1)).abs().max() <= TOL
    assert torch.allclose(out.sum(-1), torch.ones(rows, device=DEV), atol=1e-5)


@pytest.mark.parametrize("m,k,n,bm,bn,bk", [(16, 16, 16, 16, 16, 16), (40, 50, 36, 32, 16, 32), (33, 17, 65, 16, 64, 16)])
def test_matmul_equals_torch(m, k, n, bm, bn, bk):
    """chapters.yml check: float32, max abs error <= 1e-5 under TRITON_INTERPRET=1.
    Reference: torch's `a @ b`; shapes that do not divide the block sizes test the masks."""
    a, b = randn(m, k, seed=4, scale=0.5), randn(k, n, seed=5, scale=0.5)
    assert (K.matmul(a, b, bm, bn, bk) - a @ b).abs().max() <= TOL


def test_matmul_float16_accumulates_in_float32():
    """fp16 inputs (not bf16: tl.dot on bf16 is wrong in the interpreter), fp32 accumulation."""
    a, b = randn(32, 64, seed=6, dtype=torch.float16), randn(64, 48, seed=7, dtype=torch.float16)
    ref = a.float() @ b.float()
    out = K.matmul(a, b)
    assert out.dtype == torch.float16 and (out.float() - ref).abs().max() <= 0.02


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("b,h,n,d,bm,bn", [(1, 1, 16, 16, 16, 16), (1, 2, 45, 16, 16, 32), (2, 1, 40, 32, 32, 16)])
def test_flash_attention_equals_sdpa(b, h, n, d, bm, bn, causal):
    """chapters.yml check: float32, max abs error <= 1e-5 under TRITON_INTERPRET=1.
    Reference: torch.nn.functional.scaled_dot_product_attention(is_causal=causal)."""
    q, k, v = (randn(b, h, n, d, seed=s) for s in (8, 9, 10))
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    assert (K.flash_attention(q, k, v, causal=causal, block_m=bm, block_n=bn) - ref).abs().max() <= TOL


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


def test_fusion_saves_about_four_times_the_traffic():
    """(8RC + 4R) / 2RC -> 4 as rows get long: the ~4x the Triton tutorial predicts for softmax."""
    ratio = K.softmax_hbm_elements(4096, 4096, False) / K.softmax_hbm_elements(4096, 4096, True)
    assert ratio == pytest.approx(4.0, rel=1e-3)
    import matplotlib
    matplotlib.use("Agg")
    ax = K.plot_fusion_bytes(rows=128, cols_list=[64, 128])
    assert len(ax.patches) == 4


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
    ("flash_attention", lambda: K.flash_attention(randn(1, 1, 8, 16), randn(1, 1, 8, 16), randn(1, 1, 8, 16, dtype=torch.float16)), "dtype"),
    ("flash_attention", lambda: K.flash_attention(*(randn(1, 1, 8, 16),) * 3, causal="yes"), "causal"),
    ("flash_attention", lambda: K.flash_attention(*(randn(1, 1, 8, 16),) * 3, block_n=24), "block_n"),
    ("flash_attention", lambda: K.flash_attention(*(randn(1, 1, 8, 16),) * 3, scale=-1.0), "scale"),
    ("unfused_softmax", lambda: K.unfused_softmax(randn(3)), "2-D"),
    ("softmax_hbm_elements", lambda: K.softmax_hbm_elements(0, 4, True), "rows"),
    ("softmax_hbm_elements", lambda: K.softmax_hbm_elements(4, 4, 1), "fused"),
    ("softmax_hbm_bytes", lambda: K.softmax_hbm_bytes(4, 4, True, dtype_bytes=0), "dtype_bytes"),
]


@pytest.mark.parametrize("name,call,match", BAD_CALLS, ids=[f"{b[0]}-{b[2]}" for b in BAD_CALLS])
def test_bad_input_raises_value_error(name, call, match):
    with pytest.raises(ValueError, match=match):
        call()


@pytest.mark.skipif(not K.interpreted(), reason="interpreter-only guard")
def test_interpreter_rejects_bfloat16():
    """Known trap: tl.dot on bfloat16 gives wrong results in Triton's interpreter."""
    x = torch.randn(16, 16).to(torch.bfloat16)
    with pytest.raises(ValueError, match="bfloat16"):
        K.matmul(x, x)
