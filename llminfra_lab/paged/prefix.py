"""Prefix caching two ways: vLLM's hashed full blocks and SGLang's radix tree.

Requests that start with the same tokens (a system prompt, the earlier turns of a chat) have
the same keys and values for those tokens, so a server can keep them and skip their prefill.

- `BlockPrefixCache` (vLLM's automatic prefix caching): each FULL block of block_size tokens is
  named by a hash of (the previous block's hash, its own tokens), so a block's name encodes
  the whole prefix up to it. A new prompt looks its blocks up in order and reuses them until the
  first miss. A partly filled last block is never shared. Unused blocks are evicted least
  recently used first; a finished request's blocks are released tail first, so a prefix's
  later blocks go before its earlier ones.
- `RadixCache` (SGLang's RadixAttention, Zheng et al. 2024): a radix tree whose edges are token
  runs; a prompt matches the longest path from the root, token by token, and eviction removes
  least recently used leaves.

Both count what a real cache would save: prompt tokens whose K/V are found. The last prompt
token is always computed (its logits are needed), so a hit covers at most len(prompt) - 1.
Capacities are in tokens (the block cache holds capacity // block_size blocks).
"""
from __future__ import annotations

import heapq
import random
from collections import OrderedDict
from dataclasses import dataclass, field

from llminfra_lab.checks import positive_int

__all__ = ["block_hashes", "BlockPrefixCache", "RadixCache", "shared_prompt_trace", "multi_turn_trace",
           "hit_rate"]


def block_hashes(tokens: list[int], block_size: int) -> list[int]:
    """Hash of each full block: hash((previous block's hash, this block's tokens)), chained from None."""
    positive_int("block_size", block_size)
    hashes, parent = [], None
    for start in range(0, len(tokens) - block_size + 1, block_size):
        parent = hash((parent, tuple(tokens[start:start + block_size])))
        hashes.append(parent)
    return hashes


class BlockPrefixCache:
    """vLLM-style prefix cache of full blocks keyed by chained hashes, LRU eviction."""

    def __init__(self, capacity_tokens: int, block_size: int = 16):
        positive_int("capacity_tokens", capacity_tokens)
        positive_int("block_size", block_size)
        self.block_size, self.capacity_blocks = block_size, capacity_tokens // block_size
        self._lru: OrderedDict[int, None] = OrderedDict()        # oldest first

    def match(self, prompt: list[int]) -> int:
        """Prompt tokens whose blocks are cached (whole blocks from the start, at most len - 1)."""
        hits = 0
        for h in block_hashes(prompt, self.block_size):
            if h not in self._lru:
                break
            hits += self.block_size
        return min(hits, max(len(prompt) - 1, 0))

    def insert(self, tokens: list[int]) -> None:
        """Cache every full block of `tokens`; release them tail first (the head stays longest)."""
        for h in reversed(block_hashes(tokens, self.block_size)):
            self._lru[h] = None
            self._lru.move_to_end(h)
        while len(self._lru) > self.capacity_blocks:
            self._lru.popitem(last=False)

    def serve(self, prompt: list[int], output: list[int] = ()) -> int:
        """Look the prompt up, then cache prompt + output; the prompt tokens that hit."""
        hits = self.match(prompt)
        self.insert(list(prompt) + list(output))
        return hits

    @property
    def num_tokens(self) -> int:
        return len(self._lru) * self.block_size


@dataclass(eq=False)
class _Node:
    key: list[int] = field(default_factory=list)             # the token run on the edge into this node
    children: dict[int, _Node] = field(default_factory=dict)
    parent: _Node | None = None
    last_access: int = 0


class RadixCache:
    """SGLang-style radix tree over token ids with least-recently-used leaf eviction."""

    def __init__(self, capacity_tokens: int):
        positive_int("capacity_tokens", capacity_tokens)
        self.capacity = capacity_tokens
        self.root, self.num_tokens, self._clock = _Node(), 0, 0

    def longest_prefix(self, tokens: list[int]) -> int:
        """Length of the longest prefix of `tokens` on a path from the root; touches that path."""
        self._clock += 1
        node, i = self.root, 0
        while i < len(tokens) and tokens[i] in node.children:
            child = node.children[tokens[i]]
            common = _common(child.key, tokens[i:])
            child.last_access = self._clock
            i += common
            if common < len(child.key):
                break
            node = child
        return i

    def match(self, prompt: list[int]) -> int:
        """Prompt tokens whose K/V the tree holds (the longest prefix, at most len - 1)."""
        return min(self.longest_prefix(prompt), max(len(prompt) - 1, 0))

    def insert(self, tokens: list[int]) -> None:
        """Add the tokens' path (splitting an edge where they diverge), then evict down to capacity."""
        self._clock += 1
        node, i = self.root, 0
        while i < len(tokens):
            child = node.children.get(tokens[i])
            if child is None:
                leaf = _Node(list(tokens[i:]), {}, node, self._clock)
                node.children[tokens[i]] = leaf
                self.num_tokens += len(leaf.key)
                break
            common = _common(child.key, tokens[i:])
            if common < len(child.key):                          # split the edge at the divergence
                mid = _Node(child.key[:common], {child.key[common]: child}, node, self._clock)
                node.children[tokens[i]] = mid
                child.key, child.parent = child.key[common:], mid
                child = mid
            child.last_access = self._clock
            node, i = child, i + common
        self._evict(self.num_tokens - self.capacity)

    def serve(self, prompt: list[int], output: list[int] = ()) -> int:
        hits = self.match(prompt)
        self.insert(list(prompt) + list(output))
        return hits

    def _evict(self, n_tokens: int) -> None:
        if n_tokens <= 0:
            return
        leaves = [(n.last_access, id(n), n) for n in self._nodes() if not n.children and n is not self.root]
        heapq.heapify(leaves)
        while n_tokens > 0 and leaves:
            _, _, leaf = heapq.heappop(leaves)
            parent = leaf.parent
            del parent.children[leaf.key[0]]
            self.num_tokens -= len(leaf.key)
            n_tokens -= len(leaf.key)
            if parent is not self.root and not parent.children:
                heapq.heappush(leaves, (parent.last_access, id(parent), parent))

    def _nodes(self):
        stack = [self.root]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(node.children.values())


def _common(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


# ----------------------------------------------------------------------------- traces

def shared_prompt_trace(n_requests: int = 200, n_system: int = 4, system_len: int = 96,
                        user_len: tuple[int, int] = (8, 40), output_len: tuple[int, int] = (8, 64),
                        vocab_size: int = 512, seed: int = 0) -> list[tuple[list[int], list[int]]]:
    """(prompt, output) pairs: a system prompt (one of n_system, Zipf-weighted 1/rank) + a user question."""
    for name, value in (("n_requests", n_requests), ("n_system", n_system), ("system_len", system_len),
                        ("vocab_size", vocab_size)):
        positive_int(name, value)
    rng = random.Random(seed)
    systems = [[rng.randrange(vocab_size) for _ in range(system_len)] for _ in range(n_system)]
    weights = [1 / (rank + 1) for rank in range(n_system)]
    trace = []
    for _ in range(n_requests):
        system = rng.choices(systems, weights)[0]
        user = [rng.randrange(vocab_size) for _ in range(rng.randint(*user_len))]
        trace.append((system + user, [rng.randrange(vocab_size) for _ in range(rng.randint(*output_len))]))
    return trace


def multi_turn_trace(n_conversations: int = 24, turns: int = 5, user_len: tuple[int, int] = (8, 32),
                     reply_len: tuple[int, int] = (16, 48), vocab_size: int = 512, seed: int = 0
                     ) -> list[tuple[list[int], list[int]]]:
    """(prompt, output) pairs of interleaved chats: turn t's prompt is the whole history plus a new message.

    Conversations are open at random; each request continues one of them, so turns of
    different chats interleave, as on a busy server.
    """
    positive_int("n_conversations", n_conversations)
    positive_int("turns", turns)
    positive_int("vocab_size", vocab_size)
    rng = random.Random(seed)
    history = [[] for _ in range(n_conversations)]
    left = [turns] * n_conversations
    trace = []
    while any(left):
        c = rng.choice([i for i in range(n_conversations) if left[i]])
        prompt = history[c] + [rng.randrange(vocab_size) for _ in range(rng.randint(*user_len))]
        reply = [rng.randrange(vocab_size) for _ in range(rng.randint(*reply_len))]
        trace.append((prompt, reply))
        history[c] = prompt + reply
        left[c] -= 1
    return trace


def hit_rate(cache: BlockPrefixCache | RadixCache, trace: list[tuple[list[int], list[int]]]) -> float:
    """Share of all prompt tokens found in the cache when the trace is served in order."""
    if not isinstance(cache, (BlockPrefixCache, RadixCache)):
        raise ValueError(f"cache must be a BlockPrefixCache or RadixCache, got {type(cache).__name__}")
    if not isinstance(trace, list) or not trace:
        raise ValueError("trace must be a non-empty list of (prompt, output) pairs")
    hits = sum(cache.serve(prompt, output) for prompt, output in trace)
    return hits / sum(len(prompt) for prompt, _ in trace)
