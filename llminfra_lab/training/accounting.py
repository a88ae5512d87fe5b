"""Number formats and what a precision recipe costs in bytes per parameter.

    FLOAT_FORMATS    sign, exponent and mantissa bits of FP32, BF16, FP16, FP8 E4M3 and E5M2;
                     `float_format` derives bias, largest value and smallest normal and
                     subnormal values from the bits (the tests check them against torch.finfo)
    PRECISION_RECIPES  the format of each persistent tensor of a training recipe: the weights
                     the matmuls read, the gradients, an FP32 master copy, Adam's m and v
    recipe_bytes     a recipe as the arguments of `memory.model_state_bytes`, the one
                     formula for model-state memory (chapter 7's ZeRO uses it too)
    bytes_per_param  a recipe's persistent bytes per parameter, through that formula

Training FLOPs C ~= 6 N D live in `economics.training_flops` (chapter 1).
"""
from __future__ import annotations

from llminfra_lab import memory, precision

__all__ = ["FLOAT_FORMATS", "float_format", "PRECISION_RECIPES", "recipe_bytes", "bytes_per_param"]

# (exponent bits, mantissa bits) after the sign bit; the keys are `precision`'s dtype names.
FLOAT_FORMATS: dict[str, tuple[int, int]] = {
    "fp32": (8, 23),        # IEEE 754 binary32
    "bf16": (8, 7),         # FP32's exponent, 7 mantissa bits (Kalamkar et al. 2019)
    "fp16": (5, 10),        # IEEE 754 binary16
    "fp8_e4m3": (4, 3),     # weights and activations (Micikevicius et al. 2022); no infinities
    "fp8_e5m2": (5, 2),     # gradients: IEEE-style, with infinities
}


def float_format(name: str) -> dict[str, float]:
    """Bits and range of a floating-point format (a key of FLOAT_FORMATS).

    Returns {"sign", "exponent", "mantissa", "bits", "bytes", "bias", "max", "min_normal",
    "min_subnormal"}. With e exponent and m mantissa bits the bias is 2^(e-1) - 1, the
    smallest normal 2^(1-bias) and the smallest subnormal 2^(1-bias-m). IEEE-style formats
    reserve the top exponent for infinity and NaN, so the largest value is
    (2 - 2^-m) 2^(2^e - 2 - bias); E4M3 keeps the top exponent and reserves only the all-ones
    pattern for NaN, so its largest value is (2 - 2^(1-m)) 2^(2^e - 1 - bias) = 448.
    """
    if name not in FLOAT_FORMATS:
        raise KeyError(f"unknown float format {name!r}; valid: {sorted(FLOAT_FORMATS)}")
    e, m = FLOAT_FORMATS[name]
    bias = 2 ** (e - 1) - 1
    if name == "fp8_e4m3":
        largest = (2 - 2.0 ** (1 - m)) * 2.0 ** (2 ** e - 1 - bias)
    else:
        largest = (2 - 2.0 ** -m) * 2.0 ** (2 ** e - 2 - bias)
    return {"sign": 1, "exponent": e, "mantissa": m, "bits": 1 + e + m,
            "bytes": precision.bytes_per_element(name), "bias": bias, "max": largest,
            "min_normal": 2.0 ** (1 - bias), "min_subnormal": 2.0 ** (1 - bias - m)}


# The format of each persistent tensor, per parameter, not counting activations (None: not kept).
PRECISION_RECIPES: dict[str, dict[str, str | None]] = {
    # Everything in FP32: the weights are their own master copy.
    "fp32": {"weights": "fp32", "grads": "fp32", "master": None, "adam_m": "fp32", "adam_v": "fp32"},
    # Mixed precision (Micikevicius et al. 2018) as counted by ZeRO (Rajbhandari et al. 2020):
    # 16-bit weights and gradients (2 + 2) and an FP32 optimizer state of K = 12 bytes
    # (master weights, m, v) = 16 bytes.
    "bf16-mixed": {"weights": "bf16", "grads": "bf16", "master": "fp32", "adam_m": "fp32", "adam_v": "fp32"},
    # DeepSeek-V3 (DeepSeek-AI 2024, sections 3.3.1 and 3.3.3): the linear layers' GEMMs run
    # in FP8 on weights quantized on the fly in 128x128 blocks (transient copies, not kept);
    # master weights and weight gradients stay FP32, AdamW's two moments are stored in BF16.
    "fp8-deepseek-v3": {"weights": None, "grads": "fp32", "master": "fp32", "adam_m": "bf16", "adam_v": "bf16"},
}


def _bytes(dtype: str | None) -> float:
    return 0 if dtype is None else precision.bytes_per_element(dtype)


def recipe_bytes(recipe: str) -> dict[str, float]:
    """A precision recipe as keyword arguments of `memory.model_state_bytes`:
    {"param_bytes", "grad_bytes", "k"}, k the optimizer-state bytes (master copy, m, v)."""
    if recipe not in PRECISION_RECIPES:
        raise KeyError(f"unknown precision recipe {recipe!r}; valid: {sorted(PRECISION_RECIPES)}")
    parts = PRECISION_RECIPES[recipe]
    return {"param_bytes": _bytes(parts["weights"]), "grad_bytes": _bytes(parts["grads"]),
            "k": sum(_bytes(parts[key]) for key in ("master", "adam_m", "adam_v"))}


def bytes_per_param(recipe: str) -> float:
    """Persistent bytes per parameter of a precision recipe (weights + grads + optimizer state)."""
    return memory.model_state_bytes(1, **recipe_bytes(recipe))["total"]
