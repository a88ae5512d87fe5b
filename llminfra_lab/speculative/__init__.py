"""Speculative decoding: more tokens per target forward pass, with the target's distribution unchanged.

- `sampling`: draft-and-verify with modified rejection sampling (Leviathan et al. 2023,
  Chen et al. 2023), greedy verification, the expected-tokens and speed-up formulas;
- `drafting`: prompt-lookup (n-gram) drafts and Jacobi fixed-point decoding;
- `medusa`: Medusa heads, the tree attention mask and tree verification;
- `plots`: the draft-verify schematic, the tree mask and the chapter's figures.
"""
from __future__ import annotations

from .drafting import LookupStats, jacobi_decode, prompt_lookup_draft, prompt_lookup_generate
from .medusa import (
    MEDUSA_TREE,
    MedusaHeads,
    MedusaStats,
    load_medusa_heads,
    medusa_generate,
    train_medusa_heads,
    tree_attention_mask,
    tree_forward,
)
from .plots import plot_draft_verify_schematic, plot_expected_tokens, plot_tree_mask
from .sampling import (
    SpecStats,
    accept_or_resample,
    acceptance_probability,
    chi_square_gof,
    expected_speedup,
    expected_tokens_per_step,
    greedy_generate,
    residual_distribution,
    speculative_generate,
)

__all__ = [
    "SpecStats", "accept_or_resample", "acceptance_probability", "expected_speedup", "expected_tokens_per_step",
    "greedy_generate", "residual_distribution", "speculative_generate", "chi_square_gof",
    "LookupStats", "jacobi_decode", "prompt_lookup_draft", "prompt_lookup_generate",
    "MEDUSA_TREE", "MedusaHeads", "MedusaStats", "load_medusa_heads", "medusa_generate", "train_medusa_heads",
    "tree_attention_mask", "tree_forward",
    "plot_draft_verify_schematic", "plot_expected_tokens", "plot_tree_mask",
]
