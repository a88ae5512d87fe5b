"""From FLOPs to dollars: what it costs to train a large language model and to serve it.

The chapter "The LLM Infrastructure Map" uses this module to turn published model
configurations (`llminfra_lab.catalog`) and accelerator specifications
(`llminfra_lab.hardware`) into the three numbers an infrastructure engineer is asked for
first:

1. **Training compute.** A dense Transformer with N parameters costs about 6 FLOPs per
   parameter per training token (2 in the forward pass, 4 in the backward pass), so
   C = 6 N D for D tokens (Kaplan et al. 2020). PaLM (Chowdhery et al. 2022, appendix B)
   adds the attention-score term: 6 N + 12 L H Q T FLOPs per token, for L layers, H heads
   of size Q and sequence length T.
2. **GPU-hours and dollars.** Model FLOPs utilization (MFU) is the throughput the model's
   own FLOPs imply divided by the hardware's peak: MFU = tokens/s x FLOPs/token / peak
   FLOP/s. Rematerialised (recomputed) FLOPs do not count. Given an MFU, the FLOPs become
   GPU-hours, and a rental price per GPU-hour makes them dollars.
3. **Serving cost.** Decoding one token reads every weight once per step whatever the
   batch, so at small batch a GPU is limited by memory bandwidth, not FLOP/s. Tokens per
   second per GPU and the GPU's hourly price give dollars per million tokens.

It also keeps a small, sourced table of published API list prices (`PRICE_HISTORY`) and
fits the rate at which the price of a token has fallen.

Units are in the names: `_flops` are floating-point operations, `_flops_per_s` FLOP/s,
`_usd` US dollars, `_s` seconds, `_bytes` bytes.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING

from llminfra_lab.checks import positive_int, positive_number

if TYPE_CHECKING:  # imported lazily at run time: the spine modules are optional for the formulas
    from llminfra_lab.catalog import ModelSpec

__all__ = [
    "training_flops",
    "palm_flops_per_token",
    "model_flops_utilization",
    "gpu_hours",
    "training_cost_usd",
    "TrainingEstimate",
    "estimate_training",
    "decode_tokens_per_second",
    "prefill_tokens_per_second",
    "cost_per_million_tokens",
    "ServingEstimate",
    "estimate_serving",
    "PricePoint",
    "PRICE_HISTORY",
    "TIERS",
    "price_history",
    "blended_price",
    "fit_price_trend",
    "PUBLISHED",
    "plot_price_history",
    "plot_training_costs",
    "plot_cost_vs_mfu",
    "plot_serving_cost",
]

SECONDS_PER_HOUR = 3600.0


# ---------------------------------------------------------------------------------------
# 1. Training compute
# ---------------------------------------------------------------------------------------

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


def model_flops_utilization(tokens_per_s: float, flops_per_token: float, n_chips: int,
                            peak_flops_per_s: float) -> float:
    """MFU = observed tokens/s x model FLOPs per token / (chips x peak FLOP/s per chip).

    This is PaLM's definition (Chowdhery et al. 2022, section 4.1 and appendix B): only
    the FLOPs the model needs count, so recomputation raises hardware utilization but not
    MFU, and the number compares systems fairly.
    """
    positive_number("tokens_per_s", tokens_per_s)
    positive_number("flops_per_token", flops_per_token)
    positive_int("n_chips", n_chips)
    positive_number("peak_flops_per_s", peak_flops_per_s)
    return float(tokens_per_s) * float(flops_per_token) / (n_chips * float(peak_flops_per_s))


def gpu_hours(total_flops: float, peak_flops_per_s: float, mfu: float) -> float:
    """GPU-hours to execute `total_flops` on GPUs of `peak_flops_per_s` running at `mfu`."""
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
    from llminfra_lab import catalog, hardware

    spec = catalog.model_spec(model) if isinstance(model, str) else model
    if not isinstance(spec, catalog.ModelSpec):
        raise ValueError(f"model must be a catalog name or a ModelSpec, got {type(model).__name__}")
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


# ---------------------------------------------------------------------------------------
# 2. Serving cost
# ---------------------------------------------------------------------------------------

def decode_tokens_per_second(active_params: float, weight_bytes: float, batch_size: int,
                             peak_flops_per_s: float, hbm_bytes_per_s: float) -> float:
    """Upper bound on decode throughput (tokens/s) of one model replica.

    One decode step produces one token for each of `batch_size` sequences. It must read
    `weight_bytes` of weights from memory at least once (time weight_bytes / bandwidth) and
    do 2 x `active_params` FLOPs per token (time batch x 2N / peak). The step takes at least
    the longer of the two, so tokens/s <= batch / max(both). Reading the KV cache and
    imperfect kernels only make real throughput lower. Pass the replica's aggregate peak and
    bandwidth when it spans several GPUs.
    """
    positive_number("active_params", active_params)
    positive_number("weight_bytes", weight_bytes)
    positive_int("batch_size", batch_size)
    positive_number("peak_flops_per_s", peak_flops_per_s)
    positive_number("hbm_bytes_per_s", hbm_bytes_per_s)
    t_memory = float(weight_bytes) / float(hbm_bytes_per_s)
    t_compute = batch_size * 2.0 * float(active_params) / float(peak_flops_per_s)
    return batch_size / max(t_memory, t_compute)


def prefill_tokens_per_second(active_params: float, peak_flops_per_s: float, mfu: float) -> float:
    """Prompt (prefill) throughput: all prompt tokens go through one big matrix multiply,
    so prefill is compute-bound: tokens/s = peak x MFU / (2 N)."""
    positive_number("active_params", active_params)
    positive_number("peak_flops_per_s", peak_flops_per_s)
    _fraction("mfu", mfu)
    return float(peak_flops_per_s) * mfu / (2.0 * float(active_params))


def cost_per_million_tokens(tokens_per_s: float, usd_per_hour: float) -> float:
    """USD per million tokens of a machine producing `tokens_per_s` that rents at `usd_per_hour`."""
    positive_number("tokens_per_s", tokens_per_s)
    positive_number("usd_per_hour", usd_per_hour)
    return float(usd_per_hour) / (float(tokens_per_s) * SECONDS_PER_HOUR) * 1e6


@dataclass(frozen=True)
class ServingEstimate:
    """Throughput and cost of one replica of `model` on `n_gpus` x `accelerator`."""

    model: str
    accelerator: str
    n_gpus: int
    batch_size: int
    weight_bytes: float
    decode_tokens_per_s: float
    decode_bound: str  # "memory" or "compute": which limit sets the decode step time
    prefill_tokens_per_s: float
    usd_per_million_output: float
    usd_per_million_input: float


def estimate_serving(model: str | ModelSpec, accelerator: str = "H100-SXM", *, n_gpus: int = 1,
                     batch_size: int = 1, bytes_per_param: float = 2.0, precision: str = "bf16",
                     usd_per_gpu_hour: float = 2.0, prefill_mfu: float = 0.5) -> ServingEstimate:
    """Best-case decode and prefill cost of a catalog model on `n_gpus` GPUs (one replica).

    The weights (all parameters x `bytes_per_param`) must fit in the GPUs' HBM, or a
    ValueError says how many GPUs are needed. Decode uses `decode_tokens_per_second`
    with the replica's aggregate bandwidth and peak; prefill is compute-bound at
    `prefill_mfu`. Costs are for the whole replica: n_gpus x `usd_per_gpu_hour`.

    For a mixture-of-experts model each decode step is charged for reading *all* the
    weights, which holds once the batch routes at least one token to every expert
    (DeepSeek-V3 sends each token to 8 of 256 routed experts, so a batch of about 150
    touches 99% of them). At batch 1 only the active experts are read, so the estimate
    then overstates the bytes per step and understates decode throughput.
    """
    from llminfra_lab import catalog, hardware

    spec = catalog.model_spec(model) if isinstance(model, str) else model
    if not isinstance(spec, catalog.ModelSpec):
        raise ValueError(f"model must be a catalog name or a ModelSpec, got {type(model).__name__}")
    chip = hardware.accelerator(accelerator)
    positive_int("n_gpus", n_gpus)
    positive_number("bytes_per_param", bytes_per_param)
    positive_number("usd_per_gpu_hour", usd_per_gpu_hour)
    weight_bytes = float(spec.total_params()) * bytes_per_param
    capacity = n_gpus * chip.hbm_gb * 1e9
    if weight_bytes > capacity:
        need = math.ceil(weight_bytes / (chip.hbm_gb * 1e9))
        raise ValueError(f"{spec.name} needs {weight_bytes / 1e9:.0f} GB of weights at {bytes_per_param} "
                         f"bytes/param but {n_gpus} x {chip.name} hold {capacity / 1e9:.0f} GB; "
                         f"use n_gpus >= {need} or fewer bytes per parameter")
    active = float(spec.active_params())
    peak = n_gpus * chip.peak_flops(precision)
    bandwidth = n_gpus * chip.hbm_tbps * 1e12
    decode = decode_tokens_per_second(active, weight_bytes, batch_size, peak, bandwidth)
    bound = "memory" if weight_bytes / bandwidth >= batch_size * 2.0 * active / peak else "compute"
    prefill = prefill_tokens_per_second(active, peak, prefill_mfu)
    usd_per_hour = n_gpus * usd_per_gpu_hour
    return ServingEstimate(
        model=spec.name, accelerator=chip.name, n_gpus=n_gpus, batch_size=batch_size,
        weight_bytes=weight_bytes, decode_tokens_per_s=decode, decode_bound=bound,
        prefill_tokens_per_s=prefill,
        usd_per_million_output=cost_per_million_tokens(decode, usd_per_hour),
        usd_per_million_input=cost_per_million_tokens(prefill, usd_per_hour),
    )


# ---------------------------------------------------------------------------------------
# 3. What a token cost: published API list prices
# ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PricePoint:
    """One published API list price, in USD per million tokens, at the date it took effect."""

    model: str
    provider: str
    tier: str          # "gpt-4-class", "gpt-3.5-class" or "reasoning"
    date: date
    usd_per_m_input: float
    usd_per_m_output: float
    source: str        # citation key in references.bib
    note: str = ""

    @property
    def year(self) -> float:
        """The date as a fractional year (2024-07-01 is about 2024.5)."""
        start = date(self.date.year, 1, 1)
        days = (date(self.date.year + 1, 1, 1) - start).days
        return self.date.year + (self.date - start).days / days


TIERS = ("gpt-4-class", "gpt-3.5-class", "reasoning")

# List prices at launch (standard tier, no batch or cache discounts). Each row was checked
# against its source; the tier is the book's grouping, by what the provider compared the
# model with.
PRICE_HISTORY: tuple[PricePoint, ...] = (
    PricePoint("text-davinci-003", "OpenAI", "gpt-3.5-class", date(2022, 11, 28), 20.0, 20.0,
               "openai2023chatgptapi", "USD 0.02 per 1K tokens; gpt-3.5-turbo was announced at one tenth of it"),
    PricePoint("gpt-3.5-turbo", "OpenAI", "gpt-3.5-class", date(2023, 3, 1), 2.0, 2.0,
               "openai2023chatgptapi", "USD 0.002 per 1K tokens, input and output alike"),
    PricePoint("gpt-4 (8K)", "OpenAI", "gpt-4-class", date(2023, 3, 14), 30.0, 60.0,
               "openai2023gpt4", "USD 0.03 / 0.06 per 1K prompt / completion tokens"),
    PricePoint("gpt-3.5-turbo-1106", "OpenAI", "gpt-3.5-class", date(2023, 11, 6), 1.0, 2.0,
               "openai2023devday"),
    PricePoint("gpt-4-turbo (1106-preview)", "OpenAI", "gpt-4-class", date(2023, 11, 6), 10.0, 30.0,
               "openai2023devday", "3x cheaper input, 2x cheaper output than gpt-4"),
    PricePoint("gpt-3.5-turbo-0125", "OpenAI", "gpt-3.5-class", date(2024, 1, 25), 0.5, 1.5,
               "openai2024apiupdates"),
    PricePoint("gpt-4o", "OpenAI", "gpt-4-class", date(2024, 5, 13), 5.0, 15.0,
               "openai2024gpt4o", "half the price of gpt-4-turbo"),
    PricePoint("gpt-4o-mini", "OpenAI", "gpt-3.5-class", date(2024, 7, 18), 0.15, 0.60,
               "openai2024gpt4omini", "replaced GPT-3.5 in ChatGPT; over 60% cheaper than gpt-3.5-turbo"),
    PricePoint("gpt-4o-2024-08-06", "OpenAI", "gpt-4-class", date(2024, 8, 6), 2.5, 10.0,
               "openai2024structured"),
    PricePoint("o1", "OpenAI", "reasoning", date(2024, 12, 17), 15.0, 60.0,
               "openai2024o1api", "o1-2024-12-17; reasoning tokens are billed as output"),
    PricePoint("deepseek-chat (DeepSeek-V3)", "DeepSeek", "gpt-4-class", date(2024, 12, 26), 0.27, 1.10,
               "deepseek2025pricing", "cache-miss input; a promotional discount ran until 2025-02-08"),
    PricePoint("deepseek-reasoner (DeepSeek-R1)", "DeepSeek", "reasoning", date(2025, 1, 20), 0.55, 2.19,
               "deepseek2025pricing", "cache-miss input; reasoning tokens are billed as output"),
)


def price_history(tier: str | None = None, provider: str | None = None) -> list[PricePoint]:
    """Rows of `PRICE_HISTORY`, oldest first, optionally only one `tier` and/or `provider`."""
    if tier is not None and tier not in TIERS:
        raise KeyError(f"unknown tier {tier!r}; valid tiers: {', '.join(TIERS)}")
    providers = sorted({p.provider for p in PRICE_HISTORY})
    if provider is not None and provider not in providers:
        raise KeyError(f"unknown provider {provider!r}; valid providers: {', '.join(providers)}")
    rows = [p for p in PRICE_HISTORY
            if (tier is None or p.tier == tier) and (provider is None or p.provider == provider)]
    return sorted(rows, key=lambda p: p.date)


def blended_price(point: PricePoint, input_share: float = 0.75) -> float:
    """USD per million tokens of a workload whose tokens are `input_share` input, the rest output.

    The default 3 input tokens to 1 output token is a common convention for chat workloads.
    """
    if not isinstance(point, PricePoint):
        raise ValueError(f"point must be a PricePoint, got {type(point).__name__}")
    if not 0.0 <= input_share <= 1.0:
        raise ValueError(f"input_share must be between 0 and 1, got {input_share}")
    return input_share * point.usd_per_m_input + (1.0 - input_share) * point.usd_per_m_output


def fit_price_trend(points: Iterable[PricePoint], input_share: float = 0.75) -> tuple[float, float]:
    """Least-squares fit of log10(blended price) against the year.

    Returns (`factor_per_year`, `half_life_years`): the price is multiplied by
    `factor_per_year` each year (0.1 means ten times cheaper a year) and halves every
    `half_life_years`. Needs at least two points at different dates.
    """
    pts = list(points)
    if len(pts) < 2:
        raise ValueError(f"need at least 2 price points to fit a trend, got {len(pts)}")
    xs = [p.year for p in pts]
    ys = [math.log10(blended_price(p, input_share)) for p in pts]
    x_mean, y_mean = sum(xs) / len(xs), sum(ys) / len(ys)
    sxx = sum((x - x_mean) ** 2 for x in xs)
    if sxx == 0.0:
        raise ValueError("price points must span more than one date to fit a trend")
    slope = sum((x - x_mean) * (y - y_mean) for x, y in zip(xs, ys)) / sxx
    factor = 10.0 ** slope
    half_life = math.log10(0.5) / slope if slope < 0 else math.inf
    return factor, half_life


# ---------------------------------------------------------------------------------------
# Published numbers that the chapter, the lab and the tests reproduce
# ---------------------------------------------------------------------------------------

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
    # Llama 3: the 70B model was pre-trained on over 15T tokens.
    "llama-3-70b": {"n_params": 70e9, "n_tokens": 15e12, "source": "grattafiori2024llama3"},
}


# ---------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------

_TIER_STYLE = {"gpt-4-class": ("tab:blue", "o"), "gpt-3.5-class": ("tab:orange", "s"),
               "reasoning": ("tab:green", "^")}


def plot_price_history(ax=None, input_share: float = 0.75, annotate: bool = True):
    """Log-scale plot of blended list price (USD per million tokens) against date, by tier,
    with the fitted trend line of the GPT-4-class and GPT-3.5-class tiers. Returns the Axes."""
    import matplotlib.pyplot as plt

    if not 0.0 <= input_share <= 1.0:
        raise ValueError(f"input_share must be between 0 and 1, got {input_share}")
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 4.5))
    for tier in TIERS:
        pts = price_history(tier)
        color, marker = _TIER_STYLE[tier]
        xs = [p.year for p in pts]
        ys = [blended_price(p, input_share) for p in pts]
        ax.scatter(xs, ys, color=color, marker=marker, s=45, label=tier, zorder=3)
        if annotate:
            for p, x, y in zip(pts, xs, ys):
                ax.annotate(p.model.split(" (")[0], (x, y), fontsize=7, xytext=(4, 3),
                            textcoords="offset points")
        if len(pts) >= 3:
            factor, _ = fit_price_trend(pts, input_share)
            x0, x1 = min(xs), max(xs)
            y_fit = 10 ** (sum(math.log10(y) for y in ys) / len(ys))
            x_mid = sum(xs) / len(xs)
            ax.plot([x0, x1], [y_fit * factor ** (x0 - x_mid), y_fit * factor ** (x1 - x_mid)],
                    color=color, linestyle="--", linewidth=1,
                    label=f"{tier} trend: x{factor:.2f} per year")
    ax.set_yscale("log")
    ax.set_xlabel("date the price took effect (year)")
    ax.set_ylabel(f"USD per million tokens ({input_share:.0%} input)")
    ax.set_title("API list price of a token, by model tier")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    return ax


def plot_training_costs(estimates: Sequence[TrainingEstimate], ax=None):
    """Horizontal bars of estimated training cost (USD, log scale) for each estimate,
    labelled with GPU-hours. Returns the Axes."""
    import matplotlib.pyplot as plt

    ests = list(estimates)
    if not ests or not all(isinstance(e, TrainingEstimate) for e in ests):
        raise ValueError("estimates must be a non-empty sequence of TrainingEstimate")
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 0.5 * len(ests) + 1.5))
    names = [e.model for e in ests]
    costs = [e.cost_usd for e in ests]
    ax.barh(names, costs, color="tab:blue")
    for i, e in enumerate(ests):
        ax.text(e.cost_usd * 1.1, i, f"{e.gpu_hours / 1e6:.2f}M GPU-h, ${e.cost_usd / 1e6:.1f}M",
                va="center", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlim(min(costs) / 3, max(costs) * 10)
    ax.invert_yaxis()
    ax.set_xlabel("estimated pre-training cost (USD, log scale)")
    first = ests[0]
    ax.set_title(f"6ND on {first.accelerator} {first.precision} at MFU {first.mfu:.0%}, "
                 f"${first.usd_per_gpu_hour:.2f}/GPU-hour")
    ax.grid(True, axis="x", which="both", alpha=0.3)
    return ax


def plot_cost_vs_mfu(total_flops: float, peak_flops_per_s: float, usd_per_gpu_hour: float,
                     mfu_marker: float | None = None, ax=None):
    """Training cost (USD) as MFU goes from 10% to 70%, for a fixed FLOP budget. Returns the Axes."""
    import matplotlib.pyplot as plt

    positive_number("total_flops", total_flops)
    positive_number("peak_flops_per_s", peak_flops_per_s)
    positive_number("usd_per_gpu_hour", usd_per_gpu_hour)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    mfus = [0.10 + 0.01 * i for i in range(61)]
    costs = [training_cost_usd(gpu_hours(total_flops, peak_flops_per_s, m), usd_per_gpu_hour) / 1e6
             for m in mfus]
    ax.plot([100 * m for m in mfus], costs, color="tab:blue")
    if mfu_marker is not None:
        _fraction("mfu_marker", mfu_marker)
        c = training_cost_usd(gpu_hours(total_flops, peak_flops_per_s, mfu_marker), usd_per_gpu_hour) / 1e6
        ax.scatter([100 * mfu_marker], [c], color="tab:red", zorder=3)
        ax.annotate(f"${c:.1f}M at {mfu_marker:.0%}", (100 * mfu_marker, c), xytext=(6, 6),
                    textcoords="offset points", fontsize=8)
    ax.set_xlabel("model FLOPs utilization (%)")
    ax.set_ylabel("training cost (million USD)")
    ax.set_title(f"{total_flops:.2e} FLOPs at ${usd_per_gpu_hour:.2f}/GPU-hour")
    ax.grid(True, alpha=0.3)
    return ax


def plot_serving_cost(model: str = "llama-3-8b", accelerator: str = "H100-SXM",
                      batch_sizes: Sequence[int] = (1, 4, 16, 64, 256, 1024), *, n_gpus: int = 1,
                      usd_per_gpu_hour: float = 2.0, ax=None):
    """Best-case USD per million output (decode) tokens against decode batch size, with the
    prefill (input) cost as a horizontal line, from `estimate_serving`. Returns the Axes."""
    import matplotlib.pyplot as plt

    batches = list(batch_sizes)
    if not batches or any(isinstance(b, bool) or not isinstance(b, numbers.Integral) or b < 1 for b in batches):
        raise ValueError(f"batch_sizes must be a non-empty sequence of ints >= 1, got {batch_sizes!r}")
    rows = [estimate_serving(model, accelerator, n_gpus=n_gpus, batch_size=b, usd_per_gpu_hour=usd_per_gpu_hour)
            for b in batches]
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 3.8))
    ax.loglog(batches, [r.usd_per_million_output for r in rows], "o-", color="tab:blue",
              label="output tokens (decode)")
    ax.axhline(rows[0].usd_per_million_input, color="tab:orange", linestyle="--",
               label="input tokens (prefill, 50% MFU)")
    for b, r in zip(batches, rows):
        ax.annotate(r.decode_bound, (b, r.usd_per_million_output), fontsize=7, xytext=(4, 4),
                    textcoords="offset points")
    ax.set_xlabel("decode batch size (sequences per step)")
    ax.set_ylabel("USD per million tokens (best case)")
    ax.set_title(f"{rows[0].model} on {n_gpus} x {rows[0].accelerator} at ${usd_per_gpu_hour:.2f}/GPU-hour")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    return ax


# ---------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------

# numbers.Real / numbers.Integral also admit NumPy scalars (np.float64, np.int64); bool is
# an int in Python but never a meaningful size, so it is rejected explicitly.

def _fraction(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must be in (0, 1], got {value!r}")
