"""A tiny decoder-only transformer in the style of current open models.

The book's running example. It has the parts that Llama, Qwen and Mistral share:

    token embedding -> n_layer x Block -> RMSNorm -> lm_head (tied to the embedding)
    Block:  x = x + Attention(RMSNorm(x))     causal, RoPE, grouped-query (n_kv_head <= n_head)
            x = x + MLP(RMSNorm(x))           SwiGLU: w_down(silu(w_gate x) * w_up x)

`GPT.forward` takes an optional `KVCache`: keys and values of earlier tokens are kept
so that decoding one new token costs one token's worth of work. `generate` is the
reference sampler (greedy, temperature, top-k, top-p) that later chapters speed up.
`save_pretrained`/`load_pretrained` store everything in one `.pt` file that
`torch.load(weights_only=True)` can read.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from llminfra_lab.checks import nonnegative_int, positive_int
from llminfra_lab.tokenizer import BPETokenizer

__all__ = [
    "GPTConfig", "RMSNorm", "Attention", "MLP", "Block", "KVCache", "GPT",
    "rope_frequencies", "apply_rope", "causal_attention", "filter_logits", "generate",
    "save_pretrained", "load_pretrained", "FORMAT", "TINY_CONFIGS", "tiny_config",
]

FORMAT = "llminfra_lab.gpt/1"  # tag stored in every checkpoint file


@dataclass
class GPTConfig:
    vocab_size: int = 512
    n_layer: int = 4
    n_head: int = 4
    n_kv_head: int = 2
    d_model: int = 128
    d_ff: int = 344
    max_seq_len: int = 256
    rope_theta: float = 10000.0
    norm_eps: float = 1e-5
    tie_embeddings: bool = True

    def __post_init__(self):
        for name in ("vocab_size", "n_layer", "n_head", "n_kv_head", "d_model", "d_ff", "max_seq_len"):
            value = getattr(self, name)
            positive_int(f"GPTConfig.{name}", value)
        if self.d_model % self.n_head:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_head ({self.n_head})")
        if self.n_head % self.n_kv_head:
            raise ValueError(f"n_head ({self.n_head}) must be a multiple of n_kv_head ({self.n_kv_head})")
        if self.head_dim % 2:
            raise ValueError(f"head_dim = d_model // n_head must be even for RoPE, got {self.head_dim}")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0
                   for v in (self.rope_theta, self.norm_eps)):
            raise ValueError(f"rope_theta and norm_eps must be > 0, got {self.rope_theta}, {self.norm_eps}")
        if not isinstance(self.tie_embeddings, bool):
            raise ValueError(f"tie_embeddings must be a bool, got {self.tie_embeddings!r}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_head


# ----------------------------------------------------------------------------- parts

#: The tiny GPTs of the book, defined once (package, labs and tests all use these).
#: "target" and "draft" are the shipped checkpoints' shapes (chapter 5 trains them; their
#: vocabulary of 512 comes from the BPE tokenizer); "small" is the untied model the
#: distributed chapters (6, 7) train across processes; "test" is the fast unit-test model.
TINY_CONFIGS: dict[str, dict] = {
    "target": dict(vocab_size=512, n_layer=6, n_head=4, n_kv_head=2, d_model=128, d_ff=344, max_seq_len=256),
    "draft": dict(vocab_size=512, n_layer=2, n_head=4, n_kv_head=2, d_model=96, d_ff=256, max_seq_len=256),
    "small": dict(vocab_size=128, n_layer=2, n_head=4, n_kv_head=2, d_model=64, d_ff=128, max_seq_len=32,
                  tie_embeddings=False),
    "test": dict(vocab_size=64, n_layer=2, n_head=4, n_kv_head=2, d_model=32, d_ff=64, max_seq_len=64),
}


def tiny_config(name: str = "small", **overrides: int | float | bool) -> GPTConfig:
    """The GPTConfig of one of the book's tiny models (a key of TINY_CONFIGS), with overrides."""
    if name not in TINY_CONFIGS:
        raise KeyError(f"unknown tiny config {name!r}; valid: {sorted(TINY_CONFIGS)}")
    valid = {f.name for f in fields(GPTConfig)}
    if set(overrides) - valid:
        raise ValueError(f"unknown GPTConfig fields {sorted(set(overrides) - valid)}; valid: {sorted(valid)}")
    return GPTConfig(**{**TINY_CONFIGS[name], **overrides})


class RMSNorm(nn.Module):
    """x / sqrt(mean(x^2) + eps) * weight, computed in float32 (Zhang & Sennrich 2019)."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x32 = x.float()
        normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        return (normed * self.weight.float()).to(x.dtype)


def rope_frequencies(head_dim: int, max_seq_len: int, theta: float = 10000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotary-embedding tables (Su et al. 2021): cos and sin, each (max_seq_len, head_dim // 2).

    Pair i of a head (dims i and i + head_dim/2) turns by angle pos * theta^(-2i/head_dim).
    """
    if not isinstance(head_dim, int) or head_dim < 2 or head_dim % 2:
        raise ValueError(f"head_dim must be an even int >= 2, got {head_dim!r}")
    if not isinstance(max_seq_len, int) or max_seq_len < 1:
        raise ValueError(f"max_seq_len must be a positive int, got {max_seq_len!r}")
    if not theta > 0:
        raise ValueError(f"theta must be > 0, got {theta!r}")
    inv_freq = theta ** (-torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.outer(torch.arange(max_seq_len, dtype=torch.float64), inv_freq)
    return angles.cos().float(), angles.sin().float()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate x (..., seq, head_dim) by the angles of cos/sin (seq, head_dim // 2)."""
    if x.shape[-1] % 2 or cos.shape != sin.shape or cos.shape != (x.shape[-2], x.shape[-1] // 2):
        raise ValueError(f"expected x (..., seq, 2*h) with cos/sin (seq, h); got {tuple(x.shape)}, "
                         f"{tuple(cos.shape)}, {tuple(sin.shape)}")
    x1, x2 = x.float().chunk(2, dim=-1)
    rotated = torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    return rotated.to(x.dtype)


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + causal mask) v, written out, with grouped-query heads.

    q: (batch, n_head, T, d); k, v: (batch, n_kv_head, S, d) with S >= T. The T queries are
    the LAST T positions of the S keys, so query i may see keys 0 .. S - T + i. Each group of
    n_head // n_kv_head query heads shares one key/value head (no copy of K/V is made).
    """
    b, h, t, d = q.shape
    kv_h, s = k.shape[1], k.shape[2]
    if k.shape != v.shape or k.shape[0] != b or k.shape[3] != d or h % kv_h or s < t:
        raise ValueError(f"bad shapes q {tuple(q.shape)}, k {tuple(k.shape)}, v {tuple(v.shape)}")
    q = q.reshape(b, kv_h, h // kv_h, t, d)                       # group query heads by KV head
    scores = q @ k.unsqueeze(2).transpose(-1, -2) / math.sqrt(d)   # (b, kv_h, group, t, s)
    visible = torch.arange(s, device=q.device)[None, :] <= torch.arange(s - t, s, device=q.device)[:, None]
    scores = scores.masked_fill(~visible, float("-inf"))
    out = torch.softmax(scores.float(), dim=-1).to(v.dtype) @ v.unsqueeze(2)
    return out.reshape(b, h, t, d)


class Attention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.n_head, self.n_kv_head, self.head_dim = cfg.n_head, cfg.n_kv_head, cfg.head_dim
        self.wq = nn.Linear(cfg.d_model, cfg.n_head * cfg.head_dim, bias=False)
        self.wk = nn.Linear(cfg.d_model, cfg.n_kv_head * cfg.head_dim, bias=False)
        self.wv = nn.Linear(cfg.d_model, cfg.n_kv_head * cfg.head_dim, bias=False)
        self.wo = nn.Linear(cfg.n_head * cfg.head_dim, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: KVCache | None = None,
                layer: int = 0) -> torch.Tensor:
        """x (batch, T, d_model); cos/sin (T, head_dim/2) for these T positions."""
        b, t, _ = x.shape
        q = self.wq(x).view(b, t, self.n_head, self.head_dim).transpose(1, 2)
        k = self.wk(x).view(b, t, self.n_kv_head, self.head_dim).transpose(1, 2)
        v = self.wv(x).view(b, t, self.n_kv_head, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            k, v = cache.append(layer, k, v)          # all keys/values so far, (b, kv_h, S, d)
        out = causal_attention(q, k, v)
        return self.wo(out.transpose(1, 2).reshape(b, t, self.n_head * self.head_dim))


class MLP(nn.Module):
    """SwiGLU feed-forward (Shazeer 2020)."""

    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.w_gate = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.w_up = nn.Linear(cfg.d_model, cfg.d_ff, bias=False)
        self.w_down = nn.Linear(cfg.d_ff, cfg.d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w_down(F.silu(self.w_gate(x)) * self.w_up(x))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.attn_norm, self.attn = RMSNorm(cfg.d_model, cfg.norm_eps), Attention(cfg)
        self.mlp_norm, self.mlp = RMSNorm(cfg.d_model, cfg.norm_eps), MLP(cfg)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, cache: KVCache | None = None,
                layer: int = 0) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), cos, sin, cache, layer)
        return x + self.mlp(self.mlp_norm(x))


class KVCache:
    """Keys and values of the tokens seen so far, per layer, preallocated to max_seq_len.

    k[layer], v[layer]: (batch, n_kv_head, max_seq_len, head_dim); the first `length`
    positions are filled. A forward pass writes its new tokens and then advances `length`.
    """

    def __init__(self, k: list[torch.Tensor], v: list[torch.Tensor]):
        self.k, self.v, self.length = k, v, 0

    @classmethod
    def empty(cls, cfg: GPTConfig, batch: int, device: torch.device | str | None = None,
              dtype: torch.dtype | None = None) -> KVCache:
        if not isinstance(cfg, GPTConfig):
            raise ValueError(f"cfg must be a GPTConfig, got {type(cfg).__name__}")
        positive_int("batch", batch)
        shape = (batch, cfg.n_kv_head, cfg.max_seq_len, cfg.head_dim)
        dtype = dtype or torch.float32
        make = lambda: [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layer)]  # noqa: E731
        return cls(make(), make())

    @property
    def batch(self) -> int:
        return self.k[0].shape[0]

    @property
    def capacity(self) -> int:
        return self.k[0].shape[2]

    def append(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v (batch, n_kv_head, T, head_dim) after the cached tokens; return all of them."""
        end = self.length + k.shape[2]
        self.k[layer][:, :, self.length:end] = k
        self.v[layer][:, :, self.length:end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]

    def nbytes(self) -> int:
        """Bytes held by the preallocated buffers."""
        return sum(t.numel() * t.element_size() for t in self.k + self.v)


# ----------------------------------------------------------------------------- model

class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig, seed: int = 0):
        super().__init__()
        if not isinstance(cfg, GPTConfig):
            raise ValueError(f"cfg must be a GPTConfig, got {type(cfg).__name__}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"seed must be an int, got {seed!r}")
        self.cfg = cfg
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.tok_emb.weight
        cos, sin = rope_frequencies(cfg.head_dim, cfg.max_seq_len, cfg.rope_theta)
        self.register_buffer("rope_cos", cos, persistent=False)
        self.register_buffer("rope_sin", sin, persistent=False)
        self._init_weights(seed)

    @torch.no_grad()
    def _init_weights(self, seed: int):
        """N(0, 0.02) everywhere, residual outputs scaled by 1/sqrt(2 n_layer) (GPT-2 style)."""
        gen = torch.Generator().manual_seed(seed)
        for name, p in self.named_parameters():           # tied weight appears once
            if name.endswith("norm.weight"):
                p.fill_(1.0)
            else:
                std = 0.02 / math.sqrt(2 * self.cfg.n_layer) if name.endswith(("wo.weight", "w_down.weight")) else 0.02
                p.copy_(torch.randn(p.shape, generator=gen) * std)

    def forward(self, idx: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        """Logits (batch, seq, vocab) for token ids idx (batch, seq).

        With a cache, positions continue from cache.length; new K/V are stored in it.
        """
        start = self._check_idx(idx, cache)
        t = idx.shape[1]
        cos, sin = self.rope_cos[start:start + t], self.rope_sin[start:start + t]
        x = self.tok_emb(idx)
        for i, block in enumerate(self.blocks):
            x = block(x, cos, sin, cache, i)
        if cache is not None:
            cache.length += t
        return self.lm_head(self.norm(x))

    def loss(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean next-token cross-entropy (nats); targets (batch, seq), -100 = ignore."""
        if not isinstance(targets, torch.Tensor) or targets.shape != getattr(idx, "shape", None):
            raise ValueError(f"targets must be a tensor of idx's shape {tuple(getattr(idx, 'shape', ()))}")
        if targets.dtype != torch.long:
            raise ValueError(f"targets must be torch.long, got {targets.dtype}")
        logits = self(idx)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1), ignore_index=-100)

    def num_params(self) -> int:
        """Parameters, counting a tied embedding once."""
        return sum(p.numel() for p in self.parameters())

    def _check_idx(self, idx, cache) -> int:
        if not isinstance(idx, torch.Tensor) or idx.dtype != torch.long or idx.dim() != 2 or idx.shape[1] == 0:
            raise ValueError("idx must be a non-empty torch.long tensor of shape (batch, seq)")
        if idx.numel() and (idx.min() < 0 or idx.max() >= self.cfg.vocab_size):
            raise ValueError(f"token ids must lie in [0, {self.cfg.vocab_size}), got {idx.min()}..{idx.max()}")
        start = 0
        if cache is not None:
            if not isinstance(cache, KVCache) or len(cache.k) != self.cfg.n_layer:
                raise ValueError("cache must be a KVCache made by KVCache.empty(model.cfg, batch)")
            if cache.batch != idx.shape[0]:
                raise ValueError(f"cache holds batch {cache.batch}, idx has batch {idx.shape[0]}")
            start = cache.length
            if start + idx.shape[1] > cache.capacity:
                raise ValueError(f"cache holds {start} tokens; {idx.shape[1]} more exceed its {cache.capacity}")
        if start + idx.shape[1] > self.cfg.max_seq_len:
            raise ValueError(f"sequence of {start + idx.shape[1]} tokens exceeds max_seq_len {self.cfg.max_seq_len}")
        return start


# ----------------------------------------------------------------------------- sampling

def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Set to -inf every logit outside the top-k and outside the top-p nucleus (last dim).

    Top-k keeps the k largest logits. Top-p then keeps the smallest set of most likely
    survivors whose renormalised probability reaches p (Holtzman et al. 2019): a token is
    kept when the mass of the tokens ranked above it is < p.
    """
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise ValueError(f"top_k must be None or a positive int, got {top_k!r}")
    if top_p is not None and not (isinstance(top_p, (int, float)) and 0 < top_p <= 1):
        raise ValueError(f"top_p must be None or in (0, 1], got {top_p!r}")
    logits = logits.clone()
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits[logits < kth] = float("-inf")
    if top_p is not None and top_p < 1:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = torch.softmax(sorted_logits.float(), dim=-1)
        mass_before = probs.cumsum(-1) - probs
        drop_sorted = mass_before >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits[drop] = float("-inf")
    return logits


@torch.no_grad()
def generate(model: GPT, idx: torch.Tensor, max_new_tokens: int, *, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None,
             generator: torch.Generator | None = None, use_cache: bool = True) -> torch.Tensor:
    """Append max_new_tokens sampled tokens to idx (batch, seq); temperature 0 = greedy."""
    if not isinstance(model, GPT):
        raise ValueError(f"model must be a GPT, got {type(model).__name__}")
    nonnegative_int("max_new_tokens", max_new_tokens)
    if not isinstance(temperature, (int, float)) or isinstance(temperature, bool) or not temperature >= 0:
        raise ValueError(f"temperature must be a number >= 0, got {temperature!r}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    filter_logits(torch.zeros(1), top_k, top_p)                  # validates top_k / top_p
    model._check_idx(idx, None)
    if idx.shape[1] + max_new_tokens > model.cfg.max_seq_len:
        raise ValueError(f"{idx.shape[1]} + {max_new_tokens} tokens exceed max_seq_len {model.cfg.max_seq_len}")
    was_training = model.training
    model.eval()
    dtype = next(model.parameters()).dtype
    cache = KVCache.empty(model.cfg, idx.shape[0], idx.device, dtype) if use_cache else None
    out, step_input = idx, idx
    for _ in range(max_new_tokens):
        logits = model(step_input, cache)[:, -1, :].float() if use_cache else model(out)[:, -1, :].float()
        if temperature == 0:
            nxt = logits.argmax(-1, keepdim=True)
        else:
            probs = torch.softmax(filter_logits(logits / temperature, top_k, top_p), dim=-1)
            nxt = torch.multinomial(probs, 1, generator=generator)
        out = torch.cat([out, nxt], dim=1)
        step_input = nxt
    model.train(was_training)
    return out


# ----------------------------------------------------------------------------- checkpoints

def save_pretrained(model: GPT, tokenizer: BPETokenizer | None, path: str | Path, recipe: dict) -> Path:
    """Write one .pt file: {format, config, state_dict, tokenizer, recipe}. Returns its path.

    tokenizer is a BPETokenizer (stored as its to_dict()) or None; recipe is a dict of
    plain values (str, int, float, bool, None, lists and dicts of those) saying how the
    weights were made.
    """
    if not isinstance(model, GPT):
        raise ValueError(f"model must be a GPT, got {type(model).__name__}")
    if tokenizer is not None and not callable(getattr(tokenizer, "to_dict", None)):
        raise ValueError("tokenizer must be a BPETokenizer (with .to_dict()) or None")
    if not isinstance(recipe, dict):
        raise ValueError(f"recipe must be a dict, got {type(recipe).__name__}")
    _check_plain(recipe, "recipe")
    path = Path(path)
    if path.suffix != ".pt":
        raise ValueError(f"path must end in .pt, got {str(path)!r}")
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    if model.cfg.tie_embeddings:
        state.pop("lm_head.weight")                      # the same tensor as tok_emb.weight
    blob = {"format": FORMAT, "config": asdict(model.cfg), "state_dict": state,
            "tokenizer": None if tokenizer is None else tokenizer.to_dict(), "recipe": recipe}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(blob, path)
    return path


def load_pretrained(name_or_path: str | Path = "target") -> tuple[GPT, BPETokenizer | None]:
    """(GPT, BPETokenizer or None) from a shipped name ("target", "draft") or a .pt path.

    The model is in eval mode; its recipe dict is attached as `model.recipe`.
    """
    if not isinstance(name_or_path, (str, Path)) or not str(name_or_path):
        raise ValueError(f"name_or_path must be a checkpoint name or a .pt path, got {name_or_path!r}")
    text = str(name_or_path)
    if text.endswith(".pt") or "/" in text or "\\" in text:
        path = Path(text)
        if not path.is_file():
            raise FileNotFoundError(f"no checkpoint file at {path}")
        blob = torch.load(path, map_location="cpu", weights_only=True)
    else:
        shipped = resources.files("llminfra_lab").joinpath("assets", "checkpoints", f"{text}.pt")
        if not shipped.is_file():
            raise FileNotFoundError(
                f"checkpoint {text!r} is not shipped yet: expected llminfra_lab/assets/checkpoints/{text}.pt "
                f"(the training chapter's code writes it with save_pretrained)")
        with resources.as_file(shipped) as path:
            blob = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(blob, dict) or blob.get("format") != FORMAT:
        raise ValueError(f"{text} is not a {FORMAT} checkpoint")
    known = {f.name for f in fields(GPTConfig)}
    cfg = GPTConfig(**{k: v for k, v in blob["config"].items() if k in known})
    model = GPT(cfg)
    state = dict(blob["state_dict"])
    if cfg.tie_embeddings:
        state["lm_head.weight"] = state["tok_emb.weight"]
    model.load_state_dict(state)
    model.recipe = blob["recipe"]
    model.eval()
    tokenizer = None
    if blob["tokenizer"] is not None:
        tokenizer = BPETokenizer.from_dict(blob["tokenizer"])
    return model, tokenizer


def _check_plain(value, where: str):
    """Raise ValueError unless value is built from str/int/float/bool/None, lists and str-keyed dicts.

    Exact types only: a subclass (torch's TorchVersion is a str, numpy's float64 a float)
    would be pickled as its own class, which torch.load(weights_only=True) refuses.
    """
    if value is None or type(value) in (str, int, float, bool):
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where} keys must be str, got {key!r}")
            _check_plain(item, f"{where}[{key!r}]")
        return
    raise ValueError(f"{where} holds a {type(value).__name__}; only plain str/int/float/bool/None/list/dict are allowed")
