"""Number formats, encoded and decoded bit by bit: FP8, FP4, MX blocks, NF4, INT8/INT4.

Every minifloat here is one `Minifloat` (sign, exponent bits, mantissa bits, bias, and what the
top codes mean). `encode` rounds a float32 tensor to the nearest representable value, ties to
even, then returns its code (a uint8 per element); `decode` turns codes back into float32.
E4M3 and E5M2 reproduce PyTorch's `torch.float8_e4m3fn` and `torch.float8_e5m2` casts bit
for bit: E4M3 has no infinity and saturates to +-448 (as torch 2.x casts do), E5M2 keeps
IEEE infinities and overflows to them. FP4 E2M1 saturates to +-6 (the OCP MX rule).

Integers and scaling granularity: `quantize_int` / `fake_quant` with a scale per tensor, per
output channel (row) or per group of `group_size` consecutive inputs along a row.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from llminfra_lab.checks import positive_int

__all__ = [
    "Minifloat", "FORMATS", "format_values", "encode", "decode", "round_to_format",
    "mx_quantize", "MX_ELEMENT_EMAX", "nf4_codebook", "nf4_quantize", "nf4_double_quant",
    "quantize_int", "dequantize_int", "fake_quant", "GRANULARITIES",
]


@dataclass(frozen=True)
class Minifloat:
    """A small binary float: 1 sign bit, `ebits` exponent bits, `mbits` mantissa bits.

    `ieee`: the all-ones exponent holds inf (mantissa 0) and NaN (E5M2, FP16 style).
    Otherwise the all-ones exponent holds numbers; `nan_code` (7 bits, sign aside) is NaN if
    given (E4M3FN: S.1111.111), and the format has no infinity.
    """
    name: str
    ebits: int
    mbits: int
    ieee: bool
    nan_code: int | None
    saturate: bool            # overflow goes to +-max (True) or to inf (False, IEEE formats)

    @property
    def bias(self) -> int:
        return 2 ** (self.ebits - 1) - 1

    @property
    def n_codes(self) -> int:
        return 2 ** (1 + self.ebits + self.mbits)


FORMATS: dict[str, Minifloat] = {
    "fp8_e4m3": Minifloat("fp8_e4m3", 4, 3, ieee=False, nan_code=0x7F, saturate=True),
    "fp8_e5m2": Minifloat("fp8_e5m2", 5, 2, ieee=True, nan_code=None, saturate=False),
    "fp4_e2m1": Minifloat("fp4_e2m1", 2, 1, ieee=False, nan_code=None, saturate=True),
    "fp6_e2m3": Minifloat("fp6_e2m3", 2, 3, ieee=False, nan_code=None, saturate=True),
    "fp6_e3m2": Minifloat("fp6_e3m2", 3, 2, ieee=False, nan_code=None, saturate=True),
}


def _fmt(fmt: str | Minifloat) -> Minifloat:
    if isinstance(fmt, Minifloat):
        return fmt
    if fmt not in FORMATS:
        raise KeyError(f"unknown format {fmt!r}; valid: {sorted(FORMATS)}")
    return FORMATS[fmt]


def format_values(fmt: str | Minifloat) -> torch.Tensor:
    """float32 value of every code 0 .. 2^(1+e+m)-1 of the format (NaN codes give nan)."""
    f = _fmt(fmt)
    codes = torch.arange(f.n_codes)
    sign = torch.where(codes >> (f.ebits + f.mbits) == 1, -1.0, 1.0)
    exp = (codes >> f.mbits) & (2 ** f.ebits - 1)
    man = (codes & (2 ** f.mbits - 1)).double()
    normal = (1 + man / 2 ** f.mbits) * torch.pow(2.0, (exp - f.bias).double())
    subnormal = man / 2 ** f.mbits * 2.0 ** (1 - f.bias)
    val = sign * torch.where(exp == 0, subnormal, normal)
    top = exp == 2 ** f.ebits - 1
    if f.ieee:
        val = torch.where(top & (man == 0), sign * math.inf, val)
        val = torch.where(top & (man != 0), math.nan, val)
    elif f.nan_code is not None:
        val = torch.where((codes & (f.n_codes // 2 - 1)) == f.nan_code, math.nan, val)
    return val.float()


def _max_finite(f: Minifloat) -> float:
    v = format_values(f)
    return float(v[torch.isfinite(v)].max())


def round_to_format(x: torch.Tensor, fmt: str | Minifloat) -> torch.Tensor:
    """x (float32) rounded to the nearest value of `fmt`, ties to even; NaN stays NaN.

    The grid spacing at |x| is 2^(floor(log2 |x|) - mbits), never finer than the subnormal
    spacing 2^(1 - bias - mbits). Overflow saturates to +-max or becomes +-inf (format rule).
    """
    f = _fmt(fmt)
    x = _as_float(x)
    a = x.abs()
    _, e = torch.frexp(a)                              # a = m * 2^e, m in [0.5, 1)
    exp = torch.clamp(e - 1, min=1 - f.bias)           # floor(log2 a), at least the min normal exponent
    quantum = torch.pow(2.0, (exp - f.mbits).float())
    q = torch.round(a / quantum) * quantum             # torch.round is round-half-to-even
    vmax = _max_finite(f)
    if f.saturate:
        q = torch.clamp(q, max=vmax)
    else:                                              # IEEE: round past max + half an ulp -> inf
        ulp = 2.0 ** (math.floor(math.log2(vmax)) - f.mbits)
        q = torch.where(a >= vmax + ulp / 2, torch.full_like(q, math.inf), torch.clamp(q, max=vmax))
    q = torch.copysign(q, x)
    return torch.where(torch.isnan(x), x, q)


def encode(x: torch.Tensor, fmt: str | Minifloat) -> torch.Tensor:
    """Codes (uint8, one per element) of x rounded to `fmt`; FP8 codes equal torch's cast bytes."""
    f = _fmt(fmt)
    q = round_to_format(x, f)
    values = format_values(f)
    half = f.n_codes // 2
    positive = values[:half]                           # codes 0.. are increasing non-negative values
    keyed = torch.where(torch.isnan(positive), math.inf, positive)    # NaN codes sort last
    order = keyed.argsort(stable=True)
    sorted_vals = keyed[order]
    idx = order[torch.searchsorted(sorted_vals, q.abs().contiguous()).clamp(max=half - 1)]
    code = idx + torch.where(torch.signbit(q), half, 0)
    nan = f.nan_code if f.nan_code is not None else (2 ** (f.ebits + f.mbits) - 1 if f.ieee else 0)
    code = torch.where(torch.isnan(q), nan + torch.where(torch.signbit(q), half, 0), code)
    return code.to(torch.uint8)


def decode(codes: torch.Tensor, fmt: str | Minifloat) -> torch.Tensor:
    """float32 values of `codes` (an integer tensor of the format's codes)."""
    f = _fmt(fmt)
    if not isinstance(codes, torch.Tensor) or codes.is_floating_point():
        raise ValueError("codes must be an integer tensor")
    if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= f.n_codes):
        raise ValueError(f"codes of {f.name} lie in [0, {f.n_codes})")
    return format_values(f)[codes.long()]


# ----------------------------------------------------------------------------- MX block formats

#: exponent of the largest power of two of each MX element format (OCP MX v1.0, Table 1)
MX_ELEMENT_EMAX = {"fp8_e4m3": 8, "fp8_e5m2": 15, "fp6_e2m3": 2, "fp6_e3m2": 4, "fp4_e2m1": 2}


def mx_quantize(x: torch.Tensor, element: str = "fp4_e2m1", block: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """OCP MX: each block of `block` values shares one power-of-two scale (E8M0).

    scale = 2^(floor(log2 amax) - emax_element); elements = round(x / scale) in the element
    format, saturating. x (..., n) with n a multiple of `block`. Returns (dequantized x,
    scale exponents (..., n / block) as int). Storage: bits(element) + 8 / block bits per value.
    """
    if element not in MX_ELEMENT_EMAX:
        raise KeyError(f"unknown MX element format {element!r}; valid: {sorted(MX_ELEMENT_EMAX)}")
    positive_int("block", block)
    x = _as_float(x)
    if x.dim() == 0 or x.shape[-1] % block:
        raise ValueError(f"last dimension must be a multiple of block={block}, got shape {tuple(x.shape)}")
    xb = x.reshape(*x.shape[:-1], -1, block)
    amax = xb.abs().amax(-1, keepdim=True)
    _, e = torch.frexp(amax)
    shared = torch.where(amax > 0, e - 1, torch.zeros_like(e)) - MX_ELEMENT_EMAX[element]
    scale = torch.pow(2.0, shared.float())
    q = round_to_format(xb / scale, element) * scale
    return q.reshape(x.shape), shared.squeeze(-1)


# ----------------------------------------------------------------------------- NF4 (QLoRA)

def nf4_codebook() -> torch.Tensor:
    """The 16 NormalFloat-4 values of QLoRA (Dettmers et al. 2023), ascending, in [-1, 1].

    Quantiles of N(0, 1): 8 for the positive half and 7 for the negative half, so that 0 is
    exact, each half normalised to end at +-1 (offset 0.9677 = (1/2)(1/32 + 1/30) from the ends).
    """
    offset = 0.9677083
    pos = torch.special.ndtri(torch.linspace(offset, 0.5, 9, dtype=torch.float64)[:-1])
    neg = -torch.special.ndtri(torch.linspace(offset, 0.5, 8, dtype=torch.float64)[:-1])
    values = torch.cat([pos, torch.zeros(1, dtype=torch.float64), neg]).sort().values
    return (values / values.abs().max()).float()


def nf4_quantize(w: torch.Tensor, block: int = 64) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Blockwise NF4: absmax per block of `block` values, nearest code book entry.

    Returns (dequantized w, 4-bit indices (..., n) as uint8, absmax per block float32).
    """
    positive_int("block", block)
    w = _as_float(w)
    if w.numel() % block:
        raise ValueError(f"w.numel() = {w.numel()} must be a multiple of block={block}")
    book = nf4_codebook()
    wb = w.reshape(-1, block)
    absmax = wb.abs().amax(-1, keepdim=True).clamp(min=1e-12)
    idx = (wb / absmax).unsqueeze(-1).sub(book).abs().argmin(-1)
    return (book[idx] * absmax).reshape(w.shape), idx.to(torch.uint8).reshape(w.shape), absmax.squeeze(-1)


def nf4_double_quant(w: torch.Tensor, block: int = 64, block2: int = 256) -> tuple[torch.Tensor, float]:
    """NF4 with double quantization (QLoRA): the float32 absmax constants are themselves
    quantized, after subtracting their mean, to FP8 E4M3 with one float32 scale per
    `block2` constants. Returns (dequantized w, bits per parameter including all constants):
    4 + 8/block + 32/(block * block2), i.e. 4.127 at 64 and 256 instead of 4.5.
    """
    positive_int("block2", block2)
    _, idx, absmax = nf4_quantize(w, block)
    mean = absmax.mean()
    c = absmax - mean
    pad = (-c.numel()) % block2
    cb = torch.cat([c, c.new_zeros(pad)]).reshape(-1, block2)
    s2 = (cb.abs().amax(-1, keepdim=True) / _max_finite(FORMATS["fp8_e4m3"])).clamp(min=1e-12)
    absmax_q = (round_to_format(cb / s2, "fp8_e4m3") * s2).flatten()[:c.numel()] + mean
    book = nf4_codebook()
    deq = book[idx.long().reshape(-1, block)] * absmax_q.unsqueeze(-1)
    return deq.reshape(w.shape), 4 + 8 / block + 32 / (block * block2)


# ----------------------------------------------------------------------------- integers

GRANULARITIES = ("tensor", "channel", "group")


def quantize_int(w: torch.Tensor, bits: int, symmetric: bool = True, granularity: str = "channel",
                 group_size: int = 128) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Round-to-nearest integer quantization of a 2-D weight (out_features, in_features).

    symmetric: q = clamp(round(w / s), -(2^(b-1) - 1), 2^(b-1) - 1), s = amax / (2^(b-1) - 1).
    asymmetric: q = clamp(round(w / s) + z, 0, 2^b - 1), s = (max - min) / (2^b - 1), z = round(-min / s).
    One (s, z) per tensor, per output channel (row) or per group of `group_size` inputs of a row.
    Returns (q as int32 (out, in), scales (out, n_groups), zeros (out, n_groups)).
    """
    positive_int("bits", bits)
    if not 2 <= bits <= 16:
        raise ValueError(f"bits must be between 2 and 16, got {bits}")
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    w = _as_float(w)
    if w.dim() != 2:
        raise ValueError(f"w must be 2-D (out_features, in_features), got shape {tuple(w.shape)}")
    out, n = w.shape
    g = {"tensor": n, "channel": n, "group": group_size}[granularity]
    positive_int("group_size", g)
    if n % g:
        raise ValueError(f"in_features = {n} must be a multiple of group_size = {g}")
    wg = w.reshape(out, n // g, g) if granularity != "tensor" else w.reshape(1, 1, -1)
    scale, zero = _int_params(wg, bits, symmetric)
    q = _int_round(wg, scale, zero, bits, symmetric)
    if granularity == "tensor":
        scale, zero = scale.expand(out, 1, 1), zero.expand(out, 1, 1)
    return q.reshape(out, n).to(torch.int32), scale.squeeze(-1), zero.squeeze(-1)


def dequantize_int(q: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor) -> torch.Tensor:
    """w = (q - z) * s, with (s, z) per row group: q (out, in), scales/zeros (out, n_groups)."""
    out, n = q.shape
    g = n // scales.shape[1]
    qg = q.reshape(out, -1, g).float()
    return ((qg - zeros.unsqueeze(-1)) * scales.unsqueeze(-1)).reshape(out, n)


def fake_quant(w: torch.Tensor, bits: int, symmetric: bool = True, granularity: str = "channel",
               group_size: int = 128) -> torch.Tensor:
    """Quantize then dequantize (what a quantized kernel computes with), same shape as w.

    With groups, a row whose length is not a multiple of group_size gets a shorter last group
    (zero padding leaves every group's scale unchanged: the range always includes 0).
    """
    w = _as_float(w)
    n = w.shape[-1] if w.dim() == 2 else 0
    pad = (-n) % group_size if granularity == "group" and isinstance(group_size, int) and group_size > 0 else 0
    wp = torch.nn.functional.pad(w, (0, pad)) if pad else w
    return dequantize_int(*quantize_int(wp, bits, symmetric, granularity, group_size))[:, :n]


def _int_params(wg: torch.Tensor, bits: int, symmetric: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, zero) per group of the last dimension; wg (..., g)."""
    if symmetric:
        qmax = 2 ** (bits - 1) - 1
        scale = (wg.abs().amax(-1, keepdim=True) / qmax).clamp(min=1e-12)
        return scale, torch.zeros_like(scale)
    lo = wg.amin(-1, keepdim=True).clamp(max=0)
    hi = wg.amax(-1, keepdim=True).clamp(min=0)
    scale = ((hi - lo) / (2 ** bits - 1)).clamp(min=1e-12)
    return scale, torch.round(-lo / scale)


def _int_round(w: torch.Tensor, scale: torch.Tensor, zero: torch.Tensor, bits: int, symmetric: bool) -> torch.Tensor:
    if symmetric:
        qmax = 2 ** (bits - 1) - 1
        return torch.clamp(torch.round(w / scale), -qmax, qmax)
    return torch.clamp(torch.round(w / scale) + zero, 0, 2 ** bits - 1)


def _as_float(x) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        raise ValueError("expected a floating-point torch.Tensor")
    return x.float()
