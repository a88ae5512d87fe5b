"""Bytes per element of each number format: defined once, used by every chapter.

Storage widths, not compute rates: a tensor of n elements in format f occupies
n * BYTES_PER_ELEMENT[f] bytes. FP4 packs two values per byte; TF32 is a Tensor Core
input mode whose values are stored as FP32. Block formats (MX, NF4 with its scales)
add their scale bytes on top; chapter 14 counts those.
"""
from __future__ import annotations

__all__ = ["BYTES_PER_ELEMENT", "bytes_per_element"]

BYTES_PER_ELEMENT: dict[str, float] = {
    "fp64": 8, "fp32": 4, "tf32": 4, "bf16": 2, "fp16": 2,
    "fp8": 1, "fp8_e4m3": 1, "fp8_e5m2": 1, "int8": 1, "int4": 0.5, "fp4": 0.5,
}


def bytes_per_element(dtype: str) -> float:
    """Bytes one element of `dtype` occupies (a key of BYTES_PER_ELEMENT, e.g. "bf16" -> 2)."""
    if dtype not in BYTES_PER_ELEMENT:
        raise ValueError(f"unknown dtype {dtype!r}; expected one of {list(BYTES_PER_ELEMENT)}")
    return BYTES_PER_ELEMENT[dtype]
