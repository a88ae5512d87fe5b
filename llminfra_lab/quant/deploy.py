"""Where the formats run: accelerators and serving engines (the chapter's cited tables).

HARDWARE_FORMATS: low-precision formats with Tensor/Matrix Core support per accelerator, with
the dense peaks taken from `hardware` (the one source of accelerator numbers).
ENGINE_FORMATS: the quantized formats each engine serves, from its documentation.
`load_results` reads the shipped table of benchmarks/quant_table.py.
"""
from __future__ import annotations

from llminfra_lab.hardware import accelerator
from llminfra_lab.shipped import ASSETS, load_json

__all__ = ["HARDWARE_FORMATS", "ENGINE_FORMATS", "RESULTS_FILE", "load_results", "hardware_rows"]

RESULTS_FILE = ASSETS / "quant_table.json"

#: accelerator key of `hardware` -> (formats with matrix-unit support, bib key)
HARDWARE_FORMATS: dict[str, tuple[str, str]] = {
    "H100-SXM": ("FP16, BF16, FP8 (E4M3, E5M2), INT8", "nvidia2022h100"),
    "H200-SXM": ("as H100 (same GH100 compute), 141 GB HBM3e", "nvidia2024h200"),
    "B200": ("FP16, BF16, FP8, MXFP8/MXFP6/MXFP4, NVFP4, INT8", "nvidia2024hgxb200"),
    "MI300X": ("FP16, BF16, FP8 (FNUZ variants), INT8", "amd2023mi300x"),
    "MI355X": ("adds MXFP6 and MXFP4 to MI300X's list", "theregister2025mi355x"),
    "Ascend-910B": ("FP16, BF16, INT8 (no FP8)", "boardor2025ascend"),
}

#: engine -> (weight formats, KV-cache formats, bib key)
ENGINE_FORMATS: dict[str, tuple[str, str, str]] = {
    "vLLM": ("FP8 W8A8, INT8 W8A8, INT4 W4A16 (GPTQ, AWQ; Marlin kernels), bitsandbytes, GGUF",
             "FP8 (E4M3, E5M2)", "vllm2025quantization"),
    "TensorRT-LLM": ("FP8 per tensor / rowwise / block, NVFP4, MXFP4, W4A16 and W4A8 AWQ/GPTQ, "
                     "W8A8 SmoothQuant, W8A16", "FP8, INT8, NVFP4", "nvidia2025trtllmquant"),
    "llama.cpp (GGUF)": ("Q8_0, Q4_0, k-quants (Q2_K..Q6_K), i-quants; blocks with their own scales",
                         "F16, Q8_0, Q4_0 (cache-type flags)", "gerganov2023ggml"),
}


def hardware_rows() -> list[dict]:
    """One row per accelerator: formats, dense FP8 / FP4 / INT8 TFLOP/s (0 = no support), HBM GB, source."""
    rows = []
    for name, (formats, key) in HARDWARE_FORMATS.items():
        acc = accelerator(name)
        rows.append({"accelerator": name, "formats": formats, "hbm_gb": acc.hbm_gb,
                     **{f"{p}_tflops": acc.dense_tflops.get(p, 0.0) for p in ("bf16", "fp8", "fp4", "int8")},
                     "source": key})
    return rows


def load_results() -> dict:
    """The shipped quantization table of the tiny GPT (benchmarks/quant_table.py)."""
    return load_json(RESULTS_FILE.name)
