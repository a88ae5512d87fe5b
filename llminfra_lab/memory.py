"""Training memory, defined once: model states under ZeRO, and activations per layer.

Chapter 5 sizes a model's weights, gradients and optimizer states for a precision
recipe; chapter 6 plans layouts that must fit in a GPU; chapter 7 builds the ZeRO engine
whose bytes per rank these formulas predict. All three call the functions here.

Model states (Rajbhandari et al. 2020): with psi parameters, mixed-precision Adam keeps
2 psi bytes of 16-bit weights, 2 psi of 16-bit gradients and K psi = 12 psi of FP32
master weights, momentum and variance. ZeRO stage 1 shards the K psi over the Nd
data-parallel ranks, stage 2 also the gradients, stage 3 also the weights.

Activations (Korthikanti et al. 2022): the bytes one transformer layer keeps for its
backward pass, by recomputation policy and tensor/sequence parallelism.
"""
from __future__ import annotations

import numbers

from llminfra_lab.catalog import ModelSpec
from llminfra_lab.checks import positive_int, positive_number
from llminfra_lab.precision import bytes_per_element

__all__ = ["ZERO_STAGES", "RECOMPUTE", "model_state_bytes", "activation_bytes_per_layer", "kv_cache_bytes_per_token"]

ZERO_STAGES = (0, 1, 2, 3)          # 0 = plain data parallel (DDP), 1-3 = ZeRO stages
RECOMPUTE = ("none", "selective", "full")


def model_state_bytes(params: float, stage: int = 0, n_gpus: int = 1, *, k: float = 12,
                      param_bytes: float = 2, grad_bytes: float = 2) -> dict[str, float]:
    """Bytes of model states per rank for DDP (stage 0) or ZeRO stage 1, 2, 3.

    params: parameter count psi; n_gpus: data-parallel ranks Nd; k: optimizer-state
    bytes per parameter (12 for mixed-precision Adam: FP32 master copy, momentum,
    variance; 8 for Adam in plain FP32, where the parameters are the FP32 copy);
    param_bytes/grad_bytes: bytes per element of the working weights and gradients.
    Returns {"params", "grads", "optimizer", "total"} in bytes.
    """
    positive_number("params", params)
    if stage not in ZERO_STAGES:
        raise ValueError(f"stage must be one of {ZERO_STAGES} (0 = DDP), got {stage!r}")
    positive_int("n_gpus", n_gpus)
    for name, value in (("k", k), ("param_bytes", param_bytes), ("grad_bytes", grad_bytes)):
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or value < 0:
            raise ValueError(f"{name} must be a number >= 0 (bytes per parameter), got {value!r}")
    weights = param_bytes * params / (n_gpus if stage >= 3 else 1)
    grads = grad_bytes * params / (n_gpus if stage >= 2 else 1)
    optimizer = k * params / (n_gpus if stage >= 1 else 1)
    return {"params": weights, "grads": grads, "optimizer": optimizer, "total": weights + grads + optimizer}


def activation_bytes_per_layer(seq_len: int, micro_batch: int, hidden: int, heads: int,
                               tensor_parallel: int = 1, sequence_parallel: bool = False,
                               recompute: str = "none", dropout: bool = True) -> float:
    """Activation bytes one transformer layer keeps for its backward pass (Korthikanti et al. 2022).

    16-bit activations, a GPT-style layer (LayerNorm, attention with dropout, 4h GeLU MLP).
    With s = seq_len, b = micro_batch, h = hidden, a = heads, t = tensor_parallel:

        recompute="none"       s b h (10 + 24/t + 5 a s / (h t))     (t = 1: 34 + 5 a s / h)
           with sequence_parallel:  s b h (34/t + 5 a s / (h t))
        recompute="selective"  drops the 5 a s / h attention term (softmax, its dropout,
                               recomputed in backward): s b h (10 + 24/t), or 34 s b h / t with SP
        recompute="full"       only the layer input is kept: 2 s b h (as the paper's Table 2
                               counts it, whatever t), or 2 s b h / t when sequence parallelism
                               also splits that input over the t ranks

    dropout=False drops the terms that exist only because of dropout, as in today's LLMs,
    which train without it: the two 1-byte masks after attention and MLP (2 s b h, outside
    the tensor-parallel region) and, in the score term, the 1-byte mask and the 2-byte
    dropped-out copy of the probabilities (3 a s^2 b). Without parallelism that leaves
    s b h (32 + 2 a s / h); chapter 7's `measure_activation_bytes` confirms it with autograd.
    """
    for name, value in (("seq_len", seq_len), ("micro_batch", micro_batch), ("hidden", hidden),
                        ("heads", heads), ("tensor_parallel", tensor_parallel)):
        positive_int(name, value)
    if hidden % heads or heads % tensor_parallel:
        raise ValueError(f"hidden ({hidden}) must be divisible by heads ({heads}) and heads by "
                         f"tensor_parallel ({tensor_parallel})")
    if recompute not in RECOMPUTE:
        raise ValueError(f"recompute must be one of {RECOMPUTE}, got {recompute!r}")
    if not isinstance(dropout, bool) or not isinstance(sequence_parallel, bool):
        raise ValueError(f"dropout and sequence_parallel must be bools, got {dropout!r}, {sequence_parallel!r}")
    s, b, h, a, t = seq_len, micro_batch, hidden, heads, tensor_parallel
    sbh = s * b * h
    if recompute == "full":
        return 2.0 * sbh / (t if sequence_parallel else 1)
    attention_scores = (5 if dropout else 2) * a * s / (h * t) if recompute == "none" else 0.0
    replicated = 10 if dropout else 8           # layer-norm inputs, first linear inputs, dropout masks
    linear_part = (replicated + 24) / t if sequence_parallel else replicated + 24 / t
    return sbh * (linear_part + attention_scores)


def kv_cache_bytes_per_token(spec: ModelSpec, dtype: str = "bf16") -> float:
    """Bytes of KV cache one token occupies across all layers of a catalog model.

    MHA, MQA and GQA cache a key and a value per KV head: 2 x n_kv_heads x head_dim per
    layer (MQA is n_kv_heads = 1, MHA n_kv_heads = n_heads). MLA (DeepSeek-V2/V3) caches
    the compressed latent and the shared RoPE key: kv_lora_rank + qk_rope_head_dim per
    layer (512 + 64 for DeepSeek-V3). Times n_layers and the bytes of `dtype`
    (`precision.bytes_per_element`). Chapters 11 and 16 use it.
    """
    if not isinstance(spec, ModelSpec):
        raise ValueError(f"spec must be a catalog ModelSpec, got {type(spec).__name__}")
    per_layer = (spec.kv_lora_rank + spec.qk_rope_head_dim if spec.is_mla
                 else 2 * spec.n_kv_heads * spec.head_dim)
    return spec.n_layers * per_layer * bytes_per_element(dtype)
