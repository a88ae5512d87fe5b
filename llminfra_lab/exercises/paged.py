"""Lab 12 (continuous batching and PagedAttention): implement-it tasks and exercises."""
from __future__ import annotations

import heapq
import random

import torch

from llminfra_lab import paged
from llminfra_lab.labkit import exercise, task
from llminfra_lab.model import tiny_config

# ----------------------------------------------------------------------------- implement-it tasks


def _token_slot(block_table: list[int], position: int, block_size: int) -> int:
    """The package's look-up: the flat pool slot of token `position` of a sequence."""
    table = torch.tensor([block_table])
    return int(paged.slots_for(table, position + 1, block_size)[0, -1])


def _slot_cases(rng: random.Random) -> list[tuple]:
    cases = [([5, 1, 7], 0, 4), ([5, 1, 7], 5, 4), ([5, 1, 7], 11, 4), ([3], 0, 1), ([9, 2], 17, 16)]
    for _ in range(25):
        bs = rng.choice([1, 2, 4, 8, 16])
        table = rng.sample(range(64), rng.randint(1, 6))
        cases.append((table, rng.randrange(len(table) * bs), bs))
    return cases


task(
    "paged.token_slot",
    "Given a sequence's block table (physical block of each logical block), a token position and the block "
    "size, return the token's flat slot in the pool: physical block * block_size + offset inside the block.",
    reference=_token_slot,
    cases=_slot_cases,
    mistake=lambda block_table, position, block_size: block_table[position // block_size] + position % block_size,
)


def _blocks_needed(length: int, n_new: int, block_size: int, last_shared: bool) -> int:
    """The package's count, on a real PagedKVCache: fill `length` tokens, fork if shared, ask."""
    cfg = tiny_config("test")
    cache = paged.PagedKVCache(cfg, 64, block_size)
    cache.add_sequence(0)
    if length:
        kv = torch.zeros(cfg.n_layer, length, cfg.n_kv_head, cfg.head_dim)
        cache.append_tokens(0, kv, kv)
    if last_shared:
        cache.fork_sequence(0, 1)
    return cache.blocks_needed(0, n_new)


def _needed_cases(rng: random.Random) -> list[tuple]:
    cases = [(6, 1, 4, True), (6, 1, 4, False), (8, 1, 4, True), (0, 5, 4, False), (5, 0, 4, True), (3, 9, 4, True)]
    for _ in range(25):
        bs = rng.choice([1, 2, 4, 8])
        cases.append((rng.randint(0, 30), rng.randint(0, 12), bs, rng.random() < 0.5))
    return cases


def _needed_without_cow(length, n_new, block_size, last_shared):
    return -(-(length + n_new) // block_size) - -(-length // block_size)


task(
    "paged.blocks_needed",
    "A sequence holds `length` tokens in blocks of `block_size`; `last_shared` says whether its last block is "
    "shared with a forked sequence. How many free blocks does appending n_new tokens take? Count the new "
    "blocks, plus one copy if the tokens must be written into a shared, partly filled last block.",
    reference=_blocks_needed,
    cases=_needed_cases,
    mistake=_needed_without_cow,
)


def _longest_prefix(cached: list[list[int]], prompt: list[int]) -> int:
    """The package's radix tree: insert every cached sequence, match the prompt."""
    tree = paged.RadixCache(10**9)
    for tokens in cached:
        tree.insert(tokens)
    return tree.longest_prefix(prompt)


def _prefix_cases(rng: random.Random) -> list[tuple]:
    cases = [([[1, 2, 3, 4], [1, 2, 5]], [1, 2, 5, 9]), ([[1, 2, 3]], [4, 5]), ([], [1]),
             ([[7, 7, 7], [7, 7, 8, 1]], [7, 7, 8, 1, 2]), ([[1, 2, 3, 4]], [1, 2])]
    for _ in range(25):
        base = [rng.randrange(3) for _ in range(rng.randint(1, 8))]
        cached = [base[:rng.randint(0, len(base))] + [rng.randrange(3) for _ in range(rng.randint(0, 4))]
                  for _ in range(rng.randint(1, 4))]
        cases.append((cached, base[:rng.randint(1, len(base))] + [rng.randrange(3) for _ in range(3)]))
    return cases


def _prefix_last_only(cached, prompt):                     # only the most recent sequence is searched
    if not cached:
        return 0
    n = 0
    while n < min(len(cached[-1]), len(prompt)) and cached[-1][n] == prompt[n]:
        n += 1
    return n


task(
    "paged.longest_prefix",
    "Given the token lists already cached (each a list of ids) and a new prompt, return the length of the "
    "longest prefix of the prompt that equals the start of some cached list: what a radix tree would reuse.",
    reference=_longest_prefix,
    cases=_prefix_cases,
    mistake=_prefix_last_only,
)

# ----------------------------------------------------------------------------- exercises


def _kv_params(seed: int) -> dict:
    if seed == 0:
        return {"layers": 40, "kv_heads": 8, "head_dim": 128, "gb": 40, "reserve": 4096, "held": 1200}
    rng = random.Random(seed)
    return {"layers": rng.choice([24, 32, 40, 48, 64, 80]), "kv_heads": rng.choice([1, 2, 4, 8, 16]),
            "head_dim": rng.choice([64, 128]), "gb": rng.choice([20, 40, 60]),
            "reserve": rng.choice([2048, 4096, 8192]), "held": rng.choice([400, 800, 1200, 1600])}


def _kv_requests(layers, kv_heads, head_dim, gb, reserve, held, factor=2):
    per_token = factor * layers * kv_heads * head_dim * 2
    held_slots = -(-held // 16) * 16
    return [int(gb * 1e9 // (per_token * reserve)), int(gb * 1e9 // (per_token * held_slots))]


exercise(
    "paged.kv_requests",
    text=lambda layers, kv_heads, head_dim, gb, reserve, held: (
        f"A model has {layers} layers and {kv_heads} KV heads of dimension {head_dim}, K and V in BF16. With "
        f"{gb} GB (10^9 bytes) left for the KV cache, how many requests fit if each reserves {reserve} tokens, "
        f"and how many if each holds {held} tokens in blocks of 16? Answer [reserved, paged]."),
    params=_kv_params,
    solve=_kv_requests,
    mistake=lambda **p: _kv_requests(**p, factor=1),            # keys only: forgets V
    hint="bytes per token = 2 (K and V) x layers x kv_heads x head_dim x 2 bytes; round the held tokens up to blocks.",
)


def _waste_params(seed: int) -> dict:
    return {"block": 16} if seed == 0 else {"block": random.Random(seed).choice([4, 8, 32, 64, 128])}


exercise(
    "paged.block_waste",
    text=lambda block: (
        f"Finished sequences have lengths spread evenly over many values. With blocks of {block} tokens, how many "
        "slots of its last block does a sequence leave unused, on average?"),
    params=_waste_params,
    solve=lambda block: (block - 1) / 2,
    mistake=lambda block: block / 2,                            # counts an empty tail even when the block is full
    rtol=0.001,
    hint="the unused tail is 0, 1, ..., block - 1 slots, equally likely.",
)


def _static_params(seed: int) -> dict:
    if seed == 0:
        return {"lengths": [10, 20, 30, 100], "slots": 4}
    rng = random.Random(seed)
    return {"lengths": sorted(rng.sample(range(5, 121, 5), 4)), "slots": 4}


def _iterations(lengths: list[int], slots: int) -> list[int]:
    """[static, continuous] iterations for two identical groups of requests, first come first served."""
    queue = list(lengths) * 2
    static = sum(max(queue[i:i + slots]) for i in range(0, len(queue), slots))
    running = [(n, i) for i, n in enumerate(queue[:slots])]                  # (finish time, request)
    heapq.heapify(running)
    end = 0
    for i, n in enumerate(queue[slots:], start=slots):
        t, _ = heapq.heappop(running)
        heapq.heappush(running, (t + n, i))
    while running:
        end = max(end, heapq.heappop(running)[0])
    return [static, end]


exercise(
    "paged.static_iterations",
    text=lambda lengths, slots: (
        f"Eight requests arrive together, needing {lengths} decode iterations and then {lengths} again, in that "
        f"order. A server runs {slots} at a time. How many iterations until all finish under static batching, and under "
        "continuous batching (first come, first served)? Answer [static, continuous]."),
    params=_static_params,
    solve=_iterations,
    mistake=lambda lengths, slots: [2 * max(lengths), max(lengths)],     # as if the second group never waited
    rtol=0.0,
    hint="static: each batch of 4 lasts as long as its longest; continuous: give each waiting request the first "
         "slot to free.",
)


def _prefix_params(seed: int) -> dict:
    if seed == 0:
        return {"history": 1000, "message": 50, "block": 16}
    rng = random.Random(seed)
    block = rng.choice([8, 16, 32])
    return {"history": rng.randint(10, 180) * block + rng.randint(1, block - 1), "message": rng.randint(10, 200),
            "block": block}


exercise(
    "paged.prefix_reuse",
    text=lambda history, message, block: (
        f"A chat's cached history is {history} tokens; the new prompt is that history plus a {message}-token "
        f"message. How many prompt tokens can hashed blocks of {block} reuse, and how many can a radix tree? "
        "Answer [blocks, radix]."),
    params=_prefix_params,
    solve=lambda history, message, block: [history // block * block, history],
    mistake=lambda history, message, block: [-(-history // block) * block, history],   # counts the partial block
    rtol=0.0,
    hint="only full blocks have a hash.",
)
