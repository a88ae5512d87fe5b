"""Chapter 12: block allocator, paged KV cache, paged attention, paged forward, scheduler.

References: a plain contiguous cache (the model's own `causal_attention` and
`torch.nn.functional.scaled_dot_product_attention`), the model's `generate`, and brute-force
versions written in the tests.
"""
import math
import random

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from llminfra_lab.model import GPT, causal_attention, generate, load_pretrained, tiny_config
from llminfra_lab.paged import (
    BlockAllocator,
    ContiguousAllocator,
    OutOfBlocks,
    PagedKVCache,
    Scheduler,
    SchedulerConfig,
    SchedulerStep,
    TraceRequest,
    paged_attention,
    paged_forward,
    replay,
    serve_greedy,
    synthetic_trace,
)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny():
    return GPT(tiny_config("test"), seed=3).eval()


def _prompts(n, vocab, seed=0, lo=1, hi=20):
    rng = random.Random(seed)
    return [[rng.randrange(vocab) for _ in range(rng.randint(lo, hi))] for _ in range(n)]


def _reference(model, prompt, n):
    return generate(model, torch.tensor([prompt]), n, temperature=0)[0, len(prompt):].tolist()


# ----------------------------------------------------------------------------- allocator

def test_allocator_refcounts_and_free_list():
    a = BlockAllocator(3)
    b0, b1 = a.allocate(), a.allocate()
    assert (b0, b1, a.num_free, a.num_blocks) == (0, 1, 1, 3)
    assert a.fork(b0) == b0 and a.refcount(b0) == 2
    a.free(b0)
    assert a.refcount(b0) == 1 and a.num_free == 1
    a.free(b0)
    assert a.refcount(b0) == 0 and a.num_free == 2
    a.allocate(), a.allocate()
    with pytest.raises(OutOfBlocks, match="all 3 blocks"):
        a.allocate()


def test_copy_on_write_only_when_shared():
    a = BlockAllocator(4)
    b = a.allocate()
    assert a.copy_on_write(b) == (b, False)
    a.fork(b)
    fresh, copied = a.copy_on_write(b)
    assert copied and fresh != b and a.refcount(b) == 1 and a.refcount(fresh) == 1


@settings(max_examples=40, deadline=None)
@given(ops=st.lists(st.tuples(st.sampled_from("afx"), st.integers(0, 7)), max_size=60))
def test_allocator_matches_a_plain_count(ops):
    """Brute force: a dict of counts; free blocks = those at zero, whatever the order of operations."""
    a, counts = BlockAllocator(8), {b: 0 for b in range(8)}
    for op, b in ops:
        live = [x for x in counts if counts[x] > 0]
        if op == "a" and a.num_free:
            counts[a.allocate()] += 1
        elif op == "f" and live:
            blk = live[b % len(live)]
            a.fork(blk)
            counts[blk] += 1
        elif op == "x" and live:
            blk = live[b % len(live)]
            a.free(blk)
            counts[blk] -= 1
        assert a.num_free == sum(1 for c in counts.values() if c == 0)
        assert all(a.refcount(x) == c for x, c in counts.items())


def test_allocator_rejects_bad_blocks():
    a = BlockAllocator(2)
    with pytest.raises(ValueError, match="num_blocks must be an int >= 1"):
        BlockAllocator(0)
    with pytest.raises(ValueError, match="block must be in"):
        a.refcount(5)
    with pytest.raises(ValueError, match="is free"):
        a.free(0)
    with pytest.raises(ValueError, match="is free"):
        a.fork(1)
    with pytest.raises(ValueError, match="block must be an int >= 0"):
        a.copy_on_write(-1)


def test_contiguous_allocator_first_fit_and_holes():
    c = ContiguousAllocator(10)
    assert c.allocate("a", 3) == 0 and c.allocate("b", 3) == 3 and c.allocate("c", 3) == 6
    c.release("b")
    assert c.holes() == [(3, 3), (9, 1)] and c.num_free == 4
    assert c.allocate("d", 4) is None              # 4 free slots, but no hole of 4: external fragmentation
    assert c.unusable_free(4) == 4 and c.unusable_free(2) == 1
    with pytest.raises(ValueError, match="already holds"):
        c.allocate("a", 1)
    with pytest.raises(ValueError, match="holds no range"):
        c.release("zz")
    with pytest.raises(ValueError, match="size must be an int >= 1"):
        c.allocate("e", 0)


# ----------------------------------------------------------------------------- paged attention

def _contiguous(q, k, v):
    """Reference: SDPA over the contiguous cache, queries at the last T positions (GQA by repeat)."""
    t, s = q.shape[-2], k.shape[-2]
    rep = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1)
    mask = torch.arange(s)[None, :] <= torch.arange(s - t, s)[:, None]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


@settings(max_examples=60, deadline=None)
@given(block_size=st.integers(1, 9), lens=st.lists(st.integers(1, 40), min_size=1, max_size=4),
       t=st.integers(1, 4), kv=st.sampled_from([(4, 2), (4, 4), (2, 1)]), seed=st.integers(0, 10_000))
def test_paged_attention_equals_contiguous_for_any_block_table(block_size, lens, t, kv, seed):
    """chapters.yml check: paged attention output equals contiguous attention (float32, <= 1e-5)
    for random block tables (vLLM paper, Kwon et al. 2023, section 4.1)."""
    gen = torch.Generator().manual_seed(seed)
    h, kv_h = kv
    d = 8
    lens = [max(n, t) for n in lens]
    per_seq = [-(-n // block_size) for n in lens]
    num_blocks = sum(per_seq) + 3
    order = torch.randperm(num_blocks, generator=gen).tolist()        # a random physical placement
    k_pool = torch.randn(num_blocks, block_size, kv_h, d, generator=gen)
    v_pool = torch.randn(num_blocks, block_size, kv_h, d, generator=gen)
    width = max(per_seq)
    tables, cursor = [], 0
    for nb in per_seq:
        tables.append(order[cursor:cursor + nb] + [order[-1]] * (width - nb))
        cursor += nb
    q = torch.randn(len(lens), h, t, d, generator=gen)
    out = paged_attention(q, k_pool, v_pool, torch.tensor(tables), torch.tensor(lens))
    for i, n in enumerate(lens):
        slots = [tables[i][j // block_size] * block_size + j % block_size for j in range(n)]
        k = k_pool.reshape(-1, kv_h, d)[slots].transpose(0, 1)[None]
        v = v_pool.reshape(-1, kv_h, d)[slots].transpose(0, 1)[None]
        torch.testing.assert_close(out[i:i + 1], _contiguous(q[i:i + 1], k, v), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(out[i:i + 1], causal_attention(q[i:i + 1], k, v), atol=1e-5, rtol=1e-5)


def test_paged_attention_rejects_bad_shapes():
    q, pool = torch.zeros(1, 4, 1, 8), torch.zeros(3, 2, 2, 8)
    with pytest.raises(ValueError, match="bad shapes"):
        paged_attention(q, pool, torch.zeros(3, 2, 2, 4), torch.zeros(1, 1, dtype=torch.long), torch.tensor([1]))
    with pytest.raises(ValueError, match="seq_lens must be in"):
        paged_attention(q, pool, pool, torch.zeros(1, 1, dtype=torch.long), torch.tensor([3]))


# ----------------------------------------------------------------------------- the cache

def test_cache_block_tables_fork_and_copy_on_write(tiny):
    cfg = tiny.cfg
    cache = PagedKVCache(cfg, num_blocks=6, block_size=4)
    cache.add_sequence(0)
    kv = torch.randn(cfg.n_layer, 6, cfg.n_kv_head, cfg.head_dim)
    cache.append_tokens(0, kv, -kv)
    assert cache.seq_len(0) == 6 and len(cache.block_table(0)) == 2 and cache.allocator.num_free == 4
    cache.fork_sequence(0, 1)                                      # parallel sampling: share the prompt
    assert cache.block_table(1) == cache.block_table(0) and cache.allocator.num_free == 4
    assert cache.blocks_needed(1, 1) == 1                          # the shared half-full block is copied
    new = torch.randn(cfg.n_layer, 1, cfg.n_kv_head, cfg.head_dim)
    cache.append_tokens(1, new, -new)
    t0, t1 = cache.block_table(0), cache.block_table(1)
    assert t0[0] == t1[0] and t0[1] != t1[1]                       # first block still shared, second copied
    k0, _ = cache.gather(0)
    k1, v1 = cache.gather(1)
    torch.testing.assert_close(k0, kv)
    torch.testing.assert_close(k1, torch.cat([kv, new], 1))
    torch.testing.assert_close(v1, -torch.cat([kv, new], 1))
    assert cache.num_tokens == 6 + 3                               # shared slots counted once
    cache.free_sequence(0)
    assert cache.allocator.refcount(t1[0]) == 1
    cache.free_sequence(1)
    assert cache.allocator.num_free == 6


def test_cache_swap_round_trip_and_reserve_is_all_or_nothing(tiny):
    cfg = tiny.cfg
    cache = PagedKVCache(cfg, num_blocks=3, block_size=2)
    cache.add_sequence(7)
    kv = torch.randn(cfg.n_layer, 5, cfg.n_kv_head, cfg.head_dim)
    cache.append_tokens(7, kv, kv + 1)
    swapped = cache.swap_out(7)
    assert cache.allocator.num_free == 3 and not cache.has_sequence(7)
    cache.swap_in(7, swapped)
    k, v = cache.gather(7)
    torch.testing.assert_close(k, kv)
    torch.testing.assert_close(v, kv + 1)
    cache.add_sequence(8)
    before = (cache.allocator.num_free, cache.block_table(7))
    with pytest.raises(OutOfBlocks, match="needs 2 free blocks"):
        cache.reserve([7, 8], [2, 2])
    assert (cache.allocator.num_free, cache.block_table(7)) == before and cache.seq_len(8) == 0


def test_cache_rejects_bad_input(tiny):
    with pytest.raises(ValueError, match="config must be a GPTConfig"):
        PagedKVCache("test", 4, 4)
    with pytest.raises(ValueError, match="block_size must be an int >= 1"):
        PagedKVCache(tiny.cfg, 4, 0)
    with pytest.raises(ValueError, match="dtype must be a floating"):
        PagedKVCache(tiny.cfg, 4, 4, dtype=torch.int32)
    cache = PagedKVCache(tiny.cfg, 4, 4)
    cache.add_sequence(0)
    with pytest.raises(ValueError, match="already exists"):
        cache.add_sequence(0)
    with pytest.raises(KeyError, match="unknown sequence"):
        cache.seq_len(9)
    with pytest.raises(ValueError, match="n_new_tokens must be an int >= 0"):
        cache.blocks_needed(0, -1)
    with pytest.raises(ValueError, match="k and v must be"):
        cache.append_tokens(0, torch.zeros(1, 1, 1, 1), torch.zeros(1, 1, 1, 1))
    with pytest.raises(ValueError, match="swapped must be a SwappedSequence"):
        cache.swap_in(5, None)


# ----------------------------------------------------------------------------- paged forward

def test_paged_forward_logits_equal_the_contiguous_forward(tiny):
    """Mixed batch (a prompt, a chunk, decode tokens) vs the model's own forward on each full sequence."""
    prompts = _prompts(3, tiny.cfg.vocab_size, seed=1, lo=5, hi=12)
    cache = PagedKVCache(tiny.cfg, 40, 3)
    for i in range(3):
        cache.add_sequence(i)
    paged_forward(tiny, cache, [0, 1], [prompts[0], prompts[1][:4]])
    logits = paged_forward(tiny, cache, [0, 1, 2], [[5], prompts[1][4:], prompts[2]])
    full = [prompts[0] + [5], prompts[1], prompts[2]]
    for i, seq in enumerate(full):
        ref = tiny(torch.tensor([seq]))[0, -1]
        torch.testing.assert_close(logits[i], ref, atol=1e-5, rtol=1e-5)


def test_paged_decoding_gives_the_tokens_of_generate(tiny):
    """A batch of requests decoded out of one block pool: each one's tokens equal model.generate's."""
    prompts = _prompts(5, tiny.cfg.vocab_size, seed=2)
    lengths = [12, 3, 20, 7, 15]
    out = serve_greedy(tiny, prompts, lengths, num_blocks=40, block_size=4)
    assert out == [_reference(tiny, p, n) for p, n in zip(prompts, lengths)]


def test_paged_forward_out_of_blocks_changes_nothing(tiny):
    cache = PagedKVCache(tiny.cfg, 2, 4)
    cache.add_sequence(0)
    with pytest.raises(OutOfBlocks, match="needs 3 free blocks"):
        paged_forward(tiny, cache, [0], [list(range(9))])
    assert cache.seq_len(0) == 0 and cache.allocator.num_free == 2


def test_paged_forward_rejects_bad_input(tiny):
    cache = PagedKVCache(tiny.cfg, 8, 4)
    cache.add_sequence(0)
    with pytest.raises(ValueError, match="model must be a GPT"):
        paged_forward("gpt", cache, [0], [[1]])
    with pytest.raises(ValueError, match="cache must be a PagedKVCache"):
        paged_forward(tiny, None, [0], [[1]])
    with pytest.raises(ValueError, match="non-empty lists of the same length"):
        paged_forward(tiny, cache, [0], [[1], [2]])
    with pytest.raises(ValueError, match="must be distinct"):
        paged_forward(tiny, cache, [0, 0], [[1], [2]])
    with pytest.raises(ValueError, match="non-empty list of ids"):
        paged_forward(tiny, cache, [0], [[tiny.cfg.vocab_size]])
    with pytest.raises(ValueError, match="past max_seq_len"):
        paged_forward(tiny, cache, [0], [[1] * (tiny.cfg.max_seq_len + 1)])
    other = PagedKVCache(tiny_config("test", n_layer=3), 4, 4)
    other.add_sequence(0)
    with pytest.raises(ValueError, match="different model shape"):
        paged_forward(tiny, other, [0], [[1]])


@pytest.mark.slow
def test_shipped_target_decodes_a_staggered_batch_exactly():
    """The shipped checkpoint: requests joining mid-flight, greedy, equal to generate (60 tokens each)."""
    model, tok = load_pretrained("target")
    prompts = [tok.encode(p) for p in ("Once upon a time", "The little dog", "12+34=", "Tom and Lily went to")]
    trace = [TraceRequest(i, 3 * i, p, 40) for i, p in enumerate(prompts)]
    result = replay(model, trace, SchedulerConfig(max_num_batched_tokens=1024), num_blocks=64, block_size=16)
    assert [result.outputs[i] for i in range(4)] == [_reference(model, p, 40) for p in prompts]


# ----------------------------------------------------------------------------- scheduler

CONFIGS = {
    "continuous": SchedulerConfig(max_num_seqs=4, max_num_batched_tokens=64),
    "static": SchedulerConfig(policy="static", max_num_seqs=4, max_num_batched_tokens=64),
    "chunked": SchedulerConfig(max_num_seqs=4, max_num_batched_tokens=16, chunked_prefill=True, chunk_size=5),
    "swap": SchedulerConfig(max_num_seqs=4, max_num_batched_tokens=64, preemption="swap"),
    "chunked-swap": SchedulerConfig(max_num_seqs=4, max_num_batched_tokens=16, chunked_prefill=True, chunk_size=5,
                                    preemption="swap"),
    "max_len": SchedulerConfig(max_num_seqs=4, max_num_batched_tokens=64, kv_reservation="max_len"),
    "oracle": SchedulerConfig(max_num_seqs=4, max_num_batched_tokens=64, kv_reservation="oracle"),
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_every_policy_gives_the_tokens_of_generate(tiny, name):
    """A trace under a tight pool (preemptions happen) still gives each request generate's tokens."""
    trace = synthetic_trace(8, tiny.cfg.vocab_size, rate=2.0, prompt_median=8, output_median=8, seed=4)
    trace = [TraceRequest(r.request_id, r.arrival, r.prompt[:20], min(r.output_len, 20)) for r in trace]
    result = replay(tiny, trace, CONFIGS[name], num_blocks=16, block_size=4)
    for r in trace:
        assert result.outputs[r.request_id] == _reference(tiny, r.prompt, r.output_len), r.request_id
    assert result.generated_tokens == sum(r.output_len for r in trace)
    assert max(result.batch_sizes) <= 4 and max(result.step_tokens) <= CONFIGS[name].max_num_batched_tokens
    if name in ("continuous", "swap", "chunked", "chunked-swap"):
        assert result.preemptions > 0                               # the pool of 16 blocks is too small
    if name in ("max_len", "oracle"):
        assert result.fractions["reserved"] > 0 and result.preemptions == 0


def test_static_batching_admits_only_after_the_batch_drains(tiny):
    cache = PagedKVCache(tiny.cfg, 32, 4)
    sched = Scheduler(SchedulerConfig(policy="static", max_num_seqs=2), cache)
    sched.add_request(0, [1, 2], 1)
    sched.add_request(1, [3], 4)
    step = sched.schedule()
    assert step.seq_ids == [0, 1] and step.sample == [True, True]
    sched.update(step, [5, 6])                                      # request 0 is done
    sched.add_request(2, [4], 2)
    for _ in range(3):
        step = sched.schedule()
        assert step.seq_ids == [1]                                  # 2 waits though a slot is free
        sched.update(step, [7])
    assert sched.schedule().seq_ids == [2]


def test_chunked_prefill_puts_decodes_first_and_respects_the_budget(tiny):
    cache = PagedKVCache(tiny.cfg, 32, 4)
    cfg = SchedulerConfig(max_num_batched_tokens=6, chunked_prefill=True, chunk_size=4)
    sched = Scheduler(cfg, cache)
    sched.add_request(0, [1, 2], 3)
    step = sched.schedule()
    sched.update(step, [9])
    sched.add_request(1, list(range(10)), 2)
    step = sched.schedule()
    assert step.seq_ids == [0, 1] and step.tokens == [[9], [0, 1, 2, 3]] and step.sample == [True, False]


def test_abort_frees_blocks(tiny):
    cache = PagedKVCache(tiny.cfg, 8, 4)
    sched = Scheduler(SchedulerConfig(), cache)
    sched.add_request(0, list(range(9)), 5)
    sched.add_request(1, [1], 5)
    step = sched.schedule()
    paged_forward(tiny, cache, step.seq_ids, step.tokens)
    sched.update(step, [1, 2])
    assert cache.allocator.num_free == 8 - 3 - 1
    sched.abort(0)
    sched.abort(1)
    assert cache.allocator.num_free == 8 and not sched.has_unfinished()
    assert sched.requests[0].status == "aborted"


def test_eos_finishes_a_request(tiny):
    cache = PagedKVCache(tiny.cfg, 8, 4)
    sched = Scheduler(SchedulerConfig(), cache)
    sched.add_request(0, [1, 2], 10, eos_token_id=3)
    done = sched.update(sched.schedule(), [3])
    assert [r.request_id for r in done] == [0] and cache.allocator.num_free == 8


def test_scheduler_rejects_bad_input(tiny):
    cache = PagedKVCache(tiny.cfg, 4, 4)
    with pytest.raises(ValueError, match="policy must be"):
        SchedulerConfig(policy="fifo")
    with pytest.raises(ValueError, match="preemption must be"):
        SchedulerConfig(preemption="kill")
    with pytest.raises(ValueError, match="kv_reservation must be one of"):
        SchedulerConfig(kv_reservation="buddy")
    with pytest.raises(ValueError, match="chunked_prefill must be a bool"):
        SchedulerConfig(chunked_prefill=1)
    with pytest.raises(ValueError, match="max_num_seqs must be an int >= 1"):
        SchedulerConfig(max_num_seqs=0)
    with pytest.raises(ValueError, match="config must be a SchedulerConfig"):
        Scheduler({}, cache)
    with pytest.raises(ValueError, match="cache must be a PagedKVCache"):
        Scheduler(SchedulerConfig(), None)
    sched = Scheduler(SchedulerConfig(max_num_batched_tokens=8), cache)
    with pytest.raises(ValueError, match="non-empty list of token ids"):
        sched.add_request(0, [], 1)
    with pytest.raises(ValueError, match="exceed max_seq_len"):
        sched.add_request(0, [1], tiny.cfg.max_seq_len)
    with pytest.raises(ValueError, match="needs max_num_batched_tokens"):
        sched.add_request(0, [1] * 8, 4)
    with pytest.raises(ValueError, match="can never fit"):
        Scheduler(SchedulerConfig(max_num_batched_tokens=64), cache).add_request(0, [1] * 10, 10)
    sched.add_request(0, [1], 1)
    with pytest.raises(ValueError, match="already exists"):
        sched.add_request(0, [1], 1)
    with pytest.raises(KeyError, match="unknown request"):
        sched.abort(5)
    with pytest.raises(ValueError, match="one entry of next_tokens"):
        sched.update(SchedulerStep(seq_ids=[0], tokens=[[1]], sample=[True]), [])


# ----------------------------------------------------------------------------- the trace

def test_synthetic_trace_follows_its_distributions():
    trace = synthetic_trace(2000, 512, rate=0.5, prompt_median=40, output_median=32, seed=1)
    prompts = sorted(len(r.prompt) for r in trace)
    outputs = sorted(r.output_len for r in trace)
    assert abs(prompts[1000] - 40) <= 3 and abs(outputs[1000] - 32) <= 3        # medians
    assert min(prompts) >= 4 and max(prompts) <= 128 and min(outputs) >= 4 and max(outputs) <= 120
    gaps = [b.arrival - a.arrival for a, b in zip(trace, trace[1:])]
    assert abs(trace[-1].arrival / 1999 - 1 / 0.5) < 0.2                          # mean gap 1 / rate
    assert all(g >= 0 for g in gaps) and trace == synthetic_trace(2000, 512, 0.5, 40, 32, seed=1)
    with pytest.raises(ValueError, match="rate must be a finite number > 0"):
        synthetic_trace(3, 512, rate=0)


def test_replay_rejects_bad_input(tiny):
    trace = synthetic_trace(2, tiny.cfg.vocab_size, seed=0)
    with pytest.raises(ValueError, match="model must be a GPT"):
        replay(None, trace, SchedulerConfig(), 8)
    with pytest.raises(ValueError, match="non-empty list of TraceRequest"):
        replay(tiny, [], SchedulerConfig(), 8)
    with pytest.raises(ValueError, match="config must be a SchedulerConfig"):
        replay(tiny, trace, "fcfs", 8)
    with pytest.raises(ValueError, match="prompts must be a non-empty list"):
        serve_greedy(tiny, [[1]], [1, 2])
    assert math.isfinite(replay(tiny, [TraceRequest(0, 0, [1, 2], 2)], SchedulerConfig(), 8, 4).tokens_per_iteration)
