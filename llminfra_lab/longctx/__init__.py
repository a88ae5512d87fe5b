"""Long context (chapter 16): making a model read far past its training length, cheaply.

Read the files in this order:

    rope.py              RoPE extension as inverse-frequency functions: position interpolation,
                         NTK-aware, dynamic NTK, YaRN (ramp and temperature), Llama 3.1
    evaluate.py          the tiny GPT past its 128-token training length: perplexity against
                         length for each method, and a synthetic needle (retrieval) probe
    sparse.py            StreamingLLM attention sinks, NSA-style block selection, MLA's
                         latent keys with the up-projection absorbed into the query
    sequence_parallel.py ring attention (causal, zigzag load balance) and Ulysses all-to-all
                         across gloo processes, both equal to full attention
    ssm.py               a selective scan (Mamba): recurrence and parallel prefix scan
    plots.py             the chapter's figures

KV-cache bytes per token for MHA/GQA/MLA live in the spine: `memory.kv_cache_bytes_per_token`.
"""
from __future__ import annotations

from llminfra_lab.longctx.evaluate import heldout_ids, needle_accuracy, needle_prompt, perplexity_vs_length, window_perplexity
from llminfra_lab.longctx.plots import load_results, plot_perplexity_vs_length, plot_ring_schedule, plot_rope_scaling
from llminfra_lab.longctx.rope import (
                                           ROPE_METHODS,
                                           base_inverse_frequencies,
                                           extend_model,
                                           inverse_frequencies,
                                           rope_tables,
                                           yarn_attention_scale,
                                           yarn_ramp,
)
from llminfra_lab.longctx.sequence_parallel import (
                                           causal_work,
                                           partial_attention,
                                           ring_and_ulysses,
                                           ring_attention,
                                           ring_attention_rank,
                                           shard_positions,
                                           ulysses_attention,
                                           ulysses_attention_rank,
)
from llminfra_lab.longctx.sparse import block_sparse_attention, mla_scores, streaming_logits, streaming_perplexity
from llminfra_lab.longctx.ssm import scan_steps, selective_scan_parallel, selective_scan_sequential

__all__ = [
    "ROPE_METHODS", "base_inverse_frequencies", "inverse_frequencies", "yarn_ramp", "yarn_attention_scale",
    "rope_tables", "extend_model", "heldout_ids", "window_perplexity", "perplexity_vs_length", "needle_prompt",
    "needle_accuracy", "streaming_logits", "streaming_perplexity", "block_sparse_attention", "mla_scores",
    "partial_attention", "shard_positions", "ring_attention_rank", "ring_attention", "ulysses_attention_rank",
    "ulysses_attention", "ring_and_ulysses", "causal_work", "selective_scan_sequential", "selective_scan_parallel", "scan_steps",
    "load_results", "plot_perplexity_vs_length", "plot_rope_scaling", "plot_ring_schedule",
]
