"""Configurations of real open models, and their parameter counts computed from them.

Every entry is copied from the model's official `config.json` (Hugging Face) or paper,
named in its `source`. `ModelSpec.total_params()` and `.active_params()` count the weights
from the shape of each matrix, so a reader can see where the "7B" or "671B" comes from,
and the tests check the counts against the numbers the authors published.

Shapes counted (bias-free unless `qkv_bias`):

    embedding        vocab x d_model           (+ lm_head vocab x d_model unless tied)
    attention (GQA)  q: d_model x n_heads*head_dim, k and v: d_model x n_kv_heads*head_dim,
                     o: n_heads*head_dim x d_model
    attention (MLA)  low-rank q and kv projections, see `_mla_attention_params`
    FFN (SwiGLU)     3 x d_model x d_ff per expert; MoE layers add a router d_model x n_experts
    norms            2 x d_model per layer, d_model at the end
"""
from __future__ import annotations

import dataclasses
from dataclasses import KW_ONLY, dataclass
from typing import TYPE_CHECKING

from llminfra_lab.checks import nonnegative_int, positive_int

if TYPE_CHECKING:   # for the type hints only: importing model here would load torch
    from llminfra_lab.model import GPTConfig

__all__ = ["ModelSpec", "MODELS", "model_spec", "spec_from_gpt_config", "gpt_config_fields"]


@dataclass(frozen=True)
class ModelSpec:
    name: str
    n_layers: int
    d_model: int
    n_heads: int
    n_kv_heads: int
    head_dim: int            # for MLA: the no-RoPE part of a query/key head (qk_nope_head_dim)
    d_ff: int                # dense FFN width (the dense layers of an MoE model)
    vocab_size: int
    _: KW_ONLY
    n_experts: int = 1                 # routed experts per MoE layer (1 = dense model)
    experts_per_token: int = 1         # routed experts each token uses (top-k)
    n_shared_experts: int = 0          # experts every token uses (DeepSeek)
    moe_d_ff: int | None = None        # width of one expert's FFN (defaults to d_ff)
    tied_embeddings: bool = False
    params_published: float            # total parameters as published by the authors
    source: str                        # where the configuration and the published count come from
    active_params_published: float | None = None   # per-token activated parameters, MoE models
    n_dense_layers: int = 0            # MoE models: leading layers with a dense FFN (DeepSeek: 3)
    qkv_bias: bool = False             # Qwen2/2.5 add biases to q, k, v
    q_lora_rank: int | None = None     # MLA (DeepSeek-V2/V3): set for a low-rank query
    kv_lora_rank: int | None = None    # MLA: width of the compressed KV latent (set => MLA)
    qk_rope_head_dim: int = 0          # MLA: decoupled RoPE part of a query/key head
    v_head_dim: int | None = None      # MLA: value head width (defaults to head_dim)
    mtp_layers: int = 0                # DeepSeek-V3 multi-token-prediction modules (not in the 671B)

    def __post_init__(self):
        for field_name in ("n_layers", "d_model", "n_heads", "n_kv_heads", "head_dim", "d_ff", "vocab_size",
                           "n_experts", "experts_per_token"):
            value = getattr(self, field_name)
            positive_int(f"ModelSpec.{field_name}", value)
        for field_name in ("n_shared_experts", "n_dense_layers", "qk_rope_head_dim", "mtp_layers"):
            nonnegative_int(f"ModelSpec.{field_name}", getattr(self, field_name))
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads ({self.n_heads}) must be a multiple of n_kv_heads ({self.n_kv_heads})")
        if self.experts_per_token > self.n_experts:
            raise ValueError(f"experts_per_token ({self.experts_per_token}) exceeds n_experts ({self.n_experts})")
        if self.n_dense_layers > self.n_layers:
            raise ValueError(f"n_dense_layers ({self.n_dense_layers}) exceeds n_layers ({self.n_layers})")
        if not (isinstance(self.params_published, (int, float)) and self.params_published > 0):
            raise ValueError(f"params_published must be a positive number, got {self.params_published!r}")
        if not isinstance(self.source, str) or not self.source:
            raise ValueError("source must be a non-empty string saying where the numbers come from")

    @property
    def is_moe(self) -> bool:
        return self.n_experts > 1

    @property
    def is_mla(self) -> bool:
        return self.kv_lora_rank is not None

    # ------------------------------------------------------------------ counting

    def param_breakdown(self, active: bool = False, include_mtp: bool = False) -> dict[str, int]:
        """Parameters by part: embedding, attention, ffn, router, norms, lm_head, mtp.

        active=True counts only what one token uses: experts_per_token routed experts
        (plus the shared ones) instead of all of them. include_mtp adds DeepSeek-V3's
        multi-token-prediction module(s), which are not part of the published 671B.
        """
        if not isinstance(active, bool) or not isinstance(include_mtp, bool):
            raise ValueError("active and include_mtp must be bools")
        d = self.d_model
        attention = self._attention_params()
        n_moe = self.n_layers - self.n_dense_layers if self.is_moe else 0
        n_dense = self.n_layers - n_moe
        routed = self.experts_per_token if active else self.n_experts
        moe_ffn = (routed + self.n_shared_experts) * 3 * d * (self.moe_d_ff or self.d_ff)
        parts = {
            "embedding": self.vocab_size * d,
            "attention": self.n_layers * attention,
            "ffn": n_dense * 3 * d * self.d_ff + n_moe * moe_ffn,
            "router": n_moe * d * self.n_experts,
            "norms": self.n_layers * 2 * d + d,
            "lm_head": 0 if self.tied_embeddings else self.vocab_size * d,
            "mtp": 0,
        }
        if include_mtp and self.mtp_layers:
            # Each module: two RMSNorms, a 2d -> d projection, one MoE transformer layer,
            # a final norm; it shares the embedding and the output head with the main model.
            layer = attention + 2 * d + (moe_ffn + d * self.n_experts if self.is_moe else 3 * d * self.d_ff)
            parts["mtp"] = self.mtp_layers * (2 * d + 2 * d * d + layer + d)
        return parts

    def total_params(self, include_mtp: bool = False) -> int:
        """All weights, counted from the configuration."""
        return sum(self.param_breakdown(active=False, include_mtp=include_mtp).values())

    def active_params(self) -> int:
        """Weights one token's forward pass uses (equals total_params() for a dense model).

        Counts the input embedding, as Mistral's 12.9B for Mixtral does; DeepSeek's 37B
        (36.6B in its weights README) leaves the input embedding out.
        """
        return sum(self.param_breakdown(active=True).values())

    def _attention_params(self) -> int:
        d = self.d_model
        if self.is_mla:
            return self._mla_attention_params()
        q = d * self.n_heads * self.head_dim
        kv = 2 * d * self.n_kv_heads * self.head_dim
        o = self.n_heads * self.head_dim * d
        bias = (self.n_heads + 2 * self.n_kv_heads) * self.head_dim if self.qkv_bias else 0
        return q + kv + o + bias

    def _mla_attention_params(self) -> int:
        """Multi-head latent attention (DeepSeek-V2 section 2.1): low-rank q and kv.

        q:  d -> q_lora_rank (+ its RMSNorm) -> n_heads x (head_dim + rope_dim)
        kv: d -> kv_lora_rank + rope_dim (a shared RoPE key) (+ RMSNorm on the latent)
            latent -> n_heads x (head_dim [key] + v_head_dim [value])
        o:  n_heads x v_head_dim -> d
        """
        d, h, rope = self.d_model, self.n_heads, self.qk_rope_head_dim
        v_dim = self.v_head_dim or self.head_dim
        q_head = self.head_dim + rope
        if self.q_lora_rank:
            q = d * self.q_lora_rank + self.q_lora_rank + self.q_lora_rank * h * q_head
        else:
            q = d * h * q_head
        kv = d * (self.kv_lora_rank + rope) + self.kv_lora_rank + self.kv_lora_rank * h * (self.head_dim + v_dim)
        return q + kv + h * v_dim * d


_HF = "https://huggingface.co/{}/blob/main/config.json"

MODELS: dict[str, ModelSpec] = {
    "llama-2-7b": ModelSpec(
        "llama-2-7b", 32, 4096, 32, 32, 128, 11008, 32000, params_published=6.74e9,
        source=_HF.format("meta-llama/Llama-2-7b-hf") + "; count 6.74B from the checkpoint; Touvron et al. 2023 "
        "(arXiv:2307.09288)"),
    "llama-2-70b": ModelSpec(
        "llama-2-70b", 80, 8192, 64, 8, 128, 28672, 32000, params_published=70e9,
        source=_HF.format("meta-llama/Llama-2-70b-hf") + "; 70B in Touvron et al. 2023 (arXiv:2307.09288)"),
    "llama-3-8b": ModelSpec(
        "llama-3-8b", 32, 4096, 32, 8, 128, 14336, 128256, params_published=8.03e9,
        source=_HF.format("meta-llama/Meta-Llama-3-8B") + "; count 8.03B from the checkpoint"),
    "llama-3-70b": ModelSpec(
        "llama-3-70b", 80, 8192, 64, 8, 128, 28672, 128256, params_published=70.6e9,
        source=_HF.format("meta-llama/Meta-Llama-3-70B") + "; count 70.6B from the checkpoint"),
    "llama-3-405b": ModelSpec(
        "llama-3-405b", 126, 16384, 128, 8, 128, 53248, 128256, params_published=405e9,
        source=_HF.format("meta-llama/Llama-3.1-405B") + "; Llama 3 Herd of Models, Dubey et al. 2024 "
        "(arXiv:2407.21783), Table 3"),
    "gemma-2b": ModelSpec(
        "gemma-2b", 18, 2048, 8, 1, 256, 16384, 256000, tied_embeddings=True, params_published=2.506e9,
        source=_HF.format("google/gemma-2b") + "; multi-query attention (1 KV head), GeGLU FFN with SwiGLU's three "
        "matrices; 2,506,172,416 parameters in the checkpoint with the embedding counted once; Gemma Team 2024 "
        "(arXiv:2403.08295)"),
    "mixtral-8x7b": ModelSpec(
        "mixtral-8x7b", 32, 4096, 32, 8, 128, 14336, 32000, n_experts=8, experts_per_token=2,
        params_published=46.7e9, active_params_published=12.9e9,
        source=_HF.format("mistralai/Mixtral-8x7B-v0.1") + "; 46.7B total / 12.9B per token: Mistral AI, "
        "'Mixtral of experts' (2023-12-11), Jiang et al. 2024 (arXiv:2401.04088)"),
    "deepseek-v3": ModelSpec(
        "deepseek-v3", 61, 7168, 128, 128, 128, 18432, 129280, n_experts=256, experts_per_token=8,
        n_shared_experts=1, moe_d_ff=2048, n_dense_layers=3, q_lora_rank=1536, kv_lora_rank=512,
        qk_rope_head_dim=64, v_head_dim=128, mtp_layers=1,
        params_published=671e9, active_params_published=37e9,
        source=_HF.format("deepseek-ai/DeepSeek-V3") + "; 671B total / 37B activated (the MTP module adds "
        "11.5B unique, 685B in the checkpoint; 36.6B activated without the input embedding): DeepSeek-AI 2024 (arXiv:2412.19437)"),
    "qwen3-30b-a3b": ModelSpec(
        "qwen3-30b-a3b", 48, 2048, 32, 4, 128, 768, 151936, n_experts=128, experts_per_token=8, moe_d_ff=768,
        params_published=30.5e9, active_params_published=3.3e9,
        source=_HF.format("Qwen/Qwen3-30B-A3B") + "; 30.5B total / 3.3B activated on the model card; Qwen3 "
        "Technical Report, Yang et al. 2025 (arXiv:2505.09388), Table 2 (every layer is MoE, so d_ff = the expert "
        "width; QK-norm weights, 2 x 128 per layer, not counted)"),
    "qwen3-235b-a22b": ModelSpec(
        "qwen3-235b-a22b", 94, 4096, 64, 4, 128, 1536, 151936, n_experts=128, experts_per_token=8, moe_d_ff=1536,
        params_published=235e9, active_params_published=22e9,
        source=_HF.format("Qwen/Qwen3-235B-A22B") + "; 235B total / 22B activated on the model card; Qwen3 "
        "Technical Report, Yang et al. 2025 (arXiv:2505.09388), Table 2 (QK-norm weights not counted)"),
    "qwen2.5-7b": ModelSpec(
        "qwen2.5-7b", 28, 3584, 28, 4, 128, 18944, 152064, qkv_bias=True, params_published=7.61e9,
        source=_HF.format("Qwen/Qwen2.5-7B") + "; 7.61B (6.53B non-embedding) on the model card; Qwen Team 2024 "
        "(arXiv:2412.15115)"),
    "qwen2.5-72b": ModelSpec(
        "qwen2.5-72b", 80, 8192, 64, 8, 128, 29568, 152064, qkv_bias=True, params_published=72.7e9,
        source=_HF.format("Qwen/Qwen2.5-72B") + "; 72.7B (70.0B non-embedding) on the model card; Qwen Team 2024 "
        "(arXiv:2412.15115)"),
}


def model_spec(name: str) -> ModelSpec:
    """The catalog entry for name (e.g. "llama-3-8b"); KeyError lists the valid names."""
    if not isinstance(name, str):
        raise KeyError(f"model name must be a str, one of {sorted(MODELS)}; got {name!r}")
    key = name.strip().lower()
    if key not in MODELS:
        raise KeyError(f"unknown model {name!r}; valid names: {sorted(MODELS)}")
    return MODELS[key]


# The tiny GPT's GPTConfig and a catalog ModelSpec name the same shape differently
# (n_layer / n_layers, n_head / n_heads, tie_embeddings / tied_embeddings); these two
# functions are the one place that maps between them.
_GPT_TO_SPEC = {"n_layer": "n_layers", "d_model": "d_model", "n_head": "n_heads", "n_kv_head": "n_kv_heads",
                "d_ff": "d_ff", "vocab_size": "vocab_size", "tie_embeddings": "tied_embeddings"}


def spec_from_gpt_config(cfg: GPTConfig, name: str = "tiny-gpt") -> ModelSpec:
    """A ModelSpec of the tiny GPT's `GPTConfig` `cfg`, so the catalog's counting, memory and
    cost functions apply to it. params_published is the count itself (nothing is published)."""
    missing = [f for f in (*_GPT_TO_SPEC, "head_dim") if not hasattr(cfg, f)]
    if missing:
        raise ValueError(f"cfg must be a model.GPTConfig; it lacks {missing}")
    kwargs = {spec_field: getattr(cfg, gpt_field) for gpt_field, spec_field in _GPT_TO_SPEC.items()}
    spec = ModelSpec(name=name, head_dim=cfg.head_dim, params_published=1.0, source="llminfra_lab.model.GPTConfig",
                     **kwargs)
    return dataclasses.replace(spec, params_published=float(spec.total_params()))


def gpt_config_fields(spec: ModelSpec) -> dict[str, int | bool]:
    """The GPTConfig keyword arguments for a dense, non-MLA catalog model whose head_dim is
    d_model / n_heads (the tiny GPT's layout): `GPTConfig(**gpt_config_fields(spec))`."""
    if not isinstance(spec, ModelSpec):
        raise ValueError(f"spec must be a ModelSpec, got {type(spec).__name__}")
    if spec.is_moe or spec.is_mla or spec.qkv_bias or spec.head_dim * spec.n_heads != spec.d_model:
        raise ValueError(f"{spec.name} is not a plain dense GQA model with head_dim = d_model / n_heads; "
                         "the tiny GPT cannot take its shape")
    return {gpt_field: getattr(spec, spec_field) for gpt_field, spec_field in _GPT_TO_SPEC.items()}

