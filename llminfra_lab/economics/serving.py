"""Serving cost: decode and prefill throughput and dollars per million tokens (chapter 1, part 2).

Decoding one token reads every weight once per step whatever the batch, so at small
batch a GPU is limited by memory bandwidth, not FLOP/s; prefill pushes all prompt
tokens through one large matrix multiplication and is compute-bound. Tokens per second
per replica and its hourly price give dollars per million tokens.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from llminfra_lab import hardware
from llminfra_lab.catalog import ModelSpec
from llminfra_lab.checks import positive_int, positive_number
from llminfra_lab.precision import bytes_per_element

from .compute import SECONDS_PER_HOUR, _fraction, _spec

__all__ = [
    "decode_tokens_per_second",
    "prefill_tokens_per_second",
    "cost_per_million_tokens",
    "ServingEstimate",
    "estimate_serving",
]


def decode_tokens_per_second(active_params: float, weight_bytes: float, batch_size: int,
                             peak_flops_per_s: float, hbm_bytes_per_s: float) -> float:
    """Upper bound on decode throughput (tokens/s) of one model replica.

    One decode step produces one token for each of `batch_size` sequences. It must read
    `weight_bytes` of weights from memory at least once (time weight_bytes / bandwidth) and
    do 2 x `active_params` FLOPs per token (time batch x 2N / peak). The step takes at least
    the longer of the two, so tokens/s <= batch / max(both). Reading the KV cache and
    imperfect kernels only make real throughput lower. Pass the replica's aggregate dense
    peak and HBM bandwidth (one direction, bytes/s) when it spans several GPUs.
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
                     batch_size: int = 1, bytes_per_param: float | None = None, precision: str = "bf16",
                     usd_per_gpu_hour: float = 2.0, prefill_mfu: float = 0.5) -> ServingEstimate:
    """Best-case decode and prefill cost of a catalog model on `n_gpus` GPUs (one replica).

    Weights are stored at `bytes_per_param` (default: the width of `precision`, from
    `llminfra_lab.precision`) and computed at the dense peak of `precision`. They must fit
    in the GPUs' HBM, or a ValueError says how many GPUs are needed. Decode uses
    `decode_tokens_per_second` with the replica's aggregate bandwidth and peak; prefill is
    compute-bound at `prefill_mfu`. Costs are for the whole replica: n_gpus x `usd_per_gpu_hour`.

    For a mixture-of-experts model each decode step is charged for reading *all* the
    weights, which holds once the batch routes at least one token to every expert
    (DeepSeek-V3 sends each token to 8 of 256 routed experts, so a batch of about 150
    touches 99% of them). At batch 1 only the active experts are read, so the estimate
    then overstates the bytes per step and understates decode throughput.
    """
    spec = _spec(model)
    chip = hardware.accelerator(accelerator)
    positive_int("n_gpus", n_gpus)
    if bytes_per_param is None:
        bytes_per_param = bytes_per_element(precision)
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
    bandwidth = n_gpus * chip.hbm_bytes_per_s
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
