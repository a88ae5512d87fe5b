"""Quantization (chapter 14): number formats, post-training methods, the tiny GPT quantized.

Read the files in this order:

    formats.py   FP8 E4M3/E5M2 (bit for bit torch's casts), FP4/FP6, OCP MX blocks, NF4 with
                 double quantization, INT8/INT4 symmetric and asymmetric, per tensor/channel/group
    methods.py   RTN, GPTQ, AWQ, SmoothQuant, LLM.int8(), BitNet b1.58, KV-cache INT8/FP8
    apply.py     the methods applied to the shipped tiny GPT; weight and KV memory
    deploy.py    the hardware and deployment tables (cited in the chapter)
    plots.py     the chapter's figures: a bit-layout and MX-block schematic, data plots
"""
from __future__ import annotations

from llminfra_lab.quant.apply import (
    METHODS,
    activation_absmax,
    calibration_ids,
    collect_inputs,
    heldout_ids,
    kv_bytes_per_token,
    linear_layers,
    quantize_model,
    weight_bytes,
)
from llminfra_lab.quant.deploy import ENGINE_FORMATS, HARDWARE_FORMATS, hardware_rows, load_results
from llminfra_lab.quant.formats import (
    FORMATS,
    GRANULARITIES,
    MX_ELEMENT_EMAX,
    Minifloat,
    decode,
    dequantize_int,
    encode,
    fake_quant,
    format_values,
    mx_quantize,
    nf4_codebook,
    nf4_double_quant,
    nf4_quantize,
    quantize_int,
    round_to_format,
)
from llminfra_lab.quant.methods import (
    awq_search,
    bitnet_ternary,
    gptq_quantize,
    int8_decomposed_matmul,
    kv_attention_error,
    output_error,
    quantize_activations,
    quantize_kv,
    rtn_weight,
    smoothquant_scales,
)
from llminfra_lab.quant.plots import plot_error_vs_bits, plot_formats_schematic, plot_outliers, plot_perplexity_table

__all__ = [
    "METHODS", "activation_absmax", "calibration_ids", "collect_inputs", "heldout_ids", "kv_bytes_per_token",
    "linear_layers", "quantize_model", "weight_bytes", "ENGINE_FORMATS", "HARDWARE_FORMATS", "hardware_rows",
    "load_results",
    "FORMATS", "GRANULARITIES", "MX_ELEMENT_EMAX", "Minifloat", "decode", "dequantize_int", "encode",
    "fake_quant", "format_values", "mx_quantize", "nf4_codebook", "nf4_double_quant", "nf4_quantize",
    "quantize_int", "round_to_format", "awq_search", "bitnet_ternary", "gptq_quantize",
    "int8_decomposed_matmul", "kv_attention_error", "output_error", "quantize_activations", "quantize_kv",
    "rtn_weight", "smoothquant_scales", "plot_error_vs_bits", "plot_formats_schematic", "plot_outliers",
    "plot_perplexity_table",
]
