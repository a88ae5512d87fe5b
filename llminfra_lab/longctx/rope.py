"""RoPE beyond the training length: the inverse-frequency functions of each extension method.

RoPE (Su et al. 2021) turns pair i of a head by angle  pos * w_i,  w_i = theta^(-2i/d).
A model trained on L positions has seen every angle of the fast pairs many times over,
but the slow pairs (wavelength 2 pi / w_i longer than L) only a fraction of one turn.
Positions past L give those slow pairs angles never seen in training, and perplexity
explodes. Every method below changes w_i (and YaRN also the attention temperature):

    "pi"       position interpolation (Chen et al. 2023): w_i / s for every pair
    "ntk"      NTK-aware (bloc97 2023): theta' = theta * s^(d / (d - 2)): fast pairs keep
               their frequency, the slowest is divided by exactly s
    "dynamic"  dynamic NTK: the "ntk" base recomputed for the current length L' > L, with
               s' = s L'/L - (s - 1) (the Hugging Face / Qwen formulation)
    "yarn"     YaRN (Peng et al. 2023): per pair, interpolate where the pair turns fewer than
               alpha = 1 times in L, keep it where it turns more than beta = 32 times, blend
               linearly in between; and scale the logits by t with sqrt(1/t) = 0.1 ln(s) + 1
    "llama3"   Llama 3.1 (Dubey et al. 2024): the same three bands cut by wavelength:
               keep wavelengths below L/4, divide by s = 8 above L, blend smoothly between

Each function returns (inv_freq (d/2,) float32, attention_scale). The attention scale
multiplies cos and sin (so q.k by its square), as YaRN's reference code does.
`rope_tables` turns them into the cos/sin tables `model.apply_rope` takes, and
`extend_model` gives a copy of a GPT whose rotary tables follow a method.
"""
from __future__ import annotations

import math

import torch

from llminfra_lab.checks import positive_int, positive_number
from llminfra_lab.model import GPT, rope_frequencies

__all__ = ["ROPE_METHODS", "base_inverse_frequencies", "inverse_frequencies", "yarn_ramp", "yarn_attention_scale",
           "rope_tables", "extend_model"]

ROPE_METHODS = ("none", "pi", "ntk", "dynamic", "yarn", "llama3")


def base_inverse_frequencies(head_dim: int, theta: float = 10000.0) -> torch.Tensor:
    """w_i = theta^(-2i/d), read off the model's own RoPE table at position 1 (angle = w_i)."""
    cos, sin = rope_frequencies(head_dim, 2, theta)
    return torch.atan2(sin[1].double(), cos[1].double()).float()


def yarn_ramp(head_dim: int, theta: float, original_len: int, alpha: float = 1.0, beta: float = 32.0,
              truncate: bool = True) -> torch.Tensor:
    """YaRN's ramp gamma_i in [0, 1] per pair: 1 = keep w_i (extrapolate), 0 = interpolate w_i / s.

    Pair i turns r_i = L / (2 pi / w_i) times over the training length L. The reference code
    finds the (fractional) pair indices where r = beta and r = alpha, rounds them outward
    (truncate) and ramps linearly in the pair index between them.
    """
    def pair_index(rotations: float) -> float:   # solves L w_i / (2 pi) = rotations for i
        return head_dim * math.log(original_len / (rotations * 2 * math.pi)) / (2 * math.log(theta))
    low, high = pair_index(beta), pair_index(alpha)
    if truncate:
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, head_dim - 1)
    if low == high:
        high += 0.001
    ramp = ((torch.arange(head_dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
    return 1 - ramp


def yarn_attention_scale(factor: float) -> float:
    """YaRN's sqrt(1/t) = 0.1 ln(s) + 1 (1 for s <= 1): the factor on cos and sin."""
    return 1.0 if factor <= 1 else 0.1 * math.log(factor) + 1.0


def inverse_frequencies(method: str, head_dim: int, *, theta: float = 10000.0, factor: float = 1.0,
                        original_len: int = 128, seq_len: int | None = None, beta_fast: float = 32.0,
                        beta_slow: float = 1.0, low_freq_factor: float = 1.0,
                        high_freq_factor: float = 4.0) -> tuple[torch.Tensor, float]:
    """(inv_freq (head_dim/2,), attention_scale) of a RoPE extension method (see ROPE_METHODS).

    factor: the extension ratio s (new length / original_len); seq_len: the current length,
    used only by "dynamic" (defaults to s * original_len).
    """
    if method not in ROPE_METHODS:
        raise ValueError(f"method must be one of {ROPE_METHODS}, got {method!r}")
    if not isinstance(head_dim, int) or head_dim < 4 or head_dim % 2:
        raise ValueError(f"head_dim must be an even int >= 4, got {head_dim!r}")
    positive_number("theta", theta)
    positive_number("factor", factor)
    positive_int("original_len", original_len)
    if method != "none" and factor < 1:
        raise ValueError(f"factor (extension ratio s) must be >= 1, got {factor!r}")
    base = base_inverse_frequencies(head_dim, theta)
    d = head_dim
    if method == "none":
        return base, 1.0
    if method == "pi":
        return base / factor, 1.0
    if method in ("ntk", "dynamic"):
        s = factor
        if method == "dynamic":
            length = max(seq_len if seq_len is not None else int(factor * original_len), original_len)
            positive_int("seq_len", length)
            s = factor * length / original_len - (factor - 1)
        new_theta = theta * s ** (d / (d - 2))
        return base_inverse_frequencies(head_dim, new_theta), 1.0
    if method == "yarn":
        keep = yarn_ramp(d, theta, original_len, alpha=beta_slow, beta=beta_fast)
        return base / factor * (1 - keep) + base * keep, yarn_attention_scale(factor)
    # llama3: three bands by wavelength, against the original context length
    if not 0 < low_freq_factor < high_freq_factor:
        raise ValueError(f"need 0 < low_freq_factor < high_freq_factor, got {low_freq_factor}, {high_freq_factor}")
    wavelen = 2 * math.pi / base
    long_wave, short_wave = original_len / low_freq_factor, original_len / high_freq_factor
    smooth = (original_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
    blended = (1 - smooth) * base / factor + smooth * base
    out = torch.where(wavelen > long_wave, base / factor, torch.where(wavelen < short_wave, base, blended))
    return out, 1.0


def rope_tables(inv_freq: torch.Tensor, seq_len: int, attention_scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin tables (seq_len, d/2) for positions 0..seq_len-1, times attention_scale."""
    if not isinstance(inv_freq, torch.Tensor) or inv_freq.dim() != 1:
        raise ValueError("inv_freq must be a 1-D tensor (head_dim/2,)")
    positive_int("seq_len", seq_len)
    positive_number("attention_scale", attention_scale)
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float64), inv_freq.double())
    return (angles.cos() * attention_scale).float(), (angles.sin() * attention_scale).float()


def extend_model(model: GPT, method: str, seq_len: int, original_len: int = 128, factor: float | None = None) -> GPT:
    """A copy of `model` that runs on seq_len positions with its rotary tables set by `method`.

    The weights are shared in value (copied), only cfg.max_seq_len and the cos/sin buffers
    change. factor defaults to seq_len / original_len (at least 1).
    """
    if not isinstance(model, GPT):
        raise ValueError(f"model must be a GPT, got {type(model).__name__}")
    positive_int("seq_len", seq_len)
    positive_int("original_len", original_len)
    factor = max(seq_len / original_len, 1.0) if factor is None else factor
    cfg = model.cfg
    inv_freq, scale = inverse_frequencies(method, cfg.head_dim, theta=cfg.rope_theta, factor=factor,
                                          original_len=original_len, seq_len=seq_len)
    new = GPT(type(cfg)(**{**cfg.__dict__, "max_seq_len": max(seq_len, cfg.max_seq_len)}))
    new.load_state_dict(model.state_dict())
    new.rope_cos, new.rope_sin = rope_tables(inv_freq, new.cfg.max_seq_len, scale)
    return new.eval()
