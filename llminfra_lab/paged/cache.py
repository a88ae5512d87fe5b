"""The paged KV cache and the tiny GPT's forward pass out of it.

One pool per layer holds every sequence's keys and values:

    k[layer], v[layer]: (num_blocks, block_size, n_kv_head, head_dim)

A sequence owns a *block table*, the list of physical blocks holding its logical blocks 0, 1,
2, ... in order, so token t of the sequence lives in slot t % block_size of block
table[t // block_size]. Blocks are allocated only when a token needs one; the only unused
slots are at the tail of each sequence's last block. Forked sequences (parallel sampling,
beam search) share their parent's blocks until one of them writes into a shared block, which
is then copied (copy-on-write).

`paged_attention` is the attention the paper names: each query gathers its sequence's keys and
values through the block table and attends to them exactly as it would to a contiguous cache.
`paged_forward` runs the model on a batch that mixes whole prompts, prefill chunks and single
decode tokens of many sequences: the token-wise parts (projections, RoPE, MLP, norms) run on
all new tokens packed together, and only attention looks at each sequence's own history.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from llminfra_lab.checks import positive_int
from llminfra_lab.model import GPT, GPTConfig, apply_rope

from .blocks import BlockAllocator, OutOfBlocks

__all__ = ["PagedKVCache", "SwappedSequence", "paged_attention", "paged_forward", "slots_for"]


def slots_for(block_table: torch.Tensor, num_tokens: int, block_size: int) -> torch.Tensor:
    """Flat pool slots (block * block_size + offset) of tokens 0 .. num_tokens-1 of each sequence.

    block_table: (batch, max_blocks) long; returns (batch, num_tokens) long.
    """
    t = torch.arange(num_tokens, device=block_table.device)
    blocks = block_table[:, torch.div(t, block_size, rounding_mode="floor")]
    return blocks * block_size + t % block_size


def paged_attention(q: torch.Tensor, k_pool: torch.Tensor, v_pool: torch.Tensor, block_tables: torch.Tensor,
                    seq_lens: torch.Tensor) -> torch.Tensor:
    """Causal attention of queries over K/V gathered from a block pool through block tables.

    q: (batch, n_head, T, head_dim), the queries of the LAST T positions of each sequence;
    k_pool, v_pool: (num_blocks, block_size, n_kv_head, head_dim) for one layer;
    block_tables: (batch, max_blocks) long, physical block of each logical block (padding ignored);
    seq_lens: (batch,) long, tokens of each sequence in the pool, each >= 1.
    Query row r of sequence i sits at position seq_lens[i] - T + r and sees keys 0 .. that
    position (a row whose position is negative is padding: it sees key 0 and is meant to be
    dropped). Grouped-query heads share a K/V head, as in `model.causal_attention`; the
    result equals that function on the contiguous cache for every block table.
    """
    b, h, t, d = q.shape
    _, block_size, kv_h, _ = k_pool.shape
    if (k_pool.shape != v_pool.shape or k_pool.shape[3] != d or h % kv_h or block_tables.dim() != 2
            or block_tables.shape[0] != b or seq_lens.shape != (b,)):
        raise ValueError(f"bad shapes q {tuple(q.shape)}, pools {tuple(k_pool.shape)}/{tuple(v_pool.shape)}, "
                         f"block_tables {tuple(block_tables.shape)}, seq_lens {tuple(seq_lens.shape)}")
    s = int(seq_lens.max())
    if int(seq_lens.min()) < 1 or s > block_tables.shape[1] * block_size:
        raise ValueError(f"seq_lens must be in [1, max_blocks * block_size = {block_tables.shape[1] * block_size}], "
                         f"got {seq_lens.tolist()}")
    slots = slots_for(block_tables, s, block_size)                       # (b, s)
    k = k_pool.reshape(-1, kv_h, d)[slots].permute(0, 2, 1, 3)         # (b, kv_h, s, d): the gather
    v = v_pool.reshape(-1, kv_h, d)[slots].permute(0, 2, 1, 3)
    pos = (seq_lens[:, None] - t + torch.arange(t, device=q.device)).clamp(min=0)   # (b, t) query positions
    keys = torch.arange(s, device=q.device)
    visible = keys[None, None, :] <= pos[:, :, None]                    # (b, t, s): causal, within the sequence
    qg = q.reshape(b, kv_h, h // kv_h, t, d)
    scores = qg @ k.unsqueeze(2).transpose(-1, -2) / math.sqrt(d)        # (b, kv_h, group, t, s)
    scores = scores.masked_fill(~visible[:, None, None], float("-inf"))
    out = torch.softmax(scores.float(), dim=-1).to(v.dtype) @ v.unsqueeze(2)
    return out.reshape(b, h, t, d)


@dataclass
class SwappedSequence:
    """A sequence's K/V moved out of the pool (to host memory): (n_layer, tokens, n_kv_head, head_dim)."""

    k: torch.Tensor
    v: torch.Tensor

    @property
    def num_tokens(self) -> int:
        return self.k.shape[1]


class PagedKVCache:
    """K/V pools of `num_blocks` blocks of `block_size` tokens for every layer, and the block tables.

    PagedKVCache(config, num_blocks, block_size, dtype=torch.float32, device=None). The model's
    positions still stop at config.max_seq_len; the pool may hold any number of sequences.
    """

    def __init__(self, config: GPTConfig, num_blocks: int, block_size: int, dtype: torch.dtype = torch.float32,
                 device: torch.device | str | None = None):
        if not isinstance(config, GPTConfig):
            raise ValueError(f"config must be a GPTConfig, got {type(config).__name__}")
        positive_int("num_blocks", num_blocks)
        positive_int("block_size", block_size)
        if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating torch.dtype, got {dtype!r}")
        self.config, self.block_size = config, block_size
        shape = (config.n_layer, num_blocks, block_size, config.n_kv_head, config.head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.allocator = BlockAllocator(num_blocks)
        self._tables: dict[int, list[int]] = {}
        self._lens: dict[int, int] = {}

    # ------------------------------------------------------------------ sequences
    def add_sequence(self, seq_id: int) -> None:
        """Start an empty sequence (no block until its first token)."""
        if seq_id in self._tables:
            raise ValueError(f"sequence {seq_id!r} already exists")
        self._tables[seq_id], self._lens[seq_id] = [], 0

    def fork_sequence(self, parent_id: int, child_id: int) -> None:
        """A child that shares all the parent's blocks (reference counts + 1, nothing copied)."""
        self._check_seq(parent_id)
        if child_id in self._tables:
            raise ValueError(f"sequence {child_id!r} already exists")
        self._tables[child_id] = [self.allocator.fork(b) for b in self._tables[parent_id]]
        self._lens[child_id] = self._lens[parent_id]

    def free_sequence(self, seq_id: int) -> None:
        """Drop the sequence; each of its blocks loses one reference (shared blocks survive)."""
        self._check_seq(seq_id)
        for block in self._tables.pop(seq_id):
            self.allocator.free(block)
        del self._lens[seq_id]

    def has_sequence(self, seq_id: int) -> bool:
        return seq_id in self._tables

    @property
    def sequences(self) -> list[int]:
        return list(self._tables)

    def seq_len(self, seq_id: int) -> int:
        self._check_seq(seq_id)
        return self._lens[seq_id]

    def block_table(self, seq_id: int) -> list[int]:
        self._check_seq(seq_id)
        return list(self._tables[seq_id])

    def blocks_needed(self, seq_id: int, n_new_tokens: int) -> int:
        """Free blocks that appending n_new_tokens would take (new blocks + a copy-on-write copy)."""
        self._check_seq(seq_id)
        if isinstance(n_new_tokens, bool) or not isinstance(n_new_tokens, int) or n_new_tokens < 0:
            raise ValueError(f"n_new_tokens must be an int >= 0, got {n_new_tokens!r}")
        table, length = self._tables[seq_id], self._lens[seq_id]
        new = -(-(length + n_new_tokens) // self.block_size) - len(table)
        cow = n_new_tokens > 0 and length % self.block_size != 0 and self.allocator.refcount(table[-1]) > 1
        return new + int(cow)

    # ------------------------------------------------------------------ accounting
    @property
    def num_tokens(self) -> int:
        """Token slots holding a token, counting a shared block's slots once."""
        seen, total = set(), 0
        for seq_id, table in self._tables.items():
            for i, block in enumerate(table):
                if block not in seen:
                    seen.add(block)
                    total += min(self.block_size, self._lens[seq_id] - i * self.block_size)
        return total

    @property
    def num_used_blocks(self) -> int:
        return self.allocator.num_blocks - self.allocator.num_free

    def nbytes(self) -> int:
        """Bytes of the two pools."""
        return 2 * self.k.numel() * self.k.element_size()

    # ------------------------------------------------------------------ writing
    def reserve(self, seq_ids: list[int], n_new: list[int]) -> torch.Tensor:
        """Make room for n_new[i] more tokens of each sequence; their flat pool slots, in order.

        All or nothing: OutOfBlocks, with nothing changed, unless every block fits. Shared last
        blocks that are about to be written are copied first (copy-on-write).
        """
        need = sum(self.blocks_needed(s, n) for s, n in zip(seq_ids, n_new))
        if need > self.allocator.num_free:
            raise OutOfBlocks(f"this step needs {need} free blocks, {self.allocator.num_free} are free")
        slots = []
        for seq_id, n in zip(seq_ids, n_new):
            table, length = self._tables[seq_id], self._lens[seq_id]
            if n and length % self.block_size:
                block, copied = self.allocator.copy_on_write(table[-1])
                if copied:
                    self.k[:, block], self.v[:, block] = self.k[:, table[-1]], self.v[:, table[-1]]
                    table[-1] = block
            for t in range(length, length + n):
                if t // self.block_size == len(table):
                    table.append(self.allocator.allocate())
                slots.append(table[t // self.block_size] * self.block_size + t % self.block_size)
        return torch.tensor(slots, dtype=torch.long, device=self.k.device)

    def commit(self, seq_ids: list[int], n_new: list[int]) -> None:
        """Advance the sequences' lengths once their reserved slots are written."""
        for seq_id, n in zip(seq_ids, n_new):
            self._lens[seq_id] += n

    def write(self, layer: int, slots: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
        """Store k, v (tokens, n_kv_head, head_dim) of one layer into the flat slots."""
        self.k[layer].view(-1, *self.k.shape[3:])[slots] = k.to(self.k.dtype)
        self.v[layer].view(-1, *self.v.shape[3:])[slots] = v.to(self.v.dtype)

    def append_tokens(self, seq_id: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """Append a sequence's K/V for all layers: k, v (n_layer, tokens, n_kv_head, head_dim)."""
        self._check_seq(seq_id)
        expected = (self.config.n_layer, k.shape[1], self.config.n_kv_head, self.config.head_dim)
        if tuple(k.shape) != expected or k.shape != v.shape:
            raise ValueError(f"k and v must be (n_layer, tokens, n_kv_head, head_dim) = {expected}, got "
                             f"{tuple(k.shape)} and {tuple(v.shape)}")
        slots = self.reserve([seq_id], [k.shape[1]])
        for layer in range(self.config.n_layer):
            self.write(layer, slots, k[layer], v[layer])
        self.commit([seq_id], [k.shape[1]])

    def gather(self, seq_id: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The sequence's keys and values as contiguous tensors (n_layer, tokens, n_kv_head, head_dim)."""
        table = torch.tensor([self.block_table(seq_id)], dtype=torch.long, device=self.k.device)
        slots = slots_for(table, self._lens[seq_id], self.block_size)[0]
        flat = (self.config.n_layer, -1, *self.k.shape[3:])
        return self.k.view(flat)[:, slots], self.v.view(flat)[:, slots]

    # ------------------------------------------------------------------ swapping
    def swap_out(self, seq_id: int) -> SwappedSequence:
        """Copy the sequence's K/V to host memory and free its blocks (preemption by swapping)."""
        k, v = self.gather(seq_id)
        swapped = SwappedSequence(k.to("cpu", copy=True), v.to("cpu", copy=True))
        self.free_sequence(seq_id)
        return swapped

    def swap_in(self, seq_id: int, swapped: SwappedSequence) -> None:
        """Bring a swapped-out sequence back into fresh blocks (OutOfBlocks if they do not fit)."""
        if not isinstance(swapped, SwappedSequence):
            raise ValueError(f"swapped must be a SwappedSequence, got {type(swapped).__name__}")
        need = -(-swapped.num_tokens // self.block_size)
        if need > self.allocator.num_free:
            raise OutOfBlocks(f"swapping in needs {need} blocks, {self.allocator.num_free} are free")
        self.add_sequence(seq_id)
        if swapped.num_tokens:
            self.append_tokens(seq_id, swapped.k.to(self.k.device), swapped.v.to(self.k.device))

    def _check_seq(self, seq_id: int) -> None:
        if seq_id not in self._tables:
            raise KeyError(f"unknown sequence {seq_id!r}; known: {sorted(self._tables)[:20]}")


@torch.no_grad()
def paged_forward(model: GPT, cache: PagedKVCache, seq_ids: list[int], tokens: list[list[int]]) -> torch.Tensor:
    """Run each sequence's new tokens, store their K/V in the pool; logits (len(seq_ids), vocab).

    tokens[i] are sequence seq_ids[i]'s next tokens: a whole prompt, a prefill chunk or one
    decode token; a batch may mix them. Returned row i is the logits after tokens[i][-1].
    Raises OutOfBlocks (nothing changed) if the pool cannot hold the new tokens.
    """
    _check_batch(model, cache, seq_ids, tokens)
    n_new = [len(t) for t in tokens]
    starts = [cache.seq_len(s) for s in seq_ids]
    for s, start, n in zip(seq_ids, starts, n_new):
        if start + n > model.cfg.max_seq_len:
            raise ValueError(f"sequence {s} would reach {start + n} tokens, past max_seq_len {model.cfg.max_seq_len}")
    slots = cache.reserve(seq_ids, n_new)                       # the only step that can fail
    device = cache.k.device
    positions = torch.tensor([p for start, n in zip(starts, n_new) for p in range(start, start + n)], device=device)
    seq_lens = torch.tensor([start + n for start, n in zip(starts, n_new)], device=device)
    width = max(len(cache.block_table(s)) for s in seq_ids)
    tables = torch.tensor([cache.block_table(s) + [0] * (width - len(cache.block_table(s))) for s in seq_ids],
                          device=device)
    # Queries are padded to (batch, t_max), right-aligned: row r of sequence i holds packed token
    # rows[i, r] (or -1, padding), so each sequence's new tokens are its last positions.
    t_max, ends = max(n_new), torch.tensor(n_new, device=device).cumsum(0)
    rows = ends[:, None] - t_max + torch.arange(t_max, device=device)
    real = rows >= (ends - torch.tensor(n_new, device=device))[:, None]
    rows = torch.where(real, rows, torch.full_like(rows, -1))
    cos, sin = model.rope_cos[positions], model.rope_sin[positions]
    x = model.tok_emb(torch.tensor([t for toks in tokens for t in toks], device=device))[None]   # (1, N, d)
    n, b = x.shape[1], len(seq_ids)
    for layer, block in enumerate(model.blocks):
        a, h = block.attn, block.attn_norm(x)
        q = a.wq(h).view(1, n, a.n_head, a.head_dim).transpose(1, 2)          # (1, n_head, N, d)
        k = a.wk(h).view(1, n, a.n_kv_head, a.head_dim).transpose(1, 2)
        v = a.wv(h).view(1, n, a.n_kv_head, a.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)               # each token at its own position
        cache.write(layer, slots, k[0].transpose(0, 1), v[0].transpose(0, 1))
        q_pad = q[0].transpose(0, 1)[rows.clamp(min=0)]                        # (b, t_max, n_head, d)
        out = paged_attention(q_pad.transpose(1, 2), cache.k[layer], cache.v[layer], tables, seq_lens)
        out = out.transpose(1, 2)[real].reshape(1, n, a.n_head * a.head_dim)  # back to packed order
        x = x + a.wo(out)
        x = x + block.mlp(block.mlp_norm(x))
    cache.commit(seq_ids, n_new)
    last = ends - 1
    return model.lm_head(model.norm(x[0, last])).float().reshape(b, -1)


def _check_batch(model, cache, seq_ids, tokens) -> None:
    if not isinstance(model, GPT):
        raise ValueError(f"model must be a GPT, got {type(model).__name__}")
    if not isinstance(cache, PagedKVCache):
        raise ValueError(f"cache must be a PagedKVCache, got {type(cache).__name__}")
    if model.cfg.n_layer != cache.config.n_layer or model.cfg.n_kv_head != cache.config.n_kv_head \
            or model.cfg.head_dim != cache.config.head_dim:
        raise ValueError("cache was made for a different model shape (n_layer, n_kv_head, head_dim)")
    if not isinstance(seq_ids, list) or not isinstance(tokens, list) or not seq_ids or len(seq_ids) != len(tokens):
        raise ValueError("seq_ids and tokens must be non-empty lists of the same length")
    if len(set(seq_ids)) != len(seq_ids):
        raise ValueError(f"seq_ids must be distinct, got {seq_ids}")
    for s, toks in zip(seq_ids, tokens):
        cache._check_seq(s)
        if not isinstance(toks, list) or not toks or not all(
                isinstance(t, int) and not isinstance(t, bool) and 0 <= t < model.cfg.vocab_size for t in toks):
            raise ValueError(f"tokens of sequence {s} must be a non-empty list of ids in [0, {model.cfg.vocab_size})")
