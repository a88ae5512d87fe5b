"""Four Triton kernels, from a vector add to FlashAttention, that run with or without a GPU.

Triton programs are written per *block*: one program instance (one CUDA thread block on a
GPU) loads a whole tile with `tl.load`, works on it as an array, and stores it with
`tl.store`. The compiler decides how the tile maps onto threads, warps, registers and
shared memory. The kernels, in order of difficulty:

    add_kernel          one program per BLOCK elements of a vector
    softmax_kernel      one program per row: load once, max, exp, sum, divide, store once
    matmul_kernel       one program per (BLOCK_M x BLOCK_N) tile of C, looping over K
    flash_attn_kernel   one program per (BLOCK_M query rows, batch*head), looping over K/V
                        blocks with the online softmax of `llminfra_lab.attention`

Running without a GPU. Triton has an interpreter that executes a kernel's block operations
with NumPy on the CPU. It is switched on by TRITON_INTERPRET=1, which must be set *before*
`triton` is imported (Triton reads it when a kernel is decorated). So when torch sees no
CUDA device and triton is not yet imported, this module sets TRITON_INTERPRET=1 and then
imports triton. If you import triton yourself first on such a machine, set the variable
before doing so. `interpreted()` says which mode is active. The interpreter is slow (NumPy
per block): keep sizes small. Known trap: `tl.dot` on bfloat16 inputs is wrong in the
interpreter, so on CPU use float32 or float16.

Loop bounds. The loops over K tiles and over key blocks run a trip count that the host
computes (`K_TILES`, `N_BLOCKS`, compile-time constants), not `range(0, K, BLOCK_K)` over
a runtime scalar: Triton's interpreter up to release 3.6 turns a runtime scalar used as a
`range` bound into a Python int in a way NumPy 2.4 rejects. On a GPU the kernel is compiled
once per trip count, and the loop is the same loop.

Triton is optional. CUDA builds of torch bring their own; on a CPU-only torch add it with
`pip install triton` (which leaves torch alone; wheels exist for Linux). Without it the
module still imports, `HAVE_TRITON` is False, and calling a kernel raises an ImportError
that says how to install it.
"""
from __future__ import annotations

import os
import sys

import torch

if "triton" not in sys.modules and not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

try:
    import triton
    import triton.language as tl
except ImportError:  # not installed (or no wheel for this platform): kernels raise on call
    triton = tl = None

__all__ = [
    "HAVE_TRITON",
    "MAX_SOFTMAX_COLS",
    "TRITON_MISSING",
    "interpreted",
    "triton_version",
    "add_kernel",
    "softmax_kernel",
    "matmul_kernel",
    "flash_attn_kernel",
    "vector_add",
    "softmax",
    "matmul",
    "flash_attention",
]

HAVE_TRITON = triton is not None
MAX_SOFTMAX_COLS = 16384  # one row must fit in one program's registers/shared memory
TRITON_MISSING = (
    "Triton is not installed. CUDA builds of torch bring it; with a CPU-only torch run "
    "`pip install triton` (wheels for Linux; it does not touch torch) and restart the kernel. "
    "Without a GPU the kernels then run in Triton's interpreter."
)


def _jit(fn):
    """triton.jit where Triton is installed; elsewhere the plain function, never launched."""
    return triton.jit(fn) if triton is not None else fn


def _require_triton() -> None:
    if triton is None:
        raise ImportError(f"llminfra_lab.kernels needs Triton to run kernels. {TRITON_MISSING}")


def interpreted() -> bool:
    """True when kernels run in Triton's CPU interpreter (TRITON_INTERPRET=1), False on a GPU."""
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


def triton_version() -> str | None:
    """The installed Triton's version string, or None where Triton is missing."""
    return triton.__version__ if triton is not None else None


# --------------------------------------------------------------------------- 1. vector add


@_jit
def add_kernel(x_ptr, y_ptr, out_ptr, n_elements, BLOCK: tl.constexpr):
    pid = tl.program_id(axis=0)                       # which block of BLOCK elements
    offsets = pid * BLOCK + tl.arange(0, BLOCK)       # the element indices this program owns
    mask = offsets < n_elements                       # the last block may run past the end
    x = tl.load(x_ptr + offsets, mask=mask)
    y = tl.load(y_ptr + offsets, mask=mask)
    tl.store(out_ptr + offsets, x + y, mask=mask)


def vector_add(x: torch.Tensor, y: torch.Tensor, block: int = 1024) -> torch.Tensor:
    """x + y for two 1-D tensors of equal length and dtype, one Triton program per `block` elements."""
    _require_triton()
    _check_tensors(("x", x), ("y", y))
    if x.dim() != 1 or x.shape != y.shape:
        raise ValueError(f"x and y must be 1-D tensors of the same length, got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.dtype != y.dtype:
        raise ValueError(f"x and y must have the same dtype, got {x.dtype} and {y.dtype}")
    _check_block("block", block)
    x, y = x.contiguous(), y.contiguous()
    out = torch.empty_like(x)
    n = x.numel()
    add_kernel[(triton.cdiv(n, block),)](x, y, out, n, BLOCK=block)
    return out


# --------------------------------------------------------------------------- 2. fused softmax


@_jit
def softmax_kernel(x_ptr, out_ptr, x_row_stride, out_row_stride, n_cols, BLOCK: tl.constexpr):
    row = tl.program_id(axis=0)
    cols = tl.arange(0, BLOCK)
    mask = cols < n_cols
    # One read of the row from HBM; padding lanes get -inf so they add exp(-inf) = 0.
    x = tl.load(x_ptr + row * x_row_stride + cols, mask=mask, other=-float("inf")).to(tl.float32)
    z = x - tl.max(x, axis=0)
    num = tl.exp(z)
    y = num / tl.sum(num, axis=0)
    # One write of the row: max, exp, sum and divide never touched HBM.
    tl.store(out_ptr + row * out_row_stride + cols, y.to(out_ptr.dtype.element_ty), mask=mask)


def softmax(x: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis of a 2-D tensor (rows, cols), one fused Triton program per row."""
    _require_triton()
    _check_tensors(("x", x))
    if x.dim() != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"x must be a non-empty 2-D tensor (rows, cols), got shape {tuple(x.shape)}")
    if x.shape[1] > MAX_SOFTMAX_COLS:
        raise ValueError(f"rows longer than {MAX_SOFTMAX_COLS} columns do not fit one program, got {x.shape[1]}")
    x = x.contiguous()
    out = torch.empty_like(x)
    block = triton.next_power_of_2(x.shape[1])
    softmax_kernel[(x.shape[0],)](x, out, x.stride(0), out.stride(0), x.shape[1], BLOCK=block)
    return out


# --------------------------------------------------------------------------- 3. tiled matmul


@_jit
def matmul_kernel(a_ptr, b_ptr, c_ptr, M, N, K,
                  stride_am, stride_ak, stride_bk, stride_bn, stride_cm, stride_cn,
                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                  K_TILES: tl.constexpr, PRECISION: tl.constexpr):
    pid_m = tl.program_id(axis=0)                     # which BLOCK_M rows of C
    pid_n = tl.program_id(axis=1)                     # which BLOCK_N columns of C
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rk = tl.arange(0, BLOCK_K)
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)   # the C tile stays on chip
    for kt in range(K_TILES):                         # K_TILES = cdiv(K, BLOCK_K), from the host
        k0 = kt * BLOCK_K
        a = tl.load(a_ptr + rm[:, None] * stride_am + (k0 + rk)[None, :] * stride_ak,
                    mask=(rm[:, None] < M) & ((k0 + rk)[None, :] < K), other=0.0)
        b = tl.load(b_ptr + (k0 + rk)[:, None] * stride_bk + rn[None, :] * stride_bn,
                    mask=((k0 + rk)[:, None] < K) & (rn[None, :] < N), other=0.0)
        acc = tl.dot(a, b, acc, input_precision=PRECISION)  # tensor cores on a GPU
    tl.store(c_ptr + rm[:, None] * stride_cm + rn[None, :] * stride_cn,
             acc.to(c_ptr.dtype.element_ty), mask=(rm[:, None] < M) & (rn[None, :] < N))


def matmul(a: torch.Tensor, b: torch.Tensor, block_m: int = 32, block_n: int = 32, block_k: int = 32,
           allow_tf32: bool = False) -> torch.Tensor:
    """a @ b for a (M, K) and b (K, N), each program computing one (block_m x block_n) tile of C.

    The grid is (cdiv(M, block_m), cdiv(N, block_n)) programs; program (i, j) computes rows
    i*block_m.. and columns j*block_n.. of C, in cdiv(K, block_k) steps along K.
    Accumulates in float32. Block sizes are powers of two >= 16 (tensor-core tiles need it).
    On a GPU float32 inputs are multiplied in IEEE float32 unless `allow_tf32` (faster, ~1e-3
    relative error); the interpreter always multiplies exactly.
    """
    _require_triton()
    _check_tensors(("a", a), ("b", b))
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[0] or a.numel() == 0 or b.numel() == 0:
        raise ValueError(f"a must be (M, K) and b (K, N) with the same K, got {tuple(a.shape)} and {tuple(b.shape)}")
    if a.dtype != b.dtype:
        raise ValueError(f"a and b must have the same dtype, got {a.dtype} and {b.dtype}")
    for name, blk in (("block_m", block_m), ("block_n", block_n), ("block_k", block_k)):
        _check_block(name, blk, minimum=16)
    if not isinstance(allow_tf32, bool):
        raise ValueError(f"allow_tf32 must be a bool, got {allow_tf32!r}")
    m, k = a.shape
    n = b.shape[1]
    c = torch.empty((m, n), dtype=a.dtype, device=a.device)
    precision = "tf32" if (allow_tf32 and a.dtype == torch.float32) else "ieee"
    grid = (triton.cdiv(m, block_m), triton.cdiv(n, block_n))
    matmul_kernel[grid](a, b, c, m, n, k, a.stride(0), a.stride(1), b.stride(0), b.stride(1),
                        c.stride(0), c.stride(1), BLOCK_M=block_m, BLOCK_N=block_n, BLOCK_K=block_k,
                        K_TILES=triton.cdiv(k, block_k), PRECISION=precision)
    return c


# --------------------------------------------------------------------------- 4. FlashAttention forward


@_jit
def flash_attn_kernel(q_ptr, k_ptr, v_ptr, o_ptr, lse_ptr, seq_len, scale,
                      HEAD_DIM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                      N_BLOCKS: tl.constexpr, CAUSAL: tl.constexpr, PRECISION: tl.constexpr):
    pid_m = tl.program_id(axis=0)                     # which BLOCK_M query rows
    bh = tl.program_id(axis=1)                        # which (batch, head)
    base = bh * seq_len * HEAD_DIM                    # q, k, v, o are (batch*heads, seq, dim), contiguous
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rd = tl.arange(0, HEAD_DIM)
    q = tl.load(q_ptr + base + rm[:, None] * HEAD_DIM + rd[None, :], mask=rm[:, None] < seq_len, other=0.0)
    m_i = tl.full((BLOCK_M,), -float("inf"), dtype=tl.float32)   # running max
    l_i = tl.zeros((BLOCK_M,), dtype=tl.float32)                 # running sum
    acc = tl.zeros((BLOCK_M, HEAD_DIM), dtype=tl.float32)        # running output
    end = seq_len
    if CAUSAL:
        end = tl.minimum((pid_m + 1) * BLOCK_M, seq_len)         # keys past the last row are never seen
    for j in range(N_BLOCKS):                                    # N_BLOCKS = cdiv(seq_len, BLOCK_N), from the host
        n0 = j * BLOCK_N
        if n0 < end:                                             # causal: skip blocks above the diagonal
            rn = n0 + tl.arange(0, BLOCK_N)
            k = tl.load(k_ptr + base + rn[:, None] * HEAD_DIM + rd[None, :], mask=rn[:, None] < seq_len, other=0.0)
            v = tl.load(v_ptr + base + rn[:, None] * HEAD_DIM + rd[None, :], mask=rn[:, None] < seq_len, other=0.0)
            s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale
            valid = rn[None, :] < seq_len
            if CAUSAL:
                valid = valid & (rn[None, :] <= rm[:, None])
            s = tl.where(valid, s, -float("inf"))
            m_new = tl.maximum(m_i, tl.max(s, axis=1))
            p = tl.exp(s - m_new[:, None])
            alpha = tl.exp(m_i - m_new)                          # rescales the old sum and output
            l_i = l_i * alpha + tl.sum(p, axis=1)
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
            m_i = m_new
    out = acc / l_i[:, None]
    tl.store(o_ptr + base + rm[:, None] * HEAD_DIM + rd[None, :], out.to(o_ptr.dtype.element_ty),
             mask=rm[:, None] < seq_len)
    tl.store(lse_ptr + bh * seq_len + rm, m_i + tl.log(l_i), mask=rm < seq_len)


def flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool = False,
                    block_m: int = 32, block_n: int = 32, scale: float | None = None,
                    return_lse: bool = False):
    """FlashAttention forward in Triton: q, k, v (batch, heads, seq, head_dim) -> same shape.

    Equals `scaled_dot_product_attention(q, k, v, is_causal=causal)`. head_dim is a power
    of two from 16 to 256; q, k, v share one shape and dtype (float32 or float16 in the
    interpreter). With `return_lse`, also returns the float32 log-sum-exp (batch, heads, seq)
    that `llminfra_lab.attention.merge_partials` combines.
    """
    _require_triton()
    _check_tensors(("q", q), ("k", k), ("v", v))
    if q.dim() != 4 or q.shape != k.shape or q.shape != v.shape:
        raise ValueError(
            f"q, k, v must share one (batch, heads, seq, head_dim) shape, got {tuple(q.shape)}, "
            f"{tuple(k.shape)}, {tuple(v.shape)}"
        )
    if q.dtype != k.dtype or q.dtype != v.dtype:
        raise ValueError(f"q, k, v must share one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    b, h, n, d = q.shape
    if n < 1 or b < 1 or h < 1:
        raise ValueError(f"q must have batch, heads and seq >= 1, got {tuple(q.shape)}")
    if d < 16 or d > 256 or d & (d - 1):
        raise ValueError(f"head_dim must be a power of two between 16 and 256, got {d}")
    if not isinstance(causal, bool):
        raise ValueError(f"causal must be a bool, got {causal!r}")
    _check_block("block_m", block_m, minimum=16)
    _check_block("block_n", block_n, minimum=16)
    if scale is None:
        scale = d ** -0.5
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not scale > 0 or scale == float("inf"):
        raise ValueError(f"scale must be a positive finite number or None, got {scale!r}")
    qc, kc, vc = (t.contiguous().view(b * h, n, d) for t in (q, k, v))
    out = torch.empty_like(qc)
    lse = torch.empty((b * h, n), dtype=torch.float32, device=q.device)
    grid = (triton.cdiv(n, block_m), b * h)
    flash_attn_kernel[grid](qc, kc, vc, out, lse, n, float(scale), HEAD_DIM=d, BLOCK_M=block_m,
                            BLOCK_N=block_n, N_BLOCKS=triton.cdiv(n, block_n), CAUSAL=causal,
                            PRECISION="ieee")
    out = out.view(b, h, n, d)
    return (out, lse.view(b, h, n)) if return_lse else out


# --------------------------------------------------------------------------- helpers


def _check_tensors(*named) -> None:
    for name, t in named:
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got {t.dtype}")
        if interpreted():
            if t.device.type != "cpu":
                raise ValueError(f"{name} must be on the CPU when Triton is interpreted, got {t.device}")
            if t.dtype == torch.bfloat16:
                raise ValueError(f"{name}: bfloat16 gives wrong tl.dot results in Triton's interpreter; "
                                 "use float32 or float16 on CPU")
        elif not torch.cuda.is_available():
            raise ValueError(
                "no CUDA device and Triton's interpreter is off: triton was imported before "
                "llminfra_lab.kernels, so set TRITON_INTERPRET=1 before importing triton"
            )
        elif t.device.type != "cuda":
            raise ValueError(f"{name} must be a CUDA tensor when Triton compiles for the GPU, got {t.device}")


def _check_block(name: str, value, minimum: int = 1) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or value & (value - 1):
        raise ValueError(f"{name} must be a power of two >= {minimum}, got {value!r}")
