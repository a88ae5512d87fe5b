"""Training compute: FLOPs per token, MFU, GPU-hours and dollars (chapter 1, part 1).

A dense Transformer with N parameters costs about 6 FLOPs per parameter per training
token (2 in the forward pass, 4 in the backward pass), so C = 6 N D for D tokens
(Kaplan et al. 2020). PaLM (Chowdhery et al. 2022, appendix B) adds the attention
scores: 6 N + 12 L H Q T FLOPs per token for L layers, H heads of size Q and sequence
length T. Model FLOPs utilization (MFU) divides the FLOP/s these counts imply by the
hardware's peak; given an MFU, FLOPs become GPU-hours, and a price per GPU-hour makes
them dollars.

Units are in the names: `_flops` FLOPs, `_flops_per_s` FLOP/s, `_usd` US dollars.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass

from llminfra_lab import catalog, hardware
from llminfra_lab.catalog import ModelSpec
from llminfra_lab.checks import positive_int, positive_number

__all__ = [
    "training_flops",
    "palm_flops_per_token",
    "attention_flops_per_token",
    "model_flops_per_token",
    "attention_share",
    "model_flops_utilization",
    "gpu_hours",
    "training_cost_usd",
    "TrainingEstimate",
    "estimate_training",
    "PUBLISHED",
    "SECONDS_PER_HOUR",
]

SECONDS_PER_HOUR = 3600.0


def training_flops(n_params: float, n_tokens: float) -> float:
    """Training FLOPs C = 6 N D (Kaplan et al. 2020) for `n_params` (N) and `n_tokens` (D).

    For a mixture-of-experts model N is the number of parameters *active* per token.
    """
    positive_number("n_params", n_params)
    positive_number("n_tokens", n_tokens)
    return 6.0 * float(n_params) * float(n_tokens)


def palm_flops_per_token(n_params: float, n_layers: int, n_heads: int, head_dim: int,
                         seq_len: int) -> float:
    """Training FLOPs per token with attention: 6 N + 12 L H Q T (Chowdhery et al. 2022, app. B).

    6 N counts the weight matrix multiplications (forward 2 N, backward 4 N). The attention
    scores Q K^T and the weighted sum of V add 2 x 2 x T x (H Q) FLOPs per token per layer in
    the forward pass, three times that with the backward pass: 12 L H Q T. The formula counts
    the full T x T score matrix, as the paper does, not only its causal half.
    """
    positive_number("n_params", n_params)
    for name, value in (("n_layers", n_layers), ("n_heads", n_heads), ("head_dim", head_dim),
                        ("seq_len", seq_len)):
        positive_int(name, value)
    return 6.0 * float(n_params) + 12.0 * n_layers * n_heads * head_dim * seq_len


def attention_flops_per_token(spec: ModelSpec, seq_len: int) -> float:
    """The attention-score FLOPs per training token of catalog model `spec` at `seq_len`.

    Per layer and token the forward pass does 2 T H d_qk FLOPs for Q K^T and 2 T H d_v for
    the weighted sum of V; with the backward pass, three times that: 6 L T H (d_qk + d_v).
    With d_qk = d_v = Q this is PaLM's 12 L H Q T. Grouped-query attention shares K and V
    between heads but does not change these FLOPs; multi-head latent attention (DeepSeek)
    has d_qk = head_dim + its RoPE part and d_v = v_head_dim. Like PaLM, counts the full
    T x T score matrix; a causal kernel that skips masked tiles does about half of it.
    """
    if not isinstance(spec, ModelSpec):
        raise ValueError(f"spec must be a catalog ModelSpec, got {type(spec).__name__}")
    positive_int("seq_len", seq_len)
    d_qk = spec.head_dim + spec.qk_rope_head_dim
    d_v = spec.v_head_dim or spec.head_dim
    return 6.0 * spec.n_layers * seq_len * spec.n_heads * (d_qk + d_v)


def model_flops_per_token(spec: ModelSpec, seq_len: int) -> float:
    """Training FLOPs per token of `spec` at `seq_len`: 6 N (N active) plus the attention term."""
    attention = attention_flops_per_token(spec, seq_len)   # checks spec and seq_len first
    return 6.0 * float(spec.active_params()) + attention


def attention_share(spec: ModelSpec, seq_len: int) -> float:
    """The fraction of `model_flops_per_token(spec, seq_len)` that is attention scores."""
    return attention_flops_per_token(spec, seq_len) / model_flops_per_token(spec, seq_len)


def model_flops_utilization(tokens_per_s: float, flops_per_token: float, n_chips: int,
                            peak_flops_per_s: float) -> float:
    """MFU = observed tokens/s x model FLOPs per token / (chips x peak FLOP/s per chip).

    This is PaLM's definition (Chowdhery et al. 2022, section 4.1 and appendix B): only
    the FLOPs the model needs count, so recomputation raises hardware utilization but not
    MFU, and the number compares systems fairly. `peak_flops_per_s` is the *dense* peak.
    """
    positive_number("tokens_per_s", tokens_per_s)
    positive_number("flops_per_token", flops_per_token)
    positive_int("n_chips", n_chips)
    positive_number("peak_flops_per_s", peak_flops_per_s)
    return float(tokens_per_s) * float(flops_per_token) / (n_chips * float(peak_flops_per_s))


def gpu_hours(total_flops: float, peak_flops_per_s: float, mfu: float) -> float:
    """GPU-hours to execute `total_flops` on GPUs of dense `peak_flops_per_s` running at `mfu`."""
    positive_number("total_flops", total_flops)
    positive_number("peak_flops_per_s", peak_flops_per_s)
    _fraction("mfu", mfu)
    return float(total_flops) / (float(peak_flops_per_s) * mfu) / SECONDS_PER_HOUR


def training_cost_usd(gpu_hours_: float, usd_per_gpu_hour: float) -> float:
    """Rental cost in USD: GPU-hours x price per GPU-hour (what the DeepSeek-V3 report does)."""
    positive_number("gpu_hours", gpu_hours_)
    positive_number("usd_per_gpu_hour", usd_per_gpu_hour)
    return float(gpu_hours_) * float(usd_per_gpu_hour)


@dataclass(frozen=True)
class TrainingEstimate:
    """What training `model` on `n_tokens` tokens costs on `accelerator` at `mfu`."""

    model: str
    n_params_active: float
    n_tokens: float
    total_flops: float
    accelerator: str
    precision: str
    peak_flops_per_s: float
    mfu: float
    gpu_hours: float
    usd_per_gpu_hour: float
    cost_usd: float

    def days_on(self, n_gpus: int) -> float:
        """Wall-clock days if the job runs on `n_gpus` GPUs at the same MFU."""
        positive_int("n_gpus", n_gpus)
        return self.gpu_hours / n_gpus / 24.0


def estimate_training(model: str | ModelSpec, n_tokens: float, accelerator: str = "H100-SXM", *,
                      precision: str = "bf16", mfu: float = 0.4, usd_per_gpu_hour: float = 2.0,
                      n_params: float | None = None) -> TrainingEstimate:
    """Estimate training compute, GPU-hours and rental cost of a catalog model.

    `model` is a name in `llminfra_lab.catalog.MODELS` (or a `ModelSpec`); N is its active
    parameter count (all parameters for a dense model) unless `n_params` overrides it.
    `accelerator` is a name in `llminfra_lab.hardware.ACCELERATORS` and `precision` one of
    its dense-FLOP/s precisions. C = 6 N D; GPU-hours = C / (peak x MFU) / 3600.
    """
    spec = _spec(model)
    chip = hardware.accelerator(accelerator)
    peak = chip.peak_flops(precision)
    n = float(spec.active_params()) if n_params is None else n_params
    flops = training_flops(n, n_tokens)
    hours = gpu_hours(flops, peak, mfu)
    return TrainingEstimate(
        model=spec.name, n_params_active=n, n_tokens=float(n_tokens), total_flops=flops,
        accelerator=chip.name, precision=precision, peak_flops_per_s=peak, mfu=mfu,
        gpu_hours=hours, usd_per_gpu_hour=usd_per_gpu_hour,
        cost_usd=training_cost_usd(hours, usd_per_gpu_hour),
    )


# Published numbers that the chapter, the lab and the tests reproduce.
PUBLISHED: dict[str, dict] = {
    # DeepSeek-V3 technical report, table 1: pre-training 2664K, context extension 119K,
    # post-training 5K H800 GPU-hours; 2,788K in all, at an assumed USD 2 per GPU-hour.
    "deepseek-v3": {
        "gpu_hours": 2.788e6, "pretrain_gpu_hours": 2.664e6, "usd_per_gpu_hour": 2.0,
        "cost_usd": 5.576e6, "n_tokens": 14.8e12, "n_params_active": 37e9,
        "n_params_total": 671e9, "n_gpus": 2048, "accelerator": "H800-SXM",
        "source": "deepseekai2024v3",
    },
    # PaLM 540B: configuration (table 1) and training throughput / MFU (table 3, appendix B).
    "palm-540b": {
        "n_params": 540.35e9, "n_layers": 118, "n_heads": 48, "head_dim": 256, "seq_len": 2048,
        "tokens_per_s": 238.3e3, "n_chips": 6144, "peak_flops_per_s": 275e12, "mfu": 0.462,
        "n_tokens": 780e9, "source": "chowdhery2022palm",
    },
    # Llama 3 model card: the 70B model, context length 8K, pre-trained on over 15T tokens
    # in 6.4M H100-80GB GPU-hours (the Llama 3 paper, grattafiori2024llama3, agrees on 15T).
    "llama-3-70b": {"n_params": 70e9, "n_tokens": 15e12, "seq_len": 8192, "gpu_hours": 6.4e6,
                    "accelerator": "H100-SXM", "source": "meta2024llama3card"},
}


def _spec(model: str | ModelSpec) -> ModelSpec:
    spec = catalog.model_spec(model) if isinstance(model, str) else model
    if not isinstance(spec, ModelSpec):
        raise ValueError(f"model must be a catalog name or a ModelSpec, got {type(model).__name__}")
    return spec


# numbers.Real also admits NumPy scalars (np.float64); bool is an int in Python but never
# a meaningful fraction, so it is rejected explicitly.
def _fraction(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must be in (0, 1], got {value!r}")
