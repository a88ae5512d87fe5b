"""What one forward pass costs: prefill and decode steps of a catalog model, on the roofline.

A serving step runs `tokens` new tokens through every layer. Its work has three parts:

    linear layers   2 FLOPs per weight per token; every weight the step touches is read
                    once (shared by all tokens in the step), and each token's input and
                    output vectors are read and written once per matrix
    attention       the score and value products against the cached keys and values:
                    2 x key width + 2 x value width FLOPs per head per (query, key) pair;
                    the KV cache is read once and the new tokens' keys and values written
    output head     the logits of the tokens that sample: one per sequence

A prefill step takes the whole prompt of each of `batch` sequences (tokens = batch x
prompt): the weights are read once for thousands of tokens, so its arithmetic intensity
is high. A decode step takes one token per sequence (tokens = batch): the weights are read
for only `batch` tokens, and every sequence's whole KV cache is read as well. The result
is a `roofline.KernelCost`, so chapter 2's roofline places it and bounds its time.

MoE layers run each token through its top-k routed experts (plus the shared ones). Under
uniform routing a step with T tokens touches E (1 - (1 - k/E)^T) of the E experts, and
only those experts' weights are read. MLA is counted as DeepSeek-V2 describes it without
the absorption trick: keys of width head_dim + rope_dim and values of v_head_dim per head,
while the cache holds the latent (`memory.kv_cache_bytes_per_token`). Norms, the
embedding lookup, softmax and activations' elementwise work are left out: they are a few
FLOPs per element and change no conclusion here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from llminfra_lab import hardware, memory, roofline
from llminfra_lab.catalog import ModelSpec, model_spec
from llminfra_lab.checks import nonnegative_int, positive_int, positive_number
from llminfra_lab.precision import bytes_per_element

__all__ = ["PhaseCost", "linear_shapes", "phase_cost", "prefill_cost", "decode_cost", "decode_crossover_batch",
           "kv_cache_bytes", "attention_kind", "weight_bytes", "max_concurrent_requests", "kv_cache_rows"]


@dataclass(frozen=True)
class PhaseCost:
    """FLOPs and HBM bytes of one forward pass, by part. `kernel` is the roofline.KernelCost of the whole."""

    phase: str                 # "prefill" or "decode"
    batch: int                 # sequences in the step
    new_tokens: int            # tokens each sequence adds in this step (prompt length, or 1)
    context: int               # tokens each sequence already has in its KV cache before the step
    linear_flops: float
    attention_flops: float
    weight_bytes: float        # weights read (each touched weight once)
    activation_bytes: float    # inputs and outputs of the linear layers
    kv_read_bytes: float       # KV cache read by attention
    kv_write_bytes: float      # keys and values of the new tokens written
    kernel: roofline.KernelCost

    @property
    def flops(self) -> float:
        return self.kernel.flops

    @property
    def bytes(self) -> float:
        return self.kernel.bytes

    @property
    def intensity(self) -> float:
        """FLOP per byte of HBM traffic."""
        return self.kernel.intensity


def linear_shapes(spec: ModelSpec) -> dict[str, list[tuple[int, int]]]:
    """(d_in, d_out) of the weight matrices one layer applies to every token, by kind.

    "attention": q, k, v, o for MHA/MQA/GQA; the low-rank q and kv projections and o for MLA.
    "dense_ffn": gate, up, down of a dense SwiGLU layer. "expert": the three matrices of one
    routed or shared expert (MoE layers), plus "router": d_model -> n_experts.
    """
    if not isinstance(spec, ModelSpec):
        raise ValueError(f"spec must be a catalog ModelSpec, got {type(spec).__name__}")
    d, h = spec.d_model, spec.n_heads
    if spec.is_mla:
        rope, v_dim = spec.qk_rope_head_dim, spec.v_head_dim or spec.head_dim
        q = ([(d, spec.q_lora_rank), (spec.q_lora_rank, h * (spec.head_dim + rope))] if spec.q_lora_rank
             else [(d, h * (spec.head_dim + rope))])
        attention = q + [(d, spec.kv_lora_rank + rope), (spec.kv_lora_rank, h * (spec.head_dim + v_dim)),
                         (h * v_dim, d)]
    else:
        kv = spec.n_kv_heads * spec.head_dim
        attention = [(d, h * spec.head_dim), (d, kv), (d, kv), (h * spec.head_dim, d)]
    ffn = [(d, spec.d_ff), (d, spec.d_ff), (spec.d_ff, d)]
    e_ff = spec.moe_d_ff or spec.d_ff
    return {"attention": attention, "dense_ffn": ffn, "expert": [(d, e_ff), (d, e_ff), (e_ff, d)],
            "router": [(d, spec.n_experts)] if spec.is_moe else []}


def phase_cost(spec: ModelSpec | str, batch: int, new_tokens: int, context: int = 0, *,
               dtype: str = "bf16", kv_dtype: str | None = None) -> PhaseCost:
    """FLOPs and bytes of one forward pass: `batch` sequences each adding `new_tokens` tokens
    after `context` cached ones. Prefill is new_tokens = prompt length with context 0 (or the
    cached prefix); decode is new_tokens = 1 with context = tokens so far.

    dtype: weights and activations (`precision` key); kv_dtype: the cache (default dtype).
    """
    spec = model_spec(spec) if isinstance(spec, str) else spec
    if not isinstance(spec, ModelSpec):
        raise ValueError(f"spec must be a catalog ModelSpec or model name, got {type(spec).__name__}")
    positive_int("batch", batch)
    positive_int("new_tokens", new_tokens)
    nonnegative_int("context", context)
    e, kv_dtype = bytes_per_element(dtype), kv_dtype or dtype
    kv_per_token = memory.kv_cache_bytes_per_token(spec, kv_dtype)
    shapes = linear_shapes(spec)
    tokens = batch * new_tokens

    def weights(mats):
        return sum(a * b for a, b in mats)

    def io(mats):
        return sum(a + b for a, b in mats)

    n_moe = spec.n_layers - spec.n_dense_layers if spec.is_moe else 0
    n_dense = spec.n_layers - n_moe
    per_token = spec.n_layers * weights(shapes["attention"]) + n_dense * weights(shapes["dense_ffn"])
    touched = float(per_token)
    act = spec.n_layers * io(shapes["attention"]) + n_dense * io(shapes["dense_ffn"])
    if n_moe:
        expert, k, n_e = weights(shapes["expert"]), spec.experts_per_token, spec.n_experts
        per_token += n_moe * ((k + spec.n_shared_experts) * expert + weights(shapes["router"]))
        hit = n_e * (1 - (1 - k / n_e) ** tokens)                     # experts touched under uniform routing
        touched += n_moe * ((hit + spec.n_shared_experts) * expert + weights(shapes["router"]))
        act += n_moe * ((k + spec.n_shared_experts) * io(shapes["expert"]) + io(shapes["router"]))
    head = spec.vocab_size * spec.d_model                            # output head, for sampling tokens only
    linear_flops = 2.0 * (tokens * per_token + batch * head)
    weight_b = e * (touched + head)
    act_b = e * (tokens * act + batch * (spec.d_model + spec.vocab_size))

    # Attention: query i of a sequence sees the `context` cached keys and the new ones up to itself.
    pairs = batch * (new_tokens * context + new_tokens * (new_tokens + 1) / 2)
    k_dim = spec.head_dim + spec.qk_rope_head_dim
    v_dim = (spec.v_head_dim or spec.head_dim) if spec.is_mla else spec.head_dim
    attention_flops = 2.0 * pairs * spec.n_heads * (k_dim + v_dim) * spec.n_layers
    kv_read = batch * context * kv_per_token
    kv_write = tokens * kv_per_token
    phase = "decode" if new_tokens == 1 and context > 0 else "prefill"
    kernel = roofline.KernelCost(f"{spec.name} {phase} b={batch} new={new_tokens} ctx={context}",
                                 linear_flops + attention_flops, weight_b + act_b + kv_read + kv_write, dtype)
    return PhaseCost(phase, batch, new_tokens, context, linear_flops, attention_flops, weight_b, act_b,
                     kv_read, kv_write, kernel)


def prefill_cost(spec: ModelSpec | str, batch: int, prompt: int, *, dtype: str = "bf16",
                 kv_dtype: str | None = None) -> PhaseCost:
    """The prefill of `batch` prompts of `prompt` tokens each (nothing cached before)."""
    return phase_cost(spec, batch, prompt, 0, dtype=dtype, kv_dtype=kv_dtype)


def decode_cost(spec: ModelSpec | str, batch: int, context: int, *, dtype: str = "bf16",
                kv_dtype: str | None = None) -> PhaseCost:
    """One decode step of `batch` sequences, each with `context` tokens already in its cache."""
    positive_int("context", context)
    return phase_cost(spec, batch, 1, context, dtype=dtype, kv_dtype=kv_dtype)


def decode_crossover_batch(spec: ModelSpec | str, accelerator: str, context: int, *, dtype: str = "bf16",
                           kv_dtype: str | None = None, max_batch: int = 1 << 20) -> int | None:
    """The smallest batch at which a decode step's intensity reaches the chip's ridge point
    (the step stops being memory-bound), or None if no batch up to max_batch does.

    With a short context the answer is near the ridge point itself (2 FLOPs per 2-byte
    weight per sequence); with a long one each added sequence adds its KV cache to the
    bytes, the intensity levels off below the ridge, and decode stays memory-bound.
    """
    acc = hardware.accelerator(accelerator)
    ridge = acc.ridge_point(dtype)
    positive_int("max_batch", max_batch)

    def reaches(b: int) -> bool:
        return decode_cost(spec, b, context, dtype=dtype, kv_dtype=kv_dtype).intensity >= ridge

    if not reaches(max_batch):
        return None
    lo, hi = 0, 1                     # reaches(lo) is False (or lo = 0), reaches(hi) to be found
    while not reaches(hi):
        lo, hi = hi, min(2 * hi, max_batch)
    while hi - lo > 1:                # intensity grows with batch: bisect
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if reaches(mid) else (mid, hi)
    return hi


# ----------------------------------------------------------------------------- memory of serving

def attention_kind(spec: ModelSpec) -> str:
    """"MHA", "MQA", "GQA" or "MLA", from the catalog configuration."""
    if not isinstance(spec, ModelSpec):
        raise ValueError(f"spec must be a catalog ModelSpec, got {type(spec).__name__}")
    if spec.is_mla:
        return "MLA"
    if spec.n_kv_heads == spec.n_heads:
        return "MHA"
    return "MQA" if spec.n_kv_heads == 1 else "GQA"


def kv_cache_bytes(spec: ModelSpec | str, tokens: int, dtype: str = "bf16") -> float:
    """Bytes of KV cache that one request of `tokens` tokens holds: tokens x
    `memory.kv_cache_bytes_per_token` (the one definition of the per-token size)."""
    spec = model_spec(spec) if isinstance(spec, str) else spec
    nonnegative_int("tokens", tokens)
    return tokens * memory.kv_cache_bytes_per_token(spec, dtype)


def weight_bytes(spec: ModelSpec | str, dtype: str = "bf16") -> float:
    """Bytes of all the model's weights (every expert of an MoE model) in `dtype`."""
    spec = model_spec(spec) if isinstance(spec, str) else spec
    if not isinstance(spec, ModelSpec):
        raise ValueError(f"spec must be a catalog ModelSpec or model name, got {type(spec).__name__}")
    return spec.total_params() * bytes_per_element(dtype)


def max_concurrent_requests(spec: ModelSpec | str, accelerator: str, tokens_per_request: int, *,
                            n_gpus: int = 1, weight_dtype: str = "bf16", kv_dtype: str = "bf16",
                            memory_fraction: float = 0.9) -> int:
    """How many requests of `tokens_per_request` tokens (prompt + output) fit their KV cache
    in the HBM of `n_gpus` accelerators after the weights.

    memory_fraction of HBM is usable (the rest is left for activations, the CUDA context and
    fragmentation; 0.9 is vLLM's default `gpu_memory_utilization`). Returns 0 when the weights
    alone do not fit.
    """
    acc = hardware.accelerator(accelerator)
    positive_int("tokens_per_request", tokens_per_request)
    positive_int("n_gpus", n_gpus)
    positive_number("memory_fraction", memory_fraction)
    if memory_fraction > 1:
        raise ValueError(f"memory_fraction must be in (0, 1], got {memory_fraction!r}")
    free = n_gpus * acc.hbm_gb * 1e9 * memory_fraction - weight_bytes(spec, weight_dtype)
    if free <= 0:
        return 0
    return math.floor(free / kv_cache_bytes(spec, tokens_per_request, kv_dtype))


def kv_cache_rows(names: list[str], tokens: int = 4096, dtype: str = "bf16") -> list[dict]:
    """One row per catalog model: attention kind, KV heads, values cached per token per layer,
    KiB per token, GiB per request of `tokens` tokens."""
    if not names:
        raise ValueError("names must list at least one catalog model")
    positive_int("tokens", tokens)
    rows = []
    for name in names:
        spec = model_spec(name)
        per_token = memory.kv_cache_bytes_per_token(spec, dtype)
        rows.append({"model": spec.name, "kind": attention_kind(spec), "n_heads": spec.n_heads,
                     "kv_heads": None if spec.is_mla else spec.n_kv_heads,
                     "values_per_layer": per_token / bytes_per_element(dtype) / spec.n_layers,
                     "kib_per_token": per_token / 1024, "gib_per_request": per_token * tokens / 2**30})
    return rows
