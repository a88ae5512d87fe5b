"""Cheaper attention over long sequences: attention sinks, block selection, latent KV.

StreamingLLM (Xiao et al. 2023): a window of the last W tokens keeps the KV cache bounded,
but once the first tokens fall out of it perplexity jumps, because softmax parks surplus
attention on them ("attention sinks"). Keeping S sink tokens beside the window fixes it;
positions are taken inside the cache, so no position ever exceeds S + W.

NSA-style selection (Yuan et al. 2025, Native Sparse Attention): score blocks of keys by
a compressed key (the block mean here), keep each query's top-n blocks plus its own, and
attend exactly inside them.

MLA (DeepSeek-AI 2024, DeepSeek-V2): cache one latent c of kv_lora_rank values per token
(plus a shared RoPE key); keys are c W_uk, and q . (c W_uk) = (q W_uk^T) . c, so the
up-projection can be absorbed into the query and the keys never materialised.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from llminfra_lab.checks import nonnegative_int, positive_int
from llminfra_lab.model import GPT, apply_rope, rope_frequencies

__all__ = ["streaming_logits", "streaming_perplexity", "block_sparse_attention", "mla_scores"]


def streaming_logits(model: GPT, idx: torch.Tensor, sinks: int, window: int) -> torch.Tensor:
    """Logits (batch, T, vocab) when each query sees `sinks` first tokens plus its last `window`.

    Equals decoding with a KV cache that evicts everything else (StreamingLLM): inside the
    window the relative positions are the true ones; a sink is seen at its cache position,
    as if the query sat at position sinks + window - 1.
    """
    if not isinstance(model, GPT):
        raise ValueError(f"model must be a GPT, got {type(model).__name__}")
    nonnegative_int("sinks", sinks)
    positive_int("window", window)
    if sinks + window > model.cfg.max_seq_len:
        raise ValueError(f"sinks + window ({sinks + window}) must fit in max_seq_len ({model.cfg.max_seq_len})")
    if not isinstance(idx, torch.Tensor) or idx.dim() != 2 or idx.dtype != torch.long:
        raise ValueError("idx must be a torch.long tensor (batch, seq)")
    t = idx.shape[1]
    base_cos, base_sin = _long_tables(model, t)
    pos = torch.arange(t)
    cache_pos = pos.clamp(max=sinks + window - 1)              # where the query sits in the cache
    visible = (pos[None, :] <= pos[:, None]) & ((pos[None, :] > pos[:, None] - window) | (pos[None, :] < sinks))
    x = model.tok_emb(idx)
    for block in model.blocks:
        a = block.attn
        h = block.attn_norm(x)
        b = h.shape[0]
        q = a.wq(h).view(b, t, a.n_head, a.head_dim).transpose(1, 2)
        k = a.wk(h).view(b, t, a.n_kv_head, a.head_dim).transpose(1, 2)
        v = a.wv(h).view(b, t, a.n_kv_head, a.head_dim).transpose(1, 2)
        k = apply_rope(k, base_cos, base_sin).repeat_interleave(a.n_head // a.n_kv_head, dim=1)
        v = v.repeat_interleave(a.n_head // a.n_kv_head, dim=1)
        scores = apply_rope(q, base_cos, base_sin) @ k.transpose(-1, -2)
        if sinks:
            q_cache = apply_rope(q, base_cos[cache_pos], base_sin[cache_pos])
            scores[..., :sinks] = q_cache @ k[..., :sinks, :].transpose(-1, -2)
        scores = (scores / math.sqrt(a.head_dim)).masked_fill(~visible, float("-inf"))
        out = torch.softmax(scores, dim=-1) @ v
        x = x + a.wo(out.transpose(1, 2).reshape(b, t, -1))
        x = x + block.mlp(block.mlp_norm(x))
    return model.lm_head(model.norm(x))


def _long_tables(model: GPT, t: int) -> tuple[torch.Tensor, torch.Tensor]:
    return rope_frequencies(model.cfg.head_dim, t, model.cfg.rope_theta)


@torch.no_grad()
def streaming_perplexity(model: GPT, ids: torch.Tensor, sinks: int, window: int, skip: int = 0) -> float:
    """exp(mean next-token loss) over one long 1-D id sequence, ignoring the first `skip` targets."""
    if not isinstance(ids, torch.Tensor) or ids.dim() != 1 or ids.numel() < 2:
        raise ValueError("ids must be a 1-D tensor of at least 2 token ids")
    nonnegative_int("skip", skip)
    logits = streaming_logits(model, ids[None, :-1], sinks, window)[0]
    loss = F.cross_entropy(logits[skip:].float(), ids[1 + skip:])
    return math.exp(loss.item())


def block_sparse_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, block: int,
                           top_blocks: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Causal attention where each query attends only inside its selected key blocks.

    q, k, v (..., T, d). Blocks of `block` keys are scored by q . mean(block keys); a query
    keeps its own block and the `top_blocks` best earlier ones. Returns (out (..., T, d),
    selected (..., T, n_blocks) bool). With top_blocks >= n_blocks it is full causal attention.
    """
    if not all(isinstance(x, torch.Tensor) for x in (q, k, v)) or q.shape != k.shape or k.shape != v.shape:
        raise ValueError("q, k, v must be torch tensors of one shape (..., seq, dim)")
    positive_int("block", block)
    nonnegative_int("top_blocks", top_blocks)
    t, d = q.shape[-2:]
    if t % block:
        raise ValueError(f"seq ({t}) must be a multiple of block ({block})")
    n = t // block
    pos, blk = torch.arange(t), torch.arange(t) // block
    summary = k.reshape(*k.shape[:-2], n, block, d).mean(-2)               # compressed keys (..., n, d)
    block_score = q @ summary.transpose(-1, -2)                              # (..., T, n)
    earlier = torch.arange(n)[None, :] < blk[:, None]
    block_score = block_score.masked_fill(~earlier, float("-inf"))
    keep = min(top_blocks, n)
    selected = blk[:, None] == torch.arange(n)[None, :]                      # own block, always
    selected = selected.expand(block_score.shape).clone()
    if keep:
        top = block_score.topk(keep, dim=-1).indices
        chosen = torch.zeros_like(selected).scatter_(-1, top, True) & earlier
        selected |= chosen
    key_ok = selected[..., blk] & (pos[None, :] <= pos[:, None])              # (..., T, T)
    scores = (q @ k.transpose(-1, -2) / math.sqrt(d)).masked_fill(~key_ok, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v, selected


def mla_scores(q: torch.Tensor, latent: torch.Tensor, w_uk: torch.Tensor, absorb: bool = True) -> torch.Tensor:
    """Scores q . k of one head with keys k = latent @ w_uk, with or without materialising k.

    q (Tq, dh); latent (Tk, r) the cached values; w_uk (r, dh) the key up-projection.
    absorb=True computes (q @ w_uk^T) @ latent^T and never forms the (Tk, dh) keys.
    """
    if not all(isinstance(x, torch.Tensor) for x in (q, latent, w_uk)) or q.dim() != 2 or latent.dim() != 2:
        raise ValueError("q (Tq, dh), latent (Tk, r), w_uk (r, dh) must be 2-D tensors")
    if w_uk.shape != (latent.shape[1], q.shape[1]):
        raise ValueError(f"w_uk must be (r, dh) = {(latent.shape[1], q.shape[1])}, got {tuple(w_uk.shape)}")
    if absorb:
        return (q @ w_uk.T) @ latent.T
    return q @ (latent @ w_uk).T
